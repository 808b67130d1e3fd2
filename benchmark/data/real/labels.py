"""Reading and checking the official label files, one function per data set.

Why: a label file of another release (RSNA stage 1, a trimmed CheXpert, a
CSV re-saved with other columns) silently changes every split. Each reader
checks the columns it needs and the official row count, and fails with one
line naming the file and what was expected. ``BENCHMARK_DATA_SUBSET=1``
accepts other row counts (test fixtures, deliberate subsets) with a warning;
splits drawn from such files differ from the published manifests.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UserError

log = logging.getLogger(__name__)

CHEXPERT_COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
#: All 14 CheXpert labeler observations, file order.
CHEXPERT_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                   "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                   "Fracture", "Support Devices")
NIH_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
               "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
COVIDX_CLASSES = ("normal", "pneumonia", "COVID-19")

#: Official row counts: (label file, rows) -> checked on every read.
OFFICIAL_ROWS = {
    "stage_2_train_labels.csv": 30227,
    "train-rle.csv": 12954,
    "CheXpert train.csv": 223414,
    "CheXpert valid.csv": 234,
    "Object-CXR train.csv": 8000,
    "Object-CXR dev.csv": 1000,
    "Data_Entry_2017_v2020.csv": 112120,
    "mimic-cxr-2.0.0-metadata.csv": 377110,
    "mimic-cxr-2.0.0-split.csv": 377110,
    "mimic-cxr-2.0.0-chexpert.csv": 227827,
}


def subset_allowed() -> bool:
    return os.environ.get("BENCHMARK_DATA_SUBSET", "") not in ("", "0")


def read_csv(path: Path, columns: tuple[str, ...], **kwargs) -> pd.DataFrame:
    """A label table with stripped column names; a UserError if unreadable or a column is missing."""
    try:
        df = pd.read_csv(path, compression="infer", **kwargs)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read label file {path}: {exc}".splitlines()[0]) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"label file {path} lacks the column(s) {', '.join(missing)}; expected {', '.join(columns)} "
                        f"(found {', '.join(map(str, df.columns[:8]))}): not the official file?")
    if df.empty:
        raise UserError(f"label file {path} has a header but no rows: truncated? (expected the official file)")
    return df


def check_rows(path: Path, rows: int, name: str) -> None:
    """The official row count of ``name``, or a UserError (a warning in subset mode)."""
    official = OFFICIAL_ROWS[name]
    if rows == official:
        return
    msg = f"label file {path} has {rows} rows; the official {name} has {official}"
    if not subset_allowed():
        raise UserError(f"{msg}: another version? (BENCHMARK_DATA_SUBSET=1 accepts it; splits then differ "
                        "from the published manifests)")
    log.warning("%s (BENCHMARK_DATA_SUBSET=1: using it anyway)", msg)


def scaled(count: int, official_total: int, n: int) -> int:
    """A recipe's fixed count, scaled to a subset of ``n`` rows (itself on the official data)."""
    if n == official_total:
        return count
    return max(1, min(n - 2, round(count * n / official_total)))


# -------------------------------------------------------------------- RSNA


def rsna_patients(path: Path) -> pd.DataFrame:
    """One row per patient (sorted by id, as MGCA's ``groupby("patientId")`` orders them):
    patientId, boxes (list of [x, y, w, h] in original pixels), Target."""
    df = read_csv(path, ("patientId", "x", "y", "width", "height", "Target"))
    check_rows(path, len(df), "stage_2_train_labels.csv")
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


