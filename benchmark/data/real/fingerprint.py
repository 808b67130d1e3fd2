"""Content fingerprints of the label files a task or the pre-training corpus reads.

Why: a result on real data is defined by the label files (they decide the splits,
the labels, the boxes and the masks), not by the folder they sit in. The results
store's key and the mask caches use these fingerprints, so a changed label file
gives a new trial and new masks, and a copy of the same downloads under another
data root reuses both. Each file is hashed whole (SHA-256, a fraction of a
second for the largest, MIMIC's CSVs), once per process for a given size and
modification time. The content alone: a key that also depends on the split
recipe adds its version (``splittable.RECIPE_VERSION``) itself. A data set's
fingerprint is ``DataSet.fingerprint`` (its label files through :func:`files_fingerprint`). Image files are not
hashed (hundreds of GB): the image caches key them by id, path inside the data
set folder and a sample of file sizes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from benchmark.errors import UserError

_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, memoised on (path, size, mtime)."""
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _MEMO:
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            _MEMO[key] = h.hexdigest()
    except OSError as exc:
        raise UserError(f"cannot read label file {path}: {exc.strerror or exc}") from None
    return _MEMO[key]


def files_fingerprint(files: Iterable[Path]) -> str:
    """12 hex digits over the files' names (without the .gz/.zip variant) and contents."""
    parts = sorted(f"{Path(p).name.removesuffix('.gz').removesuffix('.zip')}={file_sha256(Path(p))}" for p in files)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]
