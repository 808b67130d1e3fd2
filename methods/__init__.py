"""VLP methods; importing this package registers them."""

from methods import baselines, imitate  # noqa: F401
