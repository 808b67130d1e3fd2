"""VLP methods; importing this package registers them."""

from methods import asg, baselines, convirt, gloria, imitate, prior, supervised  # noqa: F401
