"""COVIDx: 3-class classification (normal, pneumonia, COVID-19).

Recipe (mgca): official train list ``train_test_split(train_size=0.8,
random_state=0)`` -> train/val; test = the official test list. The lists may
carry their version in the name (``train_COVIDx9A.txt``). Images:
``train/<file>``, ``test/<file>``. Phantom stand-in:
``benchmark.data.phantom.sets.phantom_covidx``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.sets import phantom_covidx
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.loaders import label_set
from benchmark.data.real.mgca import tts
from benchmark.data.real.splittable import SplitTable
from benchmark.errors import UserError
from benchmark.registry import DATASETS

LAYOUT = Layout("covidx", "COVIDx", ("covidx", "COVIDx", "covidx-cxr2"), ("train.txt", "test.txt"), "train",
                versioned={"train.txt": "train_COVIDx*.txt", "test.txt": "test_COVIDx*.txt"})
CLASSES = ("normal", "pneumonia", "COVID-19")


def read_list(path: Path) -> pd.DataFrame:
    """A COVIDx list: space-separated patient id, filename, class, source (no header)."""
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read COVIDx list {path}: {exc}".splitlines()[0]) from None
    if df.shape[1] < 3:
        raise UserError(f"COVIDx list {path} has {df.shape[1]} columns; expected patient id, filename, class, source")
    df = df.iloc[:, :4]
    df.columns = ["patient_id", "filename", "label", "source"][: df.shape[1]]
    names = {c.lower(): i for i, c in enumerate(CLASSES)}
    bad = sorted(set(df["label"].str.lower()) - set(names))
    if bad:
        raise UserError(f"COVIDx list {path} has unknown classes {bad}; expected {', '.join(CLASSES)}")
    df["y"] = df["label"].str.lower().map(names).astype(np.int64)
    return df


def recipe(root: Path) -> SplitTable:
    folder, files = label_files(root, LAYOUT)
    train, test = read_list(files["train.txt"]), read_list(files["test.txt"])
    train["subdir"], test["subdir"] = "train", "test"
    table = pd.concat([train, test], ignore_index=True)
    table["id"] = table["subdir"] + "/" + table["filename"]
    tr, va = tts(len(train), train_size=0.8)  # MGCA's call
    rows = {"train": tr, "val": va, "test": np.arange(len(train), len(table))}
    source = f"COVIDx ({files['train.txt'].name} {len(train)}, {files['test.txt'].name} {len(test)})"
    return SplitTable(LAYOUT.key, "", folder, table, rows, "y", source, files)


class Covidx(DataSet):
    name = LAYOUT.key
    layout = LAYOUT

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root)

    def load(self, st: SplitTable, split: str, cfg) -> object:
        return label_set(st, split, cfg, self.image_paths(st, st.ids(split)), st.part(split)["y"].to_numpy(np.int64),
                         CLASSES)

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_covidx(split, n, size)


DATASETS.register(Covidx.name)(Covidx())
