"""VLP methods; importing this package registers them."""

from methods import imitate  # noqa: F401
