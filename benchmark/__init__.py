"""medvlp-bench: a benchmark harness for medical vision-language pre-training.

The Python API (:mod:`benchmark.api`): ``benchmark.run``, ``benchmark.pretrain``,
``benchmark.load_encoder``, ``benchmark.results``. They are loaded on first use
(PEP 562), so ``import benchmark.config`` or ``python -m benchmark --help`` do not
import torch, and no module below the API imports this package's API back.
(The pre-training loop is the module ``benchmark.pretraining``: a submodule named
``pretrain`` would be bound over the API function by the import system.)
"""

from benchmark.version import __version__ as __version__  # re-exported

__all__ = ["RunResult", "baselines", "load_encoder", "pretrain", "results", "run"]


def __getattr__(name: str):
    if name in __all__:
        from benchmark import api

        return getattr(api, name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
