"""Report text utilities shared by the methods that work on sentences
(ConVIRT's random sentence, PRIOR's sentence units, ASG's region sentences)."""

from __future__ import annotations

import re

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
