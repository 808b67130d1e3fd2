"""Builders of real downstream splits as ``benchmark.data.types`` containers.

Why: tasks must not care where data came from. A data set's ``load`` (its module
under ``benchmark.data.sets``) picks the builder for the task kind and gives it
what is specific (targets, classes, how masks are drawn). A split here is the
recipe's rows, decoded once into the memmap cache (``images.py``), with
labels, boxes and masks mapped into the stored image's geometry; ``source``
names the real data set and ``fingerprint`` hashes the ids, the recipe, the
preprocessing and the image size (it keys the feature caches).

Boxes (RSNA, Object-CXR) are clipped to their image and boxes left without area
(zero or negative width or height, wholly outside) are dropped, the same kept
boxes giving the masks and the detection targets; one warning per label file counts
them over the splits a run loads (``data check`` lists them). Labels stay as the file says.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from benchmark.data.masks import mask_boxes
from benchmark.data.real import labels as L
from benchmark.data.real.fingerprint import files_fingerprint
from benchmark.data.real.images import PREP_VERSION, MaskFn, Stack, cached_stack
from benchmark.data.real.splittable import RECIPE_VERSION, SplitTable
from benchmark.data.types import FIVE_FINDINGS, LabelSet, LesionSet, TextLabelSet

log = logging.getLogger(__name__)


def _fingerprint(st: SplitTable, split: str, stack: Stack, size: int) -> str:
    text = "|".join([RECIPE_VERSION, PREP_VERSION, st.dataset, st.variant, st.source, split, str(size), stack.key,
                     "\n".join(stack.ids)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _rows_of(stack: Stack, ids: list[str]) -> np.ndarray:
    """Positions in the recipe's list of the ids that were readable."""
    pos = {i: k for k, i in enumerate(ids)}
    return np.asarray([pos[i] for i in stack.ids], np.int64)


def _box_mask(boxes_of: list[list[list[float]]]):
    return lambda i, shape: L.box_mask(boxes_of[i], *shape)


def _stored_boxes(stack: Stack, rows: np.ndarray, boxes: list) -> tuple[list[np.ndarray], dict]:
    """Each readable image's boxes, clipped to it, in stored pixels, and what was repaired
    (``{"clipped": n, "dropped": n, "first": id}``: :func:`warn_repairs` says it once per label file)."""
    out, clipped, dropped, first = [], 0, 0, None
    for k, r in enumerate(rows):
        geo = stack.geometry[k]
        kept, c, d = L.clip_boxes(boxes[r], geo.height, geo.width)
        if (c or d) and first is None:
            first = stack.ids[k]
        clipped, dropped = clipped + c, dropped + d
        out.append(geo.boxes(kept))
    return out, ({"clipped": clipped, "dropped": dropped, "first": first} if clipped or dropped else {})


def warn_repairs(splits: dict[str, object], files: list[Path]) -> None:
    """One warning for the splits loaded from one label file: how many boxes were clipped to their
    image and how many dropped without area, summed over the splits (``data check`` lists them)."""
    found = [(name, s.repairs) for name, s in splits.items() if getattr(s, "repairs", None)]
    if not found:
        return
    clipped, dropped = sum(r["clipped"] for _, r in found), sum(r["dropped"] for _, r in found)
    log.warning("%s: %d box(es) reaching outside their image clipped, %d box(es) without area dropped in the %s "
                "split(s) (first: %s); masks and detection targets both use the kept boxes; `data check` lists them",
                ", ".join(str(f) for f in files), clipped, dropped, "/".join(n for n, _ in found), found[0][1]["first"])


def _prefix(st: SplitTable, split: str) -> str:
    return f"{st.dataset}{'-' + st.variant if st.variant else ''}-{split}"


def boxes_set(st: SplitTable, split: str, cfg, paths: list[Path]) -> LesionSet:
    """A split whose table has a ``boxes`` column (x, y, w, h in original pixels) as a
    LesionSet: box-filled masks, the boxes in stored pixels, labels from the strata column."""
    part, ids, size, name = st.part(split), st.ids(split), int(cfg.image_size), _prefix(st, split)
    labels_fp = files_fingerprint(st.files.values())  # masks are drawn from the label files: keyed on them
    boxes = list(part["boxes"])
    stack = cached_stack(name, ids, paths, size, st.folder, _box_mask(boxes), mask_tag=f"boxes-2|{labels_fp}")
    rows = _rows_of(stack, ids)
    kept, repairs = _stored_boxes(stack, rows, boxes)
    return LesionSet(ids=stack.ids, images=stack.images, masks=stack.masks, boxes=kept,
                     labels=part[st.strata].to_numpy(np.int64)[rows], source=f"real: {st.source}",
                     fingerprint=_fingerprint(st, split, stack, size), repairs=repairs)


def masks_set(st: SplitTable, split: str, cfg, paths: list[Path], draw: MaskFn, tag: str) -> LesionSet:
    """A split with masks drawn by ``draw(row, (h, w))`` from its table (``tag`` names how,
    for the cache key) as a LesionSet: labels from the strata column, boxes around each
    positive image's mask per lung half."""
    part, ids, size, name = st.part(split), st.ids(split), int(cfg.image_size), _prefix(st, split)
    labels_fp = files_fingerprint(st.files.values())
    stack = cached_stack(name, ids, paths, size, st.folder, draw, mask_tag=f"{tag}|{labels_fp}")
    rows = _rows_of(stack, ids)
    label = part[st.strata].to_numpy(np.int64)[rows]
    boxes = [np.asarray(mask_boxes(np.asarray(stack.masks[k])) if label[k] else [], np.float32).reshape(-1, 4)
             for k in range(len(rows))]
    return LesionSet(ids=stack.ids, images=stack.images, masks=stack.masks, boxes=boxes, labels=label,
                     source=f"real: {st.source}", fingerprint=_fingerprint(st, split, stack, size))


def label_set(st: SplitTable, split: str, cfg, paths: list[Path], targets: np.ndarray,
              classes: tuple[str, ...]) -> LabelSet:
    """A classification split: ``targets`` holds one row per row of the split's table (the
    readable images' rows are kept); ``classes`` unless the task config names its own."""
    ids, size = st.ids(split), int(cfg.image_size)
    stack = cached_stack(_prefix(st, split), ids, paths, size, st.folder)
    rows = _rows_of(stack, ids)
    return LabelSet(ids=stack.ids, images=stack.images, labels=np.asarray(targets)[rows],
                    classes=tuple(getattr(cfg, "classes", ()) or ()) or classes, source=f"real: {st.source}",
                    fingerprint=_fingerprint(st, split, stack, size))


def text_set(st: SplitTable, split: str, cfg, paths: list[Path]) -> TextLabelSet:
    """A zero-shot / retrieval split: labels from column ``y``, report text from column
    ``text`` (empty when the data set publishes none)."""
    part, ids, size = st.part(split), st.ids(split), int(cfg.image_size)
    stack = cached_stack(_prefix(st, split), ids, paths, size, st.folder)
    rows = _rows_of(stack, ids)
    texts = [str(t) for t in part["text"].to_numpy()[rows]] if "text" in part else [""] * len(rows)
    return TextLabelSet(ids=stack.ids, images=stack.images, labels=part["y"].to_numpy(np.int64)[rows], texts=texts,
                        classes=tuple(getattr(cfg, "classes", ()) or ()) or FIVE_FINDINGS,
                        source=f"real: {st.source}", fingerprint=_fingerprint(st, split, stack, size))
