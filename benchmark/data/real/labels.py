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
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UserError

log = logging.getLogger(__name__)

def subset_allowed() -> bool:
    return os.environ.get("BENCHMARK_DATA_SUBSET", "") not in ("", "0")


#: what a damaged download or archive raises while pandas reads it: a gzip/bz2/xz stream cut off
#: (EOFError), a corrupt deflate stream (zlib.error), a zip without its directory (BadZipFile)
UNREADABLE = (OSError, ValueError, EOFError, zlib.error, zipfile.BadZipFile, pd.errors.ParserError, UnicodeDecodeError)

#: cell rules of :func:`read_csv`'s ``cells``: what each column of a label file must hold
ID = "id"  # non-empty text (an image or patient id, a path)
NUMBER = "number"  # a number, or empty
BINARY = "binary"  # 0 or 1, never empty
LABELER = "labeler"  # a labeler's observation: 1, 0, -1 (uncertain) or empty (not mentioned)

_RULES = {
    NUMBER: ("a number", lambda v: pd.Series(True, index=v.index), True),
    BINARY: ("0 or 1", lambda v: v.isin([0, 1]), False),
    LABELER: ("1, 0, -1 or empty", lambda v: v.isna() | v.isin([1, 0, -1]), True),
}


def read_csv(path: Path, columns: tuple[str, ...], cells: dict[str, str] | None = None, **kwargs) -> pd.DataFrame:
    """A label table with stripped column names; a UserError if unreadable (a damaged or cut-off
    compressed file included) or a column is missing, and for each column of ``cells`` (``ID``,
    ``NUMBER``, ``BINARY``, ``LABELER``) if a cell breaks its rule: one line naming the file, the
    data row (1 = the first row under the header), the column and the value, and how many more
    cells of that column break it. Numeric columns come back as numbers, id columns as stripped
    text, whatever pandas guessed from the file."""
    try:
        df = pd.read_csv(path, compression="infer", **kwargs)
    except UNREADABLE as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read label file {path}: {text} (damaged or cut off in transfer? download it again)") \
            from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"label file {path} lacks the column(s) {', '.join(missing)}; expected {', '.join(columns)} "
                        f"(found {', '.join(map(str, df.columns[:8]))}): not the official file?")
    if df.empty:
        raise UserError(f"label file {path} has a header but no rows: truncated? (expected the official file)")
    for column, rule in (cells or {}).items():
        df[column] = checked_column(path, df[column], column, rule)
    return df


def checked_column(path: Path, values: pd.Series, column: str, rule: str) -> pd.Series:
    """``values`` under ``rule`` (see :func:`read_csv`), converted; a UserError at the first bad cell."""
    if rule == ID:
        text = values.astype("string").str.strip()
        bad = text.isna() | (text == "")
        if bad.any():
            _bad_cell(path, values, bad, column, "a non-empty id")
        return text.astype(str)
    what, holds, empty_ok = _RULES[rule]
    raw = values.astype("string").str.strip()
    number = pd.to_numeric(raw.where(raw != "", None), errors="coerce")
    unparsed = number.isna() & raw.notna() & (raw != "")
    bad = unparsed | ~holds(number).fillna(False).astype(bool) | (number.isna() & (not empty_ok))
    if bad.any():
        _bad_cell(path, values, bad, column, what)
    return number


def _bad_cell(path: Path, values: pd.Series, bad: pd.Series, column: str, what: str) -> None:
    first = int(np.flatnonzero(bad.to_numpy())[0])
    value = values.iloc[first]
    shown = "an empty cell" if pd.isna(value) or str(value).strip() == "" else repr(str(value))
    more = int(bad.sum()) - 1
    raise UserError(f"label file {path}: data row {first + 1}, column {column!r} holds {shown}, expected {what}"
                    + (f" ({more} more cell(s) of that column too)" if more else "") + ": fix the file or download it again")


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


def box_mask(boxes, height: int, width: int) -> np.ndarray:
    """The (height, width) uint8 0/1 mask of x, y, w, h boxes as the loaders draw them: clipped
    (:func:`clip_boxes`), edges rounded to pixels, several boxes united."""
    mask = np.zeros((height, width), np.uint8)
    for x, y, w, h in clip_boxes(boxes, height, width)[0]:
        mask[round(y):round(y + h), round(x):round(x + w)] = 1
    return mask


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
