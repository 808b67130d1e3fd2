"""Label-fraction subsets as stored manifests, never a global RNG at load time.

A subset is a pure function of (training ids, labels, fraction, seed): each
label group is permuted by ``numpy.random.default_rng(seed)`` once and the
first ``round(fraction * n_group)`` ids (at least one) are taken, so subsets
are stratified and nested (the 1 % list sits inside the 10 % list for a seed).
The list is written once as a text file (one id per line) and read back on
every later run, so a trial's training set can be inspected and shared.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark.errors import UserError
from benchmark.paths import atomic_write, cache_dir


def check_fraction(fraction: float) -> float:
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise UserError(f"fraction must be in (0, 1], got {fraction!r}")
    return float(fraction)


def ids_fingerprint(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:10]


def draw_subset(ids: Sequence[str], labels: Sequence[int] | None, fraction: float, seed: int) -> list[str]:
    """The subset itself (pure function); ``labels`` stratify when given."""
    check_fraction(fraction)
    ids = list(ids)
    if fraction == 1.0:
        return ids
    groups = np.zeros(len(ids), dtype=np.int64) if labels is None else np.asarray(labels)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for value in np.unique(groups):
        members = np.flatnonzero(groups == value)
        order = members[rng.permutation(len(members))]
        keep.extend(order[: max(1, round(fraction * len(members)))].tolist())
    return [ids[i] for i in sorted(keep)]


def manifest_path(task: str, source: str, ids: Sequence[str], fraction: float, seed: int) -> Path:
    return cache_dir("splits", source, task) / f"train-{ids_fingerprint(ids)}-f{fraction:g}-seed{seed}.txt"


def fraction_subset(
    task: str, source: str, ids: Sequence[str], labels: Sequence[int] | None, fraction: float, seed: int
) -> tuple[list[str], Path]:
    """The stored subset for (task, data source, training ids, fraction, seed), writing it on first use."""
    path = manifest_path(task, source, ids, fraction, seed)
    if path.exists():
        subset = path.read_text().split()
        unknown = set(subset) - set(ids)
        if unknown:
            raise UserError(f"split manifest {path} names {len(unknown)} ids not in the training split; delete it")
        return subset, path
    subset = draw_subset(ids, labels, fraction, seed)
    atomic_write(path, lambda p: p.write_text("\n".join(subset) + "\n"))
    return subset, path


def select(split, ids: Sequence[str]):
    """The rows of a split whose ids are in ``ids``: every per-sample field indexed."""
    wanted = set(ids)
    rows = [i for i, x in enumerate(split.ids) if x in wanted]
    n = len(split.ids)
    changes = {}
    for f in dataclasses.fields(split):
        value = getattr(split, f.name)
        if hasattr(value, "__len__") and not isinstance(value, str) and len(value) == n:
            changes[f.name] = value[rows] if hasattr(value, "shape") else [value[i] for i in rows]
    return dataclasses.replace(split, **changes)
