"""Baselines that are not pre-trained here: ``random`` (an untrained ResNet, the
lower bound) and ``checkpoint`` (released encoder weights imported by key
mapping, strictly). Both build the config's ``backbone`` (ResNet-50 unless set);
a checkpoint whose keys fit another ResNet depth is refused with the
``--set backbone=...`` that loads it.

Formats users have, all optionally inside a Lightning ``state_dict`` wrapper
and/or with DDP's ``module.`` prefix:

| format | encoder keys | evaluated as |
|---|---|---|
| ``torchvision`` (IMITATE's release) | ``conv1.weight``, ``layer1.0...`` (``fc.*`` ignored) | the config's ResNet |
| ``mgca`` (MGCA, ConVIRT-in-MGCA) | ``img_encoder_q.model.*`` | the config's ResNet |
| ``gloria`` | ``gloria.img_encoder.model.*`` | the config's ResNet |
| ``prior`` | ``image_encoder.encoder.*`` (1-channel ``conv1``: spread over 3 channels as w/3 each, which is the same function on a replicated grayscale input) | the config's ResNet |
| ``biovil`` (BioViL, hi-ml) | ``encoder.encoder.*`` (``projector.*`` ignored) | the config's ResNet |
| ``medclip_resnet`` | ``vision_model.model.*`` or ``model.*`` (``fc`` projection ignored) | the config's ResNet |
| ``medclip_swin`` / ``medclip_vit`` | ``vision_model.model.*`` or ``model.*``: transformers ``SwinModel`` keys, renamed (q/k/v fused) | timm ``swin_tiny_patch4_window7_224`` |
| ``chexzero`` | ``visual.*`` (OpenAI CLIP keys; text tower ignored) | open_clip ``ViT-B-32-quickgelu`` image tower |
| ``mgca_vit`` | ``img_encoder_q.model.*`` (timm ViT names) | timm ``vit_base_patch16_224`` |
| ``mrm`` | timm ViT names at the top level (MAE decoder, ``bert_*`` ignored) | timm ``vit_base_patch16_224`` |
| ``auto`` | the format under whose prefix the most keys land on its architecture's keys | |

``methods.checkpoint_formats`` holds the layouts, each checked against its authors'
code (cited there). The ViT and Swin formats import as (architecture spec, state
dict in that architecture's names): :func:`import_encoder`; evaluating them needs
the timm / open_clip backbones (``build_backbone``), until then they are refused.

Files are read without running pickled code (``benchmark.safe_load``): a
Lightning checkpoint's hyper-parameter objects (Namespaces, OmegaConf configs,
paths, numpy scalars) are skipped, the tensors kept.

A missing or unexpected encoder key is an error that lists them: a half-loaded
encoder would give plausible but wrong numbers; so is a NaN or infinite weight.
"""

from __future__ import annotations

import hashlib
from functools import cache
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from benchmark.errors import UserError
from benchmark.registry import METHODS
from benchmark.safe_load import Inert, load_tensors
from methods.base import Method, MethodConfig
from methods.checkpoint_formats import FORMATS, RESNET, Spec, canonical, describe, target_state
from methods.encoders import ResNetStages, backbone_of

#: the first four formats' encoder prefixes (all formats: ``methods.checkpoint_formats.FORMATS``)
PREFIXES = {name: FORMATS[name].prefixes[0] for name in ("torchvision", "mgca", "gloria", "prior")}
#: ``checkpoint_format`` values: the formats, their aliases, ``auto``
FormatName = Literal["auto", "torchvision", "imitate", "mgca", "convirt", "gloria", "prior", "biovil",
                     "medclip_resnet", "medclip_swin", "medclip_vit", "chexzero", "mgca_vit", "mrm"]
IGNORED = ("fc.", "num_batches_tracked")  # classifier head; BN counters some exports drop


@dataclass
class RandomConfig(MethodConfig):
    pass


@METHODS.register("random")
class RandomInit(Method):
    """The untrained ``backbone`` (``backbone_weights=imagenet`` gives ImageNet init)."""

    config_class = RandomConfig
    pretrains = False

    def __init__(self, cfg: RandomConfig) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            super().__init__(cfg)


@dataclass
class CheckpointConfig(MethodConfig):
    checkpoint_path: str = ""
    checkpoint_format: FormatName = "auto"

    def validate(self) -> None:
        super().validate()
        if not self.checkpoint_path:
            raise UserError("method 'checkpoint' needs a file: --checkpoint FILE")


@METHODS.register("checkpoint")
class Checkpoint(Method):
    """A released encoder, imported into the config's ``backbone`` (ResNet-50 unless set)."""

    config_class = CheckpointConfig
    pretrains = False

    def __init__(self, cfg: CheckpointConfig) -> None:
        super().__init__(cfg)
        path = Path(cfg.checkpoint_path)
        spec, state, fmt = import_encoder(read_checkpoint(path), cfg.checkpoint_format, self.backbone.arch, str(path))
        refuse_other_architecture(spec, fmt, self.backbone.arch, str(path))
        self.backbone.load_state_dict(state, strict=False)

    @classmethod
    def fingerprint(cls, cfg: CheckpointConfig) -> str:
        """The file's content, not its path, identifies the encoder."""
        path = Path(cfg.checkpoint_path)
        _check_file(path)
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()[:16]


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"checkpoint file {path} " + ("is a folder, not a file" if path.is_dir() else "does not exist"))


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The flat tensor dict inside a checkpoint file (Lightning / DDP wrappers removed),
    read without running any pickled code."""
    _check_file(path)
    try:
        obj = load_tensors(path)
    except Exception as exc:  # a malformed pickle raises anything: the file is at fault, not the code
        reason = (str(exc) or "empty").splitlines()[0].split(". ")[0][:120]  # torch's first sentence
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {reason})") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        found = repr(obj) if isinstance(obj, Inert) else type(obj).__name__
        raise UserError(f"{path} holds no state dict of tensors (found {found})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def resnet_name(arch: str) -> str:
    """``resnet50`` -> ``ResNet-50``, as messages say it."""
    return f"ResNet-{arch.removeprefix('resnet')}"


@cache
def encoder_keys(arch: str) -> frozenset[str]:
    """The state-dict keys of the project's ``arch`` encoder."""
    return frozenset(ResNetStages("none", arch).state_dict())


