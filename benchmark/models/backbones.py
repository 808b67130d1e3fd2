"""Image backbones by name: ``build_backbone(arch, weights)`` for every method and task.

A backbone is an ``nn.Module`` with ``.arch`` (a JSON-able spec that rebuilds it: a plain
name such as ``"resnet50"``, ``"convnext_tiny"``, ``"vit_base_patch16_224"``, or a dict
``{"family": ..., "name": ..., ...}``), ``.channels`` and ``.strides`` per feature level
(shallow -> deep), ``.pooled_dim`` and ``forward(x) -> list`` of B x C x H x W levels;
``pool(x)`` (B x pooled_dim) where the pooled feature is not the deepest level averaged
(:func:`pooled` falls back to that). A transferred encoder is (``.arch``, state dict):
tasks rebuild it with :func:`build_backbone` and load the state strictly.

Families (``benchmark.registry.BACKBONE_FAMILIES``; a plain name goes to the first that
owns it, a dict to its ``"family"``):

- ``torchvision``: the plain ResNet names. ResNet-18/34/50/101 are ``ResNetStages`` with
  torchvision's key names, so every released ResNet checkpoint and smp's ResNet encoders
  load them strictly; the other torchvision depths (``resnet152``) are refused, as before.
- ``timm``: any other name ``timm.list_models()`` knows, randomly initialised
  (``weights=imagenet`` would download: refused offline in one line, like the ResNets').
  The model keeps timm's own parameter names (``timm.create_model(name, num_classes=0)``,
  head pruned), so a released timm checkpoint maps onto it key for key.

  * hierarchical models (CNNs, Swin, ...): the deepest four ``feature_info`` levels of
    stride >= 4, through timm's ``forward_intermediates`` (``features_only=True`` for the
    models that lack it, whose keys are then those of timm's feature wrapper).
  * plain transformers (ViT, DeiT, ...: every level at the patch stride): four
    intermediate blocks, as BenchX builds them for its ViT-B/16 models
    (``preprocess/mmsegmentation/configs/_base_/models/upernet_my_vit.py`` lines 14-33:
    ``out_indices=(3, 5, 7, 11)``, ``final_norm=True``, neck ``Feature2Pyramid`` with
    ``rescales=[4, 2, 1, 0.5]``): blocks 4, 6, 8 and 12 of 12 (scaled for other depths),
    the last one after the final LayerNorm, the others raw, each as a B x D x H/p x W/p map.
    ``dynamic_img_size=True`` and ``dynamic_img_pad=True`` (timm's options): any input size
    works, one the patch does not divide padded at the bottom and right (MGCA's 299 px
    probe input becomes 19 x 19 patches of 16); tests run at 32-64 px.
    The multi-scale part, :class:`Feature2Pyramid` (mmsegmentation's
    ``mmseg/models/necks/featurepyramid.py``: deconv-BN-GELU-deconv for x4, deconv for
    x2, identity, max-pool for x0.5), is trainable and belongs to the downstream head, as
    in BenchX, not to the transferred encoder: ``pyramid_neck`` builds it for any levels
    that are not already a pyramid (identity for CNNs). Not copied: BenchX's SyncBN
    (one process here: BatchNorm) and its UperNet decoder (our segmentation keeps the
    U-Net of the mgca protocol on the four pyramid levels).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models.encoders import BACKBONES, ResNetStages
from benchmark.registry import BACKBONE_FAMILIES, unknown_name

#: plain ResNet names (``resnet<depth>``) belong to the torchvision family
_PLAIN_RESNET = re.compile(r"resnet\d+")
#: BenchX's ViT-B levels: blocks 4, 6, 8, 12 of 12 (``out_indices=(3, 5, 7, 11)``)
BENCHX_VIT_BLOCKS = (4, 6, 8, 12)
#: the strides a U-Net decoder and the YOLO head expect of four levels
PYRAMID_STRIDES = (4, 8, 16, 32)


def vit_block_indices(depth: int) -> tuple[int, ...]:
    """The four blocks whose outputs become a ViT's levels: BenchX's (3, 5, 7, 11) for 12
    blocks, the same fractions of the depth otherwise (repeats for a depth under 4)."""
    return tuple(max(0, round(depth * k / 12) - 1) for k in BENCHX_VIT_BLOCKS)


def _check_weights(weights: str) -> None:
    if weights not in ("none", "imagenet"):
        raise UserError(f"backbone_weights must be 'none' or 'imagenet', got {weights!r}")


@BACKBONE_FAMILIES.register("torchvision")
class TorchvisionFamily:
    """ResNet-18/34/50/101 with torchvision's key names (``methods.encoders.ResNetStages``)."""

    @staticmethod
    def owns(name: str) -> bool:
        return bool(_PLAIN_RESNET.fullmatch(name))

    @staticmethod
    def names() -> Iterable[str]:
        return BACKBONES

    @staticmethod
    def check(name: str) -> None:
        if name not in BACKBONES:
            raise UserError(
                f"bad value for 'backbone': the torchvision ResNets are {' | '.join(map(repr, BACKBONES))}, got {name!r} "
                "(other ResNets by their timm names, e.g. resnet152d)"
            )

    @staticmethod
    def released_prefix() -> str:
        return ""  # ResNetStages has torchvision's own names at the top level

    @staticmethod
    def build(spec: dict, weights: str) -> nn.Module:
        TorchvisionFamily.check(spec["name"])
        return ResNetStages(weights, spec["name"])


