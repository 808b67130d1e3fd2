"""``open_clip``: any open_clip model (by name, Hugging Face Hub id or local checkpoint) on
every task kind, with its own preprocessing and tokenizer. Not pre-trained here
(``pretrains = False``), like ``checkpoint``: the encoder is ready when built.

- ``model`` / ``weights``: what loads, from where (``methods.openclip_models``);
  ``weights=none`` is the architecture randomly initialised (seeded by ``seed``).
- ``image_size``: 0 (default) is the model's own input size; another value forces it
  (open_clip resizes pretrained position embeddings). The cpu and smoke profiles set
  every method's ``image_size`` (64 / 32 px), so there the towers run at the task size.
- Zero-shot and retrieval: ``encode_image`` / ``encode_text`` in the model's joint space,
  both L2-normalised; the score is their cosine (the harness's convention for every
  method: no ``logit_scale``, which would not change a ranking or an argmax). Images
  come with the model's own mean/std (``image_stats``) and are resized to its input size.
- Linear probe, segmentation, detection: the image tower as a backbone of the
  ``open_clip`` family (``methods.openclip_backbone``: what the levels and the pooled
  feature are, and why).

The transferred encoder is the tower's state dict (``visual.*``) with its spec
(``image_encoder().arch``); the whole model (``model.*``) is kept for the joint-space tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import Range
from benchmark.errors import UserError
from benchmark.methods.base import Method, MethodConfig, files_digest
from benchmark.models.openclip_backbone import OpenClipTower, tower_of
from benchmark.models.openclip_models import (
    DEFAULT,
    LOCAL,
    NO_WEIGHTS,
    create_model,
    create_tokenizer,
    resolve_name,
)
from benchmark.registry import METHODS


@dataclass
class OpenClipConfig(MethodConfig):
    model: str = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    weights: str = DEFAULT  # default (a hub/folder model's own) | none | a pretrained tag | a checkpoint file
    image_size: Annotated[int, Range(0, 4096)] = 0  # 0: the model's own

    def validate(self) -> None:
        super().validate()
        if not self.model.strip():
            raise UserError("model must not be empty: an open_clip model name, hf-hub:ORG/NAME or a model folder")
        if not self.weights.strip():
            raise UserError(f"weights must not be empty: {DEFAULT}, {NO_WEIGHTS}, a pretrained tag or a checkpoint file")


@METHODS.register("open_clip")
class OpenClip(Method):
    """An open_clip model; its image tower is the transferred encoder."""

    config_class = OpenClipConfig
    pretrains = False

    def __init__(self, cfg: OpenClipConfig) -> None:
        nn.Module.__init__(self)  # not Method.__init__: the image encoder is the model's tower, not a ResNet
        self.cfg = cfg
        name = resolve_name(cfg.model)
        self.model = create_model(name, cfg.weights, cfg.image_size, seed=cfg.seed)
        self.tokenizer = create_tokenizer(name, cfg.weights)
        tower = tower_of(self.model, name)
        object.__setattr__(self, "_tower", tower)  # shares model.visual; not a submodule, so the state is model.* once
        self.image_stats = (tuple(tower.arch["mean"]), tuple(tower.arch["std"]))

    @classmethod
    def fingerprint(cls, cfg: OpenClipConfig) -> str:
        """A local folder's or weights file's content identifies the encoder (the same path may hold
        new weights); a name, tag or hub id identifies it by itself."""
        name = resolve_name(cfg.model)
        random = cfg.weights.strip() == NO_WEIGHTS
        files: list[Path] = []
        if name.startswith(LOCAL):  # the config is the architecture, the rest the weights
            folder = Path(name[len(LOCAL):])
            files = sorted(p for p in folder.iterdir() if p.is_file() and (not random or p.name == "open_clip_config.json"))
        elif not random and Path(cfg.weights).expanduser().is_file():
            files = [Path(cfg.weights).expanduser()]
        return files_digest(files) if files else ""

    def image_encoder(self) -> OpenClipTower:
        return self._tower

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` normalised with ``image_stats``; resized to the tower's input size."""
        size = self._tower.image_size
        if tuple(images.shape[-2:]) != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return F.normalize(self.model.encode_image(images), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        return F.normalize(self.model.encode_text(self.tokenizer(list(texts)).to(device)), dim=-1)
