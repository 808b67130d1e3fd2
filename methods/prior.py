"""PRIOR (Cheng et al., ICCV 2023): prototype representation joint learning from
chest X-rays and reports, stages 1, 2 and (``reconstruction: true``) 3.

Text units are sentences: the whole report is encoded once, token states are
averaged per sentence and projected (Linear), and a report is an attention pool
over its sentences. Image patches are layer4 positions projected (Linear); an
image is an attention pool over them. Losses: global CLIP loss with a learnable
logit scale; local sigmoid cross-attention between patches and sentences, with
SimSiam between each patch and its sentence-conditioned context and InfoNCE
among one report's sentences vs their image-conditioned contexts; stage 2 swaps
sentence embeddings for their sentence-prototype-bank (SPB) mixture and adds
``prototype_weight * mean|SPB(S) - S|`` (``prototype`` is logged unweighted).

Stage 3 (``reconstruction: true``, after ``stage1_fraction + stage2_fraction`` of
the steps) adds conditional cross-modality reconstruction, as the code's
``stage3_step``:

- ``rec_image``: the patch embeddings as a map (B x E x h x w), channel-dropped
  (``Dropout2d(image_rec_dropout)``), concatenated with each patch's
  sentence-conditioned context (the cross-attention output), decoded by 5
  blocks (nearest x2 upsampling, two conv3x3-BN-ReLU, channels halved from 2E)
  and a conv3x3 head to the input's channels: 32 x the layer4 size (7 -> 224 px,
  1 -> 32 px); L1 against the (normalised) input, resized if the sizes differ.
- ``spg``: ``num_queries`` learnable queries decoded against the patch
  embeddings give generated sentence embeddings; per report the Hungarian
  algorithm (L1 cost) matches them one-to-one to the report's real sentences
  after the SPB; L1 to the matched sentence, and to 0 for a query left without
  one (the code's zero padding rows: its "no sentence" target; there is no
  classification term). With more real sentences than queries the costliest
  stay unmatched (the code truncates reports to ``num_queries`` sentences).
  Mean over queries x dims, weighted by ``prototype_weight`` (logged unweighted).
- ``spg_kl``: KL(real || generated) between the SPB affinity distributions
  (softmax of dot products with the prototypes) of each real sentence and its
  matched generated one, mean over matched sentences (the code's ``kl_loss``).
- ``gpa``: the matched generated sentences, through the SPB and the sentence
  pool, against the real report embedding with the CLIP loss (same logit scale).

Stage 3's total, as the code: ``stage3_global_weight * global + local_image +
local_text + prototype_weight * (prototype + spg) + spg_kl + gpa + rec_image``.

Deliberate differences from the authors' code:

- Patches are SPATIAL POSITIONS (``flatten(2).transpose(1, 2)``); the code's
  ``.view(B, -1, C)`` without a permute makes channel groups into "patches" (bug).
- The Hungarian matching is applied the right way round: row i of the cost
  (generated i) is matched to column ``col[i]``, so generated i regresses to
  real sentence ``col[i]``. The code indexes the generated rows with the
  column indices (``logit[col]``), i.e. applies the inverse permutation (bug),
  which also misaligns its KL pairs and the generated report of ``gpa``.
- Padded sentence slots are left out of the matching (the code matches against
  zero rows standing for padding); queries left unmatched still regress to 0.
- Sentence generator: a ``nn.TransformerDecoder`` (``decoder_layers`` post-norm
  layers, ``pool_heads`` heads, GELU, 4E feed-forward, dropout 0.1) over an input
  LayerNorm of the learned queries, with no causal mask (a set prediction).
  The code uses an 8-layer BERT decoder built from Bio_ClinicalBERT's config
  (12 heads, position and token-type embeddings added to the queries); its
  comment says "no causal mask" but ``is_decoder=True`` makes transformers apply one.
- The image decoder's block sizes double the layer4 map (the code hard-codes
  14..224 for 7x7) and it outputs the input's 3 channels (the code: 1); the
  patch map is the spatial layout of the patches (the code's ``.view`` again).
- Stages switch inside one run: stage 1 for the first ``stage1_fraction`` of the
  steps (the paper: 20 of 50 epochs), then stage 2, then (``reconstruction``)
  stage 3 after ``stage1_fraction + stage2_fraction``; ``stage: 1`` never uses
  the SPB and cannot reconstruct. The code's stage-3 run is 20/30/50 of 100
  epochs (``epochs: 100, stage1_fraction: 0.2, stage2_fraction: 0.3``). The code
  builds a new optimiser with linear warm-up + cosine per stage (stage 3: lr
  5e-6, 5 warm-up epochs); here the loop's single AdamW and cosine schedule
  (warm restarts; the YAML's period is the whole run) carry over, without warm-up.
- Both logit scales (init 100) are clamped to at most 100, as CLIP does.
- Sentences are capped at ``max_sentences`` and padded; padding is masked in the
  attention, the pools and the within-report InfoNCE (the code loops over
  variable-length reports). Sentence order is fixed (the corpus is tokenised
  once; the code shuffles sentences at every load).
- In eval mode the SPB mixture is a plain softmax, without Gumbel noise, so
  embeddings are deterministic.
- 3-channel ImageNet-normalised input and the shared augmentation (the code: 1
  channel, resize + affine +-5 deg + flip); the image pool's positional
  embedding is sized from ``image_size`` and interpolated for other sizes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from benchmark.config import Layers, NonNegative, Positive, Range, Share, Width
from benchmark.errors import UserError
from benchmark.methods.base import Method, MethodConfig
from benchmark.methods.losses import clip_loss, simsiam_loss, within_report_infonce
from benchmark.methods.sentences import (
    ReportTokens,
    corpus_reports,
    pool_sentences,
    split_sentences,
)
from benchmark.models.encoders import TextTower, spatial_patches
from benchmark.registry import METHODS

MAX_LOGIT_SCALE = 100.0


@dataclass
class PriorConfig(MethodConfig):
    embed_dim: Annotated[int, Range(2, 65536)] = 768
    max_sentences: Annotated[int, Range(1, 255)] = 16
    temperature: Positive = 0.01  # the global logit scale starts at 1 / temperature
    local_temperature: Positive = 0.01  # the within-report InfoNCE's scale starts at 1 / local_temperature
    pool_heads: Layers = 8
    stage: Literal[1, 2] = 2
    stage1_fraction: Share = 0.4  # stage 2 only: share of the steps run as stage 1 first
    prototypes: Width = 512
    prototype_tau: Positive = 0.9
    prototype_weight: NonNegative = 10.0
    reconstruction: bool = False  # stage 3 after stage1_fraction + stage2_fraction of the steps
    stage2_fraction: Share = 0.3  # reconstruction only: share of the steps run as stage 2
    image_rec_dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.5  # channel dropout of the patch map fed to the image decoder
    num_queries: Width = 16  # generated sentences per image
    decoder_layers: Layers = 8  # sentence generator depth
    stage3_global_weight: NonNegative = 10.0  # the code's weight of the global loss in stage 3

    def validate(self) -> None:
        super().validate()
        if self.reconstruction:
            if self.stage != 2:
                raise UserError("reconstruction (PRIOR stage 3) needs the sentence prototype bank: set stage=2")
            if self.stage1_fraction + self.stage2_fraction > 1:
                raise UserError("stage1_fraction + stage2_fraction must be <= 1 with reconstruction")
            if self.embed_dim < 16:
                raise UserError(f"reconstruction needs embed_dim >= 16 (the image decoder halves 2E channels 5 times), got {self.embed_dim}")
        if self.embed_dim % self.pool_heads:
            raise UserError(f"embed_dim ({self.embed_dim}) must be divisible by pool_heads ({self.pool_heads})")


class AttentionPool(nn.Module):
    """CLIP-style attention pooling: the (masked) mean token queries [mean; tokens]
    through one multi-head attention. ``grid`` > 0 adds a learned positional
    embedding for a grid x grid map (interpolated for other maps)."""

    def __init__(self, dim: int, heads: int, grid: int = 0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.pos = nn.Parameter(torch.randn(grid * grid + 1, dim) / dim**0.5) if grid else None

    def positions(self, n: int) -> torch.Tensor:
        if n + 1 == len(self.pos):
            return self.pos
        g, side = math.isqrt(len(self.pos) - 1), math.isqrt(n)
        grid = self.pos[1:].T.reshape(1, -1, g, g)
        grid = F.interpolate(grid, size=(side, side), mode="bilinear", align_corners=False).flatten(2)[0].T
        return torch.cat([self.pos[:1], grid])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None:
            mean = x.mean(1, keepdim=True)
        else:
            m = mask.unsqueeze(-1).to(x.dtype)
            mean = (x * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        x = torch.cat([mean, x], dim=1)
        if self.pos is not None:
            x = x + self.positions(x.shape[1] - 1).to(x.dtype)
        ignore = None if mask is None else F.pad(~mask, (1, 0))
        return self.attn(x[:, :1], x, x, key_padding_mask=ignore, need_weights=False)[0][:, 0]


class SigmoidCrossAttention(nn.Module):
    """PRIOR's local interaction: patches attend to sentences and sentences to
    patches with sigmoid (not softmax) weights; padded sentences weigh 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q_img, self.k_img, self.v_img, self.q_txt, self.k_txt, self.v_txt = (nn.Linear(dim, dim) for _ in range(6))
        self.scale = dim**-0.5

    def forward(self, patches: torch.Tensor, sentences: torch.Tensor, mask: torch.Tensor):
        """(patch contexts B x P x D from sentences, sentence contexts B x S x D from patches)."""
        to_sentences = torch.sigmoid(self.q_img(patches) @ self.k_txt(sentences).transpose(1, 2) * self.scale)
        to_patches = torch.sigmoid(self.q_txt(sentences) @ self.k_img(patches).transpose(1, 2) * self.scale)
        to_sentences = to_sentences * mask[:, None, :].to(to_sentences.dtype)
        return to_sentences @ self.v_txt(sentences), to_patches @ self.v_img(patches)