def detect_format(keys: list[str], arch: str = "resnet50") -> str:
    """The format under whose prefix the most keys land on its architecture's keys
    (``arch``, the config's ResNet, for the ResNet formats)."""
    scores = {}
    for name, fmt in FORMATS.items():
        if not any(k.startswith(fmt.prefixes) for k in keys):
            scores[name] = 0  # no need to build its architecture
            continue
        expected = encoder_keys(arch) if fmt.target == RESNET else target_state(fmt.target)
        scores[name] = fmt.best_prefix(keys, expected)[1]
    best = max(scores, key=scores.get)
    if scores[best] == 0:
        raise UserError(f"no {resnet_name(arch)} encoder keys found in the checkpoint (first keys: {keys[:5]})")
    return best


def other_depth(mine: dict[str, torch.Tensor], arch: str) -> str:
    """What the checkpoint's encoder is when it is not ``arch``: the ``--set backbone``
    that loads it, or what ResNet it is; empty when its keys say nothing."""
    try:
        found = backbone_of(mine)
    except ValueError as exc:
        return f"; it holds {exc}" if str(exc).startswith("a ResNet") else ""
    return "" if found == arch else f": they fit a {resnet_name(found)}; add --set backbone={found}"


def import_encoder(state: dict[str, torch.Tensor], fmt: str = "auto", arch: str = "resnet50",
                   source: str = "the checkpoint") -> tuple[Spec, dict[str, torch.Tensor], str]:
    """The encoder in ``state``, checked strictly: (architecture spec, its state dict in
    that architecture's key names, the format used). ResNet formats give ``arch`` (the
    config's ResNet); the others their own (``methods.checkpoint_formats``). ``source``
    (the file) is named when the weights are not finite."""
    fmt = canonical(fmt)
    if fmt == "auto":
        fmt = detect_format(list(state), arch)
    layout = FORMATS[fmt]
    spec = layout.spec(arch)
    name, expected = describe(spec), target_state(spec)
    prefix = layout.best_prefix(list(state), expected)[0]
    mine = layout.extract(state, prefix)
    resnet = layout.target == RESNET
    conv = mine.get("conv1.weight")
    if resnet and conv is not None and conv.ndim == 4 and conv.shape[1] == 1:  # 1-channel stem (PRIOR): same function on replicated gray
        mine["conv1.weight"] = conv.repeat(1, 3, 1, 1) / 3
    missing = [k for k in expected if k not in mine and not k.endswith(IGNORED[1])]
    unexpected = [k for k in mine if k not in expected]
    if missing or unexpected:
        if resnet and (depth := other_depth(mine, arch)):  # the right format, another ResNet: say which and how to load it
            raise UserError(f"checkpoint keys do not match a {name} encoder in format {fmt!r} "
                            f"({len(missing)} missing, {len(unexpected)} unexpected){depth}")
        raise UserError(
            f"checkpoint keys do not match a {name} encoder in format {fmt!r} (prefix {prefix!r}): "
            f"{len(missing)} missing {missing[:6]}, {len(unexpected)} unexpected {unexpected[:6]}; "
            "try another --set checkpoint_format"
        )
    shapes = [k for k, v in mine.items() if v.shape != expected[k].shape]
    if shapes:
        depth = other_depth(mine, arch) if resnet else ""
        raise UserError(f"checkpoint tensors have the wrong shape for a {name}: {shapes[:6]}{depth}")
    broken = [k for k, v in mine.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise UserError(f"{source}: {len(broken)} of {len(mine)} encoder tensors hold NaN or infinite values "
                        f"({broken[:3]}); the file is damaged or was saved from a diverged run")
    # a half-precision release (CLIP saved from CUDA) widens exactly to the architecture's dtype
    mine = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in mine.items()}
    return spec, mine, fmt


def refuse_other_architecture(spec: Spec, fmt: str, arch: str, source: str) -> None:
    """A ViT or Swin release cannot load into the config's ResNet: one line saying what it is."""
    if spec != arch:
        raise UserError(f"{source} is a {describe(spec)} encoder (format {fmt!r}), not a {resnet_name(arch)}; "
                        "this build evaluates ResNet encoders only")


def load_encoder_state(backbone: ResNetStages, state: dict[str, torch.Tensor], fmt: str = "auto",
                       source: str = "the checkpoint") -> str:
    """Load the encoder part of ``state`` into ``backbone`` strictly; returns the format used.
    ``source`` (the file) is named when the weights are not finite."""
    spec, mine, fmt = import_encoder(state, fmt, backbone.arch, source)
    refuse_other_architecture(spec, fmt, backbone.arch, source)
    backbone.load_state_dict(mine, strict=False)
    return fmt
