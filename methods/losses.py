"""Contrastive losses shared by every method (one module, like open_clip's loss.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a (not necessarily normalised) target matrix, mean over rows."""
    return -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def clinical_prior_targets(prior: torch.Tensor, temperature: float, ratio: float) -> torch.Tensor:
    """IMITATE's soft targets: ``I + tau * (1 - exp(-ratio * rho))`` where rho is the
    Pearson correlation between the samples' raw text embeddings, negatives clipped
    to 0 and the diagonal zeroed. Deliberately not renormalised (as in the paper's code)."""
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
    logits = F.normalize(a.float(), dim=1) @ F.normalize(b.float(), dim=1).T / temperature
    if prior is None:
        labels = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    target = clinical_prior_targets(prior, temperature, ratio)
    return soft_cross_entropy(logits, target) + soft_cross_entropy(logits.T, target.T)


def infonce_loss(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP): both directions summed."""
    return cicl_loss(a, b, None, temperature)
