"""Detection, mgca protocol: a YOLOv3-style head on the frozen encoder's three deepest
levels (ResNet-50's layer2/3/4, strides 8/16/32; channels from the backbone; a ViT's
blocks first through the trainable ``Feature2Pyramid`` neck, BenchX's, to strides
8/16/32), three anchors per scale (the COCO YOLOv3 anchors scaled by
image_size/416), one class; YOLOv3 loss; decode, confidence threshold and NMS;
mAP averaged over IoU 0.40:0.05:0.75; AdamW, early stopping on validation mAP,
test with the best-validation head; ``ci_low``/``ci_high``: 95 % percentile
bootstrap of the mAP over test images (the per-image matching is done once and
each resample re-ranks the same detections weighted by their image's count:
``tasks.metrics.DetectionAP``). mAP is not a mean over images, so the percentile
interval need not contain the point value.

Differences from MGCA's code, deliberate:

- images without a ground-truth box, and detections on them, count in mAP.
  MGCA's code skips every image with no truth or no detection, so false
  positives on negatives never cost anything; ``count_negatives: false``
  reproduces that (and the metrics then carry ``reference_skips_negatives: 1``).
- each box is assigned to the single best-shape-IoU anchor of all nine, as in
  the YOLOv3 paper. MGCA's ``YOLOLoss`` runs once per scale and so gives every
  box its best anchor at each of the three scales.
- a compact neck per scale (1x1 -> 3x3 conv-BN-LeakyReLU, then the 1x1
  prediction conv) instead of MGCA's three six-conv embeddings with top-down
  upsampling: the point is to probe the frozen features, and the head trains on
  CPU-cached features.
- the frozen encoder stays in eval mode and images are not augmented (resized
  straight to image_size, as MGCA's detection transform does), so the frozen
  features are computed once per split.
- a detection's score is objectness x class probability (YOLOv3's); MGCA
  thresholds and ranks by objectness alone. With one class the two differ only
  by the (near 1) class probability.
- the objectness bias starts at log(0.01/0.99) (a 1 % prior) so that the many
  empty anchors do not swamp the first updates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_convert, box_iou, nms

from benchmark.config import NonNegative, Share, Width
from benchmark.data.transforms import downstream_batch
from benchmark.data.types import TestLabels
from benchmark.errors import UserError
from benchmark.models.backbones import pyramid_neck
from benchmark.models.encoders import STAGE_CHANNELS
from benchmark.registry import TASK_KINDS
from benchmark.tasks.base import (
    Fit,
    Task,
    TaskConfig,
    batches,
    encoder_features,
    prepare_encoder,
    train_head,
    transferred_encoder,
    val_metrics,
)
from benchmark.tasks.metrics import DetectionAP, detection_map, image_interval, ratio_of_counts, scored
from benchmark.tasks.references import detection_references

#: YOLOv3's COCO anchors (w, h) at 416 px, smallest first: three per scale.
COCO_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119), (116, 90), (156, 198), (373, 326))
STRIDES = (8, 16, 32)  # layer2, layer3, layer4
IN_CHANNELS = STAGE_CHANNELS[1:]  # ResNet-50's layer2..4; a head is sized from its encoder's
ANCHORS_PER_SCALE = 3
OUTPUTS = 6  # tx, ty, tw, th, objectness, class (1 class)
MAP_IOU_THRESHOLDS = tuple(round(0.40 + 0.05 * k, 2) for k in range(8))  # 0.40 ... 0.75


@dataclass
class DetectionConfig(TaskConfig):
    weight_decay: NonNegative = 1e-6
    conf_threshold: Share = 0.5  # MGCA's conf_thres
    nms_iou: Share = 0.5  # MGCA's nms_thres
    ignore_iou: Share = 0.5  # non-best anchors of at least this shape IoU with a box: no objectness loss
    max_detections: Width = 100  # per image, after NMS (COCO's maxDets)
    neck_channels: Width = 256
    count_negatives: bool = True  # false: MGCA's skipping of images with no truth or no detection

    def validate(self) -> None:
        super().validate()
        if self.metric != "map":
            raise UserError(f"detection metric must be map, got {self.metric!r}")


def scaled_anchors(image_size: int) -> torch.Tensor:
    """The nine COCO anchors (9 x 2, pixels) scaled from 416 px to ``image_size``."""
    return torch.tensor(COCO_ANCHORS, dtype=torch.float32) * (image_size / 416)


def shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of a (w, h) box with each anchor when both are centred at the same point
    (equal to the IoU of the two boxes placed at a shared corner)."""
    corner = lambda sizes: torch.cat([torch.zeros_like(sizes), sizes], -1)
    return box_iou(corner(wh.view(1, 2)), corner(anchors))[0]


