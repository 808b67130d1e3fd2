"""IMITATE (Liu et al., IEEE TMI 44(1) 2025): hierarchical findings/impression
alignment with the clinical-informed contrastive loss (CICL).

Faithful to the authors' code (see shared reference/methods.md) with these
deliberate differences:

- The backbone runs once per view per step. The code runs it four times (two
  views x two channel draws), but the impression embedding does not depend on
  the draw and the findings branch only needs the stage maps, so the second
  draw reuses them. Same loss; BN running statistics see 2 updates per step
  instead of 4.
- Frozen text-encoder outputs come from a per-corpus cache instead of two
  BERT passes per step; the encoder runs in eval mode (the code leaves dropout on).
- Findings terms are masked per sample when a report has no findings (the
  code's attempt indexes a scalar and crashes): the image/findings-text CICL is
  computed over the samples that have findings, and skipped below two.
- Channel tokens: one random draw per branch call, shared by the batch, with
  replacement, as in the code; draws come from a method-owned generator so a
  resumed run repeats them.
- The findings branch's self-attention is computed for the [CLS] query only (the
  only output used): same values, without the 513 x 513 score matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.config import Layers, NonNegative, Positive, Range, Share, Width
from benchmark.distributed import global_min
from benchmark.errors import UserError
from benchmark.methods.base import Method, MethodConfig
from benchmark.methods.losses import cicl_loss
from benchmark.models.backbones import backbone_shape, require_pyramid
from benchmark.models.encoders import STAGE_CHANNELS, projection_head
from benchmark.registry import METHODS


@dataclass
class ImitateConfig(MethodConfig):
    hierarchical: bool = True  # off: one global branch aligned to the whole report
    loss: Literal["cicl", "infonce"] = "cicl"
    cicl_ratio: Share = 0.2
    view_view: bool = True
    channel_keep: tuple[Annotated[float, Range(0, 1, lo_open=True)], ...] = (0.25, 0.15, 0.10, 0.10)
    temperature: Positive = 0.07  # image-text terms
    view_temperature: Positive = 0.2  # view-view terms
    findings_weight: NonNegative = 1.0  # lambda
    view_weight: NonNegative = 2.0
    token_pool: Annotated[int, Range(1, 64)] = 16  # channel maps pooled to 16 x 16 -> 256-d tokens
    max_tokens: Width = 512
    attn_heads: Layers = 4
    embed_dim: Width = 512

    def validate(self) -> None:
        super().validate()
        if self.hierarchical:  # channel tokens come from a CNN's stage maps
            require_pyramid(self.backbone, "imitate", "the findings branch takes channel tokens from each stage; "
                            "hierarchical=false needs only the pooled feature")
        channels = backbone_shape(self.backbone).channels
        if len(self.channel_keep) != len(channels):
            raise UserError(f"channel_keep needs {len(channels)} fractions in (0, 1], one per stage of {self.backbone}; "
                            f"got {list(self.channel_keep)}")
        tokens = sum(token_counts(self.channel_keep, channels))
        if tokens > self.max_tokens:
            raise UserError(f"channel_keep gives {tokens} tokens, more than max_tokens={self.max_tokens}")
        if (self.token_pool**2) % self.attn_heads:
            raise UserError(f"token_pool**2 ({self.token_pool**2}) must be divisible by attn_heads ({self.attn_heads})")


def token_counts(keep: tuple[float, ...], channels: tuple[int, ...] = STAGE_CHANNELS) -> list[int]:
    """Channels kept per stage: 25/15/10/10 % of ResNet-50's 256/512/1024/2048 -> 64/76/102/204
    (of ResNet-18/34's 64/128/256/512 -> 16/19/25/51; of ConvNeXt-T's 96/192/384/768 -> 24/28/38/76)."""
    return [max(1, int(c * k)) for c, k in zip(channels, keep)]


class ChannelTokenBranch(nn.Module):
    """Findings ("descriptive") branch: every kept channel of every stage is a token
    (its map pooled to pool x pool and flattened), zero-padded to ``max_tokens``,
    plus a learnable [CLS]; one residual multi-head self-attention; [CLS] -> head."""

    def __init__(self, keep: tuple[float, ...], pool: int, max_tokens: int, heads: int, out_dim: int,
                 channels: tuple[int, ...] = STAGE_CHANNELS) -> None:
        super().__init__()
        self.channels = tuple(channels)
        self.counts = token_counts(keep, self.channels)
        self.pool, self.max_tokens = pool, max_tokens
        dim = pool * pool
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        self.pos = nn.Parameter(torch.zeros(1, max_tokens + 1, dim))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.head = projection_head(dim, dim, out_dim)

    def draw(self, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """One channel draw (indices per stage, with replacement), shared by the batch."""
        return [torch.randint(c, (k,), generator=generator) for c, k in zip(self.channels, self.counts)]

    def tokens(self, feats: list[torch.Tensor], draw: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for f, idx in zip(feats, draw):
            picked = f.index_select(1, idx.to(f.device))  # select before pooling: same result, less work
            parts.append(F.adaptive_avg_pool2d(picked, self.pool).flatten(2))
        x = torch.cat(parts, dim=1)
        return F.pad(x, (0, 0, 0, self.max_tokens - x.shape[1]))

    def forward(self, feats: list[torch.Tensor], draw: list[torch.Tensor]) -> torch.Tensor:
        x = self.tokens(feats, draw)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1) + self.pos.to(x.dtype)
        # Only the [CLS] output is used, and each query's attention row is independent of
        # the others: attending from [CLS] alone gives the same output as the full
        # self-attention at 1/513 of the score work (keys and values still see every token).
        cls = x[:, :1]
        return self.head((cls + self.attn(cls, x, x, need_weights=False)[0])[:, 0])


@METHODS.register("imitate")
class Imitate(Method):
    config_class = ImitateConfig

    def __init__(self, cfg: ImitateConfig, text_dim: int | None = None) -> None:
        super().__init__(cfg)
        text_dim = text_dim or self.text_cache.dim
        self.text_fields = ("findings", "impression") if cfg.hierarchical else ("report",)
        channels = self.backbone.channels
        self.impression_head = projection_head(channels[-1], channels[-1], cfg.embed_dim)
        self.findings_branch = (
            ChannelTokenBranch(cfg.channel_keep, cfg.token_pool, cfg.max_tokens, cfg.attn_heads, cfg.embed_dim, channels)
            if cfg.hierarchical
            else None
        )
        self.text_projection = projection_head(text_dim, 1024, cfg.embed_dim)  # shared by findings and impression
        self.generator = torch.Generator().manual_seed(cfg.seed)

    # -- joint space (zero-shot, retrieval): impression branch <-> projected text --
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.impression(self.backbone(images)), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        raw = self.text_cache.encode(list(texts)).to(self.text_projection[0].weight.device)
        return F.normalize(self.text_projection(raw), dim=-1)

    # -- pieces ---------------------------------------------------------------
    def impression(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.impression_head(feats[-1].mean(dim=(2, 3)))

    def findings(self, feats: list[torch.Tensor], draw: list[torch.Tensor] | None = None) -> torch.Tensor:
        assert self.findings_branch is not None
        return self.findings_branch(feats, draw if draw is not None else self.findings_branch.draw(self.generator))

    def _cicl(self, a, b, prior, temperature):
        prior = prior if self.cfg.loss == "cicl" else None
        a, b, prior = self.negatives(a, b, prior)
        return cicl_loss(a, b, prior, temperature, self.cfg.cicl_ratio)

    # -- the step -------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor], draws: list[list[torch.Tensor]] | None = None):
        """``draws``: four channel draws (view1, view2, view1', view2') to pin the
        randomness (tests, the naive-vs-optimised comparison); default: fresh ones."""
        cfg, index = self.cfg, batch["index"]
        feats1, feats2 = self.backbone(batch["view1"]), self.backbone(batch["view2"])
        imp1, imp2 = self.impression(feats1), self.impression(feats2)
        zero = imp1.new_zeros(()).float()
        terms: dict[str, torch.Tensor] = {}

        if not cfg.hierarchical:
            e = self.text("report", index)
            u = self.text_projection(e)
            terms["report_text"] = self._cicl(imp1, u, e, cfg.temperature) + self._cicl(imp2, u, e, cfg.temperature)
            terms["view_impression"] = self._cicl(imp1, imp2, e, cfg.view_temperature) if cfg.view_view else zero
            loss = terms["report_text"] + cfg.view_weight * terms["view_impression"]
            return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

        draws = draws or [self.findings_branch.draw(self.generator) for _ in range(4)]
        e_imp = self.text("impression", index)
        u_imp = self.text_projection(e_imp)
        terms["impression_text"] = self._cicl(imp1, u_imp, e_imp, cfg.temperature) + self._cicl(
            imp2, u_imp, e_imp, cfg.temperature
        )

        has = self.text("has_findings", index)
        terms["findings_text"] = zero
        if global_min(int(has.sum())) >= 2:  # BN and a contrast both need two samples (in every DDP process alike)
            e_find = self.text("findings", index)[has]
            u_find = self.text_projection(e_find)
            find1 = self.findings(feats1, draws[0])[has]
            find2 = self.findings(feats2, draws[1])[has]
            terms["findings_text"] = self._cicl(find1, u_find, e_find, cfg.temperature) + self._cicl(
                find2, u_find, e_find, cfg.temperature
            )

        terms["view_impression"] = terms["view_findings"] = zero
        if cfg.view_view:
            terms["view_impression"] = self._cicl(imp1, imp2, e_imp, cfg.view_temperature)
            terms["view_findings"] = self._cicl(
                self.findings(feats1, draws[2]), self.findings(feats2, draws[3]), None, cfg.view_temperature
            )
        lam = cfg.findings_weight
        loss = (
            terms["impression_text"]
            + lam * terms["findings_text"]
            + cfg.view_weight * terms["view_impression"]
            + cfg.view_weight * lam * terms["view_findings"]
        )
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}}

    def rng_state(self) -> dict:
        return {"channel_draws": self.generator.get_state()}

    def load_rng_state(self, state: dict) -> None:
        if "channel_draws" in state:
            self.generator.set_state(state["channel_draws"])