@cache
def timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


def create_timm(name: str, weights: str, **kwargs) -> nn.Module:
    """``timm.create_model`` without a classifier; ImageNet weights only from timm's cache."""
    import timm

    _check_weights(weights)
    try:
        return timm.create_model(name, pretrained=weights == "imagenet", num_classes=0, **kwargs)
    except TypeError:
        raise
    except Exception as exc:  # offline, the hub download fails with many types
        if weights != "imagenet":
            raise
        raise UserError(
            f"cannot load ImageNet {name} weights ({type(exc).__name__}); put them in the Hugging Face cache "
            f"(`hf download timm/{name}`) or use --set backbone_weights=none"
        ) from None


def _is_pyramid(strides: tuple[int, ...]) -> bool:
    return all(a < b for a, b in pairwise(strides))


class TimmLevels(nn.Module):
    """A hierarchical timm model (CNN, Swin, ...): its deepest four levels of stride >= 4."""

    def __init__(self, name: str, weights: str = "none", model: nn.Module | None = None) -> None:
        super().__init__()
        self.arch = name
        model = model if model is not None else create_timm(name, weights)
        info = list(model.feature_info)
        picks = [i for i, f in enumerate(info) if f["reduction"] >= 4][-4:]
        self.indices = picks
        self.channels = tuple(int(info[i]["num_chs"]) for i in picks)
        self.strides = tuple(int(info[i]["reduction"]) for i in picks)
        self.pooled_dim = self.channels[-1]
        if hasattr(model, "forward_intermediates"):
            try:
                model.prune_intermediate_layers(picks, prune_norm=True, prune_head=True)
            except (AttributeError, NotImplementedError):
                pass
            self.model, self.wrapped = model, False
        else:  # an older model: timm's feature wrapper (its own key names)
            self.model, self.wrapped = create_timm(name, weights, features_only=True, out_indices=picks), True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.wrapped:
            return list(self.model(x))
        patch = getattr(getattr(self.model, "patch_embed", None), "patch_size", None)
        if patch is not None:  # a patch embedding (Swin) takes sizes it divides: pad bottom and right, as ViTs'
            ph, pw = patch if isinstance(patch, (tuple, list)) else (patch, patch)
            x = torch.nn.functional.pad(x, (0, -x.shape[-1] % pw, 0, -x.shape[-2] % ph))
        return list(self.model.forward_intermediates(x, indices=self.indices, intermediates_only=True))


class TimmViTLevels(nn.Module):
    """A plain transformer's intermediate blocks as maps (BenchX's ViT levels: see the module
    docstring). ``pool`` is the model's own pooled feature (ViT-B/16: the final-normed [CLS])."""

    def __init__(self, name: str, weights: str = "none", model: nn.Module | None = None) -> None:
        super().__init__()
        self.arch = name
        self.model = model if model is not None else create_timm(name, weights, dynamic_img_size=True,
                                                                 dynamic_img_pad=True)
        depth = len(self.model.blocks)
        self.indices = sorted(set(vit_block_indices(depth)))
        info = list(self.model.feature_info)
        self.channels = tuple(int(info[i]["num_chs"]) for i in self.indices)
        self.strides = tuple(int(info[i]["reduction"]) for i in self.indices)
        self.pooled_dim = int(self.model.num_features)
        self.final_norm = self.indices[-1] == depth - 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        final, levels = self.model.forward_intermediates(x, indices=self.indices, output_fmt="NCHW")
        levels = list(levels)
        if self.final_norm:  # BenchX's final_norm: the last level after the model's LayerNorm
            b, c, h, w = levels[-1].shape
            levels[-1] = final[:, self.model.num_prefix_tokens:].transpose(1, 2).reshape(b, c, h, w)
        return levels

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