def assign_targets(
    boxes: list[torch.Tensor], anchors: torch.Tensor, grids: list[tuple[int, int]],
    strides: tuple[int, ...] = STRIDES, ignore_iou: float = 0.5,
) -> list[dict[str, torch.Tensor]]:
    """YOLOv3 targets for a batch. ``boxes[i]``: (k, 4) x, y, w, h in input pixels.

    Each box goes to the single best shape-IoU anchor of all nine, at the cell
    of that anchor's scale that contains the box centre, with targets
    tx, ty = centre offset inside the cell (0..1) and tw, th = log(size / anchor).
    Other anchors whose shape IoU with the box exceeds ``ignore_iou`` are left
    out of the no-object loss at their own centre cell. Per scale returns
    ``obj`` and ``noobj`` (N x 3 x H x W, bool) and ``box`` (N x 3 x H x W x 4).
    """
    n = len(boxes)
    out = [
        {
            "obj": torch.zeros(n, ANCHORS_PER_SCALE, h, w, dtype=torch.bool),
            "noobj": torch.ones(n, ANCHORS_PER_SCALE, h, w, dtype=torch.bool),
            "box": torch.zeros(n, ANCHORS_PER_SCALE, h, w, 4),
        }
        for h, w in grids
    ]

    def cell(a: int, cx: float, cy: float) -> tuple[dict, int, int, int, float, float]:
        scale = a // ANCHORS_PER_SCALE
        h, w = grids[scale]
        gx = min(max(cx / strides[scale], 0.0), w - 1e-6)
        gy = min(max(cy / strides[scale], 0.0), h - 1e-6)
        return out[scale], a % ANCHORS_PER_SCALE, int(gx), int(gy), gx - int(gx), gy - int(gy)

    for i, image_boxes in enumerate(boxes):
        xywh = torch.as_tensor(image_boxes, dtype=torch.float32).reshape(-1, 4).double()  # float64: as Python floats
        for cx, cy, bw, bh in box_convert(xywh, "xywh", "cxcywh").tolist():
            if bw <= 0 or bh <= 0:
                continue
            ious = shape_iou(torch.tensor([bw, bh]), anchors)
            best = int(ious.argmax())
            for a in torch.nonzero(ious > ignore_iou).flatten().tolist():
                t, k, gi, gj, _, _ = cell(a, cx, cy)
                t["noobj"][i, k, gj, gi] = False
            t, k, gi, gj, ox, oy = cell(best, cx, cy)
            t["obj"][i, k, gj, gi] = True
            t["noobj"][i, k, gj, gi] = False
            aw, ah = anchors[best].tolist()
            t["box"][i, k, gj, gi] = torch.tensor([ox, oy, math.log(bw / aw), math.log(bh / ah)])
    return out


def _per_anchor(out: torch.Tensor) -> torch.Tensor:
    """(N, 3 * 6, H, W) -> (N, 3, H, W, 6)."""
    n, _, h, w = out.shape
    return out.view(n, ANCHORS_PER_SCALE, OUTPUTS, h, w).permute(0, 1, 3, 4, 2)


def yolo_loss(outputs: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """YOLOv3 loss summed over anchors and divided by the batch size: BCE on the
    sigmoid xy offsets, MSE on log-space wh, BCE objectness (positives and
    non-ignored negatives), BCE class (positives)."""
    total = outputs[0].new_zeros(())
    for out, t in zip(outputs, targets):
        p = _per_anchor(out)
        obj, noobj, box = t["obj"].to(p.device), t["noobj"].to(p.device), t["box"].to(p.device)
        pos = p[obj]
        target = box[obj]
        total = total + F.binary_cross_entropy_with_logits(pos[:, :2], target[:, :2], reduction="sum")
        total = total + F.mse_loss(pos[:, 2:4], target[:, 2:4], reduction="sum")
        total = total + F.binary_cross_entropy_with_logits(pos[:, 4], torch.ones_like(pos[:, 4]), reduction="sum")
        total = total + F.binary_cross_entropy_with_logits(pos[:, 5], torch.ones_like(pos[:, 5]), reduction="sum")
        neg = p[..., 4][noobj]
        total = total + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), reduction="sum")
    return total / outputs[0].shape[0]


