"""Contrastive losses shared by every method (one module, like open_clip's loss.py).

One core, :func:`contrastive_loss` (cosine logits over a temperature, then
cross-entropy along rows and columns with per-direction weights and hard or soft
targets), expresses CICL, InfoNCE, CLIP, ConVIRT's asymmetric loss and the paired
terms; the local losses (PRIOR, ASG, GLoRIA) build on the same pieces.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Directions(NamedTuple):
    """A contrastive loss and its two directional terms: ``a_to_b`` along the rows
    of the logits (each ``a`` picks its ``b``), ``b_to_a`` along the columns."""

    loss: torch.Tensor
    a_to_b: torch.Tensor
    b_to_a: torch.Tensor


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a (not necessarily normalised) target matrix, mean over rows."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def full_precision(t: torch.Tensor):
    """A region where autocast is off for ``t``'s device: a matmul of float32 inputs stays float32
    there (under autocast it would run, and return, in bfloat16: a logit error of 0.08 at
    temperature 0.01)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def cosine_logits(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """``cos(a_i, b_j) / temperature`` (B_a x B_b; batched: ... x N_a x N_b), in
    float32 whatever the autocast dtype."""
    with full_precision(a):
        return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).transpose(-2, -1) / temperature


def contrastive_from_logits(
    logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    weights: tuple[float, float] = (1.0, 1.0),
) -> Directions:
    """The contrastive core on given logits: cross-entropy along the rows against
    ``targets`` and along the columns against ``targets.T``, weighted per direction.
    ``targets=None`` means hard targets, the diagonal (the matched pairs); a
    matrix gives soft targets (CICL's), used as given (not renormalised)."""
    logits = logits.float()
    if targets is None:
        labels = torch.arange(logits.shape[0], device=logits.device)
        rows, cols = F.cross_entropy(logits, labels), F.cross_entropy(logits.T, labels)
    else:
        rows, cols = soft_cross_entropy(logits, targets), soft_cross_entropy(logits.T, targets.T)
    return Directions(weights[0] * rows + weights[1] * cols, rows, cols)


def contrastive_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float | torch.Tensor,
    targets: torch.Tensor | None = None,
    weights: tuple[float, float] = (1.0, 1.0),
) -> Directions:
    """The one contrastive core every global loss below is written with: cosine
    logits of the paired embeddings ``a``, ``b`` (B x D) over ``temperature``,
    then :func:`contrastive_from_logits`. InfoNCE is weights (1, 1) (the two
    directions summed), CLIP (0.5, 0.5), ConVIRT (w, 1 - w), CICL soft targets."""
    return contrastive_from_logits(cosine_logits(a, b, temperature), targets, weights)


def clinical_prior_targets(prior: torch.Tensor, temperature: float, ratio: float) -> torch.Tensor:
    """IMITATE's soft targets: ``I + tau * (1 - exp(-ratio * rho))`` where rho is the
    Pearson correlation between the samples' raw text embeddings, negatives clipped
    to 0 and the diagonal zeroed. Deliberately not renormalised (as in the paper's code)."""
    with full_precision(prior):  # float32 targets under autocast too
        rho = torch.corrcoef(prior.float())
        rho = torch.nan_to_num(rho, nan=0.0).clamp(min=0).fill_diagonal_(0)
        eye = torch.eye(rho.shape[0], device=rho.device, dtype=rho.dtype)
        return eye + temperature * (1 - torch.exp(-ratio * rho))


def cicl_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    prior: torch.Tensor | None = None,
    temperature: float = 0.07,
    ratio: float = 0.2,
) -> torch.Tensor:
    """Clinical-informed contrastive loss, both directions summed.

    ``a``, ``b``: paired embeddings (B x D); ``prior``: raw text embeddings (B x E)
    whose correlations soften the targets; ``prior=None`` gives symmetric InfoNCE.
    """
    targets = None if prior is None else clinical_prior_targets(prior, temperature, ratio)
    return contrastive_loss(a, b, temperature, targets).loss


def infonce_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE: both directions summed (GLoRIA's and ASG's global loss)."""
    return contrastive_loss(a, b, temperature).loss


# -- PRIOR -------------------------------------------------------------------
def clip_loss(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP loss with a (learnable) logit scale: mean of the two directions (PRIOR's global loss)."""
    return contrastive_loss(a, b, 1 / scale, weights=(0.5, 0.5)).loss


def simsiam_loss(x: torch.Tensor, y: torch.Tensor, predictor) -> torch.Tensor:
    """SimSiam: negative cosine between each side's prediction and the other side
    under stop-gradient, both ways averaged; no negatives (PRIOR's patch/context loss)."""
    a = F.cosine_similarity(predictor(x), y.detach(), dim=-1).mean()
    b = F.cosine_similarity(predictor(y), x.detach(), dim=-1).mean()
    return -0.5 * (a + b)


