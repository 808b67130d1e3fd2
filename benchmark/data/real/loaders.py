"""Real downstream sets as the same dataclasses the phantom stand-ins return.

Why: tasks must not care where data came from. A split here is the recipe's
rows (``mgca.py``), decoded once into the memmap cache (``images.py``), with
labels, boxes and masks mapped into the stored image's geometry; ``source``
names the real data set and ``fingerprint`` hashes the ids, the recipe, the
preprocessing and the image size (it keys the feature caches).

Boxes (RSNA, Object-CXR) are clipped to their image and boxes left without area
(zero or negative width or height, wholly outside) are dropped, the same kept
boxes giving the masks and the detection targets; one warning per split counts
them (``data check`` lists them). Labels stay as the file says.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from benchmark.data.real import labels as L
from benchmark.data.real.fingerprint import files_fingerprint
from benchmark.data.real.images import PREP_VERSION, Stack, cached_stack
from benchmark.data.real.layout import index_files
from benchmark.data.real.mgca import split_table
from benchmark.data.real.splittable import RECIPE_VERSION, SplitTable
from benchmark.errors import UserError

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


def _fingerprint(st: SplitTable, split: str, stack: Stack, size: int) -> str:
    text = "|".join([RECIPE_VERSION, PREP_VERSION, st.dataset, st.variant, st.source, split, str(size), stack.key,
                     "\n".join(stack.ids)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_paths(st: SplitTable, ids: list[str]) -> list[Path]:
    """Where each id's image file is in the official layout."""
    f = st.folder
    if st.dataset == "rsna":
        return [f / "stage_2_train_images" / f"{i}.dcm" for i in ids]
    if st.dataset in ("chexpert", "chexpert5x200", "covidx", "object_cxr"):
        return [f / i for i in ids]
    if st.dataset == "siim":
        index = index_files(f / "dicom-images-train", (".dcm",))
        return [index.get(i, f / "dicom-images-train" / f"{i}.dcm") for i in ids]
    if st.dataset == "nih":
        index = index_files(f, (".png",))
        return [index.get(Path(i).stem, f / "images" / i) for i in ids]
    if st.dataset == "mimic5x200":
        from benchmark.data.real.mimic import jpg_path

        part = st.table.set_index("id")
        return [jpg_path(f, part.at[i, "subject_id"], part.at[i, "study_id"], i) for i in ids]
    raise UserError(f"no image layout for data set {st.dataset!r}")


def _rows_of(stack: Stack, ids: list[str]) -> np.ndarray:
    """Positions in the recipe's list of the ids that were readable."""
    pos = {i: k for k, i in enumerate(ids)}
    return np.asarray([pos[i] for i in stack.ids], np.int64)


def _box_mask(boxes_of: list[list[list[float]]]):
    def draw(i: int, shape: tuple[int, int]) -> np.ndarray:
        m = np.zeros(shape, np.uint8)
        for x, y, w, h in L.clip_boxes(boxes_of[i], *shape)[0]:
            m[round(y):round(y + h), round(x):round(x + w)] = 1
        return m

    return draw


def _stored_boxes(name: str, stack: Stack, rows: np.ndarray, boxes: list) -> list[np.ndarray]:
    """Each readable image's boxes, clipped to it, in stored pixels; one warning with the counts."""
    out, clipped, dropped, first = [], 0, 0, None
    for k, r in enumerate(rows):
        geo = stack.geometry[k]
        kept, c, d = L.clip_boxes(boxes[r], geo.height, geo.width)
        if (c or d) and first is None:
            first = stack.ids[k]
        clipped, dropped = clipped + c, dropped + d
        out.append(geo.boxes(kept))
    if clipped or dropped:
        log.warning("%s: %d box(es) reaching outside their image clipped, %d box(es) without area dropped "
                    "(first: %s); `data check` lists them", name, clipped, dropped, first)
    return out


