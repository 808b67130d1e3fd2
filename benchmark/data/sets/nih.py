"""NIH ChestX-ray14 (Data_Entry_2017_v2020): 14-label classification.

Recipe (mgca): BenchX uses MRM's lists, which are not public in a stable place;
here test = the official test_list.txt and val = 10 % of the
train_val_list.txt *patients* (``train_test_split(random_state=0)`` on the
patient ids in file order), so no patient is in two splits. Images: any
``*.png`` below the folder (``images*/``, any depth). Phantom stand-in:
``benchmark.data.phantom.sets.phantom_nih``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.sets import NIH_CLASSES as CLASSES
from benchmark.data.phantom.sets import phantom_nih
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, index_files, label_files
from benchmark.data.real.loaders import label_set
from benchmark.data.real.mgca import tts
from benchmark.data.real.splittable import SplitTable
from benchmark.errors import UserError
from benchmark.registry import DATASETS

LAYOUT = Layout("nih", "NIH ChestX-ray14 (Data_Entry_2017_v2020)",
                ("ChestX-ray14", "chestx-ray14", "nih-chest-xrays", "nih"),
                ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"), "images")
LABEL_ROWS = 112120


def table(path: Path) -> pd.DataFrame:
    df = L.read_csv(path, ("Image Index", "Finding Labels", "Patient ID"))
    L.check_rows(path, len(df), "Data_Entry_2017_v2020.csv", LABEL_ROWS)
    return df


def targets(df: pd.DataFrame) -> np.ndarray:
    found = df["Finding Labels"].astype(str).str.split("|")
    return np.asarray([[int(c in f) for c in CLASSES] for f in found], np.int64)


def recipe(root: Path) -> SplitTable:
    folder, files = label_files(root, LAYOUT)
    df = table(files["Data_Entry_2017_v2020.csv"]).rename(columns={"Image Index": "id"}).reset_index(drop=True)
    position = {name: i for i, name in enumerate(df["id"])}
    lists = {}
    for split, name in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
        ids = L.id_list(files[name])
        unknown = [i for i in ids if i not in position]
        if unknown:
            raise UserError(f"{files[name]} names {len(unknown)} images not in {files['Data_Entry_2017_v2020.csv'].name} "
                            f"(first: {unknown[0]})")
        lists[split] = np.asarray([position[i] for i in ids], np.int64)
    patients = df["Patient ID"].to_numpy()[lists["train_val"]]
    unique = list(dict.fromkeys(patients.tolist()))
    _, val_idx = tts(len(unique), 0.1)
    val_patients = {unique[i] for i in val_idx}
    is_val = np.asarray([p in val_patients for p in patients])
    rows = {"train": lists["train_val"][~is_val], "val": lists["train_val"][is_val], "test": lists["test"]}
    return SplitTable(LAYOUT.key, "", folder, df, rows, None, LAYOUT.title, files)


class ChestXray14(DataSet):
    name = LAYOUT.key
    layout = LAYOUT

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root)

    def image_paths(self, st: SplitTable, ids: list[str]) -> list[Path]:
        index = index_files(st.folder, (".png",))
        return [index.get(Path(i).stem, st.folder / LAYOUT.images / i) for i in ids]

    def load(self, st: SplitTable, split: str, cfg) -> object:
        return label_set(st, split, cfg, self.image_paths(st, st.ids(split)), targets(st.part(split)), CLASSES)

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_nih(split, n, size)


DATASETS.register(ChestXray14.name)(ChestXray14())
