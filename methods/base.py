"""What every method shares: the pre-training config fields and the Method interface.

A Method owns its model, its loss and its augmentations; the loop in
``benchmark.pretrain`` owns everything else (optimiser, schedule, AMP,
checkpoints), so adding a method is one module plus one YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from benchmark.errors import UserError
from methods.encoders import ResNetStages


@dataclass
class MethodConfig:
    """Pre-training settings; defaults are IMITATE's paper values, YAMLs set each method's."""

    #: not in the config hash: they change how a run executes, not its result (batches and
    #: augmentation are seeded per sample, and a checkpoint resumes to the same run)
    UNHASHED_FIELDS: ClassVar[tuple[str, ...]] = ("num_workers", "checkpoint_every")

    image_size: int = 224
    batch_size: int = 128
    epochs: int = 20
    max_steps: int = 0  # 0: no cap; otherwise stop after this many optimiser steps
    lr: float = 2e-4
    weight_decay: float = 0.05
    adam_betas: tuple[float, ...] = (0.9, 0.999)  # AdamW (beta1, beta2); GLoRIA uses (0.5, 0.999)
    lr_restart_epochs: float = 1.0  # cosine warm-restart period in epochs of the real iteration count; 0: one decay over the run
    min_lr: float = 1e-8
    grad_clip: float = 0.0
    text_encoder: str = "emilyalsentzer/Bio_ClinicalBERT"
    text_max_length: int = 256
    text_pooling: Literal["cls", "mean"] = "cls"
    backbone_weights: Literal["imagenet", "none"] = "imagenet"
    corpus_size: int = 0  # pairs used from the corpus; 0: all
    seed: int = 0
    num_workers: int = 4
    checkpoint_every: int = 500
    ddp_workers: int = 1  # DDP processes through Ray Train (one GPU each when there are GPUs); batch_size is per process
    gather_negatives: bool = False  # contrastive negatives from every process (PRIOR's code) or per process (IMITATE's)

    def validate(self) -> None:
        for key in ("image_size", "batch_size", "epochs", "text_max_length"):
            if getattr(self, key) < 1:
                raise UserError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.batch_size < 2:
            raise UserError("batch_size must be >= 2 for in-batch contrastive negatives")
        if self.lr <= 0 or self.lr_restart_epochs < 0:
            raise UserError("lr must be > 0 and lr_restart_epochs >= 0")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise UserError(f"adam_betas needs two values in [0, 1), got {list(self.adam_betas)}")
        if self.ddp_workers < 1:
            raise UserError(f"ddp_workers must be >= 1, got {self.ddp_workers}")
        for key in ("max_steps", "corpus_size", "num_workers", "checkpoint_every"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be >= 0, got {getattr(self, key)}")


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
    image_stats = (IMAGENET_MEAN, IMAGENET_STD)  # input normalisation of pre-training (and zero-shot)

    @classmethod
    def has_joint_space(cls) -> bool:
        """Whether the method embeds text (zero-shot and retrieval need it)."""
        return cls.embed_texts is not Method.embed_texts

    @classmethod
    def fingerprint(cls, cfg: MethodConfig) -> str:
        """What identifies the encoder beyond the config (e.g. a checkpoint file's content)."""
        return ""

    def __init__(self, cfg: MethodConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNetStages(cfg.backbone_weights)

    @property
    def name(self) -> str:
        return type(self).__name__.lower()

    def train_transform(self) -> Callable:
        from benchmark.data.transforms import ImitateViews

        return ImitateViews(self.cfg.image_size)

    def prepare(self, corpus) -> None:
        """Per-corpus precomputation; default: frozen embeddings of ``text_fields``."""
        if self.text_fields:
            from methods.text_cache import text_bank

            self.attach_text(text_bank(self.text_cache, corpus, self.text_fields))

    @property
    def text_cache(self):
        """The frozen text encoder's per-text cache (built on first use)."""
        if getattr(self, "_text_cache", None) is None:
            from methods.text_cache import TextEmbeddingCache

            cfg = self.cfg
            device = "cuda" if torch.cuda.is_available() else "cpu"
            self._text_cache = TextEmbeddingCache(cfg.text_encoder, cfg.text_max_length, cfg.text_pooling, device=device)
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

    def image_encoder(self) -> ResNetStages:
        """The module transferred downstream."""
        return self.backbone

    def rng_state(self) -> dict:
        """Method-owned random state (e.g. channel draws), saved in checkpoints."""
        return {}

    def load_rng_state(self, state: dict) -> None:
        pass
