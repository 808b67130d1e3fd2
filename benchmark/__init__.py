"""medvlp-bench: a benchmark harness for medical vision-language pre-training."""

from benchmark.version import __version__

__all__ = ["__version__"]
