"""Released checkpoints' key layouts: where each release keeps its image encoder and
how those keys map onto the architecture it is evaluated as.

One :class:`CheckpointFormat` record per layout. A record names the encoder's key
prefixes (one per way its authors save it), the keys under them that are not the
encoder (heads, decoders, buffers the target recomputes), a per-key rename onto the
target's state-dict names, and the target architecture as a backbone spec:
``RESNET`` (the config's torchvision ResNet, ResNet-50 unless ``backbone`` says
otherwise), a timm name (built ``timm.create_model(name, pretrained=False,
num_classes=0)``), or ``{"family": "open_clip", "name": ...}`` (that model's image
tower, ``model.visual``). The strict check and the messages live in
``methods.baselines``; this module only knows layouts.

Each layout was read from its authors' public code (commits as fetched for issue 17):

- ``torchvision`` / ``mgca`` / ``gloria`` / ``prior``: the project's first four
  (see ``methods.baselines``).
- ``biovil``: microsoft/hi-ml (b67c1d2), hi-ml-multimodal/src/health_multimodal/image/model/:
  ``ImageModel`` holds ``self.encoder`` (model.py L48) and ``self.projector`` (L50-55,
  keys ``projector.model.*``, not the encoder); ``ImageEncoder.encoder`` is
  ``ResNetHIML`` (encoder.py L34), a torchvision ``ResNet`` subclass (resnet.py L17)
  that keeps torchvision's 1000-way ``fc`` (ignored, as for every ResNet format).
  The release ``biovil_image_resnet50_proj_size_128.pt`` (pretrained.py L29-30) loads
  strictly into ``ImageModel`` (model.py L66-67), so its keys are
  ``encoder.encoder.*`` + ``projector.model.*``. BioViL-T's file has the same
  ``encoder.encoder.*`` trunk (plus ``encoder.backbone_to_vit``/``vit_pooler``, which
  are left out: only the ResNet-50 trunk is evaluated).
- ``medclip_resnet``: RyanWangZf/MedCLIP (9c3396f), medclip/modeling_medclip.py:
  ``MedCLIPVisionModel.model`` is torchvision's resnet50 with ``fc`` replaced by a
  2048->512 projection (L51-53, ignored); ``MedCLIPModel`` keeps it as
  ``vision_model`` beside ``text_model`` and ``logit_scale`` (L140-144), so the
  release (``pytorch_model.bin``, constants.py L167-171) has ``vision_model.model.*``;
  a vision model saved alone has ``model.*``.
- ``medclip_swin`` (alias ``medclip_vit``, the authors' name): ``MedCLIPVisionModelViT``
  (modeling_medclip.py L84-95) is transformers' ``SwinModel`` of
  ``microsoft/swin-tiny-patch4-window7-224`` (constants.py L5) + ``projection_head``
  (ignored: outside the prefix). Its keys are transformers 4.x's Swin names (the names
  transformers 5 still renames on load: transformers/conversion_mapping.py, "swin"),
  mapped onto timm ``swin_tiny_patch4_window7_224``: ``attention.self.{query,key,value}``
  concatenated in that order into ``attn.qkv`` (timm splits ``qkv`` as q, k, v:
  timm/models/swin_transformer.py L342-343); ``layernorm_before/after`` -> ``norm1/2``;
  ``attention.output.dense`` -> ``attn.proj``; ``intermediate.dense``/``output.dense``
  -> ``mlp.fc1/fc2``; the persistent ``relative_position_index`` buffer dropped (timm
  recomputes the same index, non-persistent); a stage's ``downsample`` moved to the
  start of the next stage (timm's own conversion of end-of-stage checkpoints,
  swin_transformer.py L1186-1214). Patch merging needs no reordering: transformers
  concatenates x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2] (``SwinPatchMerging``)
  and timm's reshape/permute (swin_transformer.py L654) yields the same order (the
  test compares both models' outputs).
- ``chexzero``: rajpurkarlab/CheXzero (5c341db): the released models are OpenAI CLIP
  ViT-B/32 (``clip.load("ViT-B/32", jit=False)``, train.py L147) saved as
  ``model.state_dict()`` (run_train.py L136-137): OpenAI's keys, image tower under
  ``visual.`` beside the text tower. open_clip loads OpenAI state dicts into its CLIP
  strictly with the same names (open_clip/model.py ``build_model_from_openai_state_dict``,
  L717-773), so the mapping is the prefix; the target is open_clip ``ViT-B-32-quickgelu``
  (OpenAI's models use QuickGELU, model.py L765). We do not call that function: it
  casts the weights to float16 (L771), and the import must be bit-exact.
  Half-precision tensors (a CUDA-saved CLIP) are widened to float32, exactly.
- ``mgca_vit``: HKU-MedAI/MGCA (680fe4a): ``ImageEncoder(model_name="vit_base")``
  sets ``self.model = create_vit("base", 224)`` (mgca/models/backbones/encoder.py
  L71-86) under ``img_encoder_q`` (mgca/models/mgca/mgca_module.py L64): the same
  prefix as MGCA's ResNet (``auto`` tells them apart by which architecture's keys
  match). Its ``VisionTransformer`` (vits.py L111-164: timm's ``PatchEmbed``, ``cls_token``,
  ``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``, ``norm``,
  LayerNorm eps 1e-6, no head) has exactly timm ``vit_base_patch16_224``'s names.
- ``mrm``: RL4M/MRM-pytorch (3730ba4): ``MRM`` (model_mrm.py L35-44) is an MAE-style
  encoder built from timm's ``PatchEmbed``/``Block`` at the top level (timm
  ``vit_base_patch16_224`` names, no prefix) beside the MAE decoder (``decoder_*``,
  ``mask_token``, L49-60) and the report branch (``bert_encoder``, ``bert_mlp``,
  L63-64), all ignored; ``save_model`` wraps it as ``{"model": ...}``
  (util/misc.py L301-302), which the reader unwraps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from benchmark.models.encoders import BACKBONES, ResNetStages

#: the target of the ResNet formats: the config's torchvision ResNet (``backbone``)
RESNET = "resnet"
Spec = str | dict[str, Any]


def _keep(key: str) -> str | None:
    return key


@dataclass(frozen=True)
class CheckpointFormat:
    """One release's layout. ``rename`` maps an encoder key (prefix removed) to the
    target's key, or None to drop it; several keys renamed to one target key are
    concatenated on dim 0 in the order of ``fuse`` (markers found in the source keys)."""

    name: str
    target: Spec
    prefixes: tuple[str, ...]
    release: str  # where the weights are published
    ignore: tuple[str, ...] = ()  # encoder-relative key prefixes that are not the encoder
    rename: Callable[[str], str | None] = _keep
    fuse: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def spec(self, arch: str) -> Spec:
        """The architecture it loads into (``arch``: the config's ResNet)."""
        return arch if self.target == RESNET else self.target

    def names(self, keys: list[str], prefix: str) -> dict[str, str]:
        """source key -> target key, for the keys under ``prefix`` that are kept."""
        out = {}
        for key in keys:
            if not key.startswith(prefix) or key[len(prefix):].startswith(self.ignore):
                continue
            new = self.rename(key[len(prefix):])
            if new is not None:
                out[key] = new
        return out

    def best_prefix(self, keys: list[str], expected: Mapping[str, Any]) -> tuple[str, int]:
        """The prefix under which the most keys land on ``expected`` keys, and how many."""
        scored = [(sum(v in expected for v in self.names(keys, p).values()), -i, p) for i, p in enumerate(self.prefixes)]
        score, _, prefix = max(scored)
        return prefix, score

    def _part(self, key: str) -> int:
        """Where ``key`` goes in a fused tensor (-1: it names no part)."""
        return next((i for i, marker in enumerate(self.fuse) if marker in key), -1)

    def extract(self, state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        """The encoder's tensors in the target's names (fused where ``fuse`` says)."""
        groups: dict[str, list[str]] = {}
        for src, new in self.names(list(state), prefix).items():
            groups.setdefault(new, []).append(src)
        out = {}
        for new, srcs in groups.items():
            if len(srcs) == 1:
                out[new] = state[srcs[0]]
                continue
            order = sorted(srcs, key=self._part)
            if [self._part(s) for s in order] == list(range(len(self.fuse))):
                out[new] = torch.cat([state[s] for s in order], 0)
            else:  # an incomplete group: left under the authors' names, so the strict check lists them
                out.update({s[len(prefix):]: state[s] for s in srcs})
        return out


# ---------------------------------------------------------------- renames
_SWIN_BLOCK = [  # transformers 4.x SwinLayer names -> timm SwinTransformerBlock names (order matters)
    (r"attention\.self\.(query|key|value)\.", "attn.qkv."),
    (r"attention\.self\.relative_position_bias_table$", "attn.relative_position_bias_table"),
    (r"attention\.output\.dense\.", "attn.proj."),
    (r"layernorm_before\.", "norm1."),
    (r"layernorm_after\.", "norm2."),
    (r"intermediate\.dense\.", "mlp.fc1."),
    (r"output\.dense\.", "mlp.fc2."),
]
_SWIN_LAYER = re.compile(r"encoder\.layers\.(\d+)\.(blocks\.\d+\.|downsample\.)(.*)")


def hf_swin_to_timm(key: str) -> str | None:
    """A transformers (4.x) ``SwinModel`` key -> timm ``SwinTransformer`` key."""
    if key.endswith("relative_position_index"):
        return None  # a buffer timm recomputes (identically, from the window size)
    for old, new in (("embeddings.patch_embeddings.projection.", "patch_embed.proj."),
                     ("embeddings.norm.", "patch_embed.norm."), ("layernorm.", "norm.")):
        if key.startswith(old):
            return new + key[len(old):]
    m = _SWIN_LAYER.fullmatch(key)
    if m is None:
        return key
    stage, part, rest = int(m[1]), m[2], m[3]
    if part == "downsample.":  # transformers merges at a stage's end, timm at the next one's start
        return f"layers.{stage + 1}.downsample.{rest}"
    for old, new in _SWIN_BLOCK:
        if re.match(old, rest):
            return f"layers.{stage}.{part}{re.sub('^' + old, new, rest)}"
    return key


FORMATS: dict[str, CheckpointFormat] = {f.name: f for f in (
    CheckpointFormat("torchvision", RESNET, ("",), "IMITATE's release (torchvision ResNet keys)",
                     ignore=("fc.",), aliases=("imitate",)),
    CheckpointFormat("mgca", RESNET, ("img_encoder_q.model.",), "MGCA / ConVIRT-in-MGCA, github.com/HKU-MedAI/MGCA",
                     ignore=("fc.",), aliases=("convirt",)),
    CheckpointFormat("gloria", RESNET, ("gloria.img_encoder.model.",), "GLoRIA, github.com/marshuang80/gloria",
                     ignore=("fc.",)),
    CheckpointFormat("prior", RESNET, ("image_encoder.encoder.",), "PRIOR, github.com/QtacierP/PRIOR",
                     ignore=("fc.",)),
    CheckpointFormat("biovil", RESNET, ("encoder.encoder.",),
                     "BioViL, huggingface.co/microsoft/BiomedVLP-CXR-BERT-specialized "
                     "(biovil_image_resnet50_proj_size_128.pt)", ignore=("fc.",)),
    CheckpointFormat("medclip_resnet", RESNET, ("vision_model.model.", "model."),
                     "MedCLIP-ResNet, github.com/RyanWangZf/MedCLIP (medclip-pretrained.zip)", ignore=("fc.",)),
    CheckpointFormat("medclip_swin", "swin_tiny_patch4_window7_224", ("vision_model.model.", "model."),
                     "MedCLIP-ViT (Swin-T), github.com/RyanWangZf/MedCLIP (medclip-vit-pretrained.zip)",
                     rename=hf_swin_to_timm, fuse=(".query.", ".key.", ".value."), aliases=("medclip_vit",)),
    CheckpointFormat("chexzero", {"family": "open_clip", "name": "ViT-B-32-quickgelu"}, ("visual.",),
                     "CheXzero, github.com/rajpurkarlab/CheXzero (Google Drive link in its README)"),
    CheckpointFormat("mgca_vit", "vit_base_patch16_224", ("img_encoder_q.model.",),
                     "MGCA ViT-B/16, github.com/HKU-MedAI/MGCA (Google Drive link in its README)"),
    CheckpointFormat("mrm", "vit_base_patch16_224", ("",),
                     "MRM, github.com/RL4M/MRM-pytorch (MRM.pth, Google Drive link in its README)",
                     ignore=("decoder_", "mask_token", "bert_encoder.", "bert_mlp.")),
)}
ALIASES: dict[str, str] = {a: f.name for f in FORMATS.values() for a in f.aliases}


def canonical(name: str) -> str:
    """A format's own name (``imitate`` -> ``torchvision``); ``auto`` stays."""
    return ALIASES.get(name, name)


def describe(spec: Spec) -> str:
    """How messages name an architecture: ``ResNet-50``, ``timm vit_base_patch16_224``,
    ``open_clip ViT-B-32-quickgelu image tower``."""
    if isinstance(spec, dict):
        return f"{spec['family']} {spec['name']} image tower"
    if spec in BACKBONES:
        return f"ResNet-{spec.removeprefix('resnet')}"
    return f"timm {spec}"


def _freeze(spec: Spec) -> str | tuple:
    return tuple(sorted(spec.items())) if isinstance(spec, dict) else spec


def target_state(spec: Spec) -> dict[str, torch.Tensor]:
    """The state dict (shapes and dtypes, no data: built on the meta device) the
    encoder of ``spec`` loads strictly."""
    return dict(_target_state(_freeze(spec)))


@cache
def _target_state(frozen: str | tuple) -> tuple[tuple[str, torch.Tensor], ...]:
    with torch.device("meta"):
        if isinstance(frozen, tuple):
            spec = dict(frozen)
            if spec["family"] != "open_clip":
                raise ValueError(f"no target family {spec['family']!r}")
            import open_clip

            cfg = open_clip.get_model_config(spec["name"])
            module = open_clip.model.CLIP(**cfg).visual  # the image tower's names, as open_clip builds it
        elif frozen in BACKBONES:
            module = ResNetStages("none", frozen)
        else:
            import timm

            module = timm.create_model(frozen, pretrained=False, num_classes=0)
    return tuple(module.state_dict().items())