def _diagonal_ce(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy (B x S) of batched S x S logits against the diagonal,
    masked columns excluded and masked rows zeroed."""
    logits = logits.float().masked_fill(~mask[:, None, :], torch.finfo(torch.float32).min)
    labels = torch.arange(logits.shape[-1], device=logits.device).repeat(logits.shape[0])
    ce = F.cross_entropy(logits.flatten(0, 1), labels, reduction="none").view(mask.shape)
    return torch.where(mask, ce, torch.zeros_like(ce))


def within_report_infonce(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """InfoNCE among the sentences of each report (PRIOR's local text loss): ``a``
    sentences, ``b`` their image-conditioned contexts (B x S x D); the negatives
    are the report's other real sentences (``mask`` B x S). Mean of the two
    directions, mean over each report's sentences, then over reports."""
    logits = scale * F.normalize(b.float(), dim=-1) @ F.normalize(a.float(), dim=-1).transpose(1, 2)
    per = 0.5 * (_diagonal_ce(logits, mask) + _diagonal_ce(logits.transpose(1, 2), mask))
    return (per.sum(1) / mask.sum(1).clamp(min=1)).mean()


# -- ASG ---------------------------------------------------------------------
def region_alignment_loss(
    regions: torch.Tensor, texts: torch.Tensor, mask: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """ASG's ARSA: per image, R region features vs the R region-sentence embeddings
    (B x R x D, cosine / tau), negatives only from the same image; regions with no
    sentence (``mask`` False) are masked as rows and columns. CE over rows plus CE
    over columns, each a mean over every valid row of the batch (the reference's
    ignore_index); 0 when no region has a sentence."""
    logits = cosine_logits(regions, texts, temperature)
    n = mask.sum()
    if n == 0:
        return logits.sum() * 0
    return (_diagonal_ce(logits, mask).sum() + _diagonal_ce(logits.transpose(1, 2), mask).sum()) / n


def tag_soft_targets(tags: torch.Tensor, hard: float = 0.8, soft: float = 0.2, eps: float = 1e-6) -> torch.Tensor:
    """ASG's ERL targets ``rownorm(0.8 I + 0.2 y y^T + 1e-6)``; as in the reference
    the tag vectors are L2-normalised first, so ``y y^T`` is the cosine between two
    reports' tags (0 for a report with none) and rows are scaled to sum to 1."""
    y = F.normalize(tags.float(), dim=1)
    m = hard * torch.eye(len(y), device=y.device) + soft * (y @ y.T) + eps
    return m / m.sum(1, keepdim=True)


def symmetric_kl_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ASG's ERL loss: for S and S^T, KL(P || softmax) + KL(softmax || P), each a
    'batchmean' (sum / B); the four terms summed and divided by 4 (the reference's
    mean of two directions, each the mean of forward and backward KL). The same
    row-normalised P serves both orientations, as in the reference."""
    logp = target.float().log()

    def both_ways(s: torch.Tensor) -> torch.Tensor:
        logq = F.log_softmax(s.float(), dim=1)
        return ((target * (logp - logq)).sum() + (logq.exp() * (logq - logp)).sum()) / len(s)

    return (both_ways(logits) + both_ways(logits.T)) / 4


# -- ConVIRT / GLoRIA --------------------------------------------------------
def paired_ce(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the matched (diagonal) pairs along rows (a -> b) and columns (b -> a)."""
    _, rows, cols = contrastive_from_logits(logits)
    return rows, cols


def asymmetric_infonce(
    a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1, weight: float = 0.75
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ConVIRT: ``weight * CE(S, I) + (1 - weight) * CE(S.T, I)``, S = cosine / tau.
    Returns (loss, a -> b term, b -> a term)."""
    return contrastive_loss(a, b, temperature, weights=(weight, 1 - weight))


def gloria_local_scores(
    regions: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    attention_temperature: float = 4.0,
    word_temperature: float = 5.0,
    agg: str = "sum",
) -> torch.Tensor:
    """GLoRIA's word-region score R (B_img x B_txt), for every image b and report i at once.

    ``regions`` (B_img x M x D), ``words`` (B_txt x K x D) with ``word_mask`` (B_txt x K).
    Each word's attention over regions: dot products, softmax over the report's words,
    times ``attention_temperature``, softmax over regions -> context c_k;
    R = log sum_k exp(word_temperature * cos(w_k, c_k)) (``agg="max"``: log max_k, zero-shot).
    Memory O(B_txt B_img K (M + D)); the authors loop over reports instead.
    """
    regions, words = regions.float(), words.float()
    valid = word_mask.bool()[:, None, :]  # B_txt x 1 x K
    scores = torch.einsum("ikd,bmd->ibkm", words, regions)
    attn = scores.masked_fill(~valid[..., None], torch.finfo(scores.dtype).min).softmax(dim=2)
    attn = (attn * attention_temperature).softmax(dim=3)
    context = torch.einsum("ibkm,bmd->ibkd", attn, regions)
    dot = torch.einsum("ikd,ibkd->ibk", words, context)
    cos = dot / (words.norm(dim=-1)[:, None, :] * context.norm(dim=-1)).clamp(min=1e-8)
    sim = (word_temperature * cos).masked_fill(~valid, float("-inf"))
    r = sim.logsumexp(dim=2) if agg == "sum" else sim.amax(dim=2)
    return r.T


def gloria_local_loss(
    regions: torch.Tensor,
    words: torch.Tensor,
    word_mask: torch.Tensor,
    attention_temperature: float = 4.0,
    word_temperature: float = 5.0,
    logit_scale: float = 10.0,
) -> torch.Tensor:
    """GLoRIA's local loss: logits = logit_scale * R, CE + CE.T (summed, as in the code)."""
    r = gloria_local_scores(regions, words, word_mask, attention_temperature, word_temperature)
    return contrastive_from_logits(logit_scale * r).loss
