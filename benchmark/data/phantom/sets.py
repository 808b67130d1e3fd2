"""Rendering and caching a downstream phantom stand-in from a data set's lesion spec.

Why: every task config must run without credentialed data.  A data set module
(``benchmark.data.sets``) states its stand-in as a spec, ``spec(rng) -> (lesions,
label)`` with the real set's label space, and calls :func:`rendered_labels`
(classification) or :func:`rendered_lesions` (masks and boxes); ``side``,
``zone``, ``sev`` and ``extras`` are the shared drawing vocabulary.  The findings
are drawn by the phantom renderer, and every image also gets anatomy, exposure
and (often) findings outside its label space, so no label is readable from
overall brightness.

Image i of a split depends only on
(``PHANTOM_VERSION``, set name, split, i) (disjoint seed streams per split;
a smaller set is a prefix of a larger one), and renders are cached under
``$BENCHMARK_HOME/phantom/<version>/`` (``.npy`` memmaps plus a JSON sidecar
holding labels and boxes, written last, with the arrays' integrity record: a
damaged entry is rendered again after one warning line).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from benchmark.data import integrity
from benchmark.data.masks import mask_boxes
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.datasets import (
    PHANTOM_VERSION,
    SPLITS,
    check_size,
    open_cached,
    same_length,
    seeded_rng,
    short_sha,
)
from benchmark.data.phantom.render import Rendered, render
from benchmark.data.phantom.stack import render_stack
from benchmark.data.types import LabelSet, LesionSet
from benchmark.errors import UserError
from benchmark.paths import atomic_json, cache_dir

# ------------------------------------------------------------------ helpers


def side(rng: np.random.Generator, p_bilateral: float = 0.0) -> str:
    """Right or left, or bilateral with probability ``p_bilateral``."""
    if p_bilateral and rng.random() < p_bilateral:
        return "bilateral"
    return str(rng.choice(["right", "left"]))


def zone(rng: np.random.Generator, p=(0.25, 0.3, 0.45)) -> str:
    """Upper, middle or lower lung zone with probabilities ``p``."""
    return str(rng.choice(["upper", "middle", "lower"], p=list(p)))


def sev(rng: np.random.Generator, lo: float = 0.25, hi: float = 0.95) -> float:
    """A severity drawn uniformly from [lo, hi]."""
    return float(rng.uniform(lo, hi))


def _check(name: str, split: str, n: int) -> int:
    if split not in SPLITS:
        raise UserError(f"unknown phantom {name} split {split!r}; expected one of {', '.join(SPLITS)}")
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise UserError(f"phantom {name} needs a positive number of images, got {n!r}")
    return int(n)


Spec = Callable[[np.random.Generator], tuple[list[Lesion], object]]


def _cached(name: str, split: str, n: int, size: int, spec: Spec, with_masks: str | None) -> tuple[
        np.ndarray, np.ndarray | None, dict, str]:
    """(images, masks or None, sidecar, fingerprint) of ``n`` images of one split, rendered once.

    ``spec(rng)`` gives (lesions, label) for one image from its seeded stream;
    the same stream then draws the image.  ``with_masks``: None, "ptx"
    (pneumothorax region) or "objects" (filled foreign-object boxes).
    """
    n, size = _check(name, split, n), check_size(size)
    folder = cache_dir("phantom", PHANTOM_VERSION)
    stem = f"{name}-{split}-{size}px-{n}"
    img_path, mask_path, meta_path = (folder / f"{stem}.images.npy", folder / f"{stem}.masks.npy",
                                      folder / f"{stem}.json")
    paths = [img_path] + ([mask_path] if with_masks else [])
    entry = open_cached(f"phantom {name}-{split}", meta_path, paths, lambda m: same_length(m, "labels", "boxes"), size,
                        ("labels", "boxes"))
    if entry is None:
        def draw(i: int) -> tuple[tuple[np.ndarray, ...], tuple[object, list[list[float]]]]:
            rng = seeded_rng(PHANTOM_VERSION, name, split, i)
            lesions, label = spec(rng)
            out: Rendered = render(lesions, rng, size)
            if with_masks == "ptx":
                return (out.image, out.ptx_mask), (label, mask_boxes(out.ptx_mask))
            if with_masks == "objects":
                mask = np.zeros((size, size), np.uint8)
                for x0, y0, w, h in out.object_boxes.astype(int):
                    mask[y0:y0 + h, x0:x0 + w] = 1
                return (out.image, mask), (label, out.object_boxes.tolist())
            return (out.image,), (label, [])

        checks, drawn = render_stack(paths, n, size, draw, desc=f"phantom {name}-{split} {size}px")
        labels, boxes = [d[0] for d in drawn], [d[1] for d in drawn]
        meta = {"version": PHANTOM_VERSION, "size": size, "labels": labels, "boxes": boxes, integrity.KEY: checks}
        atomic_json(meta_path, meta)
        entry = (meta, [np.load(p, mmap_mode="r") for p in paths])
    meta, arrays = entry
    return arrays[0], (arrays[1] if with_masks else None), meta, short_sha(PHANTOM_VERSION, name, split, size, n)


def rendered_labels(name: str, split: str, n: int, size: int, spec: Spec, classes: tuple[str, ...]) -> LabelSet:
    images, _, meta, fingerprint = _cached(name, split, n, size, spec, None)
    return LabelSet(ids=[f"{name}-{split}-{i:06d}" for i in range(len(images))], images=images,
                    labels=np.asarray(meta["labels"], np.int64), classes=classes, source="phantom",
                    fingerprint=fingerprint)


def rendered_lesions(name: str, split: str, n: int, size: int, spec: Spec, masks: str) -> LesionSet:
    images, mask_arr, meta, fingerprint = _cached(name, split, n, size, spec, masks)
    return LesionSet(ids=[f"{name}-{split}-{i:06d}" for i in range(len(images))], images=images, masks=mask_arr,
                     boxes=[np.asarray(b, np.float32).reshape(-1, 4) for b in meta["boxes"]],
                     labels=np.asarray(meta["labels"], np.int64), source="phantom", fingerprint=fingerprint)


def extras(rng: np.random.Generator, p: float) -> list[Lesion]:
    """Findings outside a set's label space (nodules, devices, ...), with probability ``p``."""
    out: list[Lesion] = []
    if rng.random() < p:
        kind = str(rng.choice(["nodule", "catheter", "pacemaker", "elevated_diaphragm", "hyperinflation"],
                              p=[0.35, 0.25, 0.1, 0.15, 0.15]))
        if kind == "hyperinflation":
            out.append(Lesion(kind, "bilateral", "diffuse", sev(rng)))
        elif kind == "elevated_diaphragm":
            out.append(Lesion(kind, side(rng), "lower", sev(rng)))
        elif kind in ("catheter", "pacemaker"):
            out.append(Lesion(kind, side(rng), "upper", 0.5))
        else:
            out.append(Lesion(kind, side(rng), zone(rng), sev(rng, 0.2, 0.7)))
    return out
