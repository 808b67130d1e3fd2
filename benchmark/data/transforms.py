"""Image transforms: pre-training augmentations and the downstream protocol's handling.

Images travel as uint8 grayscale (H x W) until here; the model sees 3 identical
channels, as every ImageNet-shaped ResNet-50 in these papers does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.from_numpy(np.array(image, copy=True)) if not torch.is_tensor(image) else image
    return t.unsqueeze(0) if t.ndim == 2 else t


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    x = x.expand(3, *x.shape[-2:])
    m = torch.tensor(mean, dtype=x.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(3, 1, 1)
    return (x - m) / s


class ImitateViews:
    """IMITATE's augmentation: resize to size*8/7, random crop, horizontal flip,
    rotation +-30 deg, perspective (0.5, p .5), autocontrast (p .5), ImageNet norm."""

    def __init__(self, size: int) -> None:
        from torchvision.transforms import v2

        self.size = size
        self.geometric = v2.Compose(
            [
                v2.Resize(round(size * 8 / 7), antialias=True),
                v2.RandomCrop(size),
                v2.RandomHorizontalFlip(),
                v2.RandomRotation(30),
                v2.RandomPerspective(0.5, p=0.5),
                v2.RandomAutocontrast(p=0.5),
            ]
        )

    def __call__(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = self.geometric(_as_tensor(image)).float().div_(255)
        return _normalise(x, IMAGENET_MEAN, IMAGENET_STD)


class CropViews(ImitateViews):
    """Resize to size*8/7 and random crop only, ImageNet norm (ASG's augmentation:
    256 -> random 224 crop). No flip, rotation or perspective: for methods whose
    targets are tied to image positions (a flip swaps the patient's sides)."""

    def __init__(self, size: int) -> None:
        from torchvision.transforms import v2

        self.size = size
        self.geometric = v2.Compose([v2.Resize(round(size * 8 / 7), antialias=True), v2.RandomCrop(size)])


class CropJitterView:
    """One view for the two-tower baselines, mean/std 0.5 (MGCA's and GLoRIA's 'half'
    normalisation, the downstream protocol's too). ConVIRT: random resized crop
    (scale 0.8-1.0), horizontal flip, brightness/contrast jitter. ``scale=None``: a
    plain random crop of the stored (size * 8/7) image, GLoRIA's only augmentation."""

    def __init__(
        self, size: int, scale: tuple[float, float] | None = (0.8, 1.0), flip: bool = True, jitter: float = 0.4
    ) -> None:
        from torchvision.transforms import v2

        crop = v2.RandomCrop(size) if scale is None else v2.RandomResizedCrop(size, scale=scale, antialias=True)
        steps = [v2.Resize(round(size * 8 / 7), antialias=True), crop] if scale is None else [crop]
        steps += [v2.RandomHorizontalFlip()] if flip else []
        steps += [v2.ColorJitter(brightness=jitter, contrast=jitter)] if jitter else []
        self.size, self.augment = size, v2.Compose(steps)

    def __call__(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = self.augment(_as_tensor(image)).float().div_(255)
        return _normalise(x, (0.5,) * 3, (0.5,) * 3)


HALF = ((0.5,) * 3, (0.5,) * 3)


def downstream_batch(
    images: np.ndarray | torch.Tensor, size: int, stats: tuple[tuple[float, ...], tuple[float, ...]] = HALF
) -> torch.Tensor:
    """Evaluation input: uint8 (N x H x W) -> float (N x 3 x size x size), normalised
    with ``stats`` (the mgca protocol's mean/std 0.5 by default; zero-shot uses the
    method's own pre-training statistics). Resizes only when the stored size differs."""
    x = torch.from_numpy(np.array(images, dtype=np.float32)).unsqueeze(1).div_(255)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in stats)
    return ((x.expand(-1, 3, -1, -1) - mean) / std).contiguous()


def resize_masks(masks: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    m = torch.from_numpy(np.array(masks, dtype=np.float32)).unsqueeze(1)
    if m.shape[-1] != size or m.shape[-2] != size:
        m = F.interpolate(m, size=(size, size), mode="nearest")
    return m
