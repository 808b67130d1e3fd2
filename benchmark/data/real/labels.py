"""Reading and checking official label files: what every data set's reader shares.

Why: a label file of another release (a stage-1 file, a trimmed table, a
CSV re-saved with other columns) silently changes every split. Each data set's
reader (in its module under ``benchmark.data.sets``) reads through
:func:`read_csv`, which checks the columns it needs, and :func:`check_rows`, which
checks the official row count; both fail with one line naming the file and what
was expected. ``BENCHMARK_DATA_SUBSET=1``
accepts other row counts (test fixtures, deliberate subsets) with a warning;
splits drawn from such files differ from the published manifests.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UserError

log = logging.getLogger(__name__)

def subset_allowed() -> bool:
    return os.environ.get("BENCHMARK_DATA_SUBSET", "") not in ("", "0")


def read_csv(path: Path, columns: tuple[str, ...], **kwargs) -> pd.DataFrame:
    """A label table with stripped column names; a UserError if unreadable or a column is missing."""
    try:
        df = pd.read_csv(path, compression="infer", **kwargs)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read label file {path}: {exc}".splitlines()[0]) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"label file {path} lacks the column(s) {', '.join(missing)}; expected {', '.join(columns)} "
                        f"(found {', '.join(map(str, df.columns[:8]))}): not the official file?")
    if df.empty:
        raise UserError(f"label file {path} has a header but no rows: truncated? (expected the official file)")
    return df


def check_rows(path: Path, rows: int, name: str, official: int) -> None:
    """``official``, the row count of the official ``name``, or a UserError (a warning in subset mode)."""
    if rows == official:
        return
    msg = f"label file {path} has {rows} rows; the official {name} has {official}"
    if not subset_allowed():
        raise UserError(f"{msg}: another version? (BENCHMARK_DATA_SUBSET=1 accepts it; splits then differ "
                        "from the published manifests)")
    log.warning("%s (BENCHMARK_DATA_SUBSET=1: using it anyway)", msg)


def scaled(count: int, official_total: int, n: int) -> int:
    """A recipe's fixed count, scaled to a subset of ``n`` rows (itself on the official data)."""
    if n == official_total:
        return count
    return max(1, min(n - 2, round(count * n / official_total)))


# -------------------------------------------------------------------- boxes


def clip_boxes(boxes, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """x, y, w, h boxes clipped to a ``height`` x ``width`` image, boxes with no area left
    (zero or negative width or height, or wholly outside) dropped.

    Returns (kept boxes (k, 4) float32, how many were clipped, how many dropped): the loaders
    draw masks and detection targets from the same kept boxes and warn with the counts."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0 = np.clip(b[:, 0], 0, width), np.clip(b[:, 1], 0, height)
    x1, y1 = np.clip(b[:, 0] + b[:, 2], 0, width), np.clip(b[:, 1] + b[:, 3], 0, height)
    keep = (b[:, 2] > 0) & (b[:, 3] > 0) & (x1 > x0) & (y1 > y0)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], 1)[keep]
    clipped = int((keep & ~np.all(np.isclose(np.stack([x0, y0, x1, y1], 1),
                                             np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)),
                                  axis=1)).sum())
    return out.astype(np.float32), clipped, int((~keep).sum())


def box_problem(box, height: int | None = None, width: int | None = None) -> str | None:
    """Why a box in original pixels is invalid (``data check``), or None; the image size, when
    known, also catches boxes reaching outside it."""
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        return "zero or negative width or height"
    if x < 0 or y < 0:
        return "starts outside the image"
    if height is not None and width is not None and (x + w > width or y + h > height):
        return f"reaches outside the {width} x {height} image"
    return None


# -------------------------------------------------------------------- lists


def id_list(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError as exc:
        raise UserError(f"cannot read list {path}: {exc.strerror or exc}") from None
