"""What every method shares: the pre-training config fields and the Method interface.

A Method owns its model, its loss and its augmentations; the loop in
``benchmark.pretraining`` owns everything else (optimiser, schedule, AMP,
checkpoints), so adding a method is one module plus one YAML.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import torch
from torch import nn

from benchmark.config import Count, NonNegative, Positive, Range, Seed, Size
from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from benchmark.errors import UserError
from benchmark.models.backbones import build_backbone, check_backbone_name

Beta = Annotated[float, Range(0, 1, hi_open=True)]


def files_digest(paths: Iterable[Path]) -> str:
    """16 hex digits of SHA-256 over the files' bytes, in order: what a ``fingerprint`` of
    weights on disk returns (the same path may hold new weights)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass
class MethodConfig:
    """Pre-training settings; defaults are IMITATE's paper values, YAMLs set each method's."""

    #: not in the config hash: they change how a run executes, not its result (batches and
    #: augmentation are seeded per sample, and a checkpoint resumes to the same run)
    UNHASHED_FIELDS: ClassVar[tuple[str, ...]] = ("num_workers", "checkpoint_every")

    image_size: Annotated[int, Range(1, 4096)] = 224
    batch_size: Annotated[int, Range(2, why="in-batch contrastive negatives")] = 128
    epochs: Size = 20
    max_steps: Count = 0  # 0: no cap; otherwise stop after this many optimiser steps
    lr: Positive = 2e-4
    #: the image encoder's rate (0: lr): from scratch it needs more than a pre-trained text
    #: tower can take (the phantom profile: 1e-3 for every method's ResNet, each method's own lr elsewhere)
    backbone_lr: NonNegative = 0.0
    weight_decay: NonNegative = 0.05
    adam_betas: tuple[Beta, ...] = (0.9, 0.999)  # AdamW (beta1, beta2); GLoRIA uses (0.5, 0.999)
    lr_restart_epochs: NonNegative = 1.0  # cosine warm-restart period in epochs of the real iteration count; 0: one decay over the run
    min_lr: NonNegative = 1e-8  # the cosine's floor: at most lr, or the schedule would climb
    grad_clip: NonNegative = 0.0  # 0: no clipping
    text_encoder: str = "emilyalsentzer/Bio_ClinicalBERT"
    text_max_length: Annotated[int, Range(1, 8192)] = 256
    text_pooling: Literal["cls", "mean"] = "cls"
    #: the image encoder: a torchvision ResNet (resnet18/34/50/101) or any timm model name
    #: (``methods.backbones``); the transferred encoder carries it to every task
    backbone: str = "resnet50"
    backbone_weights: Literal["imagenet", "none"] = "imagenet"
    corpus_size: Count = 0  # pairs used from the corpus; 0: all
    seed: Seed = 0
    num_workers: Annotated[int, Range(0, 256)] = 4
    checkpoint_every: Count = 500  # 0: no intermediate checkpoints
    ddp_workers: Size = 1  # DDP processes through Ray Train (one GPU each when there are GPUs); batch_size is per process
    gather_negatives: bool = False  # contrastive negatives from every process (PRIOR's code) or per process (IMITATE's)

    def validate(self) -> None:
        """Checks across fields; each field's own range is declared on its type (checked by ``build``)."""
        check_backbone_name(self.backbone)
        if len(self.adam_betas) != 2:
            raise UserError(f"adam_betas needs two values in [0, 1), got {list(self.adam_betas)}")
        if self.backbone_lr and self.min_lr > self.backbone_lr:
            raise UserError(f"min_lr ({self.min_lr:g}) must be <= backbone_lr ({self.backbone_lr:g})")
        if self.min_lr > self.lr:
            raise UserError(f"min_lr ({self.min_lr:g}) must be <= lr ({self.lr:g}): the schedule would raise the rate")
        if not self.text_encoder.strip():
            raise UserError("text_encoder must not be empty: give minilm, bioclinicalbert, a hub id or a model folder")


