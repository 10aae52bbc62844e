"""hepatrial: trials of cell therapy in end-stage liver disease, from protocol to publication."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hepatrial")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"
