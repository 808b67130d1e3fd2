"""RSNA Pneumonia Detection Challenge (stage 2): classification, detection, segmentation.

Recipe (mgca): rows grouped per patient sorted by id (MGCA's ``groupby``);
classification ``test_size=0.3`` then halves (18,678 / 4,003 / 4,003);
detection and segmentation ``test_size=5337*2`` then halves (16,010 / 5,337 /
5,337). The second call's first part is test, its second val, as in MGCA.
Images: ``stage_2_train_images/<patientId>.dcm``. Phantom stand-in:
``benchmark.data.phantom.datasets.phantom_rsna`` (opacity boxes, box masks).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.datasets import phantom_rsna
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.loaders import boxes_set, label_set
from benchmark.data.real.mgca import three_way
from benchmark.data.real.splittable import SplitTable
from benchmark.errors import UserError
from benchmark.registry import DATASETS

LAYOUT = Layout("rsna", "RSNA Pneumonia Detection Challenge stage 2",
                ("rsna-pneumonia", "rsna", "rsna-pneumonia-detection-challenge"),
                ("stage_2_train_labels.csv",), "stage_2_train_images")
LABEL_ROWS = 30227
PATIENTS = 26684


def patients(path: Path) -> pd.DataFrame:
    """One row per patient (sorted by id, as MGCA's ``groupby("patientId")`` orders them):
    patientId, boxes (list of [x, y, w, h] in original pixels), Target."""
    df = L.read_csv(path, ("patientId", "x", "y", "width", "height", "Target"))
    L.check_rows(path, len(df), "stage_2_train_labels.csv", LABEL_ROWS)
    boxes: dict[str, list[list[float]]] = {}
    for pid, target, x, y, w, h in df[["patientId", "Target", "x", "y", "width", "height"]].itertuples(index=False):
        entry = boxes.setdefault(str(pid), [])
        if target == 1:
            if any(pd.isna(v) for v in (x, y, w, h)):
                raise UserError(f"label file {path}: patient {pid} has Target 1 but no box")
            entry.append([float(x), float(y), float(w), float(h)])
    ids = sorted(boxes)
    return pd.DataFrame({"patientId": ids, "boxes": [boxes[i] for i in ids],
                         "Target": [int(bool(boxes[i])) for i in ids]})


def recipe(root: Path, variant: str = "cls") -> SplitTable:
    """Patients; ``variant`` "cls" (classification, zero-shot) or "det" (detection, segmentation)."""
    folder, files = label_files(root, LAYOUT)
    df = patients(files["stage_2_train_labels.csv"]).rename(columns={"patientId": "id"})
    n = len(df)
    if variant == "cls":
        rows = three_way(n, 0.3)
    elif variant == "det":
        rows = three_way(n, L.scaled(5337 * 2, PATIENTS, n))
    else:
        raise UserError(f"unknown RSNA split variant {variant!r}; expected cls or det")
    return SplitTable(LAYOUT.key, variant, folder, df, rows, "Target", f"{LAYOUT.title} ({n} patients)", files)


class Rsna(DataSet):
    name = LAYOUT.key
    layout = LAYOUT
    variants = ("cls", "det")

    def variant(self, kind: str) -> str:
        return "det" if kind in ("detection", "segmentation") else "cls"

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root, variant)

    def image_paths(self, st: SplitTable, ids: list[str]) -> list[Path]:
        return [st.folder / LAYOUT.images / f"{i}.dcm" for i in ids]

    def load(self, st: SplitTable, split: str, cfg) -> object:
        paths = self.image_paths(st, st.ids(split))
        if cfg.kind in ("detection", "segmentation"):
            return boxes_set(st, split, cfg, paths)
        return label_set(st, split, cfg, paths, st.part(split)["Target"].to_numpy("int64"), ("normal", "pneumonia"))

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_rsna(split, n, size)


DATASETS.register(Rsna.name)(Rsna())
