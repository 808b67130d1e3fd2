"""Segmentation. mgca protocol: a U-Net decoder (segmentation_models_pytorch) on the
frozen encoder, loss ``10 * focal(gamma 2) - log(soft Dice, smooth 1)``,
per-image Dice at 0.5 (empty truth and empty prediction count 1), early stopping
on validation loss, test with the best-validation decoder; ``ci_low``/``ci_high``:
95 % percentile bootstrap of the mean over the per-image test Dice values.

Beside MGCA's Dice (unchanged), the scores taken apart (``tasks.metrics.segmentation_scores``):
``dice_pos`` over the test images with a lesion, ``empty_acc`` over those without, and the pooled
Dice, each with its interval; and the split's trivial references (``tasks.references``): with most
test images lesion-free, predicting nothing scores the share of lesion-free images under MGCA's
Dice (docs/METRICS.md). ``test_subset: positive`` scores the images with a lesion only (the
positives-only evaluation; ``siim_seg_pos``, ``rsna_seg_pos``).

Differences from MGCA's code, deliberate: the frozen encoder stays in eval mode
(in Lightning's train mode its BatchNorm statistics drift although its weights
are frozen); images are not augmented (so frozen features are computed once);
the test Dice is the mean over all test images, where MGCA
(``mgca/models/ssl_segmenter.py``: ``get_dice`` per batch, ``shared_epoch_end``
averages those) takes the mean of per-batch means, which weights the images of a
smaller last batch more (the two agree when the batch size divides the test set).

The U-Net by backbone: a torchvision ResNet keeps ``smp.Unet("resnetXX")`` (MGCA's
model, whose encoder is the transferred ResNet key for key); any other backbone
gets smp's own ``UnetDecoder`` and ``SegmentationHead`` (smp's defaults: decoder
channels 256/128/64/32/16, BatchNorm) over its levels (:class:`LevelsUnet`), levels
that are not a pyramid (a ViT's blocks) first through the trainable
``Feature2Pyramid`` neck (BenchX's). Not smp's ``tu-<name>`` encoders: they wrap
timm's ``features_only`` model, whose key names are not the transferred encoder's,
so the weights would not load strictly. Scales with no level (stride 2 on a
ConvNeXt or a ViT) are empty skips, as smp does for its timm encoders without one.

finetune protocol (BenchX-style): the same U-Net, the encoder trained too at
0.1 x the learning rate, warm-up + cosine, gradient clip 1.0. BenchX uses UperNet
at 512 px; we keep the U-Net so the two protocols differ only in what trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from benchmark.config import NonNegative, Positive, Share
from benchmark.data.transforms import downstream_batch, resize_masks
from benchmark.data.types import TestLabels
from benchmark.errors import UserError
from benchmark.models.backbones import pyramid_neck
from benchmark.models.encoders import BACKBONES
from benchmark.registry import TASK_KINDS
from benchmark.tasks.base import (
    Fit,
    Task,
    TaskConfig,
    batches,
    encoder_features,
    load_encoder,
    prepare_encoder,
    train_head,
    transferred_encoder,
    val_metrics,
)
from benchmark.tasks.metrics import mask_counts, segmentation_scores
from benchmark.tasks.references import segmentation_references


@dataclass
class SegmentationConfig(TaskConfig):
    weight_decay: NonNegative = 0.05
    focal_weight: NonNegative = 10.0
    focal_gamma: NonNegative = 2.0
    dice_smooth: Positive = 1.0  # > 0: an empty mask and an empty prediction would be 0 / 0
    threshold: Share = 0.5  # on the sigmoid probability
    #: which test images are scored: "all" (MGCA's test sets) or "positive" (only those with a lesion,
    #: as PRIOR reports segmentation); the references follow the same images
    test_subset: Literal["all", "positive"] = "all"


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss as MGCA writes it: BCE weighted by (1 - p_t)^gamma, mean over
    pixels. That is ``torchvision.ops.sigmoid_focal_loss`` with its alpha weighting
    off (``alpha=-1``; torchvision's default 0.25 is RetinaNet's, MGCA has none) and
    ``reduction="mean"`` (torchvision's default is none). MGCA computes the factor
    as ``exp(gamma * logsigmoid(.))``; torchvision as ``(1 - p_t) ** gamma``: the
    same up to float rounding (relative 1e-6 on the loss and its gradient)."""
    return sigmoid_focal_loss(logits, target, alpha=-1, gamma=gamma, reduction="mean")


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice over the whole batch (MGCA's ``dice_loss`` despite the name)."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    return (2 * inter + smooth) / (prob.sum() + target.sum() + smooth)


def segmentation_loss(logits, target, focal_weight=10.0, gamma=2.0, smooth=1.0) -> torch.Tensor:
    return focal_weight * focal_loss(logits, target, gamma) - torch.log(soft_dice(logits, target, smooth))


class LevelsUnet(nn.Module):
    """smp's U-Net decoder and segmentation head (one class) over a backbone's levels:
    the (optional) pyramid neck, then one decoder block per power-of-two scale from the
    deepest level's stride up to the input, empty skips where no level is."""

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...],
                 decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)) -> None:
        super().__init__()
        from segmentation_models_pytorch.base import SegmentationHead
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

        self.neck = pyramid_neck(tuple(channels), tuple(strides))
        self.strides = self.neck.strides
        blocks = int(math.log2(self.strides[-1]))
        if 2**blocks != self.strides[-1] or any(2 ** round(math.log2(s)) != s for s in self.strides):
            raise UserError(f"a U-Net needs levels at power-of-two strides, the backbone's are {list(self.strides)}")
        if blocks > len(decoder_channels):
            raise UserError(f"a U-Net of {len(decoder_channels)} blocks reaches stride {2 ** len(decoder_channels)}, "
                            f"the backbone's deepest level is at {self.strides[-1]}")
        self.scales = tuple(2**i for i in range(blocks + 1))  # 1, 2, 4, ..., deepest
        width = dict(zip(self.strides, channels))
        self.decoder = UnetDecoder([width.get(s, 0) for s in self.scales], decoder_channels[:blocks], n_blocks=blocks)
        self.head = SegmentationHead(decoder_channels[blocks - 1], 1, kernel_size=3)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        levels = dict(zip(self.strides, self.neck(levels)))
        first = levels[self.strides[0]]
        b, h, w = first.shape[0], first.shape[-2] * self.strides[0], first.shape[-1] * self.strides[0]
        feats = [levels[s] if s in levels else first.new_zeros(b, 0, h // s, w // s) for s in self.scales]
        return self.head(self.decoder(feats))


def lesion_shares(masks, size: int) -> np.ndarray:
    """Each mask's share of lesion pixels at the scored size (``size`` px, as the test masks are scored)."""
    return resize_masks(masks, size).flatten(1).double().mean(1).numpy()


def positives(split):
    """The images of a lesion set that have a lesion (its ``labels``), as a set of their own."""
    from benchmark.data.splits import select

    keep = [i for i, label in zip(split.ids, np.asarray(split.labels)) if label]
    if not keep:
        raise UserError(f"test_subset: positive, but the test split ({len(split.ids)} images) has no image with a lesion")
    return replace(select(split, keep), fingerprint=f"{split.fingerprint}-positive" if split.fingerprint else "")


@TASK_KINDS.register("segmentation")
class Segmentation(Task):
    config_class = SegmentationConfig

    def strata(self, split) -> np.ndarray:
        return np.asarray(split.labels)

    def _loss(self, logits, target):
        c = self.cfg
        return segmentation_loss(logits, target, c.focal_weight, c.focal_gamma, c.dice_smooth)

    def fit_evaluate(self, fit: Fit) -> dict[str, float]:
        import segmentation_models_pytorch as smp

        c, seed, device = self.cfg, fit.seed, fit.device
        train, val, test = fit.train_subset(), fit.val, fit.test
        torch.manual_seed(seed)
        arch = fit.arch
        if arch in BACKBONES:  # a torchvision ResNet: MGCA's smp U-Net, whose encoder has its keys
            model = smp.Unet(arch, encoder_weights=None, classes=1)
            load_encoder(model.encoder, fit.encoder_state)
            encoder, head = model.encoder, nn.Sequential(model.decoder, model.segmentation_head)
        else:
            encoder = transferred_encoder(fit.encoder_state, arch)
            head = LevelsUnet(encoder.channels, encoder.strides)
        trained_encoder = prepare_encoder(encoder, c)
        for part in (encoder, head):  # decoder on 200 64-px images, 2 cores: 1.8 vs 2.7 s with channels_last
            part.to(device, memory_format=torch.channels_last)

        def features(split):
            inputs = lambda idx: downstream_batch(split.images[np.sort(idx)], c.image_size)
            return encoder_features(encoder, inputs, len(split.ids), c, device)

        splits = {"train": train, "val": val, "test": test}
        feats = {name: features(s) for name, s in splits.items()}
        masks = {name: resize_masks(s.masks, c.image_size).to(device) for name, s in splits.items()}

        def predict(name: str, idx: np.ndarray) -> torch.Tensor:
            return head(feats[name](np.sort(idx)))

        def batch_loss(name: str, idx: np.ndarray) -> torch.Tensor:
            return self._loss(predict(name, idx), masks[name][np.sort(idx)])

        best, epochs_run = train_head(head, c, seed, len(train.ids), len(val.ids), batch_loss, encoder=trained_encoder,
                                      on_epoch=fit.on_epoch, log=fit.log)
        counts = []
        with torch.no_grad():
            for idx in batches(len(test.ids), c.batch_size):
                pred = torch.sigmoid(predict("test", idx)) > c.threshold
                counts.append(mask_counts(pred, masks["test"][idx]))
        # per test image (intersection, predicted, truth pixels): every score and interval comes from these
        return {**segmentation_scores(np.concatenate(counts)), **val_metrics("val_loss", best), "epochs": epochs_run,
                "train_images": len(train.ids)}

    def test_split(self, test):
        return positives(test) if self.cfg.test_subset == "positive" else test

    def test_labels(self, test) -> TestLabels:
        # the shares of the masks as they are scored (resized to image_size), so that a decoder's
        # score and the references are taken over the same pixels
        return TestLabels(list(test.ids), np.asarray(test.labels), lesion_shares(test.masks, self.cfg.image_size))

    def references(self, labels: TestLabels) -> dict:
        if self.cfg.test_subset == "positive":
            labels = labels.positives()
        return segmentation_references(labels.lesion_share)
