"""medvlp-bench: a benchmark harness for medical vision-language pre-training."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: the installed distribution's version (pyproject.toml at install time)
    __version__ = version("medvlp-bench")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
