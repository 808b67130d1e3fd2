"""Downstream metrics, each checked against hand-computed cases in the tests."""

from __future__ import annotations

import math

import numpy as np
import torch


def per_image_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice per image of binary masks (N x ...); both empty -> 1, one empty -> 0."""
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
