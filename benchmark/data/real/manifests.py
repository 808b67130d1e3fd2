"""Published split manifests: one text file of ids per split and per fraction subset.

Why: papers differ by which images they trained and tested on; lists that
anyone can diff settle it. ``write_manifests`` writes, for every split of each
of a data set's recipe variants (``DataSet.variants``), ``<variant->train.txt``
etc., and for the train split
the 1 % and 10 % subsets for seeds 42, 0 and 1 exactly as the runner draws
them (``benchmark.data.splits.draw_subset`` on the same ids and strata), for the
variants whose classification tasks use MGCA's rule (``DataSet.mgca_sample_variants``)
also MGCA's ``sample(frac, random_state=42)`` lists (``train-1pct-mgca.txt``), plus
``summary.json`` with each list's file, count and SHA-256. Only label files
are read, never images.

The lists are results' definitions, so a folder that already holds them is
never silently rewritten: a list that no longer matches the SHA-256 recorded in
its ``summary.json`` (edited, truncated) is an error naming it, and so is a list
that today's label files would draw differently (write those to a new
``--out``). Writing the same lists again is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from benchmark.data import catalog
from benchmark.data.real.splittable import RECIPE_VERSION
from benchmark.data.splits import draw_subset, mgca_sample
from benchmark.errors import UserError
from benchmark.paths import atomic_json, atomic_write, cache_dir, writable_dir

FRACTIONS = (0.01, 0.1)
SEEDS = (42, 0, 1)
def write_ids(path: Path, ids: Sequence[str]) -> Path:
    atomic_write(path, lambda p: p.write_text("".join(f"{i}\n" for i in ids)))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dataset_name(name: str) -> str:
    """A data set name, or a task name mapped to its data set."""
    name = name.replace("-", "_")
    known = catalog.names()
    if name in known:
        return name
    from benchmark.config import available, named_yaml

    if name in available("tasks"):
        return named_yaml("tasks", name).get("dataset", name)
    raise UserError(f"no split recipe for {name!r}; data sets: {', '.join(known)} (or a task name)")


def write_manifests(name: str, root: Path, protocol: str = "mgca", out: Path | None = None) -> tuple[Path, dict]:
    """Write every list of ``name``'s recipe(s) under ``out``; returns (out, summary)."""
    if protocol != "mgca":
        raise UserError(f"unknown split protocol {protocol!r}; available: mgca")
    dataset = dataset_name(name)
    ds = catalog.dataset(dataset)
    out = Path(out) if out is not None else cache_dir("manifests", protocol, dataset)
    writable_dir(out, "the --out folder", "pass --out DIR with a folder you can write")
    planned: dict[str, list[str]] = {}
    sources = set()
    for variant in ds.variants:
        st = ds.split_table(root, variant=variant)
        sources.add(st.source)
        prefix = f"{variant}-" if variant else ""
        for split in st.rows:
            ids = st.ids(split)
            planned[f"{prefix}{split}"] = ids
            if split != "train" or not ds.fractions:
                continue
            strata = st.labels(split)
            for fraction in FRACTIONS:
                for seed in SEEDS:
                    tag = f"{prefix}train-{fraction * 100:g}pct-seed{seed}"
                    planned[tag] = draw_subset(ids, strata, fraction, seed)
                if variant in ds.mgca_sample_variants:  # MGCA's own draw: one list for every seed
                    planned[f"{prefix}train-{fraction * 100:g}pct-mgca"] = mgca_sample(ids, fraction)
    check_existing(out, {f"{tag}.txt": _text(ids) for tag, ids in planned.items()})
    lists = {tag: _entry(write_ids(out / f"{tag}.txt", ids), len(ids)) for tag, ids in planned.items()}
    summary = {"dataset": dataset, "protocol": protocol, "recipe": RECIPE_VERSION, "source": sorted(sources),
               "stratified": "fraction subsets: benchmark.data.splits.draw_subset(train ids, labels, fraction, seed)",
               "mgca": "*-mgca lists: MGCA's DataFrame.sample(frac=fraction, random_state=42) of the train list",
               "lists": lists}
    atomic_json(out / "summary.json", summary)
    return out, summary


def _text(ids: Sequence[str]) -> str:
    return "".join(f"{i}\n" for i in ids)


def check_existing(out: Path, planned: dict[str, str]) -> None:
    """A UserError if a list already in ``out`` was edited since ``summary.json`` recorded it,
    or differs from what would be written now (``planned``: file name -> text)."""
    recorded: dict[str, str] = {}
    summary = out / "summary.json"
    if summary.is_file():
        try:
            entries = json.loads(summary.read_text(encoding="utf-8"))["lists"].values()
            recorded = {e["file"]: e["sha256"] for e in entries}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise UserError(f"{summary} is not a split summary this tool wrote; write the lists to a new --out") \
                from None
    for name, sha in recorded.items():
        path = out / name
        if not path.is_file() or sha256(path) != sha:
            raise UserError(f"split list {path} no longer matches the SHA-256 in {summary}: it was edited, truncated "
                            "or removed; restore it, or write the lists to a new --out")
    for name, text in planned.items():
        path = out / name
        if path.is_file() and path.read_bytes() != text.encode():
            raise UserError(f"split list {path} differs from what the label files under the data root draw now "
                            "(other label files?); write the lists to a new --out, or delete the old ones to "
                            "replace them")


def _entry(path: Path, count: int) -> dict:
    return {"file": path.name, "count": count, "sha256": sha256(path)}
