"""Real downstream sets as the same dataclasses the phantom stand-ins return.

Why: tasks must not care where data came from. A split here is the recipe's
rows (``mgca.py``), decoded once into the memmap cache (``images.py``), with
labels, boxes and masks mapped into the stored image's geometry; ``source``
names the real data set and ``fingerprint`` hashes the ids, the recipe, the
preprocessing and the image size (it keys the feature caches).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from benchmark.data.real import labels as L
from benchmark.data.real.images import PREP_VERSION, Stack, cached_stack
from benchmark.data.real.layout import index_files
from benchmark.data.real.mgca import RECIPE_VERSION, SplitTable, split_table
from benchmark.errors import UserError

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
        for x, y, w, h in boxes_of[i]:
            x0, y0 = max(0, round(x)), max(0, round(y))
            m[y0:round(y + h), x0:round(x + w)] = 1
        return m

    return draw


def load_split(st: SplitTable, split: str, cfg) -> object:
    """One split of a recipe as a LabelSet / LesionSet / TextLabelSet for ``cfg``'s kind."""
    from benchmark.data.phantom.datasets import LesionSet
    from benchmark.data.phantom.fivex200 import CLASSES, TextLabelSet
    from benchmark.data.phantom.sets import LabelSet, _mask_boxes

    part, ids, size = st.part(split), st.ids(split), int(cfg.image_size)
    paths = image_paths(st, ids)
    name = f"{st.dataset}{'-' + st.variant if st.variant else ''}-{split}"
    source = f"real: {st.source}"
    kind = cfg.kind

    if st.dataset in ("rsna", "object_cxr") and kind in ("detection", "segmentation"):
        boxes = list(part["boxes"])
        stack = cached_stack(name, ids, paths, size, _box_mask(boxes), mask_tag="boxes")
        rows = _rows_of(stack, ids)
        return LesionSet(ids=stack.ids, images=stack.images, masks=stack.masks,
                         boxes=[stack.geometry[k].boxes(np.asarray(boxes[r], np.float32)) for k, r in enumerate(rows)],
                         labels=part[st.strata].to_numpy(np.int64)[rows], source=source,
                         fingerprint=_fingerprint(st, split, stack, size))
    if st.dataset == "siim":
        rles = list(part["rles"])
        stack = cached_stack(name, ids, paths, size, lambda i, shape: L.rle_mask(rles[i], *shape), mask_tag="rle")
        rows = _rows_of(stack, ids)
        label = part["Label"].to_numpy(np.int64)[rows]
        boxes = [np.asarray(_mask_boxes(np.asarray(stack.masks[k])) if label[k] else [], np.float32).reshape(-1, 4)
                 for k in range(len(rows))]
        return LesionSet(ids=stack.ids, images=stack.images, masks=stack.masks, boxes=boxes, labels=label,
                         source=source, fingerprint=_fingerprint(st, split, stack, size))

    stack = cached_stack(name, ids, paths, size)
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

