"""RSNA Pneumonia Detection Challenge (stage 2): classification, detection, segmentation.

Recipe (mgca): rows grouped per patient sorted by id (MGCA's ``groupby``);
classification ``test_size=0.3`` then halves (18,678 / 4,003 / 4,003);
detection and segmentation ``test_size=5337*2`` then halves (16,010 / 5,337 /
5,337). The second call's first part is test, its second val, as in MGCA.
Images: ``stage_2_train_images/<patientId>.dcm``. Phantom stand-in:
``phantom_rsna`` below (about 30 % images with 1-3 pneumonia opacities,
box-filled masks; negatives carry other findings).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data import integrity
from benchmark.data.dataset import DataSet
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.datasets import (
    PHANTOM_VERSION,
    SPLITS,
    check_size,
    distractor,
    open_cached,
    same_length,
    seeded_rng,
    short_sha,
)
from benchmark.data.phantom.render import render
from benchmark.data.phantom.stack import render_stack
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.loaders import boxes_set, label_set
from benchmark.data.real.mgca import three_way
from benchmark.data.real.splittable import SplitTable
from benchmark.data.types import LesionSet, TestLabels
from benchmark.errors import UserError
from benchmark.paths import atomic_json, cache_dir
from benchmark.registry import DATASETS

LAYOUT = Layout("rsna", "RSNA Pneumonia Detection Challenge stage 2",
                ("rsna-pneumonia", "rsna", "rsna-pneumonia-detection-challenge"),
                ("stage_2_train_labels.csv",), "stage_2_train_images")
LABEL_ROWS = 30227
ORIGINAL_SIZE = 1024  # every stage-2 DICOM is 1024 x 1024 px
PATIENTS = 26684


def patients(path: Path) -> pd.DataFrame:
    """One row per patient (sorted by id, as MGCA's ``groupby("patientId")`` orders them):
    patientId, boxes (list of [x, y, w, h] in original pixels), Target."""
    df = L.read_csv(path, ("patientId", "x", "y", "width", "height", "Target"),
                    cells={"patientId": L.ID, "Target": L.BINARY, **{c: L.NUMBER for c in ("x", "y", "width", "height")}})
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



# ------------------------------------------------------- phantom stand-in

#: Share of stand-in images drawn with pneumonia opacities.
RSNA_POSITIVE_RATE = 0.3


def rsna_lesions(rng: np.random.Generator) -> list[Lesion]:
    """Lesions of one RSNA-like image: ~30 % with 1-3 pneumonia opacities, others normal or distractors."""
    lesions: list[Lesion] = []
    if rng.random() < RSNA_POSITIVE_RATE:
        k = int(rng.choice([1, 2, 3], p=[0.5, 0.4, 0.1]))
        for _ in range(k):
            side = str(rng.choice(["right", "left"]))
            zone = str(rng.choice(["upper", "middle", "lower"], p=[0.2, 0.35, 0.45]))
            lesions.append(Lesion("opacity", side, zone, float(rng.uniform(0.3, 1.0))))
        if rng.random() < 0.2:
            lesions.append(distractor(rng))
    elif rng.random() < 0.5:
        lesions.append(distractor(rng))
        if rng.random() < 0.25:
            lesions.append(distractor(rng))
    return lesions


def phantom_rsna(split: str, n: int, size: int) -> LesionSet:
    """An RSNA-pneumonia-like set: ``n`` images of ``split`` (train/val/test).

    Image i of a split depends only on (PHANTOM_VERSION, "rsna", split, i): the
    splits use disjoint seed streams and a smaller set is a prefix of a larger
    one.  Ids look like ``rsna-train-000123``.
    """
    if split not in SPLITS:
        raise UserError(f"unknown phantom RSNA split {split!r}; expected one of {', '.join(SPLITS)}")
    if not isinstance(n, (int, np.integer)) or n <= 0:
        raise UserError(f"phantom RSNA needs a positive number of images, got {n!r}")
    n, size = int(n), check_size(size)
    folder = cache_dir("phantom", PHANTOM_VERSION)
    stem = f"{LAYOUT.key}-{split}-{size}px-{n}"
    img_path, mask_path, meta_path = (folder / f"{stem}.images.npy", folder / f"{stem}.masks.npy",
                                      folder / f"{stem}.json")
    fingerprint = short_sha(PHANTOM_VERSION, LAYOUT.key, split, size, n)
    entry = open_cached(f"phantom {LAYOUT.key}-{split}", meta_path, [img_path, mask_path],
                        lambda m: same_length(m, "boxes"), size, ("boxes",))
    if entry is None:
        def draw(i: int) -> tuple[tuple[np.ndarray, np.ndarray], list[list[float]]]:
            rng = seeded_rng(PHANTOM_VERSION, LAYOUT.key, split, i)
            out = render(rsna_lesions(rng), rng, size)
            return (out.image, out.mask), out.boxes.tolist()

        checks, boxes = render_stack([img_path, mask_path], n, size, draw,
                                     desc=f"phantom {LAYOUT.key}-{split} {size}px")
        atomic_json(meta_path, {"version": PHANTOM_VERSION, "size": size, "boxes": boxes, integrity.KEY: checks})
        entry = ({"boxes": boxes}, [np.load(p, mmap_mode="r") for p in (img_path, mask_path)])
    meta, (images, masks) = entry
    box_arrays = [np.asarray(b, np.float32).reshape(-1, 4) for b in meta["boxes"]]
    return LesionSet(
        ids=[f"{LAYOUT.key}-{split}-{i:06d}" for i in range(n)],
        images=images,
        masks=masks,
        boxes=box_arrays,
        labels=np.asarray([len(b) > 0 for b in box_arrays], np.int64),
        source="phantom",
        fingerprint=fingerprint,
    )


class Rsna(DataSet):
    name = LAYOUT.key
    layout = LAYOUT
    variants = ("cls", "det")
    mgca_sample_variants = ("cls",)  # MGCA's classification dataset: sample(frac, random_state=42)

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
        return label_set(st, split, cfg, paths, st.part(split)["Target"].to_numpy(np.int64), ("normal", "pneumonia"))

    def test_labels(self, st: SplitTable, split: str) -> TestLabels:
        """Labels, and for the detection/segmentation variant each image's share of pixels inside
        its (clipped, united) boxes at the download's 1024 x 1024 px."""
        out = super().test_labels(st, split)
        if st.variant == "det":
            out.lesion_share = np.asarray([L.box_mask(b, ORIGINAL_SIZE, ORIGINAL_SIZE).mean() if b else 0.0
                                           for b in st.part(split)["boxes"]])
        return out

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_rsna(split, n, size)


DATASETS.register(Rsna.name)(Rsna())