class Method(nn.Module):
    """Base class: subclasses set ``config_class`` and implement ``training_step``.

    The loop calls ``prepare(corpus)`` once before training: the place to
    precompute per-corpus inputs (frozen text embeddings, tokenised sentences)
    so that a step only indexes them by ``batch["index"]``. Batches carry
    ``views`` augmented views (``view1``, ``view2``, ...) made by
    ``train_transform()``. Methods with a joint image-text space implement
    ``embed_images`` / ``embed_texts`` (zero-shot, retrieval).
    """

    config_class: type[MethodConfig] = MethodConfig
    text_fields: tuple[str, ...] = ()  # frozen-embedded corpus texts looked up by index
    views: int = 2
    pretrains: bool = True  # False: baselines whose encoder is ready at construction
    #: why the method needs a CNN's stage pyramid (a plain ViT's one-stride levels are refused); empty: any backbone
    needs_pyramid: str = ""
    image_stats = (IMAGENET_MEAN, IMAGENET_STD)  # input normalisation of pre-training (and zero-shot)

    @classmethod
    def has_joint_space(cls) -> bool:
        """Whether the method embeds text (zero-shot and retrieval need it)."""
        return cls.embed_texts is not Method.embed_texts

    @classmethod
    def fingerprint(cls, cfg: MethodConfig) -> str:
        """What identifies the encoder beyond the config (e.g. a checkpoint file's content)."""
        return ""

    @classmethod
    def implied_settings(cls, values: dict) -> dict:
        """Config values that follow from the others (``values``: the YAML, profile and
        ``--set`` layers), below ``--set`` and above the rest: e.g. the backbone an
        exported encoder folder names. Default: none."""
        return {}

    def __init__(self, cfg: MethodConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone, cfg.backbone_weights)

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def train_transform(self) -> Callable:
        from benchmark.data.transforms import ImitateViews

        return ImitateViews(self.cfg.image_size)

    def prepare(self, corpus) -> None:
        """Per-corpus precomputation; default: frozen embeddings of ``text_fields``."""
        if self.text_fields:
            from benchmark.models.text_cache import text_bank

            self.attach_text(text_bank(self.text_cache, corpus, self.text_fields))

    @property
    def text_device(self) -> str:
        """Where the frozen text encoder runs: the loop and the joint-space tasks set the trial's
        device (a method may have made its cache in ``__init__``, on the CPU: it moves)."""
        return getattr(self, "_text_device", "cpu")

    @text_device.setter
    def text_device(self, device: str) -> None:
        self._text_device = device
        if getattr(self, "_text_cache", None) is not None:
            self._text_cache.to(device)

    @property
    def text_cache(self):
        """The frozen text encoder's per-text cache (built on first use)."""
        if getattr(self, "_text_cache", None) is None:
            from benchmark.models.text_cache import TextEmbeddingCache

            cfg = self.cfg  # on the trial's device (text_device), not on CUDA whenever CUDA exists
            self._text_cache = TextEmbeddingCache(cfg.text_encoder, cfg.text_max_length, cfg.text_pooling,
                                                  device=self.text_device)
        return self._text_cache

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised joint-space image embeddings (B x D)."""
        raise UserError(f"method {self.name!r} has no joint image-text space (no text tower)")

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised joint-space text embeddings (N x D)."""
        raise UserError(f"method {self.name!r} has no joint image-text space (no text tower)")

    def similarity(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """Image-text scores (B x N) for zero-shot and retrieval; default: cosine in
        the joint space. Methods with their own scoring (GLoRIA's global + local) override."""
        return self.embed_images(images) @ self.embed_texts(texts).T

    def attach_text(self, bank: dict[str, torch.Tensor]) -> None:
        """Register the corpus' frozen text embeddings (N x dim each) as buffers."""
        for name, tensor in bank.items():
            self.register_buffer(f"text_{name}", tensor, persistent=False)

    def negatives(self, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        """The rows a global contrastive loss compares: under DDP with
        ``gather_negatives`` every process's rows (with gradient to the local
        ones), otherwise this process's batch. Call it on every process alike."""
        if not self.cfg.gather_negatives:
            return tensors
        from benchmark.distributed import gather_rows

        return tuple(None if t is None else gather_rows(t) for t in tensors)

    def text(self, field: str, index: torch.Tensor) -> torch.Tensor:
        return getattr(self, f"text_{field}")[index]

    def forward(self, batch: dict[str, torch.Tensor], **kwargs) -> dict[str, torch.Tensor]:
        """The training step: DDP syncs gradients only for calls through ``forward``."""
        return self.training_step(batch, **kwargs)

    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Return ``{"loss": total, <term>: value, ...}``; terms are logged separately."""
        raise NotImplementedError

    def image_encoder(self) -> nn.Module:
        """The module transferred downstream (``.arch`` says how to rebuild it: ``methods.backbones``)."""
        return self.backbone

    def rng_state(self) -> dict:
        """Method-owned random state (e.g. channel draws), saved in checkpoints."""
        return {}

    def load_rng_state(self, state: dict) -> None:
        pass
