"""Label-fraction subsets as stored manifests, never a global RNG at load time.

Two rules (a task config's ``subset``). "mgca" is MGCA's own draw for its classification
data sets, ``sample(frac, random_state=42)`` over the training list, deterministic and the
same for every seed (:func:`mgca_sample`). "stratified" (BenchX-style, the default of every
other task) is a pure function of (training ids, labels, fraction, seed): each
label group is permuted by ``numpy.random.default_rng(seed)`` once and the
first ``round(fraction * n_group)`` ids (at least one) are taken, so subsets
are stratified and nested (the 1 % list sits inside the 10 % list for a seed).
The list is written once as a text file (one id per line) and read back on
every later run, so a trial's training set can be inspected and shared.

A manifest is a result's definition, so it is never silently regenerated: when
it is first written, its SHA-256 goes beside it in ``<name>.sha256`` (the
``sha256sum`` format: ``sha256sum -c`` checks it by hand), and every later read
compares. A manifest that no longer matches (edited, truncated) is an error
naming the file. A manifest from before these records gets its record on first
read (with a log line saying so). The file name holds a fingerprint of the
training ids and of the labels that stratify them, so a changed label file
draws a new list instead of reusing an old one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark.errors import UserError
from benchmark.paths import atomic_write, cache_dir

log = logging.getLogger(__name__)


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


#: how a fraction subset is drawn: "stratified" (per seed, each label group in proportion: BenchX-style,
#: nested) or "mgca" (MGCA's classification datasets: ``df.sample(frac=fraction, random_state=42)`` over
#: the training list, the same for every seed)
SUBSET_RULES = ("stratified", "mgca")
MGCA_SAMPLE_STATE = 42


def mgca_sample(ids: Sequence[str], fraction: float) -> list[str]:
    """MGCA's draw (``mgca/datasets/classification_dataset.py``): ``sample(frac=fraction,
    random_state=42)`` of the training table, in the order it returns; the whole list at fraction 1
    (MGCA samples only when ``data_pct != 1``). Where that draw would hold no row at all (a list of
    fewer than 1 / (2 * fraction) ids, which MGCA's code cannot train on), one row: ``sample(n=1)``."""
    import pandas as pd

    check_fraction(fraction)
    ids = list(ids)
    if fraction == 1.0:
        return ids
    table = pd.DataFrame({"id": ids})
    drawn = table.sample(frac=fraction, random_state=MGCA_SAMPLE_STATE)
    if drawn.empty and ids:
        drawn = table.sample(n=1, random_state=MGCA_SAMPLE_STATE)
    return drawn["id"].astype(str).tolist()


def subset_fingerprint(ids: Sequence[str], labels: Sequence[int] | None) -> str:
    """What a subset is drawn from: the ids, and the labels that stratify them."""
    if labels is None:
        return ids_fingerprint(ids)
    strata = np.asarray(labels).astype(np.int64).tolist()
    return hashlib.sha256(("\n".join(ids) + "|" + ",".join(map(str, strata))).encode()).hexdigest()[:10]


def manifest_path(task: str, source: str, ids: Sequence[str], fraction: float, seed: int,
                  labels: Sequence[int] | None = None) -> Path:
    return cache_dir("splits", source, task) / f"train-{subset_fingerprint(ids, labels)}-f{fraction:g}-seed{seed}.txt"


def record_path(path: Path) -> Path:
    """Where a manifest's SHA-256 is recorded: ``<manifest>.sha256`` beside it."""
    return path.with_name(path.name + ".sha256")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_manifest(path: Path) -> None:
    """Write ``path``'s SHA-256 beside it (``sha256sum`` format)."""
    line = f"{_sha256(path.read_bytes())}  {path.name}\n"
    atomic_write(record_path(path), lambda p: p.write_text(line))


def read_manifest(path: Path) -> list[str]:
    """A stored manifest's ids, after checking it against its recorded SHA-256 (recorded now if
    it has none); a UserError naming the file when it no longer matches."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read split manifest {path}: {exc.strerror or exc}") from None
    rec = record_path(path)
    if not rec.is_file():
        record_manifest(path)
        log.info("split manifest %s had no recorded SHA-256 (written before records existed): recorded now in %s",
                 path, rec.name)
    else:
        try:
            recorded = rec.read_text(encoding="ascii").split()[0]
        except (OSError, UnicodeDecodeError, IndexError):
            recorded = ""
        if recorded != _sha256(data):
            raise UserError(f"split manifest {path} no longer matches its recorded SHA-256 ({rec.name}): it was edited "
                            "or truncated; restore it (it defines the results drawn from it), or delete both files to "
                            "draw it again")
    try:
        return data.decode("utf-8").split()
    except UnicodeDecodeError:
        raise UserError(f"split manifest {path} is not a text file of ids; delete it and its {rec.name}") from None


def fraction_subset(
    task: str, source: str, ids: Sequence[str], labels: Sequence[int] | None, fraction: float, seed: int,
    rule: str = "stratified",
) -> tuple[list[str], Path]:
    """The stored subset for (task, data source, training ids and strata, fraction, seed), written on
    first use; ``rule`` (:data:`SUBSET_RULES`) "mgca" draws MGCA's subset, one list for every seed."""
    if rule not in SUBSET_RULES:
        raise UserError(f"unknown subset rule {rule!r}; expected one of {', '.join(SUBSET_RULES)}")
    if rule == "mgca":
        path = cache_dir("splits", source, task) / f"train-{ids_fingerprint(ids)}-f{fraction:g}-mgca.txt"
    else:
        path = manifest_path(task, source, ids, fraction, seed, labels)
    if path.exists():
        subset = read_manifest(path)
        if not subset:
            raise UserError(f"split manifest {path} is empty; delete it and its {record_path(path).name} "
                            "to draw it again")
        unknown = set(subset) - set(ids)
        if unknown:
            raise UserError(f"split manifest {path} names {len(unknown)} ids not in the training split; delete it")
        return subset, path
    subset = mgca_sample(ids, fraction) if rule == "mgca" else draw_subset(ids, labels, fraction, seed)
    atomic_write(path, lambda p: p.write_text("\n".join(subset) + "\n"))
    record_manifest(path)
    return subset, path


def select(split, ids: Sequence[str]):
    """The rows of a split whose ids are in ``ids``: every per-sample field indexed."""
    wanted = set(ids)
    rows = [i for i, x in enumerate(split.ids) if x in wanted]
    n = len(split.ids)
    changes = {}
    for f in dataclasses.fields(split):
        value = getattr(split, f.name)
        if hasattr(value, "__len__") and not isinstance(value, (str, dict)) and len(value) == n:
            changes[f.name] = value[rows] if hasattr(value, "shape") else [value[i] for i in rows]
    return dataclasses.replace(split, **changes)
