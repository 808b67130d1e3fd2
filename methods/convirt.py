"""ConVIRT (Zhang et al. 2020; MGCA's re-implementation): global image and text
embeddings through non-linear heads, bidirectional InfoNCE weighted 0.75 / 0.25,
one random report sentence per sample per step as text augmentation.

Deliberate differences from the authors' code (see shared reference/methods.md):

- Loss: the ConVIRT paper's ``0.75 CE(S, I) + 0.25 CE(S.T, I)`` at tau 0.1, as the
  ConVIRT-pytorch port does (edreisMD/ConVIRT-pytorch ``loss/nt_xent.py``,
  ``config.yaml``: alpha_weight 0.75, temperature 0.1). MGCA's own ConVIRT
  (HKU-MedAI/MGCA ``mgca/models/convirt/convirt_module.py``, ``info_nce_loss``) is the
  unweighted sum ``CE(S, I) + CE(S.T, I)`` at ``softmax_temperature`` 0.07;
  ``--set image_weight=0.5 --set temperature=0.07`` gives half of it (the same
  gradient direction; Adam-type updates ignore the factor 2 up to epsilon and decay).
- Optimiser: the loop's AdamW (decoupled weight decay 1e-6) and one cosine decay
  over the run, where the paper uses Adam (L2 1e-6) with plateau decay on a
  validation loss the harness does not have.
- Sentences come from ``methods.sentences.split_sentences`` (findings then
  impression), are tokenised once per corpus and drawn with a method-owned
  generator, so a resumed run repeats the draws.
- ``head: mlp`` (Linear-ReLU-Linear to 512, the paper and its port) is the default;
  ``head: bn`` is MGCA's Linear-BN-ReLU-Linear-BN (set ``embed_dim: 128`` with it).
  ``text_unit: report`` aligns the whole report instead (MGCA's data pipeline).
- Text is the [CLS] state of the last layer (MGCA); the port mean-pools and runs
  its text heads under ``no_grad`` (a bug, not copied). Frozen: the embeddings and
  first 6 layers, as the paper says (the port freezes layers 0-6 and not the embeddings).
- Image augmentation as the reference lists it (no affine / blur): random resized
  crop 0.8-1.0, flip, brightness/contrast jitter of +-40 % (magnitude our choice),
  mean/std 0.5 as MGCA and the downstream protocol (the port uses ImageNet's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import Positive, Range, Share, Width
from benchmark.data.transforms import HALF
from benchmark.methods.base import Method, MethodConfig
from benchmark.methods.losses import asymmetric_infonce
from benchmark.methods.sentences import report_sentences
from benchmark.models.backbones import pooled
from benchmark.models.encoders import DrawsTextUnits, TextTower, projection_head
from benchmark.registry import METHODS


@dataclass
class ConvirtConfig(MethodConfig):
    head: Literal["mlp", "bn"] = "mlp"
    embed_dim: Width = 512
    temperature: Positive = 0.1
    image_weight: Share = 0.75  # lambda: weight of the image->text direction
    text_unit: Literal["sentence", "report"] = "sentence"
    text_freeze_layers: Annotated[int, Range(0, 64)] = 6  # embeddings + first 6 BERT layers frozen (paper)


def make_head(kind: str, in_dim: int, out_dim: int) -> nn.Sequential:
    """mlp: Linear(in, in)-ReLU-Linear(in, out), the paper's; bn: MGCA's BN head (hidden 2048)."""
    if kind == "bn":
        return projection_head(in_dim, 2048, out_dim)
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))


@METHODS.register("convirt")
class Convirt(DrawsTextUnits, Method):
    config_class = ConvirtConfig
    image_stats = HALF  # its pre-training normalisation (mean/std 0.5)
    views = 1

    def __init__(self, cfg: ConvirtConfig) -> None:
        super().__init__(cfg)
        self.text_tower = TextTower(cfg.text_encoder, cfg.text_max_length, freeze_layers=cfg.text_freeze_layers)
        self.image_head = make_head(cfg.head, self.backbone.pooled_dim, cfg.embed_dim)
        self.text_head = make_head(cfg.head, self.text_tower.dim, cfg.embed_dim)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def train_transform(self) -> Callable:
        from benchmark.data.transforms import CropJitterView

        return CropJitterView(self.cfg.image_size)

    def text_units(self, findings: str, impression: str) -> list[str]:
        """The report's sentences (findings then impression), or the whole report."""
        sentences = report_sentences(findings, impression)
        return sentences if self.cfg.text_unit == "sentence" else [" ".join(sentences)]

    # -- towers ---------------------------------------------------------------
    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_head(pooled(self.backbone, images))

    def text_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.text_head(self.text_tower(input_ids, attention_mask)[:, 0])

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_embedding(images), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        device = self.text_head[0].weight.device
        tok = {k: v.to(device) for k, v in self.text_tower.tokenize(texts).items()}
        return F.normalize(self.text_embedding(tok["input_ids"], tok["attention_mask"]), dim=-1)

    # -- the step -------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids, mask = self.drawn_tokens(batch["index"])
        image, text = self.negatives(self.image_embedding(batch["view1"]), self.text_embedding(ids, mask))
        loss, image_text, text_image = asymmetric_infonce(image, text, self.cfg.temperature, self.cfg.image_weight)
        return {"loss": loss, "image_text": image_text.detach(), "text_image": text_image.detach()}
