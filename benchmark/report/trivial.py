"""Reading scores against the trivial references of their test split.

Why: a score is never printed without what a predictor that looks at no image scores on
the same split (``tasks.references`` computes them; a trial stores them as ``refs``), and
two scores that a trivial predictor explains are not called a difference. Under MGCA's
per-image Dice an empty prediction on a lesion-free image scores 1, so a decoder that
learned to stay silent "beats" one that marks lesions everywhere; the lines here say so
instead of printing the difference.
"""

from __future__ import annotations

import math
from typing import Any

#: the parts of a metric that are printed beside it, where a trial stored them
PARTS = ("dice_pos", "empty_acc", "dice_pooled", "map_50", "balanced_accuracy")


def trivial_best(refs: dict | None, metric: str) -> tuple[str, float] | None:
    """(reference name, value): the trivial reference that scores highest under ``metric``
    (every metric here is higher-is-better); None when the references have none for it."""
    best = None
    for name, row in ((refs or {}).get("rows") or {}).items():
        value = row.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value) and (best is None or value > best[1]):
            best = (name, float(value))
    return best


def fixed(value: Any) -> str:
    """A stored score as printed beside its references: 4 decimals, ``n/a`` when undefined."""
    return f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"


def interval_text(metrics: dict, name: str, primary: str) -> str:
    """`` [low, high]`` of a stored metric's 95 % bootstrap interval (the primary's is ``ci_low/high``)."""
    prefix = "" if name == primary else f"{name}_"
    low, high = metrics.get(f"{prefix}ci_low"), metrics.get(f"{prefix}ci_high")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (low, high)):
        return ""
    return f" [{low:.4f}, {high:.4f}]"


def parts_of(metrics: dict) -> list[str]:
    """The parts (:data:`PARTS`) a trial stored, in that order."""
    return [p for p in PARTS if p in metrics]


def split_text(refs: dict) -> str:
    """``300 test images, 201 lesion-free``."""
    text = f"{refs.get('n', '?')} {refs.get('split', 'test')} images"
    if "lesion_free" in refs:
        text += f", {refs['lesion_free']} lesion-free"
    return text


def reference_lines(refs: dict, metrics: list[str], indent: str = "  ") -> list[str]:
    """One line per trivial reference: its value under each of ``metrics`` it defines."""
    out = []
    for name, row in (refs.get("rows") or {}).items():
        shown = [f"{m} {fixed(row[m])}" for m in metrics if m in row]
        if shown:
            out.append(f"{indent}{name:<20s} {', '.join(shown)}")
    return out


def comparison_line(metric: str, mine: tuple[str, float], theirs: tuple[str, float], refs: dict) -> str:
    """``metric``: the difference of two scores where both beat the metric's best trivial
    reference; otherwise the line that says the comparison is decided by the trivial predictor."""
    (a_name, a), (b_name, b) = mine, theirs
    best = trivial_best(refs, metric)
    if best is None:
        return f"{metric}: {a_name} - {b_name} = {a - b:+.4f} (no trivial reference for {metric})"
    ref_name, ref = best
    if a > ref and b > ref:
        return f"{metric}: {a_name} - {b_name} = {a - b:+.4f} (both above {ref_name}, {ref:.4f})"
    below = " and ".join(f"{n} {v:.4f}" for n, v in ((a_name, a), (b_name, b)) if v <= ref)
    why = ("the comparison is decided by empty predictions" if ref_name == "predict-nothing"
           else "no difference between the encoders is shown")
    return f"{metric}: not compared: {below} at or below {ref_name} ({ref:.4f}); {why}"


def comparable(refs: dict, metric: str) -> bool:
    """Whether a trivial reference leaves room above it (empty_acc's predict-nothing is already 1)."""
    best = trivial_best(refs, metric)
    return best is None or best[1] < 1.0


def baselines_lines(result: dict) -> list[str]:
    """What ``baselines`` prints: the task, its split, and each reference under every metric."""
    subset = "" if result.get("test_subset", "all") == "all" else f" (test_subset: {result['test_subset']})"
    metrics: list[str] = []
    for row in (result.get("rows") or {}).values():
        metrics += [m for m in row if m not in metrics]
    lines = [f"{result['task']} ({result['kind']}, primary metric {result['metric']}) on {result['data_source']} data"
             f"{subset}: {split_text(result)}"]
    return lines + reference_lines(result, metrics)
