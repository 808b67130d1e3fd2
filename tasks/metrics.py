"""Downstream metrics, each checked against hand-computed cases in the tests."""

from __future__ import annotations

import math

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


def macro_f1(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, predicted, labels=list(range(num_classes)), average="macro", zero_division=0))


def box_iou_xyxy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, 4) and (m, 4) x1 y1 x2 y2 boxes, in float64 so that
    a crafted IoU of exactly 0.6 compares equal to the 0.6 threshold."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def detection_map(
    boxes: list[np.ndarray], scores: list[np.ndarray], truths: list[np.ndarray],
    iou_thresholds: tuple[float, ...], count_negatives: bool = True,
) -> float:
    """Single-class COCO-style mAP (what torchmetrics' MeanAveragePrecision
    computes for one class, area 'all'): per threshold, each image's detections,
    highest score first, are greedily matched to the unmatched truth box of
    highest IoU >= threshold; detections of all images are then ranked by score
    (stable) and precision is read at 101 recall points; mean over thresholds.
    Images without truth count: their detections are false positives.
    ``count_negatives=False`` reproduces MGCA's code, which skips images with no
    truth or no detection. NaN when no kept image has truth (AP is undefined)."""
    keep = [i for i in range(len(truths)) if count_negatives or (len(truths[i]) and len(boxes[i]))]
    n_truth = sum(len(truths[i]) for i in keep)
    if n_truth == 0:
        return math.nan
    image_scores = [np.asarray(scores[i], np.float64).reshape(-1) for i in keep]
    ious = [box_iou_xyxy(boxes[i], truths[i]) for i in keep]
    rank = np.argsort(-np.concatenate(image_scores + [np.zeros(0)]), kind="mergesort")
    recall_points = np.linspace(0, 1, 101)
    aps = []
    for t in iou_thresholds:
        hits = []
        for s, iou in zip(image_scores, ious):
            matched, hit = np.zeros(iou.shape[1], bool), np.zeros(len(s), bool)
            for d in np.argsort(-s, kind="mergesort"):
                cand = np.where(matched, -1.0, iou[d])
                if len(cand) and cand.max() >= t:
                    matched[cand.argmax()], hit[d] = True, True
            hits.append(hit)
        tp = np.concatenate(hits + [np.zeros(0, bool)])[rank]
        tps, fps = np.cumsum(tp), np.cumsum(~tp)
        recall = tps / n_truth
        precision = tps / np.maximum(tps + fps, 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        at = np.searchsorted(recall, recall_points, side="left")
        padded = np.append(envelope, 0.0)  # recall never reached: precision 0
        aps.append(float(padded[np.minimum(at, len(envelope))].mean()))
    return float(np.mean(aps))
