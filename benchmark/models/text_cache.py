"""Frozen text-encoder outputs, computed once per text and kept on disk.

A frozen encoder gives the same vector for the same text every epoch, so the
pre-training loop looks embeddings up instead of running BERT each step (the
reference code runs it twice per step). A cache file that cannot be read or does
not hold one finite vector per text is reported in one warning line and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from benchmark.data.integrity import load_torch
from benchmark.paths import atomic_torch_save, cache_dir
from benchmark.progress import Progress

log = logging.getLogger(__name__)


class TextEmbeddingCache:
    def __init__(
        self, encoder: str, max_length: int = 256, pooling: str = "cls", batch_size: int = 64, device: str = "cpu"
    ) -> None:
        self.encoder_name, self.max_length, self.pooling = encoder, max_length, pooling
        self.batch_size, self.device = batch_size, device
        key = hashlib.sha256(f"{encoder}|{max_length}|{pooling}".encode()).hexdigest()[:16]
        self.path = cache_dir("text") / f"{key}.pt"
        self._encoder = None
        self._table: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        saved = load_torch(self.path, _check_saved, "text-embedding", log)
        if saved is not None:
            self._table = dict(zip(saved["texts"], saved["emb"]))

    @property
    def dim(self) -> int:
        if self._table:
            return int(next(iter(self._table.values())).shape[0])
        return self.encoder.dim

    @property
    def encoder(self):
        if self._encoder is None:
            from benchmark.models.encoders import FrozenTextEncoder

            self._encoder = FrozenTextEncoder(self.encoder_name, self.max_length, self.pooling).to(self.device)
        return self._encoder

    def to(self, device: str) -> "TextEmbeddingCache":
        """Run the encoder on ``device`` from now on (moved there if it is loaded already)."""
        self.device = device
        if self._encoder is not None:
            self._encoder.to(device)
        return self

    def encode(self, texts: list[str]) -> torch.Tensor:
        """Embeddings (N x dim) for ``texts``; only texts never seen before are encoded."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._table))
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            self._encode_missing(missing)
        return torch.stack([self._table[t] for t in texts])

    def _encode_missing(self, missing: list[str]) -> None:
        log.info("encoding %d new texts with %s", len(missing), self.encoder_name)
        order = sorted(range(len(missing)), key=lambda i: len(missing[i]))  # less padding
        with Progress(total=len(missing), desc="text embeddings") as bar:
            for start in range(0, len(order), self.batch_size):
                chunk = [missing[i] for i in order[start : start + self.batch_size]]
                for text, vec in zip(chunk, self.encoder(chunk).cpu()):
                    self._table[text] = vec.clone()
                bar.update(len(chunk))
        self._save()

    def _save(self) -> None:
        texts = list(self._table)
        atomic_torch_save({"texts": texts, "emb": torch.stack([self._table[t] for t in texts])}, self.path)


def _check_saved(saved) -> str | None:
    """What is wrong with a loaded cache file, or None."""
    texts, emb = saved["texts"], saved["emb"]
    if not (isinstance(texts, list) and all(isinstance(t, str) for t in texts)):
        return "its texts are not a list of strings"
    if not isinstance(emb, torch.Tensor) or emb.ndim != 2 or len(emb) != len(texts) or not len(texts):
        return f"{len(texts)} texts but embeddings of shape {tuple(getattr(emb, 'shape', ()))}"
    if not torch.isfinite(emb).all():
        return "non-finite embeddings"
    return None


def corpus_texts(corpus, field: str) -> list[str]:
    """The texts of one field for every pair: findings, impression, or the whole report."""
    if field == "findings":
        return list(corpus.findings)
    if field == "impression":
        return list(corpus.impressions)
    if field == "report":
        return [f"{f} {i}".strip() for f, i in zip(corpus.findings, corpus.impressions)]
    raise ValueError(f"unknown text field {field!r}")


def text_bank(cache: TextEmbeddingCache, corpus, fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Per-sample frozen embeddings for the fields a method needs, plus ``has_findings``."""
    bank = {field: cache.encode(corpus_texts(corpus, field)) for field in fields}
    bank["has_findings"] = torch.tensor([bool(f.strip()) for f in corpus.findings])
    return bank