@BACKBONE_FAMILIES.register("timm")
class TimmFamily:
    """Any model ``timm.list_models()`` knows (randomly initialised unless weights=imagenet)."""

    @staticmethod
    def owns(name: str) -> bool:
        return name in timm_names()

    @staticmethod
    def names() -> Iterable[str]:
        return timm_names()

    @staticmethod
    def released_prefix() -> str:
        return "model."  # TimmLevels / TimmViTLevels hold the timm model as ``self.model``

    @staticmethod
    def build(spec: dict, weights: str) -> nn.Module:
        name = spec["name"]
        try:
            model = create_timm(name, weights, dynamic_img_size=True, dynamic_img_pad=True)
        except TypeError:  # no such option: not a plain transformer
            try:  # a hierarchical transformer that takes any size its patch divides (Swin)
                return TimmLevels(name, weights, create_timm(name, weights, dynamic_img_size=True))
            except TypeError:  # a CNN: any size
                return TimmLevels(name, weights)
        if _is_pyramid(tuple(f["reduction"] for f in model.feature_info)):
            return TimmLevels(name, weights, model)  # a hierarchical transformer that takes the option (Swin)
        return TimmViTLevels(name, weights, model)


def family_of(name: str) -> str:
    """The family that owns a plain backbone name (torchvision first, timm last);
    a one-line UserError listing close names when none does."""
    order = ["torchvision", *(f for f in BACKBONE_FAMILIES.names() if f not in ("torchvision", "timm")), "timm"]
    for family in order:
        owns = getattr(BACKBONE_FAMILIES.get(family), "owns", None)
        if owns is not None and owns(name):
            return family
    valid = [n for f in order for n in getattr(BACKBONE_FAMILIES.get(f), "names", tuple)()]
    close = difflib.get_close_matches(name, valid, n=12, cutoff=0.5)
    raise UserError(f"bad value for 'backbone': {unknown_name('backbone', name, close or BACKBONES)}; "
                    "any name of timm.list_models() works")


def arch_spec(arch: str | dict) -> dict:
    """``arch`` as a dict with its family: a plain name is looked up, a dict kept."""
    if isinstance(arch, dict):
        if "family" not in arch or "name" not in arch:
            raise UserError(f"a backbone spec needs 'family' and 'name', got {sorted(arch)}")
        return dict(arch)
    if not isinstance(arch, str) or not arch.strip():
        raise UserError(f"bad value for 'backbone': expected a model name, got {arch!r}")
    return {"family": family_of(arch), "name": arch}


def check_backbone_name(arch: str | dict) -> None:
    """The config's check: a name some family builds (ResNets outside the four are refused)."""
    spec = arch_spec(arch)
    check = getattr(BACKBONE_FAMILIES.get(spec["family"]), "check", None)
    if check is not None:
        check(spec["name"])


def build_backbone(arch: str | dict, weights: str = "none") -> nn.Module:
    """The backbone ``arch`` names (see the module docstring), with ``.arch`` set to ``arch``."""
    _check_weights(weights)
    spec = arch_spec(arch)
    module = BACKBONE_FAMILIES.get(spec["family"]).build(spec, weights)
    module.arch = arch
    return module


def released_prefix(arch: str | dict) -> str:
    """Where the architecture's own (timm's, torchvision's, open_clip's tower's) parameter names
    sit in the backbone's state dict: a released checkpoint mapped onto those names loads as
    ``{released_prefix(arch) + key: value}``."""
    spec = arch_spec(arch)
    return BACKBONE_FAMILIES.get(spec["family"]).released_prefix()


