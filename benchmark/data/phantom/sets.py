"""Phantom stand-ins for the downstream sets: CheXpert, COVIDx, SIIM-ACR, NIH ChestX-ray14, Object-CXR.

Why: every task config must run without credentialed data.  Each set has the
real set's label space and task type; the findings are drawn by the phantom
renderer, and every image also gets anatomy, exposure and (often) findings
outside its label space, so no label is readable from overall brightness.

Like ``phantom_rsna``: image i of a split depends only on
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
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.datasets import (
    PHANTOM_VERSION,
    SPLITS,
    check_size,
    distractor,
    open_cached,
    same_length,
    seeded_rng,
    short_sha,
)
from benchmark.data.phantom.render import Rendered, render
from benchmark.data.phantom.stack import render_stack
from benchmark.data.masks import mask_boxes
from benchmark.data.types import LabelSet, LesionSet
from benchmark.errors import UserError
from benchmark.paths import atomic_json, cache_dir

CHEXPERT_CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
COVIDX_CLASSES = ("normal", "pneumonia", "COVID-19")
NIH_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
#: Share of SIIM-like images with a pneumothorax (real SIIM-ACR: 2,669 / 12,047 = 22 %).
SIIM_POSITIVE_RATE = 0.25
#: Share of Object-CXR-like images with at least one foreign object (real: about half).
OBJECT_POSITIVE_RATE = 0.5


# ------------------------------------------------------------------ helpers


def _side(rng: np.random.Generator, p_bilateral: float = 0.0) -> str:
    if p_bilateral and rng.random() < p_bilateral:
        return "bilateral"
    return str(rng.choice(["right", "left"]))


def _zone(rng: np.random.Generator, p=(0.25, 0.3, 0.45)) -> str:
    return str(rng.choice(["upper", "middle", "lower"], p=list(p)))


def _sev(rng: np.random.Generator, lo: float = 0.25, hi: float = 0.95) -> float:
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


def _label_set(name: str, split: str, n: int, size: int, spec: Spec, classes: tuple[str, ...]) -> LabelSet:
    images, _, meta, fingerprint = _cached(name, split, n, size, spec, None)
    return LabelSet(ids=[f"{name}-{split}-{i:06d}" for i in range(len(images))], images=images,
                    labels=np.asarray(meta["labels"], np.int64), classes=classes, source="phantom",
                    fingerprint=fingerprint)


def _lesion_set(name: str, split: str, n: int, size: int, spec: Spec, masks: str) -> LesionSet:
    images, mask_arr, meta, fingerprint = _cached(name, split, n, size, spec, masks)
    return LesionSet(ids=[f"{name}-{split}-{i:06d}" for i in range(len(images))], images=images, masks=mask_arr,
                     boxes=[np.asarray(b, np.float32).reshape(-1, 4) for b in meta["boxes"]],
                     labels=np.asarray(meta["labels"], np.int64), source="phantom", fingerprint=fingerprint)


def _extras(rng: np.random.Generator, p: float) -> list[Lesion]:
    """Findings outside a set's label space (nodules, devices, ...), with probability ``p``."""
    out: list[Lesion] = []
    if rng.random() < p:
        kind = str(rng.choice(["nodule", "catheter", "pacemaker", "elevated_diaphragm", "hyperinflation"],
                              p=[0.35, 0.25, 0.1, 0.15, 0.15]))
        if kind == "hyperinflation":
            out.append(Lesion(kind, "bilateral", "diffuse", _sev(rng)))
        elif kind == "elevated_diaphragm":
            out.append(Lesion(kind, _side(rng), "lower", _sev(rng)))
        elif kind in ("catheter", "pacemaker"):
            out.append(Lesion(kind, _side(rng), "upper", 0.5))
        else:
            out.append(Lesion(kind, _side(rng), _zone(rng), _sev(rng, 0.2, 0.7)))
    return out


# ----------------------------------------------------------------- CheXpert


