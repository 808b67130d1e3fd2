"""NIH ChestX-ray14 (Data_Entry_2017_v2020): 14-label classification.

Recipe (mgca): BenchX uses MRM's lists, which are not public in a stable place;
here test = the official test_list.txt and val = 10 % of the
train_val_list.txt *patients* (``train_test_split(random_state=0)`` on the
patient ids in file order), so no patient is in two splits. Images: any
``*.png`` below the folder (``images*/``, any depth). Phantom stand-in:
``phantom_nih`` below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.sets import rendered_labels, sev, side, zone
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, index_files, label_files
from benchmark.data.real.loaders import label_set
from benchmark.data.real.mgca import tts
from benchmark.data.real.splittable import SplitTable
from benchmark.data.types import LabelSet
from benchmark.errors import UserError
from benchmark.registry import DATASETS

LAYOUT = Layout("nih", "NIH ChestX-ray14 (Data_Entry_2017_v2020)",
                ("ChestX-ray14", "chestx-ray14", "nih-chest-xrays", "nih"),
                ("Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"), "images")
LABEL_ROWS = 112120
#: The 14 labels, file order.
NIH_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")


def table(path: Path) -> pd.DataFrame:
    df = L.read_csv(path, ("Image Index", "Finding Labels", "Patient ID"), cells={"Image Index": L.ID, "Finding Labels": L.ID})
    L.check_rows(path, len(df), "Data_Entry_2017_v2020.csv", LABEL_ROWS)
    return df


def targets(df: pd.DataFrame) -> np.ndarray:
    found = df["Finding Labels"].astype(str).str.split("|")
    return np.asarray([[int(c in f) for c in NIH_CLASSES] for f in found], np.int64)


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


# ------------------------------------------------------- phantom stand-in


#: NIH label -> (prevalence, how it is drawn).  Real ChestX-ray14 prevalences
#: (Infiltration 17.7 %, Effusion 11.9 %, ... Hernia 0.2 %) with a 3 % floor so
#: a few hundred images still have positives of every label.
_NIH_PREVALENCE = (0.10, 0.05, 0.12, 0.16, 0.05, 0.06, 0.03, 0.05, 0.04, 0.03, 0.03, 0.03, 0.03, 0.03)


def nih_lesions(rng: np.random.Generator) -> tuple[list[Lesion], list[int]]:
    """Lesions and 14 labels (``NIH_CLASSES`` order) of one NIH-like image."""
    y = [int(rng.random() < p) for p in _NIH_PREVALENCE]
    # Co-occurrence: effusion with atelectasis / oedema / cardiomegaly.
    if y[2] and rng.random() < 0.3:
        y[0] = 1
    if y[9] and rng.random() < 0.5:
        y[2] = 1
    if y[9] and rng.random() < 0.4:
        y[1] = 1
    atel, card, eff, infil, mass, nod, pneu, ptx, cons, edema, emph, fib, thick, hernia = y
    drawn: list[Lesion] = []
    if atel:
        drawn.append(Lesion("atelectasis", side(rng, 0.2), zone(rng, (0.15, 0.3, 0.55)), sev(rng)))
    if card:
        drawn.append(Lesion("cardiomegaly", "center", "middle", sev(rng, 0.2, 0.9)))
    if eff:
        drawn.append(Lesion("effusion", side(rng, 0.3), "lower", sev(rng, 0.3, 0.9)))
    if infil:  # patchy, fainter, often several
        for _ in range(int(rng.integers(1, 3))):
            drawn.append(Lesion("opacity", side(rng), zone(rng, (0.3, 0.35, 0.35)), sev(rng, 0.15, 0.5)))
    if mass:
        drawn.append(Lesion("nodule", side(rng), zone(rng, (0.4, 0.35, 0.25)), sev(rng, 0.85, 1.0)))
    if nod:
        for _ in range(int(rng.integers(1, 3))):
            drawn.append(Lesion("nodule", side(rng), zone(rng), sev(rng, 0.15, 0.55)))
    if pneu:
        drawn.append(Lesion("opacity", side(rng), zone(rng, (0.15, 0.35, 0.5)), sev(rng, 0.5, 1.0)))
    if ptx:
        drawn.append(Lesion("pneumothorax", side(rng), "upper", sev(rng, 0.3, 1.0)))
    if cons:
        drawn.append(Lesion("opacity", side(rng), zone(rng, (0.2, 0.3, 0.5)), sev(rng, 0.7, 1.0)))
    if edema:
        drawn.append(Lesion("edema", "bilateral", "middle", sev(rng, 0.3, 1.0)))
    if emph:
        drawn.append(Lesion("hyperinflation", "bilateral", "diffuse", sev(rng, 0.4, 1.0)))
    if fib:
        drawn.append(Lesion("interstitial", "bilateral", str(rng.choice(["lower", "diffuse"])), sev(rng, 0.4, 1.0)))
    if thick:
        drawn.append(Lesion("effusion", side(rng), "lower", sev(rng, 0.02, 0.12)))
    if hernia:
        drawn.append(Lesion("elevated_diaphragm", "left", "lower", sev(rng, 0.5, 1.0)))
    if rng.random() < 0.25:
        drawn.append(Lesion(str(rng.choice(["catheter", "pacemaker"])), side(rng), "upper", 0.5))
    return drawn, y


def phantom_nih(split: str, n: int, size: int) -> LabelSet:
    """NIH ChestX-ray14-like multi-label set: labels (n, 14) int64 0/1 in ``NIH_CLASSES`` order.

    Drawn directly: Atelectasis, Cardiomegaly, Effusion, Nodule (1-2 small
    ``nodule``), Pneumothorax, Edema.  Approximated with the closest renderer
    kind: Infiltration = 1-2 faint small ``opacity`` blobs; Pneumonia = one
    medium-to-large ``opacity``; Consolidation = one large dense ``opacity``
    (the three overlap in appearance, as they do in the real labels); Mass =
    a ``nodule`` at maximum size; Emphysema = ``hyperinflation``; Fibrosis =
    ``interstitial`` reticulation (lower / diffuse); Pleural_Thickening = a
    minimal ``effusion`` (costophrenic blunting); Hernia = a left
    ``elevated_diaphragm`` (no retrocardiac air-fluid level is drawn).
    Prevalences are real-like with a 3 % floor; ~50 % of images have no label.
    """
    return rendered_labels(LAYOUT.key, split, n, size, nih_lesions, NIH_CLASSES)


class ChestXray14(DataSet):
    name = LAYOUT.key
    layout = LAYOUT

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root)

    def image_paths(self, st: SplitTable, ids: list[str]) -> list[Path]:
        index = index_files(st.folder, (".png",))
        return [index.get(Path(i).stem, st.folder / LAYOUT.images / i) for i in ids]

    def load(self, st: SplitTable, split: str, cfg) -> object:
        return label_set(st, split, cfg, self.image_paths(st, st.ids(split)), targets(st.part(split)), NIH_CLASSES)

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_nih(split, n, size)


DATASETS.register(ChestXray14.name)(ChestXray14())
