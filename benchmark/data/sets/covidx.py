"""COVIDx: 3-class classification (normal, pneumonia, COVID-19).

Recipe (mgca): official train list ``train_test_split(train_size=0.8,
random_state=0)`` -> train/val; test = the official test list. The lists may
carry their version in the name (``train_COVIDx9A.txt``). Images:
``train/<file>``, ``test/<file>``. Phantom stand-in:
``phantom_covidx`` below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.sets import extras, rendered_labels, sev, side, zone
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.loaders import label_set
from benchmark.data.real.mgca import tts
from benchmark.data.real.splittable import SplitTable
from benchmark.data.types import LabelSet
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


# ------------------------------------------------------- phantom stand-in

COVIDX_CLASSES = CLASSES

def covidx_lesions(rng: np.random.Generator) -> tuple[list[Lesion], int]:
    """One COVIDx-like image: 0 normal (45 %), 1 pneumonia (30 %), 2 COVID-19 (25 %).

    Pneumonia: 1-2 focal (lobar / patchy) ``opacity`` lesions.  COVID-19:
    ``covid`` ground glass on both sides, peripheral, lower (sometimes also
    middle) zones.  Every class gets the same mix of non-label findings
    (cardiomegaly, effusion, nodules, devices), so brightness does not tell.
    """
    cls = int(rng.choice(3, p=[0.45, 0.3, 0.25]))
    lesions: list[Lesion] = []
    if cls == 1:
        for _ in range(int(rng.choice([1, 2], p=[0.65, 0.35]))):
            lesions.append(Lesion("opacity", side(rng), zone(rng, (0.2, 0.35, 0.45)), sev(rng, 0.35, 1.0)))
    elif cls == 2:
        level = sev(rng, 0.3, 1.0)
        lesions.append(Lesion("covid", "bilateral", "lower", level))
        if rng.random() < 0.4:
            lesions.append(Lesion("covid", side(rng), "middle", level * 0.8))
    if rng.random() < (0.45 if cls == 0 else 0.2):
        lesions.append(_covidx_distractor(rng))
    lesions += extras(rng, 0.2)
    return lesions, cls


def _covidx_distractor(rng: np.random.Generator) -> Lesion:
    kind = str(rng.choice(["cardiomegaly", "effusion", "atelectasis"], p=[0.4, 0.35, 0.25]))
    if kind == "cardiomegaly":
        return Lesion(kind, "center", "middle", sev(rng, 0.2, 0.9))
    if kind == "effusion":
        return Lesion(kind, side(rng, 0.2), "lower", sev(rng, 0.15, 0.7))
    return Lesion(kind, side(rng), zone(rng), sev(rng))


def phantom_covidx(split: str, n: int, size: int) -> LabelSet:
    """COVIDx-like 3-class set: labels (n,) int64, 0 normal / 1 pneumonia / 2 COVID-19."""
    return rendered_labels(LAYOUT.key, split, n, size, covidx_lesions, COVIDX_CLASSES)


class Covidx(DataSet):
    name = LAYOUT.key
    layout = LAYOUT
    mgca_sample_variants = ("",)  # MGCA's classification dataset: sample(frac, random_state=42)

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root)

    def load(self, st: SplitTable, split: str, cfg) -> object:
        return label_set(st, split, cfg, self.image_paths(st, st.ids(split)), st.part(split)["y"].to_numpy(np.int64),
                         CLASSES)

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_covidx(split, n, size)


DATASETS.register(Covidx.name)(Covidx())
