"""Where each official download lives under a data root, and its label files.

Why: users unpack the downloads as they come (Kaggle, PhysioNet, Stanford),
under slightly different folder names and sometimes with the label files still
compressed. One table names what is accepted, so ``data check``, the split
writer and the loaders agree and the errors can say exactly what was expected.

Each data set module (``benchmark.data.sets``) states its :class:`Layout`;
``benchmark.data.catalog.LAYOUTS`` gathers them, and the package docstring
(``benchmark.data.real``) and docs/DATA.md show the table to users (a test keeps
the three in step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import UserError

#: Compressed variants accepted for every label file, in order.
VARIANTS = ("", ".gz", ".zip")


@dataclass(frozen=True)
class Layout:
    """One data set's accepted folders, its label files and its image folder."""

    key: str
    title: str  # the official name and version
    folders: tuple[str, ...]
    labels: tuple[str, ...]  # label files that must exist (any of VARIANTS)
    images: str  # the image folder inside the data set folder
    versioned: dict[str, str] = field(default_factory=dict)  # label file -> glob of its versioned names


def find_folder(root: Path, lay: Layout) -> Path:
    """The data set's folder under ``root``; a UserError naming every accepted name if none."""
    for name in lay.folders:
        if (root / name).is_dir():
            return root / name
    raise UserError(f"{lay.title} not found under data root {root}: expected one of the sub-folders "
                    f"{', '.join(lay.folders)} (see docs/DATA.md)")


def find_file(folder: Path, name: str, required: bool = True, pattern: str = "") -> Path | None:
    """``folder/name`` or its .gz / .zip variant, else the last file matching ``pattern``
    (a versioned name: ``Layout.versioned``)."""
    for suffix in VARIANTS:
        if (folder / (name + suffix)).is_file():
            return folder / (name + suffix)
    found = sorted(folder.glob(pattern)) if pattern else []
    if found:
        return found[-1]
    if required:
        raise UserError(f"missing label file {folder / name} (or {name}.gz / {name}.zip)")
    return None


def label_files(root: Path, lay: Layout) -> tuple[Path, dict[str, Path]]:
    """(data set folder, {label file name: path}) with a UserError for the first one missing."""
    folder = find_folder(root, lay)
    return folder, {name: find_file(folder, name, pattern=lay.versioned.get(name, "")) for name in lay.labels}


def index_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """file stem -> path for every file below ``folder`` with one of ``suffixes`` (one walk)."""
    out: dict[str, Path] = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in suffixes:
                out.setdefault(stem, Path(dirpath) / f)
    return out
