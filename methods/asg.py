"""ASG (Li et al., MICCAI 2024): anatomical structure-guided medical VLP.

- IRA: global image/report InfoNCE (pooled layer4 and the report's [CLS], both
  through Linear-BN-ReLU-Linear-BN heads; tau 0.07, CE + CE.T).
- ARSA: RoIAlign (1 x 1) of the L2-normalised layer3 embedding map over 23
  template anatomical boxes, against the mean embedding of the sentences the
  keyword rules send to each region; negatives only from the same image
  (R x R logits, regions without a sentence masked).
- ERL: soft targets ``rownorm(0.8 I + 0.2 y y^T + 1e-6)`` from report tags y;
  loss = 1/4 of the four KL terms (see ``losses.symmetric_kl_loss``).
- IRL (``tag_decoder: true``): tag-name embeddings from the frozen text encoder
  query the layer3 patches in a 4-layer pre-norm transformer decoder; BCE, x 5.

Deliberate differences from the authors' code:

- Boxes, sentence-to-region rules and tags are our own (``anatomy_rules``): the
  authors never released theirs. 14 CheXpert-like tags instead of their 40.
  The boxes are a fixed template, so the augmentation is resize + random crop
  only (as ASG's; no flip, which would swap sides), and the crop is not applied
  to the boxes (the reference moves its per-image boxes with the crop).
- A sentence embedding is the mean of its tokens' normalised embeddings (the
  reference first sums word pieces into words); region embeddings and RoI
  features are re-normalised, so ARSA logits are cosines / tau (the reference
  uses dot products of averaged unit vectors).
- The local heads see only tokens that belong to a sentence (the reference's
  Conv1d head also sees padding in its BatchNorm statistics).
- No 299-px upsampling of the input; the IRL decoder gets a Linear from the
  layer3 patches (1024-d on ResNet-50) to the text width (the reference's decoder matches a
  ViT's width only).
- Schedule: the loop's cosine (warm restarts; the YAML's period is the whole
  run) without the reference's linear warm-up over the first 40 % of steps;
  AdamW betas (0.9, 0.999) as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from benchmark.config import Layers, NonNegative, Positive, Range, Share, Width
from benchmark.methods.anatomy_rules import TAG_NAMES, assign_regions, region_boxes, report_tags
from benchmark.methods.base import Method, MethodConfig
from benchmark.methods.losses import (
    cosine_logits,
    infonce_loss,
    region_alignment_loss,
    symmetric_kl_loss,
    tag_soft_targets,
)
from benchmark.methods.sentences import ReportTokens, corpus_reports, pool_sentences
from benchmark.models.encoders import TextTower, projection_head, spatial_patches
from benchmark.registry import METHODS


@dataclass
class AsgConfig(MethodConfig):
    embed_dim: Width = 128
    hidden_dim: Width = 2048
    keep_layers: Annotated[int, Range(0, 64)] = 6  # Bio_ClinicalBERT's first 6 layers (0: all)
    max_sentences: Annotated[int, Range(1, 255)] = 16
    temperature: Positive = 0.07
    arsa_weight: NonNegative = 1.0
    erl_weight: NonNegative = 1.0
    soft_label_weight: Share = 0.2  # ERL targets: (1 - w) I + w y y^T
    tag_decoder: bool = False  # IRL
    tag_weight: NonNegative = 5.0
    decoder_layers: Layers = 4


class TagDecoder(nn.Module):
    """ASG's IRL head: one query per tag (frozen text embedding of its name)
    attends to the image patches; one logit per tag."""

    def __init__(self, dim: int, image_dim: int, layers: int, heads: int = 4) -> None:
        super().__init__()
        self.memory = nn.Linear(image_dim, dim)
        layer = nn.TransformerDecoderLayer(dim, heads, 1024, 0.1, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim))
        self.head = nn.Linear(dim, 1)

    def forward(self, queries: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        q = queries.to(patches.dtype).unsqueeze(0).expand(len(patches), -1, -1)
        return self.head(self.decoder(q, self.memory(patches))).squeeze(-1)


@METHODS.register("asg")
class Asg(Method):
    config_class = AsgConfig
    needs_pyramid = "RoIAlign of anatomical boxes on the stride-16 stage (layer3)"
    views = 1

    def __init__(self, cfg: AsgConfig) -> None:
        super().__init__(cfg)
        self.text_tower = TextTower(cfg.text_encoder, cfg.text_max_length, keep_layers=cfg.keep_layers)
        d, h, e = self.text_tower.dim, cfg.hidden_dim, cfg.embed_dim
        self.image_global = projection_head(self.backbone.channels[3], h, e)
        self.image_local = projection_head(self.backbone.channels[2], h, e)
        self.text_global = projection_head(d, h, e)
        self.text_local = projection_head(d, h, e)
        self.register_buffer("boxes", region_boxes(), persistent=False)
        self.tag_decoder = TagDecoder(d, self.backbone.channels[2], cfg.decoder_layers) if cfg.tag_decoder else None
        self.register_buffer("tag_queries", torch.zeros(len(TAG_NAMES), d))
        self.reports: ReportTokens | None = None

    def train_transform(self):
        from benchmark.data.transforms import CropViews

        return CropViews(self.cfg.image_size)

    def prepare(self, corpus) -> None:
        """Tokenise once; sentence-to-region assignments and tags per report."""
        cfg = self.cfg
        reports = corpus_reports(corpus)
        self.reports = ReportTokens(self.text_tower.tokenizer, reports, cfg.text_max_length, cfg.max_sentences)
        regions = [assign_regions(s, cfg.max_sentences) for s in self.reports.kept]
        self.register_buffer("regions", torch.stack(regions), persistent=False)
        self.register_buffer("tags", torch.stack([report_tags(s) for s in reports]), persistent=False)
        if self.tag_decoder is not None:
            self.tag_queries.copy_(self.text_cache.encode(list(TAG_NAMES)))

    # -- pieces ---------------------------------------------------------------
    def region_features(self, fmap: torch.Tensor) -> torch.Tensor:
        """RoIAlign (1 x 1) of the normalised local embedding map over the template boxes: B x R x E."""
        b, _, h, w = fmap.shape
        local = self.image_local(spatial_patches(fmap).flatten(0, 1)).float()
        local = F.normalize(local, dim=-1).view(b, h * w, -1).transpose(1, 2).reshape(b, -1, h, w)
        boxes = self.boxes * torch.tensor([w, h, w, h], device=fmap.device, dtype=torch.float32)
        owner = torch.arange(b, device=fmap.device, dtype=torch.float32).repeat_interleave(len(boxes))
        rois = torch.cat([owner[:, None], boxes.repeat(b, 1)], dim=1)
        return roi_align(local, rois, output_size=1, spatial_scale=1.0, aligned=True).view(b, len(boxes), -1)

    def region_texts(self, tokens: torch.Tensor, sentence_index: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """Mean embedding of the sentences assigned to each region: B x R x E."""
        inside = sentence_index[:, : tokens.shape[1]] > 0
        proj = F.normalize(self.text_local(tokens[inside]).float(), dim=-1)
        words = proj.new_zeros(*inside.shape, proj.shape[-1])
        words[inside] = proj
        sents, _ = pool_sentences(words, sentence_index, self.cfg.max_sentences)
        a = regions.to(sents.dtype)
        return a @ sents / a.sum(-1, keepdim=True).clamp(min=1)

    # -- joint space (zero-shot, retrieval): pooled layer4 <-> report [CLS] ------
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_global(self.backbone(images)[-1].mean(dim=(2, 3))), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tok = {k: v.to(self.boxes.device) for k, v in self.text_tower.tokenize(list(texts)).items()}
        return F.normalize(self.text_global(self.text_tower(**tok)[:, 0]), dim=-1)

    # -- the step -------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, index = self.cfg, batch["index"]
        if self.reports is None:
            raise RuntimeError("call prepare(corpus) before training_step")
        feats = self.backbone(batch["view1"])
        image = self.image_global(feats[3].mean(dim=(2, 3)))
        ids, mask, sentence_index = self.reports(index)
        tokens = self.text_tower(ids, mask)
        report = self.text_global(tokens[:, 0])

        tags = self.tags[index]
        g_image, g_report, g_tags = self.negatives(image, report, tags)
        terms = {"ira": infonce_loss(g_image, g_report, cfg.temperature)}
        regions = self.regions[index]
        terms["arsa"] = region_alignment_loss(
            self.region_features(feats[2]), self.region_texts(tokens, sentence_index, regions), regions.any(-1), cfg.temperature
        )
        logits = cosine_logits(g_image, g_report, cfg.temperature)
        terms["erl"] = symmetric_kl_loss(logits, tag_soft_targets(g_tags, 1 - cfg.soft_label_weight, cfg.soft_label_weight))
        loss = terms["ira"] + cfg.arsa_weight * terms["arsa"] + cfg.erl_weight * terms["erl"]
        if self.tag_decoder is not None:
            scores = self.tag_decoder(self.tag_queries, spatial_patches(feats[2]))
            terms["irl"] = F.binary_cross_entropy_with_logits(scores.float(), tags)
            loss = loss + cfg.tag_weight * terms["irl"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}
