"""medvlp-bench: a benchmark harness for medical vision-language pre-training."""

__version__ = "0.1.0"