def chexpert_lesions(rng: np.random.Generator) -> tuple[list[Lesion], list[int]]:
    """Lesions and 5 labels of one CheXpert-like image.

    A latent "heart failure" state (20 %) drives cardiomegaly, oedema and
    effusion together; atelectasis and consolidation are likelier next to an
    effusion.  Prevalences: atelectasis ~24 %, cardiomegaly ~20 %,
    consolidation ~12 %, oedema ~15 %, effusion ~21 %; ~45 % have none.
    """
    chf = rng.random() < 0.2
    card = rng.random() < (0.6 if chf else 0.1)
    edema = rng.random() < (0.55 if chf else 0.05)
    eff = rng.random() < (0.55 if chf else 0.12)
    atel = rng.random() < (0.4 if eff else 0.2)
    cons = rng.random() < (0.2 if eff else 0.1)
    lesions: list[Lesion] = []
    if atel:
        lesions.append(Lesion("atelectasis", _side(rng, 0.25), _zone(rng, (0.15, 0.3, 0.55)), _sev(rng)))
    if card:
        lesions.append(Lesion("cardiomegaly", "center", "middle", _sev(rng, 0.2, 0.9)))
    if cons:
        for _ in range(int(rng.integers(1, 3))):
            lesions.append(Lesion("opacity", _side(rng), _zone(rng, (0.2, 0.35, 0.45)), _sev(rng, 0.3, 1.0)))
    if edema:
        lesions.append(Lesion("edema", "bilateral", "middle", _sev(rng, 0.3, 1.0)))
    if eff:
        lesions.append(Lesion("effusion", _side(rng, 0.35), "lower", _sev(rng, 0.15, 0.8)))
    lesions += _extras(rng, 0.3)
    return lesions, [int(atel), int(card), int(cons), int(edema), int(eff)]


def phantom_chexpert(split: str, n: int, size: int) -> LabelSet:
    """CheXpert-like multi-label set: labels (n, 5) int64 0/1 in ``CHEXPERT_CLASSES`` order.

    Atelectasis -> renderer kind ``atelectasis`` (band), Cardiomegaly ->
    ``cardiomegaly``, Consolidation -> ``opacity`` (1-2 blobs), Edema ->
    ``edema`` (perihilar haze), Pleural Effusion -> ``effusion``; plus
    nodules / devices / inflation changes on ~30 % of images as distractors.
    """
    return _label_set("chexpert", split, n, size, chexpert_lesions, CHEXPERT_CLASSES)


# ------------------------------------------------------------------- COVIDx


def covidx_lesions(rng: np.random.Generator) -> tuple[list[Lesion], int]:
    """One COVIDx-like image: 0 normal (45 %), 1 pneumonia (30 %), 2 COVID-19 (25 %).

    Pneumonia: 1-2 focal (lobar / patchy) ``opacity`` lesions.  COVID-19:
    ``covid`` ground glass on both sides, peripheral, lower (sometimes also
    middle) zones.  Every class gets the same mix of non-label findings
    (cardiomegaly, effusion, nodules, devices), so brightness does not tell.
    """
    cls = int(rng.choice(3, p=[0.45, 0.3, 0.25]))
    lesions: list[Lesion] = []
    if cls == 1:
        for _ in range(int(rng.choice([1, 2], p=[0.65, 0.35]))):
            lesions.append(Lesion("opacity", _side(rng), _zone(rng, (0.2, 0.35, 0.45)), _sev(rng, 0.35, 1.0)))
    elif cls == 2:
        sev = _sev(rng, 0.3, 1.0)
        lesions.append(Lesion("covid", "bilateral", "lower", sev))
        if rng.random() < 0.4:
            lesions.append(Lesion("covid", _side(rng), "middle", sev * 0.8))
    if rng.random() < (0.45 if cls == 0 else 0.2):
        lesions.append(_covidx_distractor(rng))
    lesions += _extras(rng, 0.2)
    return lesions, cls