def decode(outputs: list[torch.Tensor], anchors: torch.Tensor, strides: tuple[int, ...] = STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw head outputs -> boxes (N x M x 4, x1 y1 x2 y2 pixels) and scores
    (N x M, objectness x class probability) over all anchors of all scales."""
    all_boxes, all_scores = [], []
    for scale, out in enumerate(outputs):
        p = _per_anchor(out)
        _, _, h, w, _ = p.shape
        gy, gx = torch.meshgrid(torch.arange(h, device=p.device), torch.arange(w, device=p.device), indexing="ij")
        a = anchors[scale * ANCHORS_PER_SCALE : (scale + 1) * ANCHORS_PER_SCALE].to(p.device).view(1, ANCHORS_PER_SCALE, 1, 1, 2)
        cx = (torch.sigmoid(p[..., 0]) + gx) * strides[scale]
        cy = (torch.sigmoid(p[..., 1]) + gy) * strides[scale]
        wh = torch.exp(p[..., 2:4].clamp(max=6.0)) * a  # clamp: no overflow from an untrained head
        boxes = box_convert(torch.cat([torch.stack([cx, cy], -1), wh], -1), "cxcywh", "xyxy")
        all_boxes.append(boxes.flatten(1, 3))
        all_scores.append((torch.sigmoid(p[..., 4]) * torch.sigmoid(p[..., 5])).flatten(1))
    return torch.cat(all_boxes, 1), torch.cat(all_scores, 1)


def postprocess(
    boxes: torch.Tensor, scores: torch.Tensor, conf_threshold: float, nms_iou: float,
    image_size: int, max_detections: int = 100,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image: scores >= threshold, boxes clipped to the image, NMS, the top
    ``max_detections``. Returns (boxes k x 4, scores k) per image."""
    result = []
    for b, s in zip(boxes, scores):
        keep = s >= conf_threshold
        b, s = b[keep].clamp(0, image_size), s[keep]
        kept = nms(b, s, nms_iou)[:max_detections]
        result.append((b[kept], s[kept]))
    return result


class YoloHead(nn.Module):
    """One compact neck + prediction conv per scale (layer2, layer3, layer4)."""

    def __init__(self, channels: int = 256, in_channels: tuple[int, ...] = IN_CHANNELS) -> None:
        super().__init__()

        def cbl(i: int, o: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, k, padding=k // 2, bias=False), nn.BatchNorm2d(o), nn.LeakyReLU(0.1)]

        self.scales = nn.ModuleList()
        for c in in_channels:
            pred = nn.Conv2d(channels, ANCHORS_PER_SCALE * OUTPUTS, 1)
            with torch.no_grad():
                pred.bias.view(ANCHORS_PER_SCALE, OUTPUTS)[:, 4] = math.log(0.01 / 0.99)
            self.scales.append(nn.Sequential(*cbl(c, channels, 1), *cbl(channels, channels, 3), pred))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [m(f) for m, f in zip(self.scales, feats)]


class DetectionStages(nn.Module):
    """The frozen backbone's three deepest levels only (ResNet's layer2/3/4: layer1 would
    triple the cache); ``channels`` and ``strides`` are theirs."""

    def __init__(self, state: dict, arch: str | dict | None = None) -> None:
        super().__init__()
        self.backbone = transferred_encoder(state, arch)
        self.channels, self.strides = tuple(self.backbone.channels[-3:]), tuple(self.backbone.strides[-3:])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(x)[-3:]


class PyramidYolo(nn.Module):
    """The YOLO head behind the pyramid neck (empty on a CNN's strides 8/16/32); ``strides``:
    the levels' strides the head predicts at."""

    def __init__(self, neck_channels: int, channels: tuple[int, ...], strides: tuple[int, ...]) -> None:
        super().__init__()
        self.neck = pyramid_neck(channels, strides)
        self.strides = self.neck.strides
        self.yolo = YoloHead(neck_channels, channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.yolo(self.neck(feats))


def pixel_boxes(split, image_size: int) -> list[torch.Tensor]:
    """Each image's x, y, w, h boxes rescaled from the stored image to the input size."""
    h, w = split.images.shape[-2:]
    scale = torch.tensor([image_size / w, image_size / h, image_size / w, image_size / h])
    return [torch.as_tensor(np.asarray(b, np.float32)).reshape(-1, 4) * scale for b in split.boxes]


@TASK_KINDS.register("detection")
class Detection(Task):
    config_class = DetectionConfig

    def strata(self, split) -> np.ndarray:
        return np.asarray(split.labels)

    def fit_evaluate(self, fit: Fit) -> dict[str, float]:
        c, seed, device = self.cfg, fit.seed, fit.device
        train, val, test = fit.train_subset(), fit.val, fit.test
        torch.manual_seed(seed)
        encoder = DetectionStages(fit.encoder_state, fit.encoder_arch).to(device, memory_format=torch.channels_last)
        trained_encoder = prepare_encoder(encoder, c)
        head = PyramidYolo(c.neck_channels, encoder.channels, encoder.strides).to(device)
        strides = head.strides
        anchors = scaled_anchors(c.image_size)
        splits = {"train": train, "val": val, "test": test}

        def features(split):
            inputs = lambda idx: downstream_batch(split.images[np.sort(idx)], c.image_size)
            return encoder_features(encoder, inputs, len(split.ids), c, device)

        feats = {name: features(s) for name, s in splits.items()}
        boxes = {name: pixel_boxes(s, c.image_size) for name, s in splits.items()}
        grids = [(c.image_size // s, c.image_size // s) for s in strides]  # image_size is a multiple of 32

        def predictions(name: str) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
            """Each image's kept boxes (x1 y1 x2 y2) and scores, and its truth boxes."""
            pred_boxes, pred_scores = [], []
            with torch.no_grad():
                for idx in batches(len(splits[name].ids), c.batch_size):
                    raw = decode(head(feats[name](idx)), anchors, strides)
                    for b, s in postprocess(*raw, c.conf_threshold, c.nms_iou, c.image_size, c.max_detections):
                        pred_boxes.append(b.float().cpu().numpy())
                        pred_scores.append(s.float().cpu().numpy())
            return pred_boxes, pred_scores, [box_convert(b, "xywh", "xyxy").numpy() for b in boxes[name]]

        def batch_loss(name: str, idx: np.ndarray) -> torch.Tensor:
            idx = np.sort(idx)  # FrozenFeatures reads the rows in sorted order
            targets = assign_targets([boxes[name][i] for i in idx], anchors, grids, strides, c.ignore_iou)
            return yolo_loss(head(feats[name](idx)), targets)

        # early stopping on validation mAP (a val split without boxes cannot select: NaN never wins)
        best, epochs_run = train_head(
            head, c, seed, len(train.ids), len(val.ids), batch_loss,
            lambda: detection_map(*predictions("val"), MAP_IOU_THRESHOLDS, c.count_negatives), encoder=trained_encoder,
            on_epoch=fit.on_epoch, log=fit.log,
        )
        test = predictions("test")
        test_map = DetectionAP(*test, MAP_IOU_THRESHOLDS, c.count_negatives)  # matched once, resampled by weights
        lesion_free = np.asarray([len(t) == 0 for t in test[2]])
        left_empty = np.asarray([len(b) == 0 for b in test[0]])  # no box above conf_threshold after NMS
        metrics = {
            "map": test_map(),
            **image_interval(test_map, len(test[2])),
            **scored("empty_acc", ratio_of_counts(lesion_free & left_empty, lesion_free), len(lesion_free)),
            "map_50": detection_map(*test, (0.5,), c.count_negatives),
            **val_metrics("val_map", best),
            "epochs": epochs_run,
            "train_images": len(train.ids),
        }
        if not c.count_negatives:
            metrics["reference_skips_negatives"] = 1
        return metrics

    def test_labels(self, test) -> TestLabels:
        # lesion-free = no (kept) truth box, the images empty_acc averages over
        return TestLabels(list(test.ids), np.asarray([len(b) > 0 for b in test.boxes], np.int64))

    def references(self, labels: TestLabels) -> dict:
        return detection_references(labels.labels)
