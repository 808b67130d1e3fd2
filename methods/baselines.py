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
code (cited there). The ViT, Swin and CLIP formats import as (architecture spec, state
dict in that architecture's names): :func:`import_encoder`; the method then builds that
architecture (``methods.backbones.build_backbone``: timm ``vit_base_patch16_224`` /
``swin_tiny_patch4_window7_224``, the open_clip ``ViT-B-32-quickgelu`` tower) instead of
the config's ResNet, and loads the weights under the family's own prefix
(``released_prefix``). For the timm ones the config's ``backbone`` takes the name
(``implied_settings``), so tables group them by it.

Files are read without running pickled code (``benchmark.safe_load``): a
Lightning checkpoint's hyper-parameter objects (Namespaces, OmegaConf configs,
paths, numpy scalars) are skipped, the tensors kept. A ``.safetensors`` file holds
tensors only and is read as such (same formats, same key mapping). A folder that
``export`` wrote (``benchmark.hubfolder``: config.json + model.safetensors) is read
in the project's own key layout, into the backbone its config names.

A missing or unexpected encoder key is an error that lists them: a half-loaded
encoder would give plausible but wrong numbers; so is a NaN or infinite weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

import torch

from benchmark.errors import UserError
from benchmark.hubfolder import (
    CONFIG,
    WEIGHTS,
    check_folder,
    is_export,
    read_config,
    read_safetensors,
)
from benchmark.hubfolder import read_weights as read_export
from benchmark.methods.base import Method, MethodConfig, files_digest
from benchmark.models.backbones import build_backbone, released_prefix, state_mismatch
from benchmark.models.checkpoint_formats import (
    FORMATS,
    RESNET,
    Spec,
    canonical,
    describe,
    target_state,
)
from benchmark.models.encoders import BACKBONES, ResNetStages, backbone_of
from benchmark.registry import METHODS
from benchmark.safe_load import Inert, load_tensors

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
    """A released encoder: a ResNet release imported into the config's ``backbone`` (ResNet-50
    unless set), a ViT / Swin / CLIP release into its own architecture, an export into its config's."""

    config_class = CheckpointConfig
    pretrains = False

    def __init__(self, cfg: CheckpointConfig) -> None:
        super().__init__(cfg)
        path = Path(cfg.checkpoint_path)
        state = read_checkpoint(path)
        if is_export(path):
            arch = read_config(path)["backbone"]
            if isinstance(arch, dict):  # an open_clip tower: the config's backbone field holds names only
                self.backbone = build_backbone(arch)
            if not isinstance(self.backbone, ResNetStages):  # the backbone's own keys
                load_exported(self.backbone, state, str(path))
                return
        fmt = "torchvision" if is_export(path) else cfg.checkpoint_format  # a ResNet export: torchvision keys
        spec, mine, fmt = import_encoder(state, fmt, self.backbone.arch, str(path))
        if spec != self.backbone.arch and FORMATS[fmt].target == RESNET:
            raise UserError(f"{path} is a {describe(spec)} encoder (format {fmt!r}), not {cfg.backbone!r}: "
                            "remove --set backbone or choose a ResNet depth")
        if spec != self.backbone.arch:  # a ViT / Swin / CLIP release: evaluated as its own architecture
            self.backbone = build_backbone(spec)
        load_released(self.backbone, mine)

    @classmethod
    def fingerprint(cls, cfg: CheckpointConfig) -> str:
        """The file's content, not its path, identifies the encoder (an exported folder:
        its config and weights)."""
        path = Path(cfg.checkpoint_path)
        _check_file(path)
        return files_digest([path / CONFIG, path / WEIGHTS] if is_export(path) else [path])

    @classmethod
    def implied_settings(cls, values: dict) -> dict:
        """The backbone a file names, unless ``--set`` gave one: an exported folder's config, or
        the architecture of a ViT / Swin release (``mgca_vit``, ``mrm``, ``medclip_swin``), so the
        config, its hash and ``table --by backbone`` say what is evaluated."""
        if not values.get("checkpoint_path"):
            return {}
        path = Path(str(values["checkpoint_path"])).expanduser()
        if is_export(path):
            arch = read_config(path)["backbone"]
            return {"backbone": arch} if isinstance(arch, str) else {}
        if not path.is_file():
            return {}  # the method's own check says what is wrong
        spec = release_architecture(str(path), path.stat().st_mtime_ns, str(values.get("checkpoint_format") or "auto"))
        return {"backbone": spec} if isinstance(spec, str) else {}


