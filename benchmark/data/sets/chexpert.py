"""CheXpert-v1.0: classification (``chexpert``) and the zero-shot / retrieval set carved
out of its train.csv (``chexpert5x200``). One module: the two share the download, and
the classification recipe removes the 5x200 images from train first.

Recipe (mgca): the 5x200 images are removed from train.csv first; 5,000 val rows
are drawn with ``RandomState(0).choice`` (MGCA's ``np.random.choice`` after its
module-level ``np.random.seed(0)``: the same draw) and removed from train by
position (MGCA's ``df.drop(valid_ids)`` drops by index label, which after
filtering leaves val images in train); then frontal views only, in train, val
and test (test = the official valid.csv). The 5x200 set: frontal train rows
positive for exactly one competition finding (``splittable.five_by_200``).
Images: the Path column (less its first folder). Phantom stand-ins:
``phantom_chexpert`` below and the 5x200 renderer
``benchmark.data.phantom.fivex200.phantom_5x200``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.fivex200 import phantom_5x200
from benchmark.data.phantom.sets import extras, rendered_labels, sev, side, zone
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.loaders import label_set, text_set
from benchmark.data.real.splittable import FIVE_PER_CLASS, SplitTable, five_by_200
from benchmark.data.types import COMPETITION_FINDINGS, LABELER_OBSERVATIONS, LabelSet
from benchmark.errors import UserError
from benchmark.registry import DATASETS

LAYOUT = Layout("chexpert", "CheXpert-v1.0", ("CheXpert-v1.0", "CheXpert-v1.0-small", "chexpert"),
                ("train.csv", "valid.csv"), "train")
#: Official row counts of train.csv and valid.csv.
ROWS = {"train.csv": 223414, "valid.csv": 234}
VAL = 5000


def table(path: Path, name: str) -> pd.DataFrame:
    df = L.read_csv(path, ("Path", "Frontal/Lateral") + LABELER_OBSERVATIONS,
                    cells={"Path": L.ID, "Frontal/Lateral": L.ID, **{c: L.LABELER for c in LABELER_OBSERVATIONS}})
    L.check_rows(path, len(df), f"CheXpert {name}", ROWS[name])
    return df


def targets(df: pd.DataFrame) -> np.ndarray:
    """The mgca 5-label targets: NaN -> 0; uncertain -1 -> 1 for Atelectasis, Edema,
    Pleural Effusion, -> 0 for Cardiomegaly, Consolidation."""
    ones = {"Atelectasis", "Edema", "Pleural Effusion"}
    cols = []
    for c in COMPETITION_FINDINGS:
        v = df[c].fillna(0).to_numpy(dtype=np.float64)
        v = np.where(v == -1, 1.0 if c in ones else 0.0, v)
        cols.append(v)
    return np.stack(cols, 1).astype(np.int64)


def relative_image_path(path: str) -> str:
    """The Path column starts with the folder name (-small or not): drop it."""
    parts = str(path).replace("\\", "/").split("/")
    return "/".join(parts[1:]) if parts and parts[0].startswith("CheXpert") else "/".join(parts)


def select_5x200(train: pd.DataFrame) -> pd.DataFrame:
    """Frontal train rows positive (1) for exactly one competition label and 0 (NaN
    counts as 0) for the other 12 non-"No Finding" labels, ``sample(n=200,
    random_state=0)`` per class, classes in competition order."""
    return five_by_200(train[train["Frontal/Lateral"] == "Frontal"], "CheXpert train.csv")


def recipe(root: Path) -> SplitTable:
    folder, files = label_files(root, LAYOUT)
    train = table(files["train.csv"], "train.csv")
    valid = table(files["valid.csv"], "valid.csv")
    five = select_5x200(train)
    rest = train[~train["Path"].isin(set(five["Path"]))].reset_index(drop=True)
    n_val = L.scaled(VAL, ROWS["train.csv"] - 5 * FIVE_PER_CLASS, len(rest))
    val_pos = np.random.RandomState(0).choice(len(rest), size=n_val, replace=False)
    in_val = np.zeros(len(rest), bool)
    in_val[val_pos] = True
    both = pd.concat([rest, valid], ignore_index=True)
    both["id"] = both["Path"].map(relative_image_path)
    frontal = (both["Frontal/Lateral"] == "Frontal").to_numpy()
    rows = {
        "train": np.asarray([i for i in np.flatnonzero(~in_val) if frontal[i]], np.int64),
        "val": np.asarray([i for i in val_pos if frontal[i]], np.int64),
        "test": np.asarray([len(rest) + i for i in range(len(valid)) if frontal[len(rest) + i]], np.int64),
    }
    return SplitTable(LAYOUT.key, "", folder, both, rows, None, f"{LAYOUT.title} ({folder.name})", files)


def recipe_5x200(root: Path) -> SplitTable:
    folder, files = label_files(root, LAYOUT)
    five = select_5x200(table(files["train.csv"], "train.csv")).reset_index(drop=True)
    five["id"] = five["Path"].map(relative_image_path)
    return SplitTable(FiveBy200.name, "", folder, five, {"test": np.arange(len(five))}, "y",
                      f"{LAYOUT.title} 5x200 ({folder.name})", files)


# ------------------------------------------------------- phantom stand-in

#: The stand-in's labels, ``COMPETITION_FINDINGS`` order.
CHEXPERT_CLASSES = COMPETITION_FINDINGS

def chexpert_lesions(rng: np.random.Generator) -> tuple[list[Lesion], list[int]]:
    """Lesions and 5 labels of one CheXpert-like image.

    A latent "heart failure" state (20 %) drives cardiomegaly, oedema and
    effusion together; atelectasis and consolidation are likelier next to an
    effusion.  Prevalences: atelectasis ~24 %, cardiomegaly ~20 %,
    consolidation ~12 %, oedema ~15 %, effusion ~21 %; ~45 % have none.
    """
    chf = rng.random() < 0.2
    card = rng.random() < (0.6 if chf else 0.1)
    edema = rng.random() < (0.55 if chf else 0.05)
    eff = rng.random() < (0.55 if chf else 0.12)
    atel = rng.random() < (0.4 if eff else 0.2)
    cons = rng.random() < (0.2 if eff else 0.1)
    lesions: list[Lesion] = []
    if atel:
        lesions.append(Lesion("atelectasis", side(rng, 0.25), zone(rng, (0.15, 0.3, 0.55)), sev(rng)))
    if card:
        lesions.append(Lesion("cardiomegaly", "center", "middle", sev(rng, 0.2, 0.9)))
    if cons:
        for _ in range(int(rng.integers(1, 3))):
            lesions.append(Lesion("opacity", side(rng), zone(rng, (0.2, 0.35, 0.45)), sev(rng, 0.3, 1.0)))
    if edema:
        lesions.append(Lesion("edema", "bilateral", "middle", sev(rng, 0.3, 1.0)))
    if eff:
        lesions.append(Lesion("effusion", side(rng, 0.35), "lower", sev(rng, 0.15, 0.8)))
    lesions += extras(rng, 0.3)
    return lesions, [int(atel), int(card), int(cons), int(edema), int(eff)]


def phantom_chexpert(split: str, n: int, size: int) -> LabelSet:
    """CheXpert-like multi-label set: labels (n, 5) int64 0/1 in ``CHEXPERT_CLASSES`` order.

    Atelectasis -> renderer kind ``atelectasis`` (band), Cardiomegaly ->
    ``cardiomegaly``, Consolidation -> ``opacity`` (1-2 blobs), Edema ->
    ``edema`` (perihilar haze), Pleural Effusion -> ``effusion``; plus
    nodules / devices / inflation changes on ~30 % of images as distractors.
    """
    return rendered_labels(LAYOUT.key, split, n, size, chexpert_lesions, CHEXPERT_CLASSES)


class Competition(DataSet):
    name = LAYOUT.key
    layout = LAYOUT
    mgca_sample_variants = ("",)  # MGCA's classification dataset: sample(frac, random_state=42)

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root)

    def load(self, st: SplitTable, split: str, cfg) -> object:
        return label_set(st, split, cfg, self.image_paths(st, st.ids(split)), targets(st.part(split)),
                         COMPETITION_FINDINGS)

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_chexpert(split, n, size)


class FiveBy200(DataSet):
    name = f"{LAYOUT.key}5x200"
    layout = LAYOUT
    held_out = True

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe_5x200(root)

    def load(self, st: SplitTable, split: str, cfg) -> object:
        if cfg.kind == "retrieval":
            raise UserError("CheXpert publishes no report text, so image-to-report retrieval on the real CheXpert "
                            "5x200 set cannot run; use mimic5x200 images with their reports or the phantom data")
        return text_set(st, split, cfg, self.image_paths(st, st.ids(split)))

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_5x200(split, n, size)


DATASETS.register(Competition.name)(Competition())
DATASETS.register(FiveBy200.name)(FiveBy200())
