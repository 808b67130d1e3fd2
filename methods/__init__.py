"""VLP methods; importing this package registers them."""

from methods import baselines, imitate  # noqa: F401
from methods import convirt, gloria  # noqa: F401
from methods import asg, prior  # noqa: F401
