"""Downstream metrics, each checked against hand-computed cases in the tests."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch


def per_image_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice per image of binary masks (N x ...); both empty -> 1, one empty -> 0.
    As MGCA's ``get_dice`` per image; callers average over all images (MGCA averages
    per-batch means, see tasks/segmentation.py)."""
    pred, truth = pred.flatten(1).bool(), truth.flatten(1).bool()
    inter = (pred & truth).sum(1).float()
    total = pred.sum(1).float() + truth.sum(1).float()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


def mask_counts(pred: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """Per image of binary masks (N x ...): (intersection, predicted pixels, truth pixels), (N, 3)
    float64: every segmentation metric here is a function of these counts."""
    pred, truth = pred.flatten(1).bool(), truth.flatten(1).bool()
    return torch.stack([(pred & truth).sum(1), pred.sum(1), truth.sum(1)], 1).double().cpu().numpy()


def segmentation_scores(counts: np.ndarray, n_resamples: int = 1000) -> dict[str, float]:
    """MGCA's per-image Dice (``dice``: empty on empty scores 1, the mean over all test images)
    and its parts, from :func:`mask_counts`: ``dice_pos`` (mean Dice over the images whose truth
    has a lesion), ``empty_acc`` (share of lesion-free images predicted empty), ``dice_pooled``
    (one Dice over all pixels of the split). Each with its 95 % bootstrap interval over images:
    ``dice``'s as ``ci_low/ci_high`` (the primary metric's), the others' as ``<name>_ci_low/high``;
    NaN where the split holds no image of the kind a metric averages over."""
    inter, pred, truth = (np.asarray(counts, np.float64).reshape(-1, 3)[:, k] for k in range(3))
    total = pred + truth
    pos = truth > 0
    n = len(total)
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)  # = per_image_dice
    parts = {
        "dice_pos": ratio_of_counts(np.where(pos, 2 * inter / np.maximum(total, 1), 0.0), pos),
        "empty_acc": ratio_of_counts(~pos & (pred == 0), ~pos),
        "dice_pooled": ratio_of_counts(2 * inter, total),
    }
    out = {"dice": float(dice.mean()) if n else math.nan, **image_interval(mean_of_counts(dice), n, n_resamples)}
    for name, of_counts in parts.items():
        out.update(scored(name, of_counts, n, n_resamples))
    return out


def scored(name: str, of_counts: Callable[[np.ndarray], float], n: int, n_resamples: int = 1000) -> dict[str, float]:
    """A secondary metric over ``n`` test images as the metrics dict holds it: ``name`` and its 95 %
    bootstrap interval as ``<name>_ci_low/high`` (the primary metric's is ``ci_low/ci_high``); NaN
    all three where the metric is undefined (no image of the kind it averages over)."""
    value = of_counts(np.ones(n)) if n else math.nan
    interval = image_interval(of_counts, n, n_resamples) if math.isfinite(value) else {"ci_low": math.nan,
                                                                                         "ci_high": math.nan}
    return {name: value, f"{name}_ci_low": interval["ci_low"], f"{name}_ci_high": interval["ci_high"]}


def ratio_of_counts(numerator: np.ndarray, denominator: np.ndarray) -> Callable[[np.ndarray], float]:
    """sum(counts * numerator) / sum(counts * denominator) over a resample given as per-image counts
    (a mean over a subset of images, or a pooled ratio); NaN where the denominator is 0."""
    num, den = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)

    def of_counts(counts: np.ndarray) -> float:
        bottom = float(counts @ den)
        return float(counts @ num) / bottom if bottom > 0 else math.nan

    return of_counts


