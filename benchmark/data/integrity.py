"""Integrity records for derived cache files, so a damaged cache is rebuilt, never used.

Why: a cache file that was truncated (full disk, a killed copy), overwritten or
zeroed must not feed a result, and must not end a run in a traceback either.
Hashing gigabytes of images on every run is too slow, so when an array cache is
written its JSON sidecar records, per array, the shape and a SHA-256 over a
fixed sample of rows (at most ``SAMPLE_ROWS``, evenly spaced, first and last
included). Reading checks that the file opens (the ``.npy`` header against the
file size), the shape, and the sample's hash: zeroing or overwriting any sampled
row, truncating, or swapping the file is caught; a change confined to rows
outside the sample is not (a trade documented in docs/DATA.md). Entries written
before the record existed get it on first read, after a check that their
sampled image rows are not all zero.

Torch caches (features, text embeddings) are checked by loading them and
validating what they hold (``load_torch``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.paths import atomic_json

#: Rows hashed per array: 32 rows of a 256 px image stack are 2 MB (a few ms).
SAMPLE_ROWS = 32
#: The sidecar key holding {array file name: record}.
KEY = "check"


class Damaged(Exception):
    """A cache entry that must be rebuilt; the message says what is wrong with it."""


def sample_rows(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, max(n - 1, 0), min(n, SAMPLE_ROWS)).round().astype(np.int64))


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr[sample_rows(len(arr))]).tobytes()).hexdigest()


def record(arr: np.ndarray) -> dict:
    """What is stored at write time: shape, dtype and the sample's SHA-256."""
    return {"shape": list(arr.shape), "dtype": arr.dtype.str, "sample_sha256": _digest(arr)}


def records(paths: Sequence[Path]) -> dict[str, dict]:
    """{file name: record} for freshly written ``.npy`` files (read back as memmaps)."""
    return {p.name: record(np.load(p, mmap_mode="r")) for p in paths}


def read_sidecar(path: Path, required: Sequence[str] = ()) -> dict:
    """A JSON sidecar as a dict holding ``required`` keys, or ``Damaged``."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Damaged(f"unreadable JSON ({type(exc).__name__})") from None
    if not isinstance(meta, dict):
        raise Damaged("not a JSON object")
    missing = [k for k in required if k not in meta]
    if missing:
        raise Damaged(f"lacks {', '.join(missing)}")
    return meta


def open_array(path: Path, shape: tuple[int, ...], expected: dict | None, may_be_blank: bool) -> np.ndarray:
    """The ``.npy`` memmap at ``path`` if it is intact, else ``Damaged``."""
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:
        raise Damaged(f"{path.name} unreadable ({str(exc).splitlines()[0][:80] or type(exc).__name__})") from None
    if tuple(arr.shape) != tuple(shape) or arr.dtype != np.uint8:
        raise Damaged(f"{path.name} holds {arr.dtype} {tuple(arr.shape)}, expected uint8 {tuple(shape)}")
    if expected is not None:
        if expected.get("sample_sha256") != _digest(arr):
            raise Damaged(f"{path.name} no longer matches its recorded checksum (overwritten or zeroed)")
    elif not may_be_blank and len(arr) and not np.asarray(arr[sample_rows(len(arr))]).any():
        raise Damaged(f"{path.name} is all zeros")
    return arr


def open_entry(meta_path: Path, arrays: Sequence[Path], shape: Callable[[dict], tuple[int, ...]],
               required: Sequence[str] = (), may_be_blank: Sequence[bool] = ()) -> tuple[dict, list[np.ndarray]]:
    """(sidecar, memmaps) of a complete cache entry, checked; ``Damaged`` if any part is not intact.

    ``shape(meta)`` is the shape every array must have (a KeyError or TypeError in it counts as a
    damaged sidecar); ``may_be_blank[i]``: array i may legitimately be all zeros (masks). An entry
    without a record gets one now (written back into the sidecar)."""
    meta = read_sidecar(meta_path, required)
    try:
        want = tuple(int(s) for s in shape(meta))
    except (KeyError, TypeError, ValueError):
        raise Damaged("sidecar does not describe the arrays") from None
    checks = meta.get(KEY)
    if checks is not None and not (isinstance(checks, dict) and all(p.name in checks for p in arrays)):
        raise Damaged("sidecar's checksum record is incomplete")
    blank = list(may_be_blank) + [False] * (len(arrays) - len(may_be_blank))
    out = [open_array(p, want, None if checks is None else checks[p.name], b) for p, b in zip(arrays, blank)]
    if checks is None:  # written before records existed: record them now
        meta[KEY] = {p.name: record(a) for p, a in zip(arrays, out)}
        atomic_json(meta_path, meta)
    return meta, out


def cached_entry(log: logging.Logger, what: str, meta_path: Path, arrays: Sequence[Path],
                 shape: Callable[[dict], tuple[int, ...]], required: Sequence[str] = (),
                 may_be_blank: Sequence[bool] = ()) -> tuple[dict, list[np.ndarray]] | None:
    """``open_entry``, or None when the entry is absent or incomplete (build it) or damaged
    (one warning, its files removed: build it again)."""
    if not (meta_path.is_file() and all(p.is_file() for p in arrays)):
        return None
    try:
        return open_entry(meta_path, arrays, shape, required, may_be_blank)
    except Damaged as exc:
        discard(log, what, meta_path, str(exc), [meta_path, *arrays])
        return None


def discard(log: logging.Logger, what: str, path: Path, reason: str, files: Sequence[Path]) -> None:
    """The one warning line for a damaged cache entry, then its files are removed (rebuilt next)."""
    log.warning("%s cache %s is damaged (%s); rebuilding it", what, path, reason)
    for f in files:
        f.unlink(missing_ok=True)


def load_torch(path: Path, check: Callable[[Any], str | None], what: str, log: logging.Logger) -> Any | None:
    """A ``torch.save``d cache file if it loads (weights only) and ``check`` finds nothing wrong
    (it returns a reason, or None); else one warning line, the file removed, and None."""
    from benchmark.safe_load import torch_load

    if not path.is_file():
        return None
    try:
        obj = torch_load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read a derived file means: rebuild it
        reason = f"unreadable: {type(exc).__name__}"
    else:
        try:
            reason = check(obj)
        except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
            reason = f"unexpected contents ({type(exc).__name__})"
        if reason is None:
            return obj
    discard(log, what, path, reason, [path])
    return None