class SentencePrototypeBank(nn.Module):
    """PRIOR's SPB: K learnable prototypes; a sentence becomes the (soft)
    Gumbel-softmax mixture of prototypes by dot-product affinity. Eval mode: a
    plain softmax at the same temperature (deterministic)."""

    def __init__(self, dim: int, k: int, tau: float) -> None:
        super().__init__()
        self.embed = nn.Embedding(k, dim)  # N(0, 1), as in the reference
        self.tau = tau

    def affinity(self, x: torch.Tensor) -> torch.Tensor:
        """Dot products of sentences ``x`` (... x D) with every prototype (... x K)."""
        return x @ self.embed.weight.T.to(x.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixture, index of the heaviest prototype) for sentences ``x`` (... x D)."""
        logits = self.affinity(x)
        if self.training:
            w = F.gumbel_softmax(logits.float(), tau=self.tau, hard=False, dim=-1)
        else:
            w = F.softmax(logits.float() / self.tau, dim=-1)
        return w.to(x.dtype) @ self.embed.weight.to(x.dtype), w.argmax(-1)


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ImageDecoder(nn.Module):
    """PRIOR's conditional image decoder: channel-dropped patch map + its text
    context (2E channels) -> ``blocks`` x (nearest x2, conv-BN-ReLU x 2, channels
    halved) -> conv3x3 to ``out_channels``; output 2**blocks x the map size."""

    def __init__(self, dim: int, out_channels: int = 3, dropout: float = 0.5, blocks: int = 5) -> None:
        super().__init__()
        self.drop = nn.Dropout2d(dropout)
        chans = [2 * dim // 2**k for k in range(blocks + 1)]
        self.blocks = nn.ModuleList(nn.Sequential(conv_bn_relu(a, b), conv_bn_relu(b, b)) for a, b in itertools.pairwise(chans))
        self.head = nn.Conv2d(chans[-1], out_channels, 3, padding=1)

    def forward(self, patches: torch.Tensor, context: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Reconstruction (B x C x 32h x 32w) from patches and contexts (B x hw x E, row-major)."""
        def as_map(x: torch.Tensor) -> torch.Tensor:
            return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)

        z = torch.cat([self.drop(as_map(patches)), as_map(context)], dim=1)
        for block in self.blocks:
            z = block(F.interpolate(z, scale_factor=2, mode="nearest"))
        return self.head(z)