def load_split(st: SplitTable, split: str, cfg) -> object:
    """One split of a recipe as a LabelSet / LesionSet / TextLabelSet for ``cfg``'s kind."""
    from benchmark.data.phantom.sets import mask_boxes
    from benchmark.data.types import FIVE_FINDINGS as CLASSES
    from benchmark.data.types import LabelSet, LesionSet, TextLabelSet

    part, ids, size = st.part(split), st.ids(split), int(cfg.image_size)
    paths = image_paths(st, ids)
    name = f"{st.dataset}{'-' + st.variant if st.variant else ''}-{split}"
    source = f"real: {st.source}"
    kind = cfg.kind

    labels_fp = files_fingerprint(st.files.values())  # masks are drawn from the label files: keyed on them
    if st.dataset in ("rsna", "object_cxr") and kind in ("detection", "segmentation"):
        boxes = list(part["boxes"])
        stack = cached_stack(name, ids, paths, size, st.folder, _box_mask(boxes), mask_tag=f"boxes-2|{labels_fp}")
        rows = _rows_of(stack, ids)
        return LesionSet(ids=stack.ids, images=stack.images, masks=stack.masks,
                         boxes=_stored_boxes(name, stack, rows, boxes),
                         labels=part[st.strata].to_numpy(np.int64)[rows], source=source,
                         fingerprint=_fingerprint(st, split, stack, size))
    if st.dataset == "siim":
        rles = list(part["rles"])
        stack = cached_stack(name, ids, paths, size, st.folder, lambda i, shape: L.rle_mask(rles[i], *shape),
                             mask_tag=f"rle|{labels_fp}")
        rows = _rows_of(stack, ids)
        label = part["Label"].to_numpy(np.int64)[rows]
        boxes = [np.asarray(mask_boxes(np.asarray(stack.masks[k])) if label[k] else [], np.float32).reshape(-1, 4)
                 for k in range(len(rows))]
        return LesionSet(ids=stack.ids, images=stack.images, masks=stack.masks, boxes=boxes, labels=label,
                         source=source, fingerprint=_fingerprint(st, split, stack, size))

    stack = cached_stack(name, ids, paths, size, st.folder)
    rows = _rows_of(stack, ids)
    fp = _fingerprint(st, split, stack, size)
    classes = tuple(getattr(cfg, "classes", ()) or ())
    if st.dataset in ("chexpert5x200", "mimic5x200"):
        if kind == "retrieval" and "text" not in part:
            raise UserError("CheXpert publishes no report text, so image-to-report retrieval on the real CheXpert "
                            "5x200 set cannot run; use mimic5x200 images with their reports or the phantom data")
        texts = [str(t) for t in part["text"].to_numpy()[rows]] if "text" in part else [""] * len(rows)
        return TextLabelSet(ids=stack.ids, images=stack.images, labels=part["y"].to_numpy(np.int64)[rows], texts=texts,
                            classes=classes or CLASSES, source=source, fingerprint=fp)
    if st.dataset == "chexpert":
        y = L.chexpert_targets(part)[rows]
        classes = classes or L.CHEXPERT_COMPETITION
    elif st.dataset == "nih":
        y = L.nih_targets(part)[rows]
        classes = classes or L.NIH_CLASSES
    elif st.dataset == "covidx":
        y = part["y"].to_numpy(np.int64)[rows]
        classes = classes or L.COVIDX_CLASSES
    elif st.dataset == "rsna":
        y = part["Target"].to_numpy(np.int64)[rows]
        classes = classes or ("normal", "pneumonia")
    else:
        raise UserError(f"task kind {kind!r} is not defined on the real {st.dataset} data")
    return LabelSet(ids=stack.ids, images=stack.images, labels=y, classes=classes, source=source, fingerprint=fp)


def real_task_splits(cfg, root: Path, splits: tuple[str, ...] = SPLIT_NAMES) -> dict[str, object]:
    """{split: data set} for a task config from the official downloads under ``root``."""
    st = split_table(cfg.dataset, root, cfg.kind)
    missing = [s for s in splits if s not in st.rows]
    if missing:
        raise UserError(f"the real {cfg.dataset} data has no {', '.join(missing)} split (it has {', '.join(st.rows)})")
    return {split: load_split(st, split, cfg) for split in splits}