def clip_boxes(boxes, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """x, y, w, h boxes clipped to a ``height`` x ``width`` image, boxes with no area left
    (zero or negative width or height, or wholly outside) dropped.

    Returns (kept boxes (k, 4) float32, how many were clipped, how many dropped): the loaders
    draw masks and detection targets from the same kept boxes and warn with the counts."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x0, y0 = np.clip(b[:, 0], 0, width), np.clip(b[:, 1], 0, height)
    x1, y1 = np.clip(b[:, 0] + b[:, 2], 0, width), np.clip(b[:, 1] + b[:, 3], 0, height)
    keep = (b[:, 2] > 0) & (b[:, 3] > 0) & (x1 > x0) & (y1 > y0)
    out = np.stack([x0, y0, x1 - x0, y1 - y0], 1)[keep]
    clipped = int((keep & ~np.all(np.isclose(np.stack([x0, y0, x1, y1], 1),
                                             np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)),
                                  axis=1)).sum())
    return out.astype(np.float32), clipped, int((~keep).sum())


def box_problem(box, height: int | None = None, width: int | None = None) -> str | None:
    """Why a box in original pixels is invalid (``data check``), or None; the image size, when
    known, also catches boxes reaching outside it."""
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
        return "zero or negative width or height"
    if x < 0 or y < 0:
        return "starts outside the image"
    if height is not None and width is not None and (x + w > width or y + h > height):
        return f"reaches outside the {width} x {height} image"
    return None


# -------------------------------------------------------------------- SIIM


def siim_images(path: Path) -> pd.DataFrame:
    """One row per image, in order of first appearance: ImageId, rles (the non-empty
    EncodedPixels strings), Label (1 = pneumothorax). "-1" with or without a leading
    space is negative (copies of the file differ)."""
    df = read_csv(path, ("ImageId", "EncodedPixels"), dtype=str, keep_default_na=False)
    check_rows(path, len(df), "train-rle.csv")
    rles: dict[str, list[str]] = {}
    for image, enc in df[["ImageId", "EncodedPixels"]].itertuples(index=False):
        entry = rles.setdefault(image.strip(), [])
        enc = enc.strip()
        if enc and enc != "-1":
            entry.append(enc)
    ids = list(rles)
    return pd.DataFrame({"ImageId": ids, "rles": [rles[i] for i in ids], "Label": [int(bool(rles[i])) for i in ids]})


def rle_mask(rles: list[str], height: int, width: int) -> np.ndarray:
    """SIIM's relative run-length encoding (column-major, start offsets relative to the
    previous run's end) -> (height, width) uint8 0/1; several regions are OR-ed."""
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


# ---------------------------------------------------------------- CheXpert


def chexpert_table(path: Path, name: str) -> pd.DataFrame:
    df = read_csv(path, ("Path", "Frontal/Lateral") + CHEXPERT_LABELS)
    check_rows(path, len(df), f"CheXpert {name}")
    return df


def chexpert_targets(df: pd.DataFrame) -> np.ndarray:
    """The mgca 5-label targets: NaN -> 0; uncertain -1 -> 1 for Atelectasis, Edema,
    Pleural Effusion, -> 0 for Cardiomegaly, Consolidation."""
    ones = {"Atelectasis", "Edema", "Pleural Effusion"}
    cols = []
    for c in CHEXPERT_COMPETITION:
        v = df[c].fillna(0).to_numpy(dtype=np.float64)
        v = np.where(v == -1, 1.0 if c in ones else 0.0, v)
        cols.append(v)
    return np.stack(cols, 1).astype(np.int64)


def relative_image_path(path: str) -> str:
    """CheXpert's Path column starts with the folder name (-small or not): drop it."""
    parts = str(path).replace("\\", "/").split("/")
    return "/".join(parts[1:]) if parts and parts[0].startswith("CheXpert") else "/".join(parts)


# ------------------------------------------------------------------ COVIDx


def covidx_list(path: Path) -> pd.DataFrame:
    """A COVIDx list: space-separated patient id, filename, class, source (no header)."""
    try:
        df = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"cannot read COVIDx list {path}: {exc}".splitlines()[0]) from None
    if df.shape[1] < 3:
        raise UserError(f"COVIDx list {path} has {df.shape[1]} columns; expected patient id, filename, class, source")
    df = df.iloc[:, :4]
    df.columns = ["patient_id", "filename", "label", "source"][: df.shape[1]]
    names = {c.lower(): i for i, c in enumerate(COVIDX_CLASSES)}
    bad = sorted(set(df["label"].str.lower()) - set(names))
    if bad:
        raise UserError(f"COVIDx list {path} has unknown classes {bad}; expected {', '.join(COVIDX_CLASSES)}")
    df["y"] = df["label"].str.lower().map(names).astype(np.int64)
    return df


# -------------------------------------------------------------- Object-CXR


def object_table(path: Path, name: str) -> pd.DataFrame:
    df = read_csv(path, ("image_name", "annotation"), dtype=str, keep_default_na=False)
    check_rows(path, len(df), f"Object-CXR {name}")
    return df


def object_boxes(annotation: str) -> list[list[float]]:
    """Object-CXR annotations ("type x y x y ...;..."; 0 rectangle, 1 ellipse, 2 polygon)
    -> bounding boxes [x, y, w, h] in original pixels (an ellipse's and a polygon's
    enclosing box)."""
    boxes = []
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
        boxes.append([xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()])
    return boxes


# --------------------------------------------------------------------- NIH


def nih_table(path: Path) -> pd.DataFrame:
    df = read_csv(path, ("Image Index", "Finding Labels", "Patient ID"))
    check_rows(path, len(df), "Data_Entry_2017_v2020.csv")
    return df


def nih_targets(df: pd.DataFrame) -> np.ndarray:
    found = df["Finding Labels"].astype(str).str.split("|")
    return np.asarray([[int(c in f) for c in NIH_CLASSES] for f in found], np.int64)


def id_list(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError as exc:
        raise UserError(f"cannot read list {path}: {exc.strerror or exc}") from None
