"""Classification, mgca protocol: a linear probe on the frozen encoder's pooled
feature (``methods.backbones.pooled``: layer4 averaged, 2048-d on ResNet-50; a
ViT's final-normed [CLS] token). BCE-with-logits for binary and multi-label, CE for
multi-class; AUROC (macro over labels) or accuracy; AdamW lr 5e-4, wd 1e-6,
batch 48, <= 50 epochs, early stop on validation loss (patience 10), test with
the best-validation head. ``probe_norm: standardize`` (not MGCA's: the cpu and
phantom profiles set it) standardises the features with the training subset's
statistics first. The metrics also carry ``ci_low``/``ci_high``: the
primary metric's 95 % percentile bootstrap over the test images (labels and
scores resampled together; ``tasks.metrics.image_interval``).

The frozen encoder's features are computed once per (encoder, data set split,
image size) and kept on disk, so a 1/10/100 % x seeds grid trains only linear
heads (a cache file that cannot be read or does not match its split is
reported in one warning line and computed again). That needs deterministic
inputs: unlike MGCA's code, training images are not randomly cropped (centre
handling for every split).
MGCA upsamples its 224-px inputs to 299 inside the encoder; ``upsample_ratio``
(299/224 in the task YAML) keeps that quirk where it is wanted.

finetune protocol (BenchX-style, ``--protocol finetune``): the encoder trains
too at ``encoder_lr_ratio`` x the learning rate, linear warm-up + cosine,
gradient clip 1.0, binary tasks as a 2-way softmax, selection on the
validation metric (AUROC or accuracy) instead of the validation loss. Not
copied from BenchX: its AMP and its own augmentations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import NonNegative, Range, Size
from benchmark.data.integrity import load_torch
from benchmark.data.splits import ids_fingerprint
from benchmark.data.transforms import downstream_batch
from benchmark.data.types import TestLabels
from benchmark.device import policy
from benchmark.errors import UserError
from benchmark.models.backbones import pooled
from benchmark.paths import atomic_torch_save, cache_dir
from benchmark.registry import TASK_KINDS
from benchmark.tasks.base import (
    Fit,
    LiveFeatures,
    Task,
    TaskConfig,
    batches,
    prepare_encoder,
    train_head,
    transferred_encoder,
    val_metrics,
)
from benchmark.tasks.metrics import (
    accuracy,
    auroc,
    auroc_of_counts,
    balanced_accuracy,
    image_interval,
    mean_of_counts,
)
from benchmark.tasks.references import classification_references

log = logging.getLogger(__name__)


@dataclass
class ClassificationConfig(TaskConfig):
    IDENTITY_FIELDS = (*TaskConfig.IDENTITY_FIELDS, "label_type", "classes")

    batch_size: Size = 48
    weight_decay: NonNegative = 1e-6
    label_type: Literal["binary", "multilabel", "multiclass"] = "binary"
    classes: tuple[str, ...] = ()
    upsample_ratio: Annotated[float, Range(0, 8, lo_open=True)] = 1.0  # input scale before the encoder
    #: mgca probe input: "none" (MGCA: raw pooled features) or "standardize" (each feature to zero
    #: mean, unit variance over the training subset, as MAE's probe does with a BatchNorm)
    probe_norm: Literal["none", "standardize"] = "none"

    def validate(self) -> None:
        super().validate()
        if self.label_type != "binary" and len(self.classes) < 2:
            raise UserError(f"{self.label_type} task {self.name!r} needs its class names in 'classes'")
        if self.metric not in ("auroc", "accuracy"):
            raise UserError(f"classification metric must be auroc or accuracy, got {self.metric!r}")
        if self.probe_norm != "none" and self.protocol == "finetune":
            raise UserError("probe_norm is for the frozen probe (protocol mgca); the finetune encoder adapts itself")
        if self.metric == "accuracy" and self.label_type != "multiclass":
            raise UserError(f"accuracy is the metric of multiclass tasks; {self.name!r} is {self.label_type}: use auroc")


class PooledEncoder(nn.Module):
    """The transferred encoder (``arch``; None: the torchvision ResNet its weights say) -> pooled features."""

    def __init__(self, state: dict, upsample_ratio: float, arch: str | dict | None = None) -> None:
        super().__init__()
        self.backbone = transferred_encoder(state, arch)
        self.width = self.backbone.pooled_dim
        self.ratio = upsample_ratio

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ratio != 1.0:
            x = F.interpolate(x, scale_factor=self.ratio, mode="bilinear", align_corners=False)
        return pooled(self.backbone, x)


def cached_features(encoder: PooledEncoder, split, fit: Fit, cfg: ClassificationConfig) -> torch.Tensor:
    """Pooled features of a whole split, computed once per (encoder, split, size)."""
    key = getattr(split, "fingerprint", "") or ids_fingerprint(split.ids)
    precision = policy(fit.device)  # features made under autocast are not the float32 ones: their own file
    tag = f"-{precision.tag}" if precision.tag else ""
    path = cache_dir("features", fit.encoder_key) / f"{key}-{cfg.image_size}px-x{cfg.upsample_ratio:g}{tag}.pt"
    ids = list(split.ids)

    def damage(saved) -> str | None:
        feats = saved["features"]
        if saved["ids"] != ids:
            return "cached for other images"
        if not isinstance(feats, torch.Tensor) or tuple(feats.shape) != (len(ids), encoder.width):
            return f"features of shape {tuple(getattr(feats, 'shape', ()))}, expected ({len(ids)}, {encoder.width})"
        return None if torch.isfinite(feats).all() else "non-finite features"

    saved = load_torch(path, damage, "feature", log)
    if saved is not None:
        return saved["features"]
    parts = []
    with torch.no_grad():
        for idx in batches(len(split.ids), 64):
            x = downstream_batch(split.images[idx], cfg.image_size).to(fit.device, memory_format=torch.channels_last)
            with precision.autocast():
                parts.append(encoder(x).float().cpu())
    features = torch.cat(parts)
    atomic_torch_save({"ids": list(split.ids), "features": features}, path)
    return features


def standardized(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every split's features shifted and scaled by the training subset's per-feature mean and
    standard deviation (a feature constant on the subset is only shifted).

    Why: the pooled features of an untrained or briefly trained ResNet vary little between
    images next to their offset (random ResNet-18 on phantom v2: median std 0.06 against a mean
    magnitude of 0.34), so a linear head at lr 5e-4 barely moves in a few hundred steps; on
    standardised inputs every encoder's probe trains alike."""
    train = features["train"].double()
    mean, std = train.mean(0), train.std(0)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return {k: ((v.double() - mean) / std).float() for k, v in features.items()}


