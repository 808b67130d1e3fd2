"""SIIM-ACR Pneumothorax Segmentation (train-rle): segmentation.

Recipe (mgca): MGCA splits CSV rows, so an image with several pneumothorax
regions can land in two splits. Fixed: rows are grouped by ImageId
(first-appearance order) before the same 70/15/15 calls (``random_state=0``).
"-1" with or without a leading space is negative (MGCA compares with " -1"
only, which marks every negative positive in copies without the space; its
dataset class compares with "-1", the other way round). Train balance (all
positives + as many negatives) is drawn with ``RandomState(0)``; MGCA draws it
at load time from the global RNG, whose state depends on what ran before. Train
keeps its split order. Images: ``dicom-images-train/**/<ImageId>.dcm``.
Phantom stand-in: ``phantom_siim`` below (pneumothorax masks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.datasets import distractor
from benchmark.data.phantom.sets import extras, rendered_lesions, sev, side
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, index_files, label_files
from benchmark.data.real.loaders import masks_set
from benchmark.data.real.mgca import three_way
from benchmark.data.real.splittable import SplitTable
from benchmark.data.types import LesionSet, TestLabels
from benchmark.errors import UserError
from benchmark.registry import DATASETS

LAYOUT = Layout("siim", "SIIM-ACR Pneumothorax Segmentation (train-rle)", ("siim-acr-pneumothorax", "siim", "siim-acr"),
                ("train-rle.csv",), "dicom-images-train")
LABEL_ROWS = 12954
ORIGINAL_SIZE = 1024  # every image of the challenge is 1024 x 1024 px


def images(path: Path) -> pd.DataFrame:
    """One row per image, in order of first appearance: ImageId, rles (the non-empty
    EncodedPixels strings), Label (1 = pneumothorax). "-1" with or without a leading
    space is negative (copies of the file differ)."""
    df = L.read_csv(path, ("ImageId", "EncodedPixels"), cells={"ImageId": L.ID}, dtype=str, keep_default_na=False)
    L.check_rows(path, len(df), "train-rle.csv", LABEL_ROWS)
    rles: dict[str, list[str]] = {}
    for image, enc in df[["ImageId", "EncodedPixels"]].itertuples(index=False):
        entry = rles.setdefault(image.strip(), [])
        enc = enc.strip()
        if enc and enc != "-1":
            entry.append(enc)
    ids = list(rles)
    return pd.DataFrame({"ImageId": ids, "rles": [rles[i] for i in ids], "Label": [int(bool(rles[i])) for i in ids]})


def rle_mask(rles: list[str], height: int, width: int) -> np.ndarray:
    """The relative run-length encoding of the challenge (column-major, start offsets relative
    to the previous run's end) -> (height, width) uint8 0/1; several regions are OR-ed."""
    flat = np.zeros(width * height, np.uint8)
    for rle in rles:
        values = np.asarray(rle.split(), dtype=np.int64)
        if len(values) % 2:
            raise UserError(f"malformed SIIM run-length encoding (odd number of values): {rle[:40]}...")
        pos = 0
        for start, length in values.reshape(-1, 2):
            pos += start
            flat[pos:pos + length] = 1
            pos += length
    return flat.reshape(width, height).T.copy()


def recipe(root: Path) -> SplitTable:
    folder, files = label_files(root, LAYOUT)
    df = images(files["train-rle.csv"]).rename(columns={"ImageId": "id"})
    rows = three_way(len(df), 0.3)
    train = rows["train"]
    positive = df["Label"].to_numpy()[train] == 1
    negatives = train[~positive]
    n_pos = int(positive.sum())
    chosen = set(np.random.RandomState(0).choice(negatives, size=min(n_pos, len(negatives)), replace=False).tolist())
    rows["train"] = np.asarray([r for r, p in zip(train, positive) if p or r in chosen], np.int64)
    return SplitTable(LAYOUT.key, "", folder, df, rows, "Label", f"{LAYOUT.title} ({len(df)} images)", files)


# ------------------------------------------------------- phantom stand-in

#: Share of stand-in images with a pneumothorax (real SIIM-ACR: 2,669 / 12,047 = 22 %).
SIIM_POSITIVE_RATE = 0.25

def siim_lesions(rng: np.random.Generator) -> tuple[list[Lesion], int]:
    """One SIIM-like image: ~25 % with a pneumothorax (one side, rarely both), others normal or distractors."""
    lesions: list[Lesion] = []
    positive = rng.random() < SIIM_POSITIVE_RATE
    if positive:
        zone = str(rng.choice(["upper", "middle", "lower"], p=[0.55, 0.3, 0.15]))
        lesions.append(Lesion("pneumothorax", side(rng, 0.05), zone, sev(rng, 0.3, 1.0)))
        if rng.random() < 0.3:
            lesions.append(distractor(rng))
    elif rng.random() < 0.5:
        les = distractor(rng)
        while les.kind == "pneumothorax":
            les = distractor(rng)
        lesions.append(les)
    lesions += [e for e in extras(rng, 0.3) if e.kind != "hyperinflation"]
    return lesions, int(positive)


def phantom_siim(split: str, n: int, size: int) -> LesionSet:
    """SIIM-ACR-like pneumothorax segmentation set.

    masks: (n, size, size) uint8, 1 inside the pneumothorax (the air between
    chest wall and collapsed lung, not a box), empty for negatives; labels:
    (n,) int64 1 = pneumothorax; boxes: the bounding box of the mask per side.
    """
    return rendered_lesions(LAYOUT.key, split, n, size, siim_lesions, "ptx")


class Siim(DataSet):
    name = LAYOUT.key
    layout = LAYOUT

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root)

    def image_paths(self, st: SplitTable, ids: list[str]) -> list[Path]:
        index = index_files(st.folder / LAYOUT.images, (".dcm",))
        return [index.get(i, st.folder / LAYOUT.images / f"{i}.dcm") for i in ids]

    def load(self, st: SplitTable, split: str, cfg) -> object:
        rles = list(st.part(split)["rles"])
        return masks_set(st, split, cfg, self.image_paths(st, st.ids(split)),
                         lambda i, shape: rle_mask(rles[i], *shape), "rle")

    def test_labels(self, st: SplitTable, split: str) -> TestLabels:
        """Labels and each image's share of pneumothorax pixels, decoded at the download's 1024 x 1024 px."""
        out = super().test_labels(st, split)
        out.lesion_share = np.asarray([rle_mask(r, ORIGINAL_SIZE, ORIGINAL_SIZE).mean() if r else 0.0
                                       for r in st.part(split)["rles"]])
        return out

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_siim(split, n, size)


DATASETS.register(Siim.name)(Siim())
