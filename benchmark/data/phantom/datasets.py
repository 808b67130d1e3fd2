"""Phantom pre-training pairs, and the helpers every phantom stand-in renders and caches with.

Why: every method and task in the benchmark must run without credentialed
data.  ``phantom_corpus`` pairs real Open-i report text with a procedural
radiograph drawn from that report's MeSH tags.  The downstream stand-ins live
in their data set modules (``benchmark.data.sets``) and share ``seeded_rng``,
``open_cached``, ``distractor`` (findings outside a set's label space, so
"bright somewhere" is not the answer) and the rest from here.

All are deterministic functions of (``PHANTOM_VERSION``, parameters) and are
cached under ``$BENCHMARK_HOME/phantom/<version>/`` as ``.npy`` files opened
with ``mmap_mode="r"`` plus a JSON sidecar; files are written to a temporary
name and renamed, so an interrupted render never leaves a half file behind.
The sidecar records each array's shape and a checksum over a sample of its rows
(``benchmark.data.integrity``): an entry that was truncated, zeroed or
overwritten later is reported in one warning line and rendered again.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from benchmark.data import integrity
from benchmark.data.phantom.anatomy import Lesion, lesions_from_report
from benchmark.data.phantom.render import render
from benchmark.data.phantom.reports import load_reports
from benchmark.data.phantom.stack import render_stack
from benchmark.data.types import PairCorpus
from benchmark.errors import UserError
from benchmark.paths import atomic_json, cache_dir

log = logging.getLogger(__name__)

#: Bump whenever rendering or lesion mapping changes: part of every cache key.
PHANTOM_VERSION = "v2"
SPLITS = ("train", "val", "test")


# ------------------------------------------------------------------ helpers


def seeded_rng(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (not Python's salted hash())."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def short_sha(*parts: object) -> str:
    """A 12-hex-digit fingerprint of the parts (what keys a phantom set's cache)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:12]


def check_size(size: int) -> int:
    """The image size of a phantom set, checked (a user's value: one error line)."""
    if not isinstance(size, (int, np.integer)) or size < 16 or size > 2048:
        raise UserError(f"phantom image size must be an integer in [16, 2048], got {size!r}")
    return int(size)


def open_cached(what: str, meta: Path, arrays: Sequence[Path], rows: Callable[[dict], int], size: int,
                required: Sequence[str] = ()) -> tuple[dict, list[np.ndarray]] | None:
    """A cached render (sidecar, memmaps) if complete and intact; None to render it (again).

    ``rows(sidecar)`` is how many images the sidecar describes; the first array holds images
    (never all zero), the others masks (may be)."""
    return integrity.cached_entry(log, what, meta, arrays, lambda m: (rows(m), size, size), required,
                                  (False,) + (True,) * (len(arrays) - 1))


def same_length(meta: dict, *keys: str) -> int:
    """The common length of the sidecar's per-image lists (a KeyError when they differ: damaged)."""
    lengths = {len(meta[k]) for k in keys}
    if len(lengths) != 1:
        raise KeyError(keys)
    return lengths.pop()


# ------------------------------------------------------------------- corpus


def _find_cached_superset(folder: Path, size: int, ids: list[str]) -> np.ndarray | None:
    """The images of a cached, intact corpus at this size whose ids start with ``ids``
    (smaller corpora are prefixes); a damaged one met on the way is removed with a warning."""
    for meta in sorted(folder.glob(f"corpus-{size}px-*.json")):
        entry = open_cached("phantom corpus", meta, [meta.with_suffix(".npy")], lambda m: len(m["ids"]), size, ("ids",))
        if entry is not None:
            cached, (images,) = entry[0]["ids"], entry[1]
            if len(cached) >= len(ids) and cached[: len(ids)] == ids:
                return images if len(cached) == len(ids) else images[: len(ids)]
    return None


def phantom_corpus(n: int, size: int) -> PairCorpus:
    """The first ``n`` Open-i reports (all if n <= 0 or n > available), with phantom images.

    Image i depends only on (PHANTOM_VERSION, "corpus", i) and report i, so a
    smaller corpus is a prefix of a larger one (and is served from its cache
    when that exists).  First call renders (progress bar; ~17 ms per 256 px
    image, about a minute for all 3.9k), later calls memory-map the cache.
    """
    size = check_size(size)
    reports = load_reports()
    if n is None or n <= 0 or n > len(reports):
        n = len(reports)
    reports = reports[:n]
    ids = [f"phantom-{r.uid}" for r in reports]
    fingerprint = short_sha(PHANTOM_VERSION, size, n, ",".join(r.uid for r in reports))
    folder = cache_dir("phantom", PHANTOM_VERSION)

    images = _find_cached_superset(folder, size, ids)
    if images is None:
        stem = f"corpus-{size}px-{n}-{fingerprint}"
        npy, meta = folder / f"{stem}.npy", folder / f"{stem}.json"

        def draw(i: int) -> tuple[tuple[np.ndarray], None]:
            return (render(lesions_from_report(reports[i]), seeded_rng(PHANTOM_VERSION, "corpus", i), size).image,), None

        checks, _ = render_stack([npy], n, size, draw, desc=f"phantom corpus {size}px")
        # The JSON sidecar is written last: its presence marks a complete cache entry.
        atomic_json(meta, {"version": PHANTOM_VERSION, "size": size, "ids": ids,
                           "uids": [r.uid for r in reports], integrity.KEY: checks})
        images = np.load(npy, mmap_mode="r")
    return PairCorpus(
        ids=ids,
        images=images,
        findings=[r.findings for r in reports],
        impressions=[r.impression for r in reports],
        source="phantom",
        fingerprint=fingerprint,
    )


# -------------------------------------------------------------- distractors

#: Findings that are not a downstream set's target (kind, weight): drawn on its negatives.
_DISTRACTORS = (
    ("cardiomegaly", 3.0),
    ("effusion", 2.5),
    ("nodule", 2.5),
    ("atelectasis", 1.0),
    ("elevated_diaphragm", 1.0),
    ("hyperinflation", 1.0),
    ("pneumothorax", 0.5),
)


def distractor(rng: np.random.Generator) -> Lesion:
    """A finding that is not the task's target, drawn by its weight in ``_DISTRACTORS``."""
    kinds, weights = zip(*_DISTRACTORS)
    p = np.asarray(weights) / sum(weights)
    kind = str(rng.choice(kinds, p=p))
    side = str(rng.choice(["right", "left"]))
    sev = float(rng.uniform(0.2, 0.9))
    if kind == "cardiomegaly":
        return Lesion(kind, "center", "middle", sev)
    if kind == "hyperinflation":
        return Lesion(kind, "bilateral", "diffuse", sev)
    if kind in ("effusion", "elevated_diaphragm"):
        return Lesion(kind, side, "lower", sev)
    if kind == "pneumothorax":
        return Lesion(kind, side, "upper", sev)
    return Lesion(kind, side, str(rng.choice(["upper", "middle", "lower"])), sev)
