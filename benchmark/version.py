"""The installed distribution's version, in a module of its own: the modules that stamp
it on their results import it from here, not from the package ``benchmark`` (whose
``__init__`` is the Python API, above them)."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: the installed distribution's version (pyproject.toml at install time)
    __version__ = version("medvlp-bench")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
