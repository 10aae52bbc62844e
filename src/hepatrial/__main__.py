"""``python -m hepatrial`` runs the ``hepatrial`` command."""

from hepatrial.cli import main

main()
