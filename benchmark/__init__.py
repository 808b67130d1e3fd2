"""medvlp-bench: a benchmark harness for medical vision-language pre-training.

The Python API (:mod:`benchmark.api`): ``benchmark.run``, ``benchmark.pretrain``,
``benchmark.load_encoder``, ``benchmark.results``. They are loaded on first use
(PEP 562), so ``import benchmark.config`` or ``python -m benchmark --help`` do not
import torch, and no module below the API imports it back.

``benchmark.pretrain`` is also the name of the pre-training module, which Python
binds on this package when anything imports it; that module is made callable
(calling it is :func:`benchmark.api.pretrain`), so both readings hold whatever
was imported first.
"""

import sys
import types
from importlib.metadata import PackageNotFoundError, version

try:
    #: the installed distribution's version (pyproject.toml at install time)
    __version__ = version("medvlp-bench")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["RunResult", "load_encoder", "pretrain", "results", "run"]


class _CallableModule(types.ModuleType):
    """A submodule named like an API function: calling it calls the function."""

    def __call__(self, *args, **kwargs):
        from benchmark import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name in __all__ and isinstance(value, types.ModuleType):  # the import system binding benchmark.pretrain
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name == "pretrain":
        from importlib import import_module

        return import_module("benchmark.pretrain")  # binds the (callable) module here
    if name in __all__:
        from benchmark import api

        return getattr(api, name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
