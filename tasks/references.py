"""Trivial references: what a predictor that looks at no image scores on a test split.

Why: a score means something only beside what a trivial predictor gets on the same
split. Under MGCA's per-image Dice an empty prediction on an empty mask scores 1, so
a decoder that predicts nothing scores the share of lesion-free test images (76.6 % on
MGCA's RSNA test split, 76.9 % on SIIM's); a constant classifier scores AUROC 50.

Each function takes the test split's labels only (no images, no encoder), so the same
numbers come from a loaded split (stored with every trial) and from the label files
alone (``baselines``). The result is one plain dict, stored as a trial's ``refs``
(``references`` in ``run --json``)::

    {"split": "test", "n": 300, "lesion_free": 201,
     "rows": {"predict-nothing": {"dice": 0.67, "dice_pos": 0.0, ...}, ...}}

Every metric here is higher-is-better, so the best trivial score of a metric
(``benchmark.report.trivial.trivial_best``) is what a result must exceed before a
comparison of two results means anything.
"""

from __future__ import annotations

import math

import numpy as np


def segmentation_references(lesion_share: np.ndarray) -> dict:
    """Predict nothing / predict the whole image, under every segmentation metric.

    ``lesion_share[i]``: the share of image i's pixels inside its lesion mask (0: no lesion).
    ``dice`` is MGCA's per-image Dice (empty on empty scores 1), ``dice_pos`` its mean over
    the images with a lesion, ``empty_acc`` the share of lesion-free images predicted empty,
    ``dice_pooled`` the Dice of all pixels of the split taken together."""
    a = np.asarray(lesion_share, np.float64).reshape(-1)
    n, pos = len(a), a > 0
    n_pos = int(pos.sum())
    # the whole image on a lesion covering share a of it: Dice 2a / (a + 1); on a lesion-free image 0
    whole = np.where(pos, 2 * a / (a + 1), 0.0)
    nothing = {"dice": float((~pos).mean()) if n else math.nan, "dice_pos": 0.0 if n_pos else math.nan,
               "empty_acc": 1.0 if n_pos < n else math.nan, "dice_pooled": 0.0 if n_pos else 1.0}
    everything = {"dice": float(whole.mean()) if n else math.nan,
                  "dice_pos": float(whole[pos].mean()) if n_pos else math.nan,
                  "empty_acc": 0.0 if n_pos < n else math.nan,
                  "dice_pooled": float(2 * a.sum() / (a.sum() + n)) if n else math.nan}
    return {"split": "test", "n": n, "lesion_free": n - n_pos,
            "rows": {"predict-nothing": nothing, "predict-everything": everything}}


def detection_references(has_lesion: np.ndarray) -> dict:
    """No boxes: mAP 0 (no detection finds anything), every lesion-free image left empty."""
    pos = np.asarray(has_lesion).reshape(-1) > 0
    n = len(pos)
    return {"split": "test", "n": n, "lesion_free": int(n - pos.sum()),
            "rows": {"no-boxes": {"map": 0.0, "map_50": 0.0, "empty_acc": 1.0 if pos.sum() < n else math.nan}}}


def classification_references(labels: np.ndarray | None, n: int, classes: int | None = None) -> dict:
    """A constant score (AUROC 50 for every label); for one label per image (multi-class,
    binary) the majority class too (a constant score as well, so its AUROC is the same 50):
    its accuracy is the largest class share, its balanced accuracy 1 / classes."""
    rows: dict[str, dict[str, float]] = {"constant-score": {"auroc": 0.5}}
    out = {"split": "test", "n": n, "rows": rows}
    if labels is not None and np.asarray(labels).ndim == 1 and n:
        labels = np.asarray(labels, np.int64)
        k = classes or int(labels.max()) + 1
        shares = np.bincount(labels, minlength=k) / len(labels)
        rows["majority-class"] = {"accuracy": float(shares.max()), "balanced_accuracy": 1.0 / k}
        out["class_shares"] = [float(s) for s in shares]
    return out


def label_chance(labels: np.ndarray, classes: int) -> dict:
    """Zero-shot classification: a uniform random guess (accuracy 1 / classes; macro F1 of
    a class with share s guessed at rate 1 / classes is 2 s / (1 + s classes)), and the
    majority class (its share; macro F1 from that one class). AUROC of any constant score 50."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    shares = np.bincount(labels, minlength=classes) / max(1, len(labels))
    f1_random = float(np.mean([2 * s / (1 + s * classes) for s in shares]))
    top = float(shares.max())
    return {"split": "test", "n": len(labels), "class_shares": [float(s) for s in shares],
            "rows": {"chance": {"accuracy": 1.0 / classes, "f1": f1_random, "auroc": 0.5},
                     "majority-class": {"accuracy": top, "f1": 2 * top / (1 + top) / classes}}}


def retrieval_chance(labels: np.ndarray, ks: tuple[int, ...]) -> dict:
    """A random ranking of every test report: a retrieved report is a hit when it shares the
    query's class, so precision@K is, for any K, the mean over queries of their class's share
    of the reports (0.2 on a balanced 5-class set)."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    n = len(labels)
    counts = np.bincount(labels)
    chance = float((counts[labels] / n).mean()) if n else math.nan
    return {"split": "test", "n": n, "rows": {"chance": {f"p@{k}": chance for k in ks}}}
