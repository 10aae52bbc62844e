"""``python -m hepatrial`` runs the ``hepatrial`` command."""

from hepatrial.cli import app

app(prog_name="hepatrial")