def _covidx_distractor(rng: np.random.Generator) -> Lesion:
    kind = str(rng.choice(["cardiomegaly", "effusion", "atelectasis"], p=[0.4, 0.35, 0.25]))
    if kind == "cardiomegaly":
        return Lesion(kind, "center", "middle", _sev(rng, 0.2, 0.9))
    if kind == "effusion":
        return Lesion(kind, _side(rng, 0.2), "lower", _sev(rng, 0.15, 0.7))
    return Lesion(kind, _side(rng), _zone(rng), _sev(rng))


def phantom_covidx(split: str, n: int, size: int) -> LabelSet:
    """COVIDx-like 3-class set: labels (n,) int64, 0 normal / 1 pneumonia / 2 COVID-19."""
    return _label_set("covidx", split, n, size, covidx_lesions, COVIDX_CLASSES)


# --------------------------------------------------------------------- SIIM


def siim_lesions(rng: np.random.Generator) -> tuple[list[Lesion], int]:
    """One SIIM-like image: ~25 % with a pneumothorax (one side, rarely both), others normal or distractors."""
    lesions: list[Lesion] = []
    positive = rng.random() < SIIM_POSITIVE_RATE
    if positive:
        zone = str(rng.choice(["upper", "middle", "lower"], p=[0.55, 0.3, 0.15]))
        lesions.append(Lesion("pneumothorax", _side(rng, 0.05), zone, _sev(rng, 0.3, 1.0)))
        if rng.random() < 0.3:
            lesions.append(distractor(rng))
    elif rng.random() < 0.5:
        les = distractor(rng)
        while les.kind == "pneumothorax":
            les = distractor(rng)
        lesions.append(les)
    lesions += [e for e in _extras(rng, 0.3) if e.kind != "hyperinflation"]
    return lesions, int(positive)


def phantom_siim(split: str, n: int, size: int) -> LesionSet:
    """SIIM-ACR-like pneumothorax segmentation set.

    masks: (n, size, size) uint8, 1 inside the pneumothorax (the air between
    chest wall and collapsed lung, not a box), empty for negatives; labels:
    (n,) int64 1 = pneumothorax; boxes: the bounding box of the mask per side.
    """
    return _lesion_set("siim", split, n, size, siim_lesions, "ptx")


# ---------------------------------------------------------------------- NIH

#: NIH label -> (prevalence, how it is drawn).  Real ChestX-ray14 prevalences
#: (Infiltration 17.7 %, Effusion 11.9 %, ... Hernia 0.2 %) with a 3 % floor so
#: a few hundred images still have positives of every label.
_NIH_PREVALENCE = (0.10, 0.05, 0.12, 0.16, 0.05, 0.06, 0.03, 0.05, 0.04, 0.03, 0.03, 0.03, 0.03, 0.03)


