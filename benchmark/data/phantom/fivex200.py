"""Phantom stand-ins for the "5x200" zero-shot and retrieval sets: images with
exactly one of the five CheXpert competition findings, each paired with the
real Open-i report that says so (retrieval ranks those reports).

Reports are taken from the END of the report list, so the pre-training corpus
(a prefix of the same list) shares none of them unless it uses nearly all
reports (the paper profile); the images are rendered from a separate seed stream
either way. Open-i has few single-finding reports for some classes (edema: 9,
effusion: 51): a class with fewer reports than images reuses its reports
cyclically, each reuse a new render, so texts repeat but images do not.
"""

from __future__ import annotations

import logging

import numpy as np

from benchmark.data import integrity
from benchmark.data.phantom.anatomy import lesions_from_report
from benchmark.data.phantom.datasets import (
    PHANTOM_VERSION,
    open_cached,
    same_length,
    seeded_rng,
)
from benchmark.data.phantom.render import render
from benchmark.data.phantom.reports import load_reports
from benchmark.data.phantom.stack import render_stack
from benchmark.data.types import FIVE_FINDINGS, TextLabelSet
from benchmark.errors import UserError
from benchmark.paths import atomic_json, cache_dir

log = logging.getLogger(__name__)

#: The five classes and the renderer kind that draws each.
CLASSES = FIVE_FINDINGS
KIND_OF = {"atelectasis": "atelectasis", "cardiomegaly": "cardiomegaly", "consolidation": "opacity",
           "edema": "edema", "pleural effusion": "effusion"}


def single_label_reports() -> dict[int, list]:
    """Reports whose drawn lesions include exactly one of the five classes, per class,
    newest first."""
    kinds = {v: i for i, v in enumerate(KIND_OF.values())}
    per_class: dict[int, list] = {i: [] for i in range(len(CLASSES))}
    for report in reversed(load_reports()):
        found = {kinds[les.kind] for les in lesions_from_report(report) if les.kind in kinds}
        if len(found) == 1:
            per_class[found.pop()].append(report)
    return per_class


def phantom_5x200(split: str, n: int, size: int) -> TextLabelSet:
    """``n`` images (n // 5 per class; the real sets have 200 per class) for ``split``.
    Only a test split exists: zero-shot and retrieval train nothing."""
    if split != "test":
        raise UserError(f"the 5x200 sets have only a test split, not {split!r}")
    per = n // len(CLASSES)
    if per < 1:
        raise UserError(f"phantom 5x200 needs at least {len(CLASSES)} images, asked {n}")
    pools = single_label_reports()
    chosen = [(c, k, pools[c][k % len(pools[c])]) for c in range(len(CLASSES)) for k in range(per)]
    folder = cache_dir("phantom", PHANTOM_VERSION)
    stem = f"5x200-{size}px-{per}"
    npy, meta = folder / f"{stem}.npy", folder / f"{stem}.json"
    uids = [r.uid for _, _, r in chosen]
    entry = open_cached("phantom 5x200", meta, [npy], lambda m: same_length(m, "uids"), size, ("uids",))
    if entry is not None and entry[0]["uids"] != uids:  # the report pool changed: not these images
        integrity.discard(log, "phantom 5x200", meta, "drawn from other reports", [meta, npy])
        entry = None
    if entry is None:
        def draw(i: int) -> tuple[tuple[np.ndarray], None]:
            _, k, report = chosen[i]
            rng = seeded_rng(PHANTOM_VERSION, "5x200", report.uid, k)
            return (render(lesions_from_report(report), rng, size).image,), None

        checks, _ = render_stack([npy], len(chosen), size, draw, desc=f"phantom 5x200 {size}px")
        atomic_json(meta, {"uids": uids, integrity.KEY: checks})
        entry = ({}, [np.load(npy, mmap_mode="r")])
    return TextLabelSet(
        ids=[f"5x200-{CLASSES[c].replace(' ', '_')}-{k:03d}" for c, k, _ in chosen],
        images=entry[1][0],
        labels=np.asarray([c for c, _, _ in chosen], np.int64),
        texts=[f"{r.findings} {r.impression}".strip() for _, _, r in chosen],
        fingerprint=f"5x200-{PHANTOM_VERSION}-{size}-{per}",
    )
