"""The installed distribution's version, in a module of its own: the modules that stamp
it on their results import it from here, not from the package ``benchmark`` (whose
``__init__`` is the Python API, above them). Beside it, the checkout's git revision:
trials and encoders both record the code that made them."""

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmark.paths import REPO_ROOT

try:
    #: the installed distribution's version (pyproject.toml at install time)
    __version__ = version("medvlp-bench")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The checkout's short revision; None for an installed wheel (its folder may sit inside
    some other git repository, whose revision says nothing about this code)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--show-toplevel", "--short", "HEAD"], capture_output=True,
            text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode or len(lines) != 2 or Path(lines[0]).resolve() != REPO_ROOT.resolve():
        return None
    return lines[1]
