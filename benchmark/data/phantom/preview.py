"""A labelled grid of phantom samples, so a person can see what the benchmark
contains: pre-training pairs with their report text, and each downstream
stand-in with its boxes (red), masks (outlined in cyan) and labels."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from benchmark.errors import UserError

SIZE = 256


def _label_names(split, i: int) -> str:
    labels = np.asarray(split.labels)[i]
    classes = getattr(split, "classes", ())
    if labels.ndim == 0:
        return classes[int(labels)] if classes else ("positive" if labels else "negative")
    names = [c for c, on in zip(classes, labels) if on]
    return ", ".join(names) or "no finding"


def _panels(per_row: int) -> list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None, str]]:
    """(title, image, mask, boxes, caption) for each panel: pre-training pairs, then every
    data set's stand-in with lesions (the most positive first, one negative last), then the
    classification stand-ins (the held-out zero-shot sets are left out)."""
    from benchmark.data import catalog
    from benchmark.data.phantom.datasets import phantom_corpus

    panels = []
    corpus = phantom_corpus(per_row * 8, SIZE)
    picks = [i for i in range(len(corpus)) if corpus.findings[i]][: per_row * 2 : 2]
    for i in picks:
        text = f"FINDINGS: {corpus.findings[i]}\nIMPRESSION: {corpus.impressions[i]}"
        panels.append((f"pre-training pair {corpus.ids[i]}", corpus.images[i], None, None, text))
    sets = [(d.name, d.phantom("test", 40, SIZE)) for d in catalog.everything() if d.name in catalog.PHANTOMS
            and not d.held_out]
    for name, split in sets:
        if getattr(split, "masks", None) is None:
            continue
        order = np.argsort(-np.asarray(split.labels), kind="stable")[: per_row - 1].tolist() + [int(np.argmin(split.labels))]
        for i in order:
            panels.append((f"{name} {split.ids[i]}", split.images[i], split.masks[i], split.boxes[i], _label_names(split, i)))
    for name, split in sets:
        if getattr(split, "masks", None) is None:
            for i in range(per_row):
                panels.append((f"{name} {split.ids[i]}", split.images[i], None, None, _label_names(split, i)))
    return panels


def write_preview(path: Path, per_row: int = 4) -> Path:
    """Write the grid to ``path`` (PNG or PDF, from the extension)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patches

    path = Path(path)
    if path.suffix.lower() not in (".png", ".pdf", ".jpg", ".svg"):
        raise UserError(f"preview file must end in .png, .pdf, .jpg or .svg, got {path.name!r}")
    panels = _panels(per_row)
    rows = -(-len(panels) // per_row)
    fig, axes = plt.subplots(rows, per_row, figsize=(3.2 * per_row, 4.2 * rows))
    for ax, (title, image, mask, boxes, caption) in zip(axes.flat, panels):
        ax.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=255)
        if mask is not None and np.asarray(mask).any():
            ax.contour(np.asarray(mask), levels=[0.5], colors="cyan", linewidths=0.8)
        for x, y, w, h in np.asarray(boxes if boxes is not None else []).reshape(-1, 4):
            ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, edgecolor="red", linewidth=1))
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("\n".join(textwrap.wrap(caption, 48)[:7]), fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("medvlp-bench phantom data (synthetic images, real Open-i report text)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / rows))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return path
