"""Downstream task kinds; importing this package registers them."""

from benchmark.tasks import classification, detection, retrieval, segmentation, zeroshot  # noqa: F401
