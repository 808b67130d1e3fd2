"""Where each official download lives under a data root, and its label files.

Why: users unpack the downloads as they come (Kaggle, PhysioNet, Stanford),
under slightly different folder names and sometimes with the label files still
compressed. One table names what is accepted, so ``data check``, the split
writer and the loaders agree and the errors can say exactly what was expected.

``LAYOUTS`` is the table of accepted sub-folder names and label files; the
package docstring (``benchmark.data.real``) and docs/DATA.md show it to users
(a test keeps the three in step).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


LAYOUTS: dict[str, Layout] = {
    "mimic": Layout("mimic", "MIMIC-CXR-JPG 2.0.0",
                    ("mimic-cxr-jpg/2.0.0", "mimic-cxr-jpg", "physionet.org/files/mimic-cxr-jpg/2.0.0",
                     "MIMIC-CXR-JPG", "mimic"),
                    ("mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-chexpert.csv"),
                    "files"),
    "chexpert": Layout("chexpert", "CheXpert-v1.0", ("CheXpert-v1.0", "CheXpert-v1.0-small", "chexpert"),
                       ("train.csv", "valid.csv"), "train"),
    "rsna": Layout("rsna", "RSNA Pneumonia Detection Challenge stage 2",
                   ("rsna-pneumonia", "rsna", "rsna-pneumonia-detection-challenge"),
                   ("stage_2_train_labels.csv",), "stage_2_train_images"),
    "siim": Layout("siim", "SIIM-ACR Pneumothorax Segmentation (train-rle)", ("siim-acr-pneumothorax", "siim", "siim-acr"),
                   ("train-rle.csv",), "dicom-images-train"),
    "covidx": Layout("covidx", "COVIDx", ("covidx", "COVIDx", "covidx-cxr2"), ("train.txt", "test.txt"), "train"),
    "object_cxr": Layout("object_cxr", "Object-CXR (MIDL 2020)", ("object-cxr", "object_cxr", "Object-CXR"),
                         ("train.csv", "dev.csv"), "train"),
    "nih": Layout("nih", "NIH ChestX-ray14 (Data_Entry_2017_v2020)",
                  ("ChestX-ray14", "chestx-ray14", "nih-chest-xrays", "nih"),
                  ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"), "images"),
}

#: Task data set keys served by another data set's download.
ALIASES = {"chexpert5x200": "chexpert", "mimic5x200": "mimic"}


def layout(key: str) -> Layout:
    key = ALIASES.get(key, key)
    if key not in LAYOUTS:
        raise UserError(f"no real data set {key!r}; known: {', '.join(LAYOUTS)}")
    return LAYOUTS[key]


def find_folder(root: Path, key: str) -> Path:
    """The data set's folder under ``root``; a UserError naming every accepted name if none."""
    lay = layout(key)
    for name in lay.folders:
        if (root / name).is_dir():
            return root / name
    raise UserError(f"{lay.title} not found under data root {root}: expected one of the sub-folders "
                    f"{', '.join(lay.folders)} (see docs/DATA.md)")


def find_file(folder: Path, name: str, required: bool = True) -> Path | None:
    """``folder/name`` or its .gz / .zip variant; COVIDx's versioned list names too."""
    for suffix in VARIANTS:
        if (folder / (name + suffix)).is_file():
            return folder / (name + suffix)
    if name in ("train.txt", "test.txt"):  # COVIDx ships train_COVIDx9A.txt etc.
        stem = name[:-4]
        found = sorted(folder.glob(f"{stem}_COVIDx*.txt"))
        if found:
            return found[-1]
    if required:
        raise UserError(f"missing label file {folder / name} (or {name}.gz / {name}.zip)")
    return None


def label_files(root: Path, key: str) -> tuple[Path, dict[str, Path]]:
    """(data set folder, {label file name: path}) with a UserError for the first one missing."""
    folder = find_folder(root, key)
    return folder, {name: find_file(folder, name) for name in layout(key).labels}


def index_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """file stem -> path for every file below ``folder`` with one of ``suffixes`` (one walk)."""
    out: dict[str, Path] = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower() in suffixes:
                out.setdefault(stem, Path(dirpath) / f)
    return out


def mimic_report_dirs(folder: Path) -> list[Path]:
    """Folders that may hold MIMIC's ``files/pXX/.../sXXXXXXXX.txt`` reports."""
    candidates = [folder, folder.parent / "mimic-cxr-reports", folder.parent / "mimic-cxr" / "2.0.0",
                  folder.parent / "mimic-cxr", folder.parent.parent / "mimic-cxr-reports"]
    return [c / "files" for c in candidates if (c / "files").is_dir()]
