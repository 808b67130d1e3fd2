"""The exceptions that are not bugs.

The CLI turns a :class:`UserError` into one line on stderr and exit status 2,
and a :class:`TrialFailed` into one line and exit status 1; every other
exception is an internal error and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A bad name, path, value or file: something the user can fix."""


class TrialFailed(RuntimeError):
    """A trial that cannot finish, for a reason one line says (the loss became
    NaN, the GPU ran out of memory): recorded in the store as failed with that
    reason; a grid goes on with its other trials; ``run`` prints it and exits 1."""


class TrainingDiverged(TrialFailed):
    """The loss became NaN or infinite (pre-training or a task's head)."""


class OutOfMemory(TrialFailed):
    """The GPU ran out of memory; the message names the batch and image sizes."""


@contextmanager
def overflow_as_divergence(where: str) -> Iterator[None]:
    """Torch's Adam raises, instead of giving NaNs, when lr x its update overflows
    float32 (e.g. ``--set lr=1e38``): that trial has diverged too."""
    try:
        yield
    except RuntimeError as exc:
        if "without overflow" not in str(exc):
            raise
        raise TrainingDiverged(f"{where}: the optimiser step overflowed float32; lower lr") from None
