"""hepatrial: trials of cell therapy in end-stage liver disease, from protocol to publication."""

from typing import Any


def __getattr__(name: str) -> Any:
    # ``__version__`` is read from the installed metadata on first use only: importing
    # importlib.metadata costs ~0.03 s, a fifth of the start-up budget of `hepatrial --help`
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("hepatrial")
        except PackageNotFoundError:  # pragma: no cover - source tree without install
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