@lru_cache(maxsize=8)
def release_architecture(path: str, mtime_ns: int, fmt: str) -> Spec | None:
    """The architecture a released file's format targets, when it is not the config's ResNet
    (None: a ResNet release, or a file the method will refuse). Read once per file version."""
    del mtime_ns  # part of the cache key only
    try:
        state = read_checkpoint(Path(path))
        fmt = detect_format(list(state)) if canonical(fmt) == "auto" else canonical(fmt)
    except UserError:
        return None
    target = FORMATS[fmt].target
    return None if target == RESNET else target


def _check_file(path: Path) -> None:
    if path.is_dir() and not is_export(path):
        raise UserError(f"checkpoint file {path} is a folder, not a file (nor a folder that export wrote: "
                        f"no {CONFIG})")
    if not path.is_file() and not path.is_dir():
        raise UserError(f"checkpoint file {path} does not exist")
    if path.is_dir():
        check_folder(path)


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The flat tensor dict inside a checkpoint file (Lightning / DDP wrappers removed),
    read without running any pickled code; a safetensors file or an exported folder's weights."""
    _check_file(path)
    if is_export(path):
        return read_export(path)
    if path.suffix == ".safetensors":
        obj = read_safetensors(path)
        return {k.removeprefix("module."): v for k, v in obj.items()} if all(k.startswith("module.") for k in obj) else obj
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
    arch = arch if arch in BACKBONES else "resnet50"  # what the ResNet formats are scored and loaded as
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
    check_finite(mine, source)
    # a half-precision release (CLIP saved from CUDA) widens exactly to the architecture's dtype
    mine = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in mine.items()}
    return spec, mine, fmt


def refuse_other_architecture(spec: Spec, fmt: str, arch: str, source: str) -> None:
    """A ViT or Swin release cannot load into a given ResNet: one line saying what it is
    (``--method checkpoint`` builds the release's own architecture instead)."""
    if spec != arch:
        raise UserError(f"{source} is a {describe(spec)} encoder (format {fmt!r}), not a {resnet_name(arch)}; "
                        f"load it with --method checkpoint, which builds that architecture")


def load_released(backbone: torch.nn.Module, mine: dict[str, torch.Tensor]) -> None:
    """Load an imported encoder (``import_encoder``: checked strictly against its whole
    architecture, in that architecture's own names) into the backbone built from it. The
    backbone may hold less than the architecture (timm's pruned final norm of a hierarchical
    model whose last level is taken raw), never more."""
    prefix = released_prefix(backbone.arch)
    mapped = {prefix + k: v for k, v in mine.items()}
    own = backbone.state_dict()
    missing = [k for k in own if k not in mapped and not k.endswith(IGNORED[1])]
    if missing:  # the importer's target and the backbone disagree: a bug here, not in the file
        raise RuntimeError(f"backbone {backbone.arch!r} has keys the imported encoder lacks: {missing[:6]}")
    backbone.load_state_dict({k: mapped[k] for k in own if k in mapped}, strict=False)


def load_encoder_state(backbone: ResNetStages, state: dict[str, torch.Tensor], fmt: str = "auto",
                       source: str = "the checkpoint") -> str:
    """Load the encoder part of ``state`` into ``backbone`` strictly; returns the format used.
    ``source`` (the file) is named when the weights are not finite."""
    spec, mine, fmt = import_encoder(state, fmt, backbone.arch, source)
    refuse_other_architecture(spec, fmt, backbone.arch, source)
    backbone.load_state_dict(mine, strict=False)
    return fmt


def load_exported(backbone: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load an exported folder's weights (the backbone's own key names) strictly."""
    if differs := state_mismatch(backbone.state_dict(), state, shown=6):
        raise UserError(f"{source}: weights do not match its config's backbone {backbone.arch!r}: {differs}")
    check_finite(state, source)
    backbone.load_state_dict(state, strict=True)


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """A NaN or infinite weight is the file's fault: one line naming it."""
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise UserError(f"{source}: {len(broken)} of {len(state)} encoder tensors hold NaN or infinite values "
                        f"({broken[:3]}); the file is damaged or was saved from a diverged run")