def reconstruction_loss(output: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """L1 between a reconstruction and the input, resized to the output if needed (the code's)."""
    if image.shape[-2:] != output.shape[-2:]:
        image = F.interpolate(image, size=output.shape[-2:], mode="bilinear", align_corners=True)
    return F.l1_loss(output.float(), image.float())


class SentenceGenerator(nn.Module):
    """Non-autoregressive sentence prototype generation: ``queries`` learned
    embeddings (N(0, 1), as the code) decoded against the patch embeddings by a
    transformer decoder without causal mask; one generated sentence per query."""

    def __init__(self, dim: int, queries: int, layers: int, heads: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(queries, dim))
        self.norm = nn.LayerNorm(dim)
        layer = nn.TransformerDecoderLayer(dim, heads, 4 * dim, dropout=0.1, activation="gelu", batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        """Generated sentences (B x Q x E) for patch embeddings ``memory`` (B x P x E)."""
        queries = self.norm(self.queries).to(memory.dtype).expand(memory.shape[0], -1, -1)
        return self.decoder(queries, memory)


def hungarian_match(cost: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per report, the minimum-cost one-to-one matching between generated
    sentences (rows of ``cost``, B x Q x S) and the report's real sentences
    (the columns where ``present``, B x S; padding never matches).

    Returns ``query_sentence`` (B x Q): the real sentence each generated one is
    matched to, and its inverse ``sentence_query`` (B x S); -1 where unmatched.
    ``linear_sum_assignment`` pairs row ``rows[k]`` with column ``cols[k]``: the
    target of generated ``rows[k]`` is sentence ``cols[k]``.
    """
    cost, present = cost.detach().float().cpu(), present.bool().cpu()
    query_sentence = torch.full(cost.shape[:2], -1, dtype=torch.long)
    sentence_query = torch.full((cost.shape[0], cost.shape[2]), -1, dtype=torch.long)
    for b in range(cost.shape[0]):
        real = present[b].nonzero().squeeze(1)
        if len(real) == 0:
            continue
        rows, cols = (torch.as_tensor(i, dtype=torch.long) for i in linear_sum_assignment(cost[b][:, real].numpy()))
        query_sentence[b, rows] = real[cols]
        sentence_query[b, real[cols]] = rows
    return query_sentence, sentence_query


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (B x N x E) at ``index`` (B x M), zero rows where ``index`` < 0."""
    index = index.to(x.device)
    rows = x.gather(1, index.clamp(min=0).unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return rows * (index >= 0).unsqueeze(-1).to(x.dtype)


def spg_loss(generated: torch.Tensor, targets: torch.Tensor, present: torch.Tensor):
    """PRIOR's sentence prototype generation loss: Hungarian matching on the L1
    cost, then L1 between each generated sentence (B x Q x E) and its matched
    target (B x S x E), or 0 for a query left without one; mean over B x Q x E.
    Returns (loss, query_sentence, sentence_query) as ``hungarian_match``."""
    cost = torch.cdist(generated.detach().float(), targets.detach().float(), p=1)
    query_sentence, sentence_query = hungarian_match(cost, present)
    goal = gather_rows(targets, query_sentence)
    return (generated.float() - goal.float()).abs().mean(), query_sentence, sentence_query


@METHODS.register("prior")
class Prior(Method):
    config_class = PriorConfig
    needs_pyramid = "its image decoder and patch pool assume a stride-32 last stage (layer4)"
    views = 1

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__(cfg)
        self.text_tower = TextTower(cfg.text_encoder, cfg.text_max_length)
        c, d, e = self.backbone.channels[-1], self.text_tower.dim, cfg.embed_dim
        self.image_pool = AttentionPool(c, cfg.pool_heads, grid=math.ceil(cfg.image_size / self.backbone.strides[-1]))
        self.global_image = nn.Linear(c, e)
        self.local_image = nn.Linear(c, e)
        self.local_text = nn.Linear(d, e)
        self.sentence_pool = AttentionPool(e, cfg.pool_heads)
        self.cross = SigmoidCrossAttention(e)
        self.predictor = nn.Sequential(nn.Linear(e, e // 2), nn.ReLU(inplace=True), nn.Linear(e // 2, e))
        self.bank = SentencePrototypeBank(e, cfg.prototypes, cfg.prototype_tau) if cfg.stage == 2 else None
        if cfg.reconstruction:  # stage 3 modules exist only when used (checkpoints of stages 1-2 unchanged)
            self.image_decoder = ImageDecoder(e, 3, cfg.image_rec_dropout)
            self.generator = SentenceGenerator(e, cfg.num_queries, cfg.decoder_layers, cfg.pool_heads)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.temperature)))
        self.local_logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.local_temperature)))
        for layer, fan_in in ((self.global_image, c), (self.local_image, c), (self.local_text, d), (self.predictor[0], e)):
            nn.init.normal_(layer.weight, std=fan_in**-0.5)  # the reference's initialisation
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("stage_now", torch.ones((), dtype=torch.long))  # the stage of the last step
        self.stage1_steps = 0
        self.stage3_steps = 0  # the step stage 3 starts at (reconstruction only)
        self.reports: ReportTokens | None = None

    def prepare(self, corpus) -> None:
        """Tokenise the corpus once; place the stage switches on the run's step count."""
        cfg = self.cfg
        self.reports = ReportTokens(self.text_tower.tokenizer, corpus_reports(corpus), cfg.text_max_length, cfg.max_sentences)
        total = len(corpus) // cfg.batch_size * cfg.epochs
        total = min(total, cfg.max_steps) if cfg.max_steps else total
        self.stage1_steps = round(cfg.stage1_fraction * total)
        self.stage3_steps = round((cfg.stage1_fraction + cfg.stage2_fraction) * total)

    # -- pieces ---------------------------------------------------------------
    @staticmethod
    def clamped(log_scale: torch.Tensor) -> torch.Tensor:
        return log_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Raw layer4 patches (B x HW x C: 2048 on ResNet-50), one per spatial position."""
        return self.patch_grid(images)[0]

    def patch_grid(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Raw layer4 patches and the map's (H, W)."""
        fmap = self.backbone(images)[-1]
        return spatial_patches(fmap), tuple(fmap.shape[-2:])

    def sentences(self, ids: torch.Tensor, mask: torch.Tensor, index: torch.Tensor):
        """Projected sentence embeddings (B x S x E) and their mask (B x S)."""
        pooled, present = pool_sentences(self.text_tower(ids, mask), index, self.cfg.max_sentences)
        return self.local_text(pooled), present

    def prototypes(self, sentences: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """SPB mixtures and the L1 gap ``mean|SPB(S) - S|`` over real sentences."""
        mixed, _ = self.bank(sentences)
        gap = (mixed.float() - sentences.float()).abs().mean(-1)
        return mixed, (gap * present).sum() / present.sum().clamp(min=1)

    # -- joint space (zero-shot, retrieval): pooled image <-> pooled sentences --
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.global_image(self.image_pool(self.patch_tokens(images))), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        reports = [split_sentences(t) or [t] for t in texts]
        tokens = ReportTokens(self.text_tower.tokenizer, reports, self.cfg.text_max_length, self.cfg.max_sentences)
        sents, present = self.sentences(*(t.to(self.logit_scale.device) for t in tokens(torch.arange(len(texts)))))
        if self.bank is not None and int(self.stage_now) >= 2:
            sents = self.prototypes(sents, present)[0]
        return F.normalize(self.sentence_pool(sents, present), dim=-1)

    # -- the step -------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        if self.reports is None:
            raise RuntimeError("call prepare(corpus) before training_step")
        raw, grid = self.patch_grid(batch["view1"])
        patches = self.local_image(raw)
        image = self.global_image(self.image_pool(raw))
        sents, present = self.sentences(*self.reports(batch["index"]))

        step = int(self.steps_done)
        use_bank = self.bank is not None and step >= self.stage1_steps
        stage = 3 if cfg.reconstruction and step >= self.stage3_steps else 2 if use_bank else 1
        if self.training:
            self.steps_done += 1
            self.stage_now.fill_(stage)
        terms = {"prototype": image.new_zeros(()).float()}
        raw_sents = sents
        if use_bank:
            sents, terms["prototype"] = self.prototypes(sents, present)

        report = self.sentence_pool(sents, present)
        terms["global"] = clip_loss(*self.negatives(image, report), self.clamped(self.logit_scale))
        patch_context, sentence_context = self.cross(patches, sents, present)
        terms["local_image"] = simsiam_loss(patches, patch_context, self.predictor)
        terms["local_text"] = within_report_infonce(sents, sentence_context, present, self.clamped(self.local_logit_scale))
        local = terms["local_image"] + terms["local_text"]
        if cfg.reconstruction:
            rec = ("rec_image", "spg", "spg_kl", "gpa")
            if stage == 3:
                terms.update(self.reconstruction_terms(batch["view1"], patches, patch_context, grid, raw_sents, sents, present, report))
            else:
                terms.update({k: image.new_zeros(()).float() for k in rec})
        if stage == 3:
            loss = (
                cfg.stage3_global_weight * terms["global"] + local + cfg.prototype_weight * (terms["prototype"] + terms["spg"])
                + terms["spg_kl"] + terms["gpa"] + terms["rec_image"]
            )
        else:
            loss = terms["global"] + local + cfg.prototype_weight * terms["prototype"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}, "stage": torch.tensor(float(stage))}

    def reconstruction_terms(self, images, patches, patch_context, grid, raw_sents, sents, present, report) -> dict[str, torch.Tensor]:
        """Stage 3's conditional cross-modality reconstruction terms (unweighted)."""
        terms = {"rec_image": reconstruction_loss(self.image_decoder(patches, patch_context, grid), images)}
        generated = self.generator(patches)
        terms["spg"], _, sentence_query = spg_loss(generated, sents, present)
        # per real sentence: the generated sentence matched to it
        matched = gather_rows(generated, sentence_query)
        valid = (sentence_query >= 0).to(present.device)
        real = F.log_softmax(self.bank.affinity(raw_sents.float()), dim=-1)
        fake = F.log_softmax(self.bank.affinity(matched.float()), dim=-1)
        kl = F.kl_div(fake, real, reduction="none", log_target=True).sum(-1)
        terms["spg_kl"] = (kl * valid).sum() / valid.sum().clamp(min=1)
        generated_report = self.sentence_pool(self.bank(matched)[0], valid)
        terms["gpa"] = clip_loss(*self.negatives(generated_report, report), self.clamped(self.logit_scale))
        return terms
