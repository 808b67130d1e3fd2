"""Tiny copies of the official downloads, in their own layouts, for the real-data tests.

Each builder writes one data set under ``root`` with the official file names,
columns and image formats (DICOM written with pydicom, one MONOCHROME1; JPG/PNG
with PIL), small enough to decode in milliseconds. Row counts differ from the
official files, so the tests that load them set ``BENCHMARK_DATA_SUBSET=1``.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

CHEXPERT_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                   "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                   "Fracture", "Support Devices")
FIVE = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
#: the real official label files shipped in the torchxrayvision wheel
XRV = Path(importlib.util.find_spec("torchxrayvision").submodule_search_locations[0]) / "data"


def official_labels(root: Path) -> Path:
    """The real RSNA and SIIM label files (as .zip / .gz variants) in their layouts under ``root``."""
    (root / "rsna").mkdir()
    shutil.copy(XRV / "kaggle_stage_2_train_labels.csv.zip", root / "rsna" / "stage_2_train_labels.csv.zip")
    (root / "siim").mkdir()
    shutil.copy(XRV / "siim-pneumothorax-train-rle.csv.gz", root / "siim" / "train-rle.csv.gz")
    return root


def write_dicom(path: Path, arr: np.ndarray, monochrome1: bool = False, window: tuple[int, int] | None = None) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(arr, dtype=np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def write_dicom_jpeg(path: Path, arr: np.ndarray) -> None:
    """An 8-bit JPEG Baseline DICOM, the transfer syntax of the RSNA stage 2 images."""
    import io

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def _img(rng: np.random.Generator, h: int, w: int, bright: bool = False) -> np.ndarray:
    a = rng.integers(0, 120, (h, w)).astype(np.uint8)
    if bright:
        a[h // 4: h // 2, w // 4: w // 2] = 250
    return a


def write_image(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def rsna(root: Path, n: int = 40, folder: str = "rsna-pneumonia", monochrome1: int = 1) -> dict[str, list]:
    """n patients, ~1/3 with 1-2 boxes (64 x 64 DICOMs); returns {patientId: boxes}."""
    rng = np.random.default_rng(0)
    base = root / folder
    rows, truth = ["patientId,x,y,width,height,Target"], {}
    for i in range(n):
        pid = f"{i:08x}-rsna-fixture"
        boxes = []
        if i % 3 == 0:
            boxes = [[8.0, 10.0, 20.0, 16.0]] + ([[36.0, 30.0, 12.0, 20.0]] if i % 6 == 0 else [])
        truth[pid] = boxes
        rows += [f"{pid},{x},{y},{w},{h},1" for x, y, w, h in boxes] or [f"{pid},,,,,0"]
        arr = rng.integers(0, 4095, (64, 64))
        write_dicom(base / "stage_2_train_images" / f"{pid}.dcm", arr, monochrome1=(i < monochrome1))
    (base / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    return truth


def siim(root: Path, n: int = 30) -> dict[str, int]:
    """n images (every 3rd positive, some with two regions; header with a leading space)."""
    rng = np.random.default_rng(1)
    base = root / "siim-acr-pneumothorax"
    rows, labels = ["ImageId, EncodedPixels"], {}
    for i in range(n):
        iid = f"1.2.276.0.7230010.3.1.4.{i}"
        if i % 3 == 0:
            rows.append(f"{iid}, 100 6 58 6 58 6")
            if i % 6 == 0:
                rows.append(f"{iid}, 2000 4 60 4")
        else:
            rows.append(f"{iid}, -1" if i % 2 else f"{iid},-1")
        labels[iid] = int(i % 3 == 0)
        write_dicom(base / "dicom-images-train" / f"study{i}" / f"series{i}" / f"{iid}.dcm", rng.integers(0, 4095, (64, 64)))
    (base / "train-rle.csv").write_text("\n".join(rows) + "\n")
    return labels


def chexpert(root: Path, n_train: int = 40, n_valid: int = 10, folder: str = "CheXpert-v1.0-small") -> None:
    """train.csv with 2 single-finding frontal images per class, laterals and mixed rows; valid.csv."""
    rng = np.random.default_rng(2)
    base = root / folder
    head = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
    for name, n in (("train", n_train), ("valid", n_valid)):
        lines = [head]
        for i in range(n):
            lateral = i % 7 == 6
            view = "view2_lateral.jpg" if lateral else "view1_frontal.jpg"
            rel = f"{name}/patient{i:05d}/study1/{view}"
            vals = {c: "" for c in CHEXPERT_LABELS}
            if i < 10:  # single finding, two per class
                vals[FIVE[i % 5]] = "1.0"
            else:
                for c in CHEXPERT_LABELS[1:]:
                    vals[c] = str(rng.choice(["", "0.0", "1.0", "-1.0"]))
            lines.append(f"{folder}/{rel},Female,60,{'Lateral' if lateral else 'Frontal'},{'' if lateral else 'AP'},"
                         + ",".join(vals[c] for c in CHEXPERT_LABELS))
            write_image(base / rel, _img(rng, 40, 48))
        (base / f"{name}.csv").write_text("\n".join(lines) + "\n")


def covidx(root: Path, n_train: int = 30, n_test: int = 9) -> None:
    rng = np.random.default_rng(3)
    base = root / "covidx"
    classes = ("normal", "pneumonia", "COVID-19")
    for name, n in (("train", n_train), ("test", n_test)):
        lines = []
        for i in range(n):
            fn = f"{name}-{i:04d}.png"
            lines.append(f"P{i} {fn} {classes[i % 3]} fixture")
            write_image(base / name / fn, _img(rng, 48, 40, bright=i % 3 == 2))
        (base / f"{name}_COVIDx9A.txt").write_text("\n".join(lines) + "\n")


def object_cxr(root: Path, n_train: int = 20, n_dev: int = 6) -> None:
    rng = np.random.default_rng(4)
    base = root / "object-cxr"
    for name, n in (("train", n_train), ("dev", n_dev)):
        lines = ["image_name,annotation"]
        for i in range(n):
            fn = f"{i:05d}.jpg"
            ann = ""
            if i % 2 == 0:
                ann = "0 10 12 30 28;1 40 40 50 56" if i % 4 == 0 else "2 5 5 20 8 12 25"
            lines.append(f"{fn},{ann}")
            write_image(base / name / fn, _img(rng, 64, 80))
        (base / f"{name}.csv").write_text("\n".join(lines) + "\n")


def nih(root: Path, n: int = 30) -> None:
    rng = np.random.default_rng(5)
    base = root / "ChestX-ray14"
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
    lines = [header]
    names = ("Atelectasis", "Effusion", "Infiltration", "No Finding", "Cardiomegaly|Edema")
    train_val, test = [], []
    for i in range(n):
        fn = f"{i // 2:08d}_{i % 2:03d}.png"
        lines.append(f"{fn},{names[i % 5]},{i % 2},{i // 2},50,M,PA,40,40,0.14,0.14")
        (test if i // 2 >= 12 else train_val).append(fn)
        write_image(base / f"images_{1 + i // 10:03d}" / "images" / fn, _img(rng, 40, 40))
    with gzip.open(base / "Data_Entry_2017_v2020.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    (base / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (base / "test_list.txt").write_text("\n".join(test) + "\n")


REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough

 FINDINGS:
 {findings}

 IMPRESSION:
 {impression}
"""


