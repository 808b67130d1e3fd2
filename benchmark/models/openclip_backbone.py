"""The ``open_clip`` backbone family: an open_clip model's image tower as feature levels.

Reached only through a dict spec ``{"family": "open_clip", "name": <open_clip model>,
"image_size": ..., "mean": [...], "std": [...]}`` (``methods.backbones``: plain names
stay torchvision's and timm's); ``name`` is what ``methods.openclip_models.resolve_name``
returns (``ViT-B-16``, ``hf-hub:ORG/NAME``, ``local-dir:/abs/folder``); the other keys
are optional (the model's own input size and preprocessing). ``build(spec, "none")``
builds the architecture randomly initialised: tasks then load the transferred state
strictly. The module holds the tower as ``self.visual`` (open_clip's
``VisionTransformer``, its ``ModifiedResNet``, or a ``TimmModel`` such as BiomedCLIP's
ViT-B/16), so its state dict is the tower's under ``visual.`` (:meth:`OpenClipFamily.released_prefix`):
a released CLIP's image keys (OpenAI's, CheXzero's) load onto it as they are.

Levels (``forward``), shallow -> deep, with their real strides (``.strides``):

- ViT towers (open_clip's own and timm's): the raw token maps of four blocks at the
  patch stride (16, 16, 16, 16 for ViT-B/16), as ``methods.backbones.TimmViTLevels``
  gives a timm ViT: BenchX's ``out_indices=(3, 5, 7, 11)`` of 12 blocks
  (``preprocess/mmsegmentation/configs/_base_/models/upernet_my_vit.py`` lines 14-33 of
  github.com/yangzhou12/BenchX; ``methods.backbones.BENCHX_VIT_BLOCKS``, the same
  fractions of other depths), the last one after the tower's final LayerNorm
  (``final_norm=True``). The multi-scale part, BenchX's ``Feature2Pyramid`` neck, is
  trainable and belongs to the downstream head (``methods.backbones.pyramid_neck``, built
  by segmentation and detection from these strides), not to the transferred encoder.
- ``ModifiedResNet`` towers (RN50 ...): the four stage maps layer1..layer4 (strides
  4..32); timm CNN towers (ConvNeXt): their stage maps at strides 4..32 (``feature_info``).
  Other towers (MobileCLIP's ...) give the pooled embedding only: segmentation and
  detection refuse them in one line.

Input: what the tasks feed (``downstream_batch``: mean/std 0.5 at the task's size).
The module re-normalises it to the model's own mean/std and resizes it to the size the
tower was built for (its position embeddings, and ModifiedResNet's attention pool, have
a fixed grid). Deliberate difference from BenchX, which interpolates the position
embeddings to the input size (as timm's ``dynamic_img_size`` does for
``TimmViTLevels``): open_clip's towers take one size, so where the task's size differs
the levels are resized (bilinear) to the input's grid at their stride (input // stride).
``pool(x)`` is the tower's own output: the joint-space image embedding that
``encode_image`` returns (pooled token, final norm, projection; the attention pool of a
ModifiedResNet), L2-normalised as CLIP_benchmark's linear probe takes it
(``clip_benchmark/metrics/linear_probe.py``, ``Featurizer``); ``methods.backbones.pooled``
uses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.transforms import HALF
from benchmark.errors import UserError
from benchmark.models.backbones import PYRAMID_STRIDES, vit_block_indices
from benchmark.models.openclip_models import NO_WEIGHTS, create_model, resolve_name
from benchmark.registry import BACKBONE_FAMILIES

FAMILY = "open_clip"
#: where the tower's keys sit in this module's state dict (``self.visual``)
PREFIX = "visual."


def tower_kind(visual: nn.Module) -> str:
    """``vit`` (open_clip's VisionTransformer), ``resnet`` (its ModifiedResNet), ``timm_vit`` (a
    timm ViT trunk, BiomedCLIP's), ``timm_cnn`` (a timm trunk with stage maps at strides 4..32,
    ConvNeXt's), else ``pooled`` (the pooled embedding only: no segmentation or detection)."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        return "vit"
    if isinstance(visual, ModifiedResNet):
        return "resnet"
    trunk = getattr(visual, "trunk", None)
    if trunk is None or not hasattr(trunk, "forward_intermediates"):
        return "pooled"
    if hasattr(trunk, "blocks") and hasattr(trunk, "patch_embed") and hasattr(trunk, "embed_dim"):
        return "timm_vit"
    return "timm_cnn" if len(timm_stages(trunk)) == len(PYRAMID_STRIDES) else "pooled"


def timm_stages(trunk: nn.Module) -> dict[int, tuple[int, int]]:
    """stride -> (forward_intermediates index, channels) of a timm trunk's deepest map at each
    of the strides 4..32 (its ``feature_info``)."""
    found = {}
    for i, info in enumerate(getattr(trunk, "feature_info", None) or []):
        if info.get("reduction") in PYRAMID_STRIDES:
            found[info["reduction"]] = (i, int(info["num_chs"]))
    return found


class OpenClipTower(nn.Module):
    """An open_clip image tower with feature levels; its state dict is the tower's (``visual.*``)."""

    def __init__(self, visual: nn.Module, arch: dict[str, Any], mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.visual = visual
        self.arch = arch
        self.kind = tower_kind(visual)
        self.image_size = _pair(arch["image_size"])
        # HALF-normalised input -> the model's own normalisation: x' = x * scale + shift
        half_mean, half_std = (torch.tensor(v).view(1, 3, 1, 1) for v in HALF)
        own_mean, own_std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (mean, std))
        self.register_buffer("scale", half_std / own_std, persistent=False)
        self.register_buffer("shift", (half_mean - own_mean) / own_std, persistent=False)
        self.blocks: tuple[int, ...] = ()  # ViT blocks, or timm stages, read as the levels
        if self.kind == "resnet":
            width = visual.layer1[0].conv1.in_channels  # the stem's width; bottlenecks expand 4x
            self.channels, self.strides = tuple(width * 4 * 2**k for k in range(4)), PYRAMID_STRIDES
        elif self.kind == "timm_cnn":
            stages = timm_stages(visual.trunk)
            self.blocks, self.channels = (tuple(stages[s][k] for s in PYRAMID_STRIDES) for k in (0, 1))
            self.strides = PYRAMID_STRIDES
        elif self.kind == "pooled":
            self.channels, self.strides = (), ()
        else:
            own = self.kind == "vit"
            width = visual.transformer.width if own else visual.trunk.embed_dim
            depth = len(visual.transformer.resblocks) if own else len(visual.trunk.blocks)
            patch = _pair(visual.patch_size if own else visual.trunk.patch_embed.patch_size)[0]
            self.blocks = vit_block_indices(depth)
            self.channels, self.strides = (width,) * 4, (patch,) * 4
        self.pooled_dim = int(_timm_output_dim(visual) if hasattr(visual, "trunk") else getattr(visual, "output_dim", 0))

    def extra_repr(self) -> str:
        return f"arch={self.arch}, channels={self.channels}, strides={self.strides}"

    def own_input(self, x: torch.Tensor) -> torch.Tensor:
        """Task input (mean/std 0.5) -> the tower's own normalisation and size."""
        x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.kind == "pooled":
            raise UserError(f"the image tower of open_clip model {self.arch['name']} ({type(self.visual).__name__}) "
                            "gives no feature maps here: zero-shot, retrieval and the linear probe work, "
                            "segmentation and detection do not")
        size, own = x.shape[-2:], self.own_input(x)
        if self.kind == "timm_cnn":
            levels = self.visual.trunk.forward_intermediates(own, indices=list(self.blocks), intermediates_only=True)
        elif self.kind == "resnet":
            levels = self.visual.forward_intermediates(own, indices=[1, 2, 3, 4], intermediates_only=True)["image_intermediates"]
        else:
            levels = self._vit_levels(own)
        return [  # the task's grid at each level's stride (the tower ran at its own size)
            lv if lv.shape[-2:] == (size[0] // s, size[1] // s) else
            F.interpolate(lv, size=(size[0] // s, size[1] // s), mode="bilinear", align_corners=False)
            for lv, s in zip(levels, self.strides)
        ]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The tower's joint-space embedding (``encode_image``), L2-normalised (B x pooled_dim)."""
        return F.normalize(self.visual(self.own_input(x)), dim=-1)

    def _vit_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The blocks' token maps; the last after the final LayerNorm (BenchX's ``final_norm``)."""
        if self.kind == "vit":
            maps = self.visual.forward_intermediates(x, indices=list(self.blocks), intermediates_only=True)["image_intermediates"]
            norm = self.visual.ln_post
        else:
            trunk = self.visual.trunk
            maps = trunk.forward_intermediates(x, indices=list(self.blocks), intermediates_only=True, norm=False)
            norm = trunk.norm
        maps = list(maps)
        if _normalizes(norm, self.channels[-1]):
            maps[-1] = norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()
        return maps


def _pair(size: Any) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)


def _normalizes(norm: nn.Module, width: int) -> bool:
    shape = getattr(norm, "normalized_shape", None)
    return shape is not None and tuple(shape) == (width,)


def _timm_output_dim(visual: nn.Module) -> int:
    """A TimmModel's embedding width: its head's last linear layer (projection), else the trunk's."""
    dims = [m.out_features for m in visual.head.modules() if isinstance(m, nn.Linear)]
    return int(dims[-1]) if dims else int(visual.trunk.num_features)


def tower_of(model: nn.Module, name: str, mean=None, std=None) -> OpenClipTower:
    """The backbone over ``model.visual`` (shared, not copied) with its full spec; ``mean``/``std``
    default to the model's own preprocessing (a rebuilt spec keeps those of the weights it was
    exported with: a pretrained tag may carry other statistics than the architecture's config)."""
    cfg = getattr(model.visual, "preprocess_cfg", {})
    mean, std = tuple(mean or cfg.get("mean")), tuple(std or cfg.get("std"))
    size = _pair(model.visual.image_size)
    arch = {"family": FAMILY, "name": name, "image_size": size[0], "mean": list(mean), "std": list(std)}
    return OpenClipTower(model.visual, arch, mean, std)


@BACKBONE_FAMILIES.register(FAMILY)
class OpenClipFamily:
    """open_clip image towers, by dict spec only (owns no plain name)."""

    @staticmethod
    def owns(name: str) -> bool:
        return False

    @staticmethod
    def names() -> Iterable[str]:
        return ()

    @staticmethod
    def check(name: str) -> None:
        resolve_name(name)

    @staticmethod
    def released_prefix() -> str:
        return PREFIX

    @staticmethod
    def build(spec: dict, weights: str) -> OpenClipTower:
        """The tower ``spec`` names, randomly initialised (released weights load through the
        ``open_clip`` method's ``weights``, or onto this module's ``visual.*`` keys)."""
        if weights != NO_WEIGHTS:
            raise UserError(f"an open_clip backbone is built with weights none; its released weights load through "
                            f"--method open_clip --set model={spec['name']} --set weights=TAG|FILE")
        model = create_model(spec["name"], NO_WEIGHTS, int(spec.get("image_size") or 0))
        return tower_of(model, resolve_name(spec["name"]), spec.get("mean"), spec.get("std"))