def nih_lesions(rng: np.random.Generator) -> tuple[list[Lesion], list[int]]:
    """Lesions and 14 labels (``NIH_CLASSES`` order) of one NIH-like image."""
    y = [int(rng.random() < p) for p in _NIH_PREVALENCE]
    # Co-occurrence: effusion with atelectasis / oedema / cardiomegaly.
    if y[2] and rng.random() < 0.3:
        y[0] = 1
    if y[9] and rng.random() < 0.5:
        y[2] = 1
    if y[9] and rng.random() < 0.4:
        y[1] = 1
    atel, card, eff, infil, mass, nod, pneu, ptx, cons, edema, emph, fib, thick, hernia = y
    L: list[Lesion] = []
    if atel:
        L.append(Lesion("atelectasis", _side(rng, 0.2), _zone(rng, (0.15, 0.3, 0.55)), _sev(rng)))
    if card:
        L.append(Lesion("cardiomegaly", "center", "middle", _sev(rng, 0.2, 0.9)))
    if eff:
        L.append(Lesion("effusion", _side(rng, 0.3), "lower", _sev(rng, 0.3, 0.9)))
    if infil:  # patchy, fainter, often several
        for _ in range(int(rng.integers(1, 3))):
            L.append(Lesion("opacity", _side(rng), _zone(rng, (0.3, 0.35, 0.35)), _sev(rng, 0.15, 0.5)))
    if mass:
        L.append(Lesion("nodule", _side(rng), _zone(rng, (0.4, 0.35, 0.25)), _sev(rng, 0.85, 1.0)))
    if nod:
        for _ in range(int(rng.integers(1, 3))):
            L.append(Lesion("nodule", _side(rng), _zone(rng), _sev(rng, 0.15, 0.55)))
    if pneu:
        L.append(Lesion("opacity", _side(rng), _zone(rng, (0.15, 0.35, 0.5)), _sev(rng, 0.5, 1.0)))
    if ptx:
        L.append(Lesion("pneumothorax", _side(rng), "upper", _sev(rng, 0.3, 1.0)))
    if cons:
        L.append(Lesion("opacity", _side(rng), _zone(rng, (0.2, 0.3, 0.5)), _sev(rng, 0.7, 1.0)))
    if edema:
        L.append(Lesion("edema", "bilateral", "middle", _sev(rng, 0.3, 1.0)))
    if emph:
        L.append(Lesion("hyperinflation", "bilateral", "diffuse", _sev(rng, 0.4, 1.0)))
    if fib:
        L.append(Lesion("interstitial", "bilateral", str(rng.choice(["lower", "diffuse"])), _sev(rng, 0.4, 1.0)))
    if thick:
        L.append(Lesion("effusion", _side(rng), "lower", _sev(rng, 0.02, 0.12)))
    if hernia:
        L.append(Lesion("elevated_diaphragm", "left", "lower", _sev(rng, 0.5, 1.0)))
    if rng.random() < 0.25:
        L.append(Lesion(str(rng.choice(["catheter", "pacemaker"])), _side(rng), "upper", 0.5))
    return L, y


def phantom_nih(split: str, n: int, size: int) -> LabelSet:
    """NIH ChestX-ray14-like multi-label set: labels (n, 14) int64 0/1 in ``NIH_CLASSES`` order.

    Drawn directly: Atelectasis, Cardiomegaly, Effusion, Nodule (1-2 small
    ``nodule``), Pneumothorax, Edema.  Approximated with the closest renderer
    kind: Infiltration = 1-2 faint small ``opacity`` blobs; Pneumonia = one
    medium-to-large ``opacity``; Consolidation = one large dense ``opacity``
    (the three overlap in appearance, as they do in the real labels); Mass =
    a ``nodule`` at maximum size; Emphysema = ``hyperinflation``; Fibrosis =
    ``interstitial`` reticulation (lower / diffuse); Pleural_Thickening = a
    minimal ``effusion`` (costophrenic blunting); Hernia = a left
    ``elevated_diaphragm`` (no retrocardiac air-fluid level is drawn).
    Prevalences are real-like with a 3 % floor; ~50 % of images have no label.
    """
    return _label_set("nih", split, n, size, nih_lesions, NIH_CLASSES)


# --------------------------------------------------------------- Object-CXR


def object_cxr_lesions(rng: np.random.Generator) -> tuple[list[Lesion], int]:
    """One Object-CXR-like image: ~50 % with 1-3 foreign objects; all images may carry devices / findings."""
    lesions: list[Lesion] = []
    positive = rng.random() < OBJECT_POSITIVE_RATE
    if positive:
        for _ in range(int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))):
            kind = str(rng.choice(["coin", "button", "wire"], p=[0.35, 0.35, 0.3]))
            lesions.append(Lesion(kind, _side(rng), _zone(rng, (0.3, 0.4, 0.3)), _sev(rng, 0.1, 1.0)))
    if rng.random() < 0.35:
        lesions.append(distractor(rng))
    lesions += _extras(rng, 0.35)
    return lesions, int(positive)


def phantom_object_cxr(split: str, n: int, size: int) -> LesionSet:
    """Object-CXR-like foreign-object set: labels (n,) int64 1 = any object; boxes (k, 4) per
    object (coins: bright discs, buttons: discs with two holes, wires: curved bright lines);
    masks: filled object boxes.  Medical devices (catheters, pacemakers) appear on both
    classes and are not foreign objects here."""
    return _lesion_set("object_cxr", split, n, size, object_cxr_lesions, "objects")
