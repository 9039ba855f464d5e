"""apimon: a DuckDB monitoring warehouse for machine-learning prediction APIs."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("apimon")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
