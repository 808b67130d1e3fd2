"""Object-CXR (MIDL 2020): foreign-object detection.

Recipe (mgca): official train ``test_size=0.1`` (``random_state=0``) -> 7,200 /
800; test = dev (1,000). Boxes: rectangles and ellipses (types 0, 1) as MGCA,
the min/max of their points. Polygons (type 2): MGCA centres a box on the
shapely ``polylabel`` of the 100 px-buffered outline, sized to cover the
outline; here the polygon's tight enclosing box (no shapely dependency; it
differs only in how far the box overshoots the object). Images: ``train/<name>``,
``dev/<name>``. Phantom stand-in: ``phantom_object_cxr`` below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.datasets import distractor
from benchmark.data.phantom.sets import extras, rendered_lesions, sev, side, zone
from benchmark.data.real import labels as L
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.loaders import boxes_set
from benchmark.data.real.mgca import tts
from benchmark.data.real.splittable import SplitTable
from benchmark.data.types import LesionSet
from benchmark.errors import UserError
from benchmark.registry import DATASETS

LAYOUT = Layout("object_cxr", "Object-CXR (MIDL 2020)", ("object-cxr", "object_cxr", "Object-CXR"),
                ("train.csv", "dev.csv"), "train")
ROWS = {"train.csv": 8000, "dev.csv": 1000}


def table(path: Path, name: str) -> pd.DataFrame:
    df = L.read_csv(path, ("image_name", "annotation"), cells={"image_name": L.ID}, dtype=str, keep_default_na=False)
    L.check_rows(path, len(df), f"Object-CXR {name}", ROWS[name])
    return df


def boxes(annotation: str) -> list[list[float]]:
    """Annotations ("type x y x y ...;..."; 0 rectangle, 1 ellipse, 2 polygon) -> bounding
    boxes [x, y, w, h] in original pixels (an ellipse's and a polygon's enclosing box)."""
    out = []
    for part in str(annotation).split(";"):
        values = part.split()
        if not values:
            continue
        try:
            kind, coords = int(values[0]), np.asarray(values[1:], dtype=np.float64)
        except ValueError:
            raise UserError(f"malformed Object-CXR annotation {part!r}") from None
        if kind not in (0, 1, 2) or len(coords) < 4 or len(coords) % 2:
            raise UserError(f"malformed Object-CXR annotation {part!r}: expected type 0/1/2 and x y pairs")
        xs, ys = coords[0::2], coords[1::2]
        out.append([xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()])
    return out


def recipe(root: Path) -> SplitTable:
    folder, files = label_files(root, LAYOUT)
    train = table(files["train.csv"], "train.csv").assign(subdir="train")
    dev = table(files["dev.csv"], "dev.csv").assign(subdir="dev")
    both = pd.concat([train, dev], ignore_index=True)
    both["id"] = both["subdir"] + "/" + both["image_name"]
    both["boxes"] = both["annotation"].map(boxes)
    both["Label"] = both["boxes"].map(lambda b: int(bool(b)))
    tr, va = tts(len(train), 0.1)
    rows = {"train": tr, "val": va, "test": np.arange(len(train), len(both))}
    return SplitTable(LAYOUT.key, "", folder, both, rows, "Label", LAYOUT.title, files)


# ------------------------------------------------------- phantom stand-in

#: Share of stand-in images with at least one foreign object (real: about half).
OBJECT_POSITIVE_RATE = 0.5

def object_cxr_lesions(rng: np.random.Generator) -> tuple[list[Lesion], int]:
    """One Object-CXR-like image: ~50 % with 1-3 foreign objects; all images may carry devices / findings."""
    lesions: list[Lesion] = []
    positive = rng.random() < OBJECT_POSITIVE_RATE
    if positive:
        for _ in range(int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))):
            kind = str(rng.choice(["coin", "button", "wire"], p=[0.35, 0.35, 0.3]))
            lesions.append(Lesion(kind, side(rng), zone(rng, (0.3, 0.4, 0.3)), sev(rng, 0.1, 1.0)))
    if rng.random() < 0.35:
        lesions.append(distractor(rng))
    lesions += extras(rng, 0.35)
    return lesions, int(positive)


def phantom_object_cxr(split: str, n: int, size: int) -> LesionSet:
    """Object-CXR-like foreign-object set: labels (n,) int64 1 = any object; boxes (k, 4) per
    object (coins: bright discs, buttons: discs with two holes, wires: curved bright lines);
    masks: filled object boxes.  Medical devices (catheters, pacemakers) appear on both
    classes and are not foreign objects here."""
    return rendered_lesions(LAYOUT.key, split, n, size, object_cxr_lesions, "objects")


class ObjectCxr(DataSet):
    name = LAYOUT.key
    layout = LAYOUT

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe(root)

    def load(self, st: SplitTable, split: str, cfg) -> object:
        if cfg.kind in ("detection", "segmentation"):
            return boxes_set(st, split, cfg, self.image_paths(st, st.ids(split)))
        return super().load(st, split, cfg)

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_object_cxr(split, n, size)


DATASETS.register(ObjectCxr.name)(ObjectCxr())