@TASK_KINDS.register("classification")
class Classification(Task):
    config_class = ClassificationConfig

    @property
    def softmax(self) -> bool:
        """CE over classes: multi-class, and binary under finetune (BenchX's 2-way softmax)."""
        return self.cfg.label_type == "multiclass" or (self.cfg.label_type == "binary" and self.cfg.protocol == "finetune")

    @property
    def outputs(self) -> int:
        if self.cfg.label_type == "binary":
            return 2 if self.softmax else 1
        return len(self.cfg.classes)

    def strata(self, split) -> np.ndarray | None:
        labels = np.asarray(split.labels)
        return labels if labels.ndim == 1 else None  # multi-label: no single stratum

    def targets(self, split) -> torch.Tensor:
        labels = torch.as_tensor(np.asarray(split.labels))
        if self.softmax:
            return labels.long()
        return labels.float().reshape(len(split.ids), self.outputs)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.softmax:
            return F.cross_entropy(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    def scored(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Truth and scores as ``auroc`` takes them: a vector for binary, a label matrix
        otherwise (multi-class: one-hot truth against the softmax probabilities)."""
        truth, kind = target.cpu().numpy(), self.cfg.label_type
        if kind == "multiclass":
            return np.eye(self.outputs)[truth], torch.softmax(logits, 1).numpy()
        if kind == "binary":
            score = torch.softmax(logits, 1)[:, 1] if self.softmax else torch.sigmoid(logits)[:, 0]
            return (truth if self.softmax else truth[:, 0]), score.numpy()
        return truth, torch.sigmoid(logits).numpy()

    def metrics(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        truth, scores = self.scored(logits, target)
        if self.cfg.label_type == "multiclass":
            return {"accuracy": accuracy(truth.argmax(1), scores.argmax(1)),
                    "balanced_accuracy": balanced_accuracy(truth.argmax(1), scores.argmax(1)),
                    "auroc": auroc(truth, scores)}
        return {"auroc": auroc(truth, scores)}

    def references(self, labels: TestLabels) -> dict:
        y = None if labels.labels is None else np.asarray(labels.labels)
        return classification_references(y if y is not None and y.ndim == 1 else None, len(labels),
                                         self.outputs if self.cfg.label_type == "multiclass" else 2)

    def interval(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """The primary metric's 95 % bootstrap interval over the test images (each
        image's labels and scores resampled together)."""
        truth, scores = self.scored(logits, target)
        if self.cfg.metric == "accuracy":
            return image_interval(mean_of_counts(truth.argmax(1) == scores.argmax(1)), len(truth))
        return image_interval(auroc_of_counts(truth, scores), len(truth))

    def fit_evaluate(self, fit: Fit) -> dict[str, float]:
        c = self.cfg
        encoder = PooledEncoder(fit.encoder_state, c.upsample_ratio, fit.encoder_arch).to(fit.device, memory_format=torch.channels_last)
        trained_encoder = prepare_encoder(encoder, c)
        if trained_encoder is None:  # mgca: cached pooled features, the train rows picked from the whole split
            rows = {x: i for i, x in enumerate(fit.train.ids)}
            train_rows = torch.as_tensor(sorted(rows[x] for x in fit.train_ids))
            cached = {
                "train": cached_features(encoder, fit.train, fit, c)[train_rows],
                "val": cached_features(encoder, fit.val, fit, c),
                "test": cached_features(encoder, fit.test, fit, c),
            }
            if c.probe_norm == "standardize":
                cached = standardized(cached)
            cached = {k: v.to(fit.device) for k, v in cached.items()}
            feats = {k: (lambda idx, v=v: v[torch.as_tensor(idx, device=v.device)]) for k, v in cached.items()}
            splits = {"train": fit.train_subset(), "val": fit.val, "test": fit.test}  # rows in train_rows order
        else:  # finetune: the encoder runs on every batch
            splits = {"train": fit.train_subset(), "val": fit.val, "test": fit.test}
            feats = {
                k: LiveFeatures(encoder, lambda idx, s=s: downstream_batch(s.images[np.sort(idx)], c.image_size), fit.device)
                for k, s in splits.items()
            }
        target = {k: self.targets(s).to(fit.device) for k, s in splits.items()}
        torch.manual_seed(fit.seed)
        head = nn.Linear(encoder.width, self.outputs).to(fit.device)

        def batch_loss(name: str, idx: np.ndarray) -> torch.Tensor:
            idx = np.sort(idx)
            return self.loss(head(feats[name](idx)), target[name][idx])

        def predict(name: str) -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([head(feats[name](idx)).float().cpu() for idx in batches(len(splits[name].ids), c.batch_size)])

        # mgca selects on validation loss; finetune (BenchX) on the validation metric
        val_score = (lambda: self.metrics(predict("val"), target["val"])[c.metric]) if trained_encoder is not None else None
        best, epochs = train_head(
            head, c, fit.seed, len(splits["train"].ids), len(fit.val.ids), batch_loss, val_score, encoder=trained_encoder,
            on_epoch=fit.on_epoch, log=fit.log,
        )
        selected = "val_loss" if val_score is None else f"val_{c.metric}"
        test = predict("test")
        return {**self.metrics(test, target["test"]), **self.interval(test, target["test"]), **val_metrics(selected, best),
                "epochs": epochs,
                "train_images": len(splits["train"].ids)}

