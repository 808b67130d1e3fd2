"""Finding a data set by name: the shipped modules and the user's.

Why: one place decides which data sets exist, so the loaders, ``data check``,
``data split``, the fingerprints and the phantom fallback never name one. The
shipped data sets are the modules of ``benchmark.data.sets`` (each registers a
:class:`benchmark.data.dataset.DataSet` in ``DATASETS``); a user's are the
``datasets/*.py`` files of the config folders (``--config-path DIR`` or
``$BENCHMARK_CONFIG_PATH``), imported the same way, so a new data set is one
file beside its task YAMLs and no file of the package changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from benchmark.config import user_config_dirs
from benchmark.data.dataset import DataSet
from benchmark.data.real.layout import Layout
from benchmark.errors import UserError
from benchmark.registry import DATASETS, unknown_name

PACKAGE = "benchmark.data.sets"
_LOADED: set[str] = set()
#: a user data set's name -> the config folder its module came from: a module stays imported
#: for the process, but its data sets are found only while that folder is on the config path
_FOLDER_OF: dict[str, Path] = {}


def _import_shipped() -> None:
    package = importlib.import_module(PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{PACKAGE}.{info.name}")


def _import_user(path: Path) -> None:
    """A user's data set module, imported once under a name of its own (``benchmark_user_datasets.<stem>``)."""
    name = f"benchmark_user_datasets.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"data set module {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except UserError:
        raise
    except Exception as exc:  # a user's file: one line naming it, not a traceback
        sys.modules.pop(name, None)
        raise UserError(f"data set module {path} failed to import: {type(exc).__name__}: {exc}".splitlines()[0]) \
            from None


def load_modules() -> None:
    """Import the shipped data set modules and the config folders' ``datasets/*.py`` (each once)."""
    if PACKAGE not in _LOADED:
        _import_shipped()
        _LOADED.add(PACKAGE)
    for folder in user_config_dirs():
        for path in sorted((folder / "datasets").glob("*.py")):
            key = str(path.resolve())
            if key not in _LOADED and not path.name.startswith("_"):
                _LOADED.add(key)
                before = set(DATASETS.names())
                _import_user(path)
                _FOLDER_OF.update(dict.fromkeys(set(DATASETS.names()) - before, folder.resolve()))


def names() -> list[str]:
    """The data sets found now: the shipped ones and those of the folders on the config path."""
    load_modules()
    folders = {folder.resolve() for folder in user_config_dirs()}
    return [n for n in DATASETS.names() if n not in _FOLDER_OF or _FOLDER_OF[n] in folders]


def dataset(name: str) -> DataSet:
    """The data set ``name`` (an unknown name lists the known ones)."""
    found = names()
    if name not in found:
        raise unknown_name("data set", name, found)
    return DATASETS.get(name)


def everything() -> list[DataSet]:
    return [DATASETS.get(n) for n in names()]


def corpus() -> DataSet:
    """The pre-training corpus (the data set registered with ``corpus = True``)."""
    found = [d for d in everything() if d.corpus]
    if len(found) != 1:
        raise UserError(f"expected one pre-training corpus data set, found {len(found)}: "
                        f"{', '.join(d.name for d in found) or 'none'}")
    return found[0]


def split_table(name: str, root: Path, kind: str = ""):
    """The split recipe of data set ``name`` for a task of ``kind`` (``SplitTable``)."""
    return dataset(name).split_table(root, kind)


class _View(Mapping):
    """A read-only mapping over the registered data sets (the modules imported on first use)."""

    def __init__(self, pick: Callable[[DataSet], object | None]) -> None:
        self._pick = pick

    def _table(self) -> dict[str, object]:
        return {d.name: v for d in everything() if (v := self._pick(d)) is not None}

    def __getitem__(self, key: str) -> object:
        return self._table()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())


#: Data set name -> :class:`Layout`, for the data sets with a download of their own (a set
#: carved out of another's download shares that one's layout); docs/DATA.md and
#: ``benchmark.data.real``'s docstring show this table.
LAYOUTS: Mapping[str, Layout] = _View(lambda d: d.layout if d.layout is not None and d.layout.key == d.name else None)
#: Data set name -> its phantom stand-in ``f(split, n, size)``, for those that have one.
PHANTOMS: Mapping[str, Callable] = _View(lambda d: d.phantom if type(d).phantom is not DataSet.phantom else None)
