"""Report text utilities shared by the methods that work on sentences
(ConVIRT's random sentence, PRIOR's sentence units, ASG's region sentences)."""

from __future__ import annotations

import re
from array import array

import torch

_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])|\n+")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s*")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report section; de-identification tokens (XXXX) are kept,
    list numbering ("1. ", "2) ") stripped, empty pieces dropped."""
    pieces = (_NUMBERED.sub("", p).strip() for p in _SPLIT.split(text or ""))
    return [p for p in pieces if len(p) > 1]


def report_sentences(findings: str, impression: str) -> list[str]:
    """Findings then impression sentences; at least one (possibly empty) sentence."""
    return split_sentences(findings) + split_sentences(impression) or [""]


class ReportTokens(torch.nn.Module):
    """Reports tokenised once for the sentence-unit methods (PRIOR, ASG).

    One sequence per report, ``[CLS] s1 s2 ... [SEP]`` (at most ``max_length``):
    the text encoder reads the whole report, as both reference codes do, and each
    token carries the 1-based number of its sentence (0 for [CLS] and [SEP]).
    Stored ragged in compact, non-persistent buffers that follow the model to its
    device and stay out of checkpoints; a step only indexes them. ``kept[r][s - 1]``
    is the text of report r's sentence s: sentences past ``max_sentences``, cut
    by truncation or without tokens are dropped, so numbers stay consecutive. A
    report with no text keeps its [CLS] as sentence 1 (text ""), so every report
    has at least one sentence.
    """

    def __init__(self, tokenizer, reports: list[list[str]], max_length: int, max_sentences: int) -> None:
        super().__init__()
        if not 1 <= max_sentences <= 255:
            raise ValueError("max_sentences must be in [1, 255]")
        self.pad_id = int(tokenizer.pad_token_id or 0)
        flat = [s for sents in reports for s in sents]
        pieces = iter(tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else [])
        ids, owners, lengths = array("i"), array("B"), []
        self.kept: list[list[str]] = []
        for sents in reports:
            seq, owner, texts = [tokenizer.cls_token_id], [0], []
            for sentence in sents:
                piece = next(pieces)[: max(0, max_length - 1 - len(seq))]
                if piece and len(texts) < max_sentences:
                    texts.append(sentence)
                    seq += piece
                    owner += [len(texts)] * len(piece)
            if not texts:
                owner[0], texts = 1, [""]
            ids.extend(seq + [tokenizer.sep_token_id])
            owners.extend(owner + [0])
            lengths.append(len(seq) + 1)
            self.kept.append(texts)
        length = torch.tensor(lengths, dtype=torch.long)
        self.register_buffer("ids", torch.frombuffer(ids, dtype=torch.int32).clone(), persistent=False)
        self.register_buffer("owner", torch.frombuffer(owners, dtype=torch.uint8).clone(), persistent=False)
        self.register_buffer("length", length.int(), persistent=False)
        self.register_buffer("offset", length.cumsum(0) - length, persistent=False)

    def __len__(self) -> int:
        return len(self.length)

    def forward(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask, sentence_index) of the reports at ``index``,
        int64, padded to the longest of them."""
        index = index.to(self.length.device)
        length = self.length[index].long()
        pos = torch.arange(int(length.max()), device=length.device)
        mask = pos < length.unsqueeze(1)
        at = (self.offset[index].unsqueeze(1) + pos).clamp(max=len(self.ids) - 1)
        ids = torch.where(mask, self.ids[at].long(), self.pad_id)
        return ids, mask.long(), torch.where(mask, self.owner[at].long(), 0)


def pool_sentences(
    tokens: torch.Tensor, sentence_index: torch.Tensor, max_sentences: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of each sentence's token features: (B x L x D) -> (B x S x D), and the
    (B x S) mask of sentences that exist. ``sentence_index`` may be wider than
    ``tokens`` (the text tower trims padding shared by the batch)."""
    index = sentence_index[:, : tokens.shape[1]]
    onehot = (index.unsqueeze(-1) == torch.arange(1, max_sentences + 1, device=index.device)).to(tokens.dtype)
    counts = onehot.sum(1)  # B x S
    return onehot.transpose(1, 2) @ tokens / counts.clamp(min=1).unsqueeze(-1), counts > 0


def corpus_reports(corpus) -> list[list[str]]:
    """Each pair's report as a list of sentences (findings, then impression)."""
    return [report_sentences(f, i) for f, i in zip(corpus.findings, corpus.impressions)]