def mimic(root: Path, n: int = 24) -> dict[str, tuple[str, str]]:
    """n studies with one frontal (and every 4th a lateral) JPG; studies 0-4 are single-finding
    (the 5x200 pool); study n-1 has no FINDINGS/IMPRESSION. Returns {dicom_id: (findings, impression)}."""
    rng = np.random.default_rng(6)
    base = root / "mimic-cxr-jpg" / "2.0.0"
    reports = root / "mimic-cxr-reports" / "files"
    meta = ["dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns"]
    split = ["dicom_id,study_id,subject_id,split"]
    chex = ["subject_id,study_id," + ",".join(CHEXPERT_LABELS)]
    truth = {}
    for i in range(n):
        subject, study = 10000000 + i, 50000000 + i
        sp = "test" if i < 5 else ("validate" if i == 5 else "train")
        vals = {c: "" for c in CHEXPERT_LABELS}
        if i < 5:
            vals[FIVE[i]] = "1.0"
        else:
            vals["No Finding"] = "1.0"
        chex.append(f"{subject},{study}," + ",".join(vals[c] for c in CHEXPERT_LABELS))
        views = [("PA" if i % 2 else "AP", f"{i:04d}-frontal")] + ([("LATERAL", f"{i:04d}-lateral")] if i % 4 == 0 else [])
        for view, dicom in views:
            meta.append(f"{dicom},{subject},{study},CHEST,{view},40,48")
            split.append(f"{dicom},{study},{subject},{sp}")
            write_image(base / "files" / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg",
                        _img(rng, 40, 48))
        findings, impression = f"Finding number {i}. Lungs clear.", f"Impression {i}."
        text = REPORT.format(findings=findings, impression=impression)
        if i == 6:  # a repeated header: the last one counts
            text = text.replace(" FINDINGS:", " FINDINGS: early draft.\n\n FINDINGS:", 1)
        if i == n - 1:
            text, findings, impression = " FINAL REPORT\n INDICATION: none\n", "", ""
        p = reports / f"p{str(subject)[:2]}" / f"p{subject}" / f"s{study}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        truth[views[0][1]] = (findings, impression)
    (base / "mimic-cxr-2.0.0-metadata.csv").write_text("\n".join(meta) + "\n")
    (base / "mimic-cxr-2.0.0-split.csv").write_text("\n".join(split) + "\n")
    with gzip.open(base / "mimic-cxr-2.0.0-chexpert.csv.gz", "wt") as f:
        f.write("\n".join(chex) + "\n")
    return truth


def all_sets(root: Path) -> Path:
    rsna(root)
    siim(root)
    chexpert(root)
    covidx(root)
    object_cxr(root)
    nih(root)
    mimic(root)
    return root
