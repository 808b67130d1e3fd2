"""Downstream task kinds; importing this package registers them."""

from tasks import segmentation  # noqa: F401
