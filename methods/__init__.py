"""VLP methods; importing this package registers them."""

from benchmark.methods import asg, baselines, convirt, gloria, imitate, openclip, prior, supervised  # noqa: F401