@dataclass(frozen=True)
class BackboneShape:
    channels: tuple[int, ...]
    strides: tuple[int, ...]
    pooled_dim: int

    @property
    def pyramid(self) -> bool:
        """Levels at growing strides (a CNN's stages), not one stride (a plain ViT's blocks)."""
        return _is_pyramid(self.strides)


@cache
def _shape_of(arch_key: str) -> BackboneShape:
    arch = json.loads(arch_key) if arch_key.startswith("{") else arch_key
    with torch.device("meta"):  # no weights allocated: a config check stays cheap
        net = build_backbone(arch, "none")
    return BackboneShape(tuple(net.channels), tuple(net.strides), int(net.pooled_dim))


def backbone_shape(arch: str | dict) -> BackboneShape:
    """Channels, strides and pooled width of ``arch`` without building its weights."""
    return _shape_of(json.dumps(arch, sort_keys=True) if isinstance(arch, dict) else arch)  # a spec may hold lists


def require_pyramid(arch: str | dict, method: str, why: str) -> None:
    """Refuse, in one line, a backbone without a CNN's stage pyramid for a method that needs one."""
    shape = backbone_shape(arch)
    if not shape.pyramid or len(shape.strides) != 4:
        raise UserError(f"method {method!r} needs a backbone with four CNN stages ({why}); {arch!r} has levels at "
                        f"strides {list(shape.strides)}: use a CNN such as resnet50 or convnext_tiny")


def state_mismatch(expected: dict, state: dict, shown: int = 5) -> str:
    """Empty when ``state`` has exactly ``expected``'s keys and shapes (a strict load), else
    what differs: the missing, unexpected and reshaped keys, counted, the first ``shown`` named."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or shapes):
        return ""
    return (f"{len(missing)} missing {missing[:shown]}, {len(unexpected)} unexpected {unexpected[:shown]}, "
            f"{len(shapes)} of another shape {shapes[:shown]}")


def pooled(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's pooled feature: its ``pool`` where it has one, else the deepest level averaged."""
    pool = getattr(backbone, "pool", None)
    return pool(x) if pool is not None else backbone(x)[-1].mean(dim=(2, 3))


class Feature2Pyramid(nn.Module):
    """mmsegmentation's ``Feature2Pyramid`` neck (BenchX's ViT neck), for levels of any
    strides: level i is rescaled by ``strides[i] / targets[i]`` (x4: deconv-BN-GELU-deconv,
    x2: deconv, x1: identity, x0.5 / x0.25: max-pool). Levels already at their target
    stride pass through, so a CNN's pyramid gets an empty neck (no parameters)."""

    def __init__(self, channels: tuple[int, ...], strides: tuple[int, ...], targets: tuple[int, ...]) -> None:
        super().__init__()
        self.strides = tuple(targets)
        self.ops = nn.ModuleList(self._op(c, s / t, s) for c, s, t in zip(channels, strides, targets))

    @staticmethod
    def _op(c: int, k: float, stride: int) -> nn.Module:
        def deconv() -> nn.Module:
            return nn.ConvTranspose2d(c, c, kernel_size=2, stride=2)

        if k == 4:
            return nn.Sequential(deconv(), nn.BatchNorm2d(c), nn.GELU(), deconv())
        if k == 2:
            return deconv()
        if k == 1:
            return nn.Identity()
        if k in (0.5, 0.25):
            return nn.MaxPool2d(kernel_size=round(1 / k), stride=round(1 / k))
        raise UserError(f"a backbone level at stride {stride} cannot be rescaled to a pyramid by x{k:g} "
                        "(Feature2Pyramid takes x4, x2, x1, x0.5, x0.25): use a patch size of 8, 16 or 32")

    def forward(self, levels: list[torch.Tensor]) -> list[torch.Tensor]:
        return [op(f) for op, f in zip(self.ops, levels)]


def pyramid_neck(channels: tuple[int, ...], strides: tuple[int, ...]) -> Feature2Pyramid:
    """The neck that puts ``len(strides)`` levels at the deepest of 4, 8, 16, 32 (identity on a pyramid)."""
    if _is_pyramid(strides):
        return Feature2Pyramid(channels, strides, strides)
    n = len(strides)
    if n > len(PYRAMID_STRIDES):
        raise UserError(f"a pyramid takes at most {len(PYRAMID_STRIDES)} levels, got {n}")
    return Feature2Pyramid(channels, strides, PYRAMID_STRIDES[-n:])
