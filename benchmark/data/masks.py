"""Bounding boxes of a segmentation mask, one per lung half.

Why: a pneumothorax mask (rendered by the phantom or decoded from run-length
labels) also serves detection-style metrics; both sides derive its boxes the
same way.
"""

from __future__ import annotations

import numpy as np


def mask_boxes(mask: np.ndarray) -> list[list[float]]:
    """One bounding box per lung half holding mask pixels (x, y, w, h)."""
    out = []
    half = mask.shape[1] // 2
    for c0, part in ((0, mask[:, :half]), (half, mask[:, half:])):
        if part.any():
            rows, cols = np.flatnonzero(part.any(axis=1)), np.flatnonzero(part.any(axis=0))
            out.append([float(c0 + cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1),
                        float(rows[-1] - rows[0] + 1)])
    return out
