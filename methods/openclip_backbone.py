"""The ``open_clip`` backbone family: an open_clip model's image tower as feature levels.

The module holds the tower (``model.visual``: open_clip's ``VisionTransformer``,
its ``ModifiedResNet``, or a ``TimmModel`` such as BiomedCLIP's ViT-B/16) and
gives the harness's backbone interface: ``.arch`` (a JSON-able spec that rebuilds
it: ``{"family": "open_clip", "model": ..., "image_size": ...}``), ``.channels``
and ``.strides`` per level (shallow -> deep), ``.pooled_dim``, ``forward(x)`` ->
the levels and ``pool(x)`` -> the pooled embedding.

Levels, all at strides 4 / 8 / 16 / 32 of the input:

- ViT towers (open_clip's own and timm's, through their ``forward_intermediates``):
  the token maps (stride = patch size, 16 for ViT-B/16) of four blocks. BenchX's
  ViT segmentation (``preprocess/mmsegmentation/configs/_base_/models/upernet_my_vit.py``,
  lines 22 and 33 of github.com/yangzhou12/BenchX) takes blocks ``out_indices=(3, 5, 7, 11)``
  of a 12-block ViT-B/16, the last one after the final LayerNorm (``final_norm=True``,
  line 28), and mmseg's ``Feature2Pyramid`` neck with ``rescales=[4, 2, 1, 0.5]``:
  a transposed convolution x4 / x2 up, identity, a 2x2 max-pool down. We take the
  same blocks (for other depths the same fractions of the depth: block ``round(L k / 12) - 1``
  for k = 4, 6, 8, 12), the final norm on the last, and the same rescales, with one
  deliberate difference: up-sampling is bilinear, not a learned transposed
  convolution. The transferred encoder holds only pre-trained weights; under the
  frozen (mgca) protocol a transposed convolution inside it would stay at its random
  initialisation, so the learning is left to the task's decoder. A patch size other
  than 16 (ViT-L/14) gives a token map that is resized to stride 16 first.
- ``ModifiedResNet`` towers (RN50 ...): the four stage maps layer1..layer4; timm CNN
  towers (ConvNeXt): their stage maps at strides 4..32 (timm's ``feature_info``).
  Other towers (MobileCLIP's ...) give the pooled embedding only.

Input: what the tasks feed (``downstream_batch``: mean/std 0.5 at the task's size).
The module re-normalises it to the model's own mean/std and resizes it to the size
the tower was built for (its position embeddings, and ModifiedResNet's attention
pool, have a fixed grid); the levels are resized back to input/stride when the two
sizes differ. The pooled feature is the tower's own output: the joint-space image
embedding that ``encode_image`` returns (pooled token, final norm, projection; the
attention pool of a ModifiedResNet), L2-normalised as CLIP_benchmark's linear probe
takes it (``clip_benchmark/metrics/linear_probe.py``, ``Featurizer``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.transforms import HALF
from benchmark.errors import UserError
from benchmark.registry import BACKBONE_FAMILIES
from methods.openclip_models import create_model

FAMILY = "open_clip"
STRIDES = (4, 8, 16, 32)
BENCHX_RESCALES = (4, 2, 1, 0.5)  # Feature2Pyramid's, from the stride-16 token map


def vit_block_indices(depth: int) -> tuple[int, ...]:
    """The four blocks whose outputs become the levels: BenchX's (3, 5, 7, 11) for 12 blocks,
    the same fractions of the depth otherwise."""
    return tuple(max(0, round(depth * k / 12) - 1) for k in (4, 6, 8, 12))


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
    return "timm_cnn" if len(timm_stages(trunk)) == len(STRIDES) else "pooled"


def timm_stages(trunk: nn.Module) -> dict[int, tuple[int, int]]:
    """stride -> (forward_intermediates index, channels) of a timm trunk's deepest map at each
    of the strides 4..32 (its ``feature_info``)."""
    found = {}
    for i, info in enumerate(getattr(trunk, "feature_info", None) or []):
        if info.get("reduction") in STRIDES:
            found[info["reduction"]] = (i, int(info["num_chs"]))
    return found


class OpenClipBackbone(nn.Module):
    """An open_clip image tower with feature levels; its state dict is the tower's (``visual.*``)."""

    def __init__(self, visual: nn.Module, arch: dict[str, Any], mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.visual = visual
        self.kind = tower_kind(visual)
        self.image_size = tuple(int(s) for s in _pair(arch["image_size"]))
        self.arch = {**arch, "image_size": int(self.image_size[0])}
        # HALF-normalised input -> the model's own normalisation: x' = x * scale + shift
        half_mean, half_std = (torch.tensor(v).view(1, 3, 1, 1) for v in HALF)
        own_mean, own_std = (torch.tensor(v, dtype=torch.float32).view(1, 3, 1, 1) for v in (mean, std))
        self.register_buffer("scale", half_std / own_std, persistent=False)
        self.register_buffer("shift", (half_mean - own_mean) / own_std, persistent=False)
        self.blocks: tuple[int, ...] = ()  # ViT blocks, or timm stages, read as the levels
        self.strides = STRIDES
        if self.kind == "resnet":
            width = visual.layer1[0].conv1.in_channels  # the stem's width; bottlenecks expand 4x
            self.channels = tuple(width * 4 * 2**k for k in range(4))
        elif self.kind == "timm_cnn":
            stages = timm_stages(visual.trunk)
            self.blocks, self.channels = (tuple(stages[s][k] for s in STRIDES) for k in (0, 1))
        elif self.kind == "pooled":
            self.channels, self.strides = (), ()
        else:
            width = visual.transformer.width if self.kind == "vit" else visual.trunk.embed_dim
            depth = len(visual.transformer.resblocks) if self.kind == "vit" else len(visual.trunk.blocks)
            self.channels = (width,) * 4
            self.blocks = vit_block_indices(depth)
        self.pooled_dim = int(_timm_output_dim(visual) if hasattr(visual, "trunk") else getattr(visual, "output_dim", 0))

    def extra_repr(self) -> str:
        return f"arch={self.arch}, channels={self.channels}"

    def own_input(self, x: torch.Tensor) -> torch.Tensor:
        """Task input (mean/std 0.5) -> the tower's own normalisation and size."""
        x = x * self.scale.to(x.dtype) + self.shift.to(x.dtype)
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        size = x.shape[-2:]
        own = self.own_input(x)
        if self.kind == "pooled":
            raise UserError(f"the image tower of open_clip model {self.arch['model']} ({type(self.visual).__name__}) "
                            "gives no feature maps here: zero-shot, retrieval and the linear probe work, "
                            "segmentation and detection do not")
        if self.kind == "timm_cnn":
            levels = self.visual.trunk.forward_intermediates(own, indices=list(self.blocks), intermediates_only=True)
        else:
            levels = self._resnet_levels(own) if self.kind == "resnet" else self._vit_levels(own)
        return [
            lv if lv.shape[-2:] == (size[0] // s, size[1] // s) else
            F.interpolate(lv, size=(size[0] // s, size[1] // s), mode="bilinear", align_corners=False)
            for lv, s in zip(levels, self.strides)
        ]

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The tower's joint-space embedding (``encode_image``), L2-normalised (B x pooled_dim)."""
        return F.normalize(self.visual(self.own_input(x)), dim=-1)

    def _resnet_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.visual.forward_intermediates(x, indices=[1, 2, 3, 4], intermediates_only=True)
        return list(out["image_intermediates"])

    def _vit_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.kind == "vit":
            maps = self.visual.forward_intermediates(x, indices=list(self.blocks), intermediates_only=True)["image_intermediates"]
            norm = self.visual.ln_post if _normalizes(self.visual.ln_post, self.channels[0]) else None
        else:
            trunk = self.visual.trunk
            maps = trunk.forward_intermediates(x, indices=list(self.blocks), intermediates_only=True, norm=False)
            norm = trunk.norm if _normalizes(trunk.norm, self.channels[0]) else None
        maps = list(maps)
        if norm is not None:  # BenchX's final_norm: the last block's output after the final LayerNorm
            maps[-1] = norm(maps[-1].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        grid = (x.shape[-2] // 16, x.shape[-1] // 16)
        levels = []
        for fmap, rescale in zip(maps, BENCHX_RESCALES):
            if fmap.shape[-2:] != grid:  # patch size other than 16: to the stride-16 grid first
                fmap = F.interpolate(fmap, size=grid, mode="bilinear", align_corners=False)
            if rescale > 1:
                fmap = F.interpolate(fmap, scale_factor=rescale, mode="bilinear", align_corners=False)
            elif rescale < 1:
                fmap = F.max_pool2d(fmap, kernel_size=2, stride=2)
            levels.append(fmap.contiguous())
        return levels


def _pair(size: Any) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)


def _normalizes(norm: nn.Module, width: int) -> bool:
    shape = getattr(norm, "normalized_shape", None)
    return shape is not None and tuple(shape) == (width,)


def _timm_output_dim(visual: nn.Module) -> int:
    """A TimmModel's embedding width: its head's last linear layer (projection), else the trunk's."""
    dims = [m.out_features for m in visual.head.modules() if isinstance(m, nn.Linear)]
    return int(dims[-1]) if dims else int(visual.trunk.num_features)


@BACKBONE_FAMILIES.register(FAMILY)
def build(arch: dict[str, Any], weights: str = "none") -> OpenClipBackbone:
    """The tower ``arch`` names, randomly initialised (``weights="none"``: tasks then load the
    transferred state strictly) or with the model's weights (``weights`` as the method takes it)."""
    model = create_model(arch["model"], weights, int(arch.get("image_size") or 0))
    return tower_of(model, arch["model"], arch.get("mean"), arch.get("std"))


def tower_of(model: nn.Module, name: str, mean=None, std=None) -> OpenClipBackbone:
    """The backbone over ``model.visual`` (shared, not copied); ``mean``/``std`` default to the
    model's own preprocessing (a rebuilt spec keeps those of the weights it was exported with)."""
    cfg = getattr(model.visual, "preprocess_cfg", {})
    mean, std = tuple(mean or cfg.get("mean")), tuple(std or cfg.get("std"))
    size = _pair(model.visual.image_size)
    arch = {"family": FAMILY, "model": name, "image_size": int(size[0]), "mean": list(mean), "std": list(std)}
    return OpenClipBackbone(model.visual, arch, mean, std)
