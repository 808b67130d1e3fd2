"""Downstream task kinds; importing this package registers them."""

from tasks import classification, segmentation  # noqa: F401
