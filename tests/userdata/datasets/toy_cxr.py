"""A user's data set, kept outside the package: tests/test_dataset_registry.py shows
that this file and ``../tasks/toy_cxr_cls.yaml`` are all a new data set needs.

Official layout: ``<data root>/toy-cxr/labels.csv`` (columns image, finding,
split; finding "normal" or "abnormal", split "train" or "test") and
``images/<image>.png``. Recipe: the official test rows are test; 25 % of the
official train rows (``train_test_split(random_state=0)``) are val.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.data.dataset import DataSet
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.loaders import label_set
from benchmark.data.real.mgca import tts
from benchmark.data.real.splittable import SplitTable
from benchmark.registry import DATASETS

LAYOUT = Layout("toy_cxr", "Toy CXR 1.0", ("toy-cxr", "toy_cxr"), ("labels.csv",), "images")
CLASSES = ("normal", "abnormal")


class ToyCxr(DataSet):
    name = LAYOUT.key
    layout = LAYOUT

    def recipe(self, root: Path, variant: str) -> SplitTable:
        folder, files = label_files(root, LAYOUT)
        df = L.read_csv(files["labels.csv"], ("image", "finding", "split"))
        df["id"] = df["image"].astype(str)
        df["y"] = (df["finding"] == "abnormal").astype(np.int64)
        train, val = tts(np.flatnonzero((df["split"] == "train").to_numpy()), 0.25)
        rows = {"train": np.sort(train), "val": np.sort(val), "test": np.flatnonzero((df["split"] == "test").to_numpy())}
        return SplitTable(self.name, "", folder, df, rows, "y", LAYOUT.title, files)

    def image_paths(self, st: SplitTable, ids: list[str]) -> list[Path]:
        return [st.folder / LAYOUT.images / f"{i}.png" for i in ids]

    def load(self, st: SplitTable, split: str, cfg) -> object:
        return label_set(st, split, cfg, self.image_paths(st, st.ids(split)), st.part(split)["y"].to_numpy(np.int64),
                         CLASSES)


DATASETS.register(ToyCxr.name)(ToyCxr())
