"""Segmentation, mgca protocol: a U-Net decoder (segmentation_models_pytorch) on the
frozen ResNet-50, loss ``10 * focal(gamma 2) - log(soft Dice, smooth 1)``,
per-image Dice at 0.5 (empty truth and empty prediction count 1), early stopping
on validation loss, test with the best-validation decoder.

Differences from MGCA's code, deliberate: the frozen encoder stays in eval mode
(in Lightning's train mode its BatchNorm statistics drift although its weights
are frozen); images are not augmented (so frozen features are computed once).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.transforms import downstream_batch, resize_masks
from benchmark.registry import TASK_KINDS
from tasks.base import FrozenFeatures, Task, TaskConfig, batches


@dataclass
class SegmentationConfig(TaskConfig):
    weight_decay: float = 0.05
    focal_weight: float = 10.0
    focal_gamma: float = 2.0
    dice_smooth: float = 1.0
    threshold: float = 0.5


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss as MGCA writes it: BCE weighted by (1 - p_t)^gamma, mean over pixels."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    log_one_minus_pt = F.logsigmoid(-logits * (target * 2 - 1))
    return (torch.exp(gamma * log_one_minus_pt) * bce).mean()


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice over the whole batch (MGCA's ``dice_loss`` despite the name)."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    return (2 * inter + smooth) / (prob.sum() + target.sum() + smooth)


def segmentation_loss(logits, target, focal_weight=10.0, gamma=2.0, smooth=1.0) -> torch.Tensor:
    return focal_weight * focal_loss(logits, target, gamma) - torch.log(soft_dice(logits, target, smooth))


def per_image_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Dice per image of binary masks (N x ...); both empty -> 1, one empty -> 0."""
    pred, truth = pred.flatten(1).bool(), truth.flatten(1).bool()
    inter = (pred & truth).sum(1).float()
    total = pred.sum(1).float() + truth.sum(1).float()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


def load_encoder(encoder: nn.Module, state: dict) -> None:
    """Strict load: a mismatch is a bug (or a bad checkpoint), never silently ignored."""
    # nn.Module's own method: smp's encoder overrides it and returns nothing
    missing, unexpected = nn.Module.load_state_dict(encoder, state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"encoder weights do not match: missing {missing[:5]}, unexpected {unexpected[:5]}")


@TASK_KINDS.register("segmentation")
class Segmentation(Task):
    config_class = SegmentationConfig

    def strata(self, split) -> np.ndarray:
        return np.asarray(split.labels)

    def _loss(self, logits, target):
        c = self.cfg
        return segmentation_loss(logits, target, c.focal_weight, c.focal_gamma, c.dice_smooth)

    def fit_evaluate(self, encoder_state, train, val, test, seed, device):
        import segmentation_models_pytorch as smp

        c = self.cfg
        torch.manual_seed(seed)
        model = smp.Unet("resnet50", encoder_weights=None, classes=1)
        load_encoder(model.encoder, encoder_state)
        model.encoder.eval().requires_grad_(False)
        model.to(device, memory_format=torch.channels_last)  # 1.5x faster decoder on CPU too
        head = nn.Sequential(model.decoder, model.segmentation_head)

        def features(split):
            inputs = lambda idx: downstream_batch(split.images[np.sort(idx)], c.image_size)  # noqa: E731
            return FrozenFeatures(model.encoder, inputs, len(split.ids), device, c.batch_size)

        splits = {"train": train, "val": val, "test": test}
        feats = {name: features(s) for name, s in splits.items()}
        masks = {name: resize_masks(s.masks, c.image_size).to(device) for name, s in splits.items()}

        def predict(name: str, idx: np.ndarray) -> torch.Tensor:
            idx = np.sort(idx)
            return head(feats[name](idx))

        opt = torch.optim.AdamW(head.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        best, best_state, stale, epochs_run = math.inf, copy.deepcopy(head.state_dict()), 0, 0
        n_train = len(train.ids)
        for epoch in range(c.epochs):
            head.train()
            for idx in batches(n_train, c.batch_size, seed, epoch):
                loss = self._loss(predict("train", idx), masks["train"][np.sort(idx)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            epochs_run = epoch + 1
            val_loss = self._mean_loss(predict, masks["val"], len(val.ids))
            if val_loss < best:
                best, best_state, stale = val_loss, copy.deepcopy(head.state_dict()), 0
            else:
                stale += 1
                if stale >= c.patience:
                    break
        head.load_state_dict(best_state)
        head.eval()
        dice = []
        with torch.no_grad():
            for idx in batches(len(test.ids), c.batch_size):
                pred = torch.sigmoid(predict("test", idx)) > c.threshold
                dice.append(per_image_dice(pred, masks["test"][idx]).cpu())
        return {"dice": float(torch.cat(dice).mean()), "val_loss": best, "epochs": epochs_run, "train_images": n_train}

    @torch.no_grad()
    def _mean_loss(self, predict, masks: torch.Tensor, n: int) -> float:
        total = 0.0
        for idx in batches(n, self.cfg.batch_size):
            total += float(self._loss(predict("val", idx), masks[idx])) * len(idx)
        return total / n
