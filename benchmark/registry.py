"""Name -> object registries for methods, task kinds and data sets, in the spirit of timm's
``register_model`` / ``create_model``.

A bad name is a :class:`UserError` that lists the valid names, closest first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from benchmark.errors import UserError

T = TypeVar("T")


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """One-line error for a bad name: the valid names, closest match first (at
    most 12, so that a line about ``--set`` keys stays a line)."""
    valid = sorted(set(valid))
    if not valid:  # difflib needs n > 0; an install without its configs lands here
        return UserError(f"unknown {kind} {name!r}; none are installed")
    close = difflib.get_close_matches(name, valid, n=len(valid), cutoff=0.0)
    more = f" and {len(close) - 12} more" if len(close) > 12 else ""
    return UserError(f"unknown {kind} {name!r}; valid: {', '.join(close[:12])}{more}")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def ordered(self) -> list[str]:
        """The names in registration order (the order their modules were imported in)."""
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


METHODS: Registry = Registry("method")
TASK_KINDS: Registry = Registry("task kind")
#: image-backbone family -> a class with ``build(spec, weights)`` (and optional ``owns(name)``,
#: ``names()`` for plain names): ``benchmark/models/backbones.py`` registers "torchvision" and "timm"
BACKBONE_FAMILIES: Registry = Registry("backbone family")
#: data set name -> its :class:`benchmark.data.dataset.DataSet` (one module each under benchmark/data/sets/)
DATASETS: Registry = Registry("data set")