def auroc(truth: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC; for label matrices the macro mean over labels that have both
    classes in ``truth`` (a label without positives has no AUC). NaN if none."""
    from sklearn.metrics import roc_auc_score

    truth, scores = np.asarray(truth), np.asarray(scores)
    if truth.ndim == 1:
        return float(roc_auc_score(truth, scores)) if len(np.unique(truth)) == 2 else math.nan
    values = [roc_auc_score(truth[:, k], scores[:, k]) for k in range(truth.shape[1]) if len(np.unique(truth[:, k])) == 2]
    return float(np.mean(values)) if values else math.nan


def accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.asarray(truth) == np.asarray(predicted)))


def balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean recall over the classes present in ``truth`` (sklearn's ``balanced_accuracy_score``):
    the majority class alone scores 1 / classes, whatever the class shares."""
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(truth, predicted))


def macro_f1(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, labels=list(range(num_classes)), average="macro", zero_division=0))


def box_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, 4) and (m, 4) x1 y1 x2 y2 boxes (``torchvision.ops.box_iou``),
    in float64 so that a crafted IoU of exactly 0.6 compares equal to the 0.6
    threshold; 0 where both boxes have no area (torchvision gives 0 / 0 there)."""
    from torchvision.ops import box_iou

    as_boxes = lambda x: torch.as_tensor(np.asarray(x, np.float64)).reshape(-1, 4)
    return torch.nan_to_num(box_iou(as_boxes(a), as_boxes(b)), nan=0.0).numpy()


class DetectionAP:
    """Single-class COCO-style mAP (what torchmetrics' MeanAveragePrecision
    computes for one class, area 'all'): per threshold, each image's detections,
    highest score first, are greedily matched to the unmatched truth box of
    highest IoU >= threshold; detections of all images are then ranked by score
    (stable) and precision is read at 101 recall points; mean over thresholds.
    Images without truth count: their detections are false positives.
    ``count_negatives=False`` reproduces MGCA's code, which skips images with no
    truth or no detection. NaN when no kept image has truth (AP is undefined).

    The matching is per image, so it is done once here; calling the object with
    ``counts`` (how many times each image is drawn, as a bootstrap resample
    draws them) ranks and counts the same detections weighted by their image's
    count, which equals the mAP of the resampled image list (up to the order of
    exactly tied scores from different images) without matching again."""

    def __init__(
        self, boxes: list[np.ndarray], scores: list[np.ndarray], truths: list[np.ndarray],
        iou_thresholds: tuple[float, ...], count_negatives: bool = True,
    ) -> None:
        n = len(truths)
        self.keep = np.array([count_negatives or bool(len(truths[i]) and len(boxes[i])) for i in range(n)], bool)
        self.truth_counts = np.array([len(truths[i]) for i in range(n)], np.float64) * self.keep
        kept = np.flatnonzero(self.keep)
        image_scores = [np.asarray(scores[i], np.float64).reshape(-1) for i in kept]
        ious = [box_iou_xyxy(boxes[i], truths[i]) for i in kept]
        rank = np.argsort(-np.concatenate(image_scores + [np.zeros(0)]), kind="mergesort")
        self.image_of = np.concatenate([np.full(len(s), i) for i, s in zip(kept, image_scores)] + [np.zeros(0, int)])[rank]
        hits = []  # per threshold: is each ranked detection a true positive
        for t in iou_thresholds:
            per_image = []
            for s, iou in zip(image_scores, ious):
                matched, hit = np.zeros(iou.shape[1], bool), np.zeros(len(s), bool)
                for d in np.argsort(-s, kind="mergesort"):
                    cand = np.where(matched, -1.0, iou[d])
                    if len(cand) and cand.max() >= t:
                        matched[cand.argmax()], hit[d] = True, True
                per_image.append(hit)
            hits.append(np.concatenate(per_image + [np.zeros(0, bool)])[rank])
        self.hits = np.array(hits, np.float64).reshape(len(iou_thresholds), len(rank))  # thresholds x detections
        self.n_images = n

    def __call__(self, counts: np.ndarray | None = None) -> float:
        counts = np.ones(self.n_images) if counts is None else np.asarray(counts, np.float64)
        n_truth = float(counts @ self.truth_counts)
        if n_truth == 0:
            return math.nan
        weight = counts[self.image_of]
        # all thresholds at once, one row each; a detection of an image drawn 0 times
        # repeats the previous point of its row, which moves no envelope reading
        tps, fps = np.cumsum(weight * self.hits, 1), np.cumsum(weight * (1 - self.hits), 1)
        recall = tps / n_truth
        precision = tps / np.maximum(tps + fps, 1)
        envelope = np.maximum.accumulate(precision[:, ::-1], 1)[:, ::-1]
        width = self.hits.shape[1]
        points = np.linspace(0, 1, 101)
        at = np.stack([np.searchsorted(r, points, side="left") for r in recall]) if len(recall) else np.zeros((0, 101), int)
        padded = np.concatenate([envelope, np.zeros((len(envelope), 1))], 1)  # recall never reached: precision 0
        return float(np.mean(np.take_along_axis(padded, np.minimum(at, width), 1).mean(1)))


def detection_map(
    boxes: list[np.ndarray], scores: list[np.ndarray], truths: list[np.ndarray],
    iou_thresholds: tuple[float, ...], count_negatives: bool = True,
) -> float:
    """The mAP of these detections (see ``DetectionAP``)."""
    return DetectionAP(boxes, scores, truths, iou_thresholds, count_negatives)()


def auroc_of_counts(truth: np.ndarray, scores: np.ndarray) -> Callable[[np.ndarray], float]:
    """``auroc`` of a resample given as per-image counts, in O(n x labels) per call
    without sorting: each label's scores are grouped once; within a group of tied
    scores a positive/negative pair counts 1/2, as in the Mann-Whitney U that
    equals the ROC area. Labels are stacked into one ``bincount``."""
    truth, scores = np.asarray(truth, np.float64), np.asarray(scores, np.float64)
    if truth.ndim == 1:
        truth, scores = truth[:, None], scores[:, None]
    labels = truth.shape[1]
    inverse, sizes = [], []
    for k in range(labels):
        uniq, inv = np.unique(scores[:, k], return_inverse=True)
        inverse.append(inv.reshape(-1))
        sizes.append(len(uniq))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    group = (np.stack(inverse, 1) + offsets).ravel()  # (image, label) -> its tie group, numbered across labels
    label_of = np.repeat(np.arange(labels), sizes)
    total = int(sum(sizes))

    def of_counts(counts: np.ndarray) -> float:
        w = np.asarray(counts, np.float64)[:, None]
        pos = np.bincount(group, weights=(w * truth).ravel(), minlength=total)
        neg = np.bincount(group, weights=(w * (1 - truth)).ravel(), minlength=total)
        cum = np.cumsum(neg)
        below = cum - np.append(0.0, cum)[offsets][label_of] - 0.5 * neg  # negatives under a group, ties halved
        n_pos, n_neg = np.bincount(label_of, pos, labels), np.bincount(label_of, neg, labels)
        ok = (n_pos > 0) & (n_neg > 0)  # a label without both classes has no AUC (as ``auroc``)
        if not ok.any():
            return math.nan
        return float(np.mean(np.bincount(label_of, pos * below, labels)[ok] / (n_pos[ok] * n_neg[ok])))

    return of_counts


def mean_of_counts(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """The mean of per-image values (Dice, correct-or-not) over a resample given as counts."""
    values = np.asarray(values, np.float64)
    return lambda counts: float(counts @ values) / float(counts.sum())


def image_interval(of_counts: Callable[[np.ndarray], float], n: int, n_resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """95 % percentile bootstrap interval over the ``n`` test images of a metric given
    as ``of_counts(counts)`` (``counts[i]``: how often image i is drawn), as the
    metrics dict's ``ci_low``/``ci_high``. One seed's interval: it says how much the
    number would move with another test set of this size, not with another
    training subset (that is the spread over seeds)."""
    from benchmark.stats import bootstrap_interval

    if n < 2:
        return {"ci_low": math.nan, "ci_high": math.nan}
    low, high = bootstrap_interval(lambda idx: of_counts(np.bincount(idx, minlength=n)), np.arange(n),
                                   n_resamples=n_resamples, seed=seed)
    return {"ci_low": low, "ci_high": high}
