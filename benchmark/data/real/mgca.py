"""The "mgca" split recipes: MGCA's preprocessing, reproduced call for call.

Why: published numbers depend on exactly which rows land in train, val and
test. Each recipe makes the same sklearn ``train_test_split`` calls with the
same seeds on the same rows in the same order as MGCA's ``preprocess`` scripts
(the split is a function of the row count and the seed only, so splitting row
positions equals splitting MGCA's DataFrames). Defects are fixed only where
they corrupt data, and each fix is listed here:

* RSNA: rows grouped per patient sorted by id (MGCA's ``groupby``);
  classification ``test_size=0.3`` then halves (18,678 / 4,003 / 4,003);
  detection and segmentation ``test_size=5337*2`` then halves (16,010 / 5,337 /
  5,337). The second call's first part is test, its second val, as in MGCA.
* SIIM: MGCA splits CSV rows, so an image with several pneumothorax regions can
  land in two splits. Fixed: rows are grouped by ImageId (first-appearance
  order) before the same 70/15/15 calls (``random_state=0``). "-1" with or
  without a leading space is negative (MGCA compares with " -1" only, which
  marks every negative positive in copies without the space; its dataset
  class compares with "-1", the other way round). Train balance (all positives
  + as many negatives) is drawn with ``RandomState(0)``; MGCA draws it at load
  time from the global RNG, whose state depends on what ran before. Train
  keeps its split order.
* CheXpert: the 5x200 images are removed from train.csv first; 5,000 val rows
  are drawn with ``RandomState(0).choice`` (MGCA's ``np.random.choice`` after its
  module-level ``np.random.seed(0)``: the same draw) and removed from
  train by position (MGCA's ``df.drop(valid_ids)`` drops by index label, which
  after filtering leaves val images in train); then frontal views only, in
  train, val and test (test = the official valid.csv).
* COVIDx: official train list ``train_test_split(train_size=0.8,
  random_state=0)`` -> train/val; test = the official test list.
* Object-CXR: official train ``test_size=0.1`` (``random_state=0``) -> 7,200 /
  800; test = dev (1,000). Boxes: rectangles and ellipses (types 0, 1) as MGCA,
  the min/max of their points. Polygons (type 2): MGCA centres a box on the
  shapely ``polylabel`` of the 100 px-buffered outline, sized to cover the
  outline; here the polygon's tight enclosing box (no shapely dependency; it
  differs only in how far the box overshoots the object).
* NIH ChestX-ray14: BenchX uses MRM's lists, which are not public in a stable
  place; here test = the official test_list.txt and val = 10 % of the
  train_val_list.txt *patients* (``train_test_split(random_state=0)`` on the
  patient ids in file order), so no patient is in two splits.

Fraction subsets are not part of a recipe: ``benchmark.data.splits.draw_subset``
draws them from a split's train ids, the same call the runner makes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.real import labels as L
from benchmark.data.real.layout import find_file, label_files, layout
from benchmark.data.real.mimic import mimic5x200
from benchmark.data.real.splittable import (
    FIVE_PER_CLASS,
    SplitTable,
    TooFewRows,
    five_by_200,
)
from benchmark.errors import UserError

RSNA_PATIENTS = 26684
CHEXPERT_VAL = 5000


def _tts(n_or_rows, test_size=None, random_state: int = 0, train_size=None) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's ``train_test_split`` on row positions (the sizes passed exactly as MGCA
    passes them: ``train_size=0.8`` and ``test_size=0.2`` can round differently)."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(n_or_rows) if np.isscalar(n_or_rows) else np.asarray(n_or_rows)
    try:
        a, b = train_test_split(rows, test_size=test_size, train_size=train_size, random_state=random_state)
    except ValueError as exc:  # too few rows for the recipe's split sizes
        raise TooFewRows(f"too few rows for the split recipe (a step had {len(rows)} to split: {exc})"
                         .splitlines()[0]) from None
    return np.asarray(a), np.asarray(b)


def _three_way(n: int, test_size) -> dict[str, np.ndarray]:
    train, rest = _tts(n, test_size)
    test, val = _tts(rest, 0.5)
    return {"train": train, "val": val, "test": test}


def rsna(root: Path, variant: str = "cls") -> SplitTable:
    """RSNA patients; ``variant`` "cls" (classification, zero-shot) or "det" (detection, segmentation)."""
    folder, files = label_files(root, "rsna")
    df = L.rsna_patients(files["stage_2_train_labels.csv"]).rename(columns={"patientId": "id"})
    n = len(df)
    if variant == "cls":
        rows = _three_way(n, 0.3)
    elif variant == "det":
        rows = _three_way(n, L.scaled(5337 * 2, RSNA_PATIENTS, n))
    else:
        raise UserError(f"unknown RSNA split variant {variant!r}; expected cls or det")
    return SplitTable("rsna", variant, folder, df, rows, "Target", f"{layout('rsna').title} ({n} patients)", files)


def siim(root: Path) -> SplitTable:
    folder, files = label_files(root, "siim")
    df = L.siim_images(files["train-rle.csv"]).rename(columns={"ImageId": "id"})
    rows = _three_way(len(df), 0.3)
    train = rows["train"]
    positive = df["Label"].to_numpy()[train] == 1
    negatives = train[~positive]
    n_pos = int(positive.sum())
    chosen = set(np.random.RandomState(0).choice(negatives, size=min(n_pos, len(negatives)), replace=False).tolist())
    rows["train"] = np.asarray([r for r, p in zip(train, positive) if p or r in chosen], np.int64)
    return SplitTable("siim", "", folder, df, rows, "Label", f"{layout('siim').title} ({len(df)} images)", files)


def chexpert_5x200(train: pd.DataFrame) -> pd.DataFrame:
    """Frontal train rows positive (1) for exactly one competition label and 0 (NaN
    counts as 0) for the other 12 non-"No Finding" labels, ``sample(n=200,
    random_state=0)`` per class, classes in competition order."""
    df = train.copy()
    df[list(L.CHEXPERT_LABELS)] = df[list(L.CHEXPERT_LABELS)].fillna(0)
    df = df[df["Frontal/Lateral"] == "Frontal"]
    return five_by_200(df, [c for c in L.CHEXPERT_LABELS if c != "No Finding"], "CheXpert train.csv")


def chexpert(root: Path) -> SplitTable:
    folder, files = label_files(root, "chexpert")
    train = L.chexpert_table(files["train.csv"], "train.csv")
    valid = L.chexpert_table(files["valid.csv"], "valid.csv")
    five = chexpert_5x200(train)
    rest = train[~train["Path"].isin(set(five["Path"]))].reset_index(drop=True)
    n_val = L.scaled(CHEXPERT_VAL, 223414 - 5 * FIVE_PER_CLASS, len(rest))
    val_pos = np.random.RandomState(0).choice(len(rest), size=n_val, replace=False)
    in_val = np.zeros(len(rest), bool)
    in_val[val_pos] = True
    table = pd.concat([rest, valid], ignore_index=True)
    table["id"] = table["Path"].map(L.relative_image_path)
    frontal = (table["Frontal/Lateral"] == "Frontal").to_numpy()
    rows = {
        "train": np.asarray([i for i in np.flatnonzero(~in_val) if frontal[i]], np.int64),
        "val": np.asarray([i for i in val_pos if frontal[i]], np.int64),
        "test": np.asarray([len(rest) + i for i in range(len(valid)) if frontal[len(rest) + i]], np.int64),
    }
    return SplitTable("chexpert", "", folder, table, rows, None, f"{layout('chexpert').title} ({folder.name})", files)


def chexpert5x200(root: Path) -> SplitTable:
    folder, files = label_files(root, "chexpert")
    five = chexpert_5x200(L.chexpert_table(files["train.csv"], "train.csv")).reset_index(drop=True)
    five["id"] = five["Path"].map(L.relative_image_path)
    return SplitTable("chexpert5x200", "", folder, five, {"test": np.arange(len(five))}, "y",
                      f"CheXpert-v1.0 5x200 ({folder.name})", files)


def covidx(root: Path) -> SplitTable:
    from benchmark.data.real.layout import find_folder

    folder = find_folder(root, "covidx")
    files = {"train.txt": find_file(folder, "train.txt"), "test.txt": find_file(folder, "test.txt")}
    train, test = L.covidx_list(files["train.txt"]), L.covidx_list(files["test.txt"])
    train["subdir"], test["subdir"] = "train", "test"
    table = pd.concat([train, test], ignore_index=True)
    table["id"] = table["subdir"] + "/" + table["filename"]
    tr, va = _tts(len(train), train_size=0.8)  # MGCA's call
    rows = {"train": tr, "val": va, "test": np.arange(len(train), len(table))}
    source = f"COVIDx ({files['train.txt'].name} {len(train)}, {files['test.txt'].name} {len(test)})"
    return SplitTable("covidx", "", folder, table, rows, "y", source, files)


def object_cxr(root: Path) -> SplitTable:
    folder, files = label_files(root, "object_cxr")
    train = L.object_table(files["train.csv"], "train.csv").assign(subdir="train")
    dev = L.object_table(files["dev.csv"], "dev.csv").assign(subdir="dev")
    table = pd.concat([train, dev], ignore_index=True)
    table["id"] = table["subdir"] + "/" + table["image_name"]
    table["boxes"] = table["annotation"].map(L.object_boxes)
    table["Label"] = table["boxes"].map(lambda b: int(bool(b)))
    tr, va = _tts(len(train), 0.1)
    rows = {"train": tr, "val": va, "test": np.arange(len(train), len(table))}
    return SplitTable("object_cxr", "", folder, table, rows, "Label", layout("object_cxr").title, files)


def nih(root: Path) -> SplitTable:
    folder, files = label_files(root, "nih")
    df = L.nih_table(files["Data_Entry_2017_v2020.csv"]).rename(columns={"Image Index": "id"}).reset_index(drop=True)
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
    _, val_idx = _tts(len(unique), 0.1)
    val_patients = {unique[i] for i in val_idx}
    is_val = np.asarray([p in val_patients for p in patients])
    rows = {"train": lists["train_val"][~is_val], "val": lists["train_val"][is_val], "test": lists["test"]}
    return SplitTable("nih", "", folder, df, rows, None, layout("nih").title, files)


def split_table(dataset: str, root: Path, kind: str = "") -> SplitTable:
    """The recipe for a task's data set key (RSNA's variant follows the task kind)."""
    try:
        return _split_table(dataset, root, kind)
    except TooFewRows as exc:
        from benchmark.data.real.layout import ALIASES

        _, files = label_files(root, ALIASES.get(dataset, dataset))
        raise UserError(f"label file(s) {', '.join(map(str, files.values()))} hold {exc}") from None


def _split_table(dataset: str, root: Path, kind: str) -> SplitTable:
    if dataset == "rsna":
        return rsna(root, "det" if kind in ("detection", "segmentation") else "cls")
    if dataset == "mimic5x200":
        return mimic5x200(root)
    recipes = {"siim": siim, "chexpert": chexpert, "chexpert5x200": chexpert5x200, "covidx": covidx,
               "object_cxr": object_cxr, "nih": nih}
    if dataset not in recipes:
        raise UserError(f"no real split recipe for data set {dataset!r}; known: rsna, mimic5x200, {', '.join(recipes)}")
    return recipes[dataset](root)
