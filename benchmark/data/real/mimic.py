"""MIMIC-CXR-JPG 2.0.0: report sections, the pre-training table and its image cache.

Why: every method pre-trains on (frontal image, FINDINGS, IMPRESSION) triples.
``prepare`` reads the three official CSVs and each study's report text once and
writes the table as a CSV under ``$BENCHMARK_HOME/real/mimic/`` (keyed on the
label files' content; its size and SHA-256 are recorded beside it, and a table
that no longer matches is rebuilt after one warning) (one row per
frontal image: dicom_id, subject_id, study_id, ViewPosition, the official
split, findings, impression), dropping rows whose report has neither section.
A section is the text after its header line (``FINDINGS:``) up to the next
upper-case header; when a report repeats a header, the last one wins (as
MGCA's and IMITATE's preprocessing keep it). The studies of the MIMIC 5x200
zero-shot set are left out of the pre-training rows, so zero-shot never scores
images the encoder was trained on. ``data prepare mimic`` (table, image cache and
the 5x200 lists at once) is ``prepare.py``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.integrity import Damaged, discard, read_sidecar
from benchmark.data.real import labels as L
from benchmark.data.real.fingerprint import dataset_fingerprint, file_sha256
from benchmark.data.real.layout import find_folder, label_files, mimic_report_dirs
from benchmark.data.real.splittable import RECIPE_VERSION, SplitTable, five_by_200
from benchmark.errors import UserError
from benchmark.paths import atomic_json, atomic_write, cache_dir
from benchmark.progress import Progress

log = logging.getLogger(__name__)

TITLE = "MIMIC-CXR-JPG 2.0.0"
FRONTAL = ("PA", "AP")
TABLE_VERSION = "mimic-table-1"
#: A section header: upper-case words at the start of a line, a colon, then white space
#: (the character set of MIT-LCP's MIMIC-CXR section parser, which MGCA's text extraction uses).
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z ()/,-]*?)[ \t]*:(?=\s|$)", re.MULTILINE)


def sections(text: str) -> dict[str, str]:
    """Upper-case section name -> its text (whitespace collapsed; the last of a repeated name)."""
    out: dict[str, str] = {}
    heads = list(_HEADER.finditer(text))
    for k, m in enumerate(heads):
        end = heads[k + 1].start() if k + 1 < len(heads) else len(text)
        out[m.group(1).strip()] = " ".join(text[m.end():end].split())
    return out


def findings_impression(text: str) -> tuple[str, str]:
    s = sections(text)
    return s.get("FINDINGS", ""), s.get("IMPRESSION", "")


def jpg_path(folder: Path, subject, study, dicom: str) -> Path:
    subject = str(int(subject))
    return folder / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{int(study)}" / f"{dicom}.jpg"


def report_path(dirs: list[Path], subject, study) -> Path | None:
    subject = str(int(subject))
    for d in dirs:
        p = d / f"p{subject[:2]}" / f"p{subject}" / f"s{int(study)}.txt"
        if p.is_file():
            return p
    return None


def tables(root: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """(folder, frontal images with their official split, study-level CheXpert labels)."""
    folder, files = label_files(root, "mimic")
    meta = L.read_csv(files["mimic-cxr-2.0.0-metadata.csv"], ("dicom_id", "subject_id", "study_id", "ViewPosition"))
    L.check_rows(files["mimic-cxr-2.0.0-metadata.csv"], len(meta), "mimic-cxr-2.0.0-metadata.csv")
    split = L.read_csv(files["mimic-cxr-2.0.0-split.csv"], ("dicom_id", "split"))
    L.check_rows(files["mimic-cxr-2.0.0-split.csv"], len(split), "mimic-cxr-2.0.0-split.csv")
    chex = L.read_csv(files["mimic-cxr-2.0.0-chexpert.csv"], ("subject_id", "study_id") + L.CHEXPERT_LABELS)
    L.check_rows(files["mimic-cxr-2.0.0-chexpert.csv"], len(chex), "mimic-cxr-2.0.0-chexpert.csv")
    meta = meta[meta["ViewPosition"].isin(FRONTAL)]
    frontal = meta[["dicom_id", "subject_id", "study_id", "ViewPosition"]].merge(
        split[["dicom_id", "split"]], on="dicom_id", how="left", validate="one_to_one")
    if frontal["split"].isna().any():
        first = frontal.loc[frontal["split"].isna(), "dicom_id"].iloc[0]
        raise UserError(f"{files['mimic-cxr-2.0.0-split.csv']} has no split for image {first}: not the 2.0.0 files?")
    return folder, frontal.reset_index(drop=True), chex


def fivex200_rows(frontal: pd.DataFrame, chex: pd.DataFrame) -> pd.DataFrame:
    """The MIMIC 5x200 set: the CheXpert 5x200 rule on frontal images joined with
    mimic-cxr-2.0.0-chexpert.csv (NaN -> 0), ``sample(n=200, random_state=0)`` per class."""
    labels = chex.copy()
    labels[list(L.CHEXPERT_LABELS)] = labels[list(L.CHEXPERT_LABELS)].fillna(0)
    df = frontal.merge(labels, on=["subject_id", "study_id"], how="inner")
    return five_by_200(df, [c for c in L.CHEXPERT_LABELS if c != "No Finding"], "mimic-cxr-2.0.0-chexpert.csv")


def mimic5x200(root: Path) -> SplitTable:
    """The MIMIC 5x200 zero-shot set as a split table (test only), with report text when present."""
    folder, frontal, chex = tables(root)
    five = fivex200_rows(frontal, chex).reset_index(drop=True)
    five["id"] = five["dicom_id"]
    dirs = mimic_report_dirs(folder)
    texts = []
    for subject, study in five[["subject_id", "study_id"]].itertuples(index=False):
        p = report_path(dirs, subject, study)
        texts.append(" ".join(x for x in findings_impression(p.read_text(errors="replace")) if x) if p else "")
    five["text"] = texts
    return SplitTable("mimic5x200", "", folder, five, {"test": np.arange(len(five))}, "y", f"{TITLE} 5x200")


def pretrain_splits(root: Path) -> SplitTable:
    """The pre-training table's rows per official split (train / val = "validate" / test), as a split table."""
    _, df = prepare_table(root)
    df = df.assign(id=df["dicom_id"].astype(str))
    rows = {name: np.flatnonzero((df["split"] == official).to_numpy())
            for name, official in (("train", "train"), ("val", "validate"), ("test", "test"))}
    return SplitTable("mimic", "", find_folder(root, "mimic"), df, rows, None, f"{TITLE} pre-training table")


def table_path() -> Path:
    return cache_dir("real", "mimic") / "mimic-cxr-pretrain.csv"


def prepare_table(root: Path) -> tuple[Path, pd.DataFrame]:
    """Write (or reuse) the pre-training table; returns (its path, the table)."""
    folder, frontal, chex = tables(root)
    dirs = mimic_report_dirs(folder)
    if not dirs:
        raise UserError(f"no MIMIC-CXR report text under {folder}: expected files/pXX/pXXXXXXXX/sXXXXXXXX.txt there "
                        f"or in {folder.parent / 'mimic-cxr-reports'} (the mimic-cxr-reports.zip download)")
    labels_fp = dataset_fingerprint("mimic", root)  # the CSVs' content, not where the root is
    # the held-out 5x200 rows follow the recipe: its version keys the table
    key = hashlib.sha256(f"{TABLE_VERSION}|{RECIPE_VERSION}|{labels_fp}|{len(frontal)}".encode()).hexdigest()[:10]
    path = table_path()
    stamp = path.with_suffix(".key")
    if (table := _cached_table(path, stamp, key)) is not None:
        return path, table
    held_out = set(fivex200_rows(frontal, chex)["study_id"])
    studies = frontal[["subject_id", "study_id"]].drop_duplicates()
    texts: dict[int, tuple[str, str]] = {}
    missing = []
    with Progress(total=len(studies), desc="MIMIC reports", unit="report") as bar:
        for subject, study in studies.itertuples(index=False):
            p = report_path(dirs, subject, study)
            if p is None:
                missing.append(int(study))
            else:
                texts[int(study)] = findings_impression(p.read_text(errors="replace"))
            bar.update()
    if missing:
        if len(missing) > max(5, len(studies) // 100):
            raise UserError(f"{len(missing)} of {len(studies)} MIMIC-CXR reports are missing (first: study s{missing[0]}) "
                            f"under {', '.join(map(str, dirs))}")
        log.warning("MIMIC-CXR: %d report(s) missing, their images left out: %s", len(missing),
                    ", ".join(f"s{s}" for s in missing[:10]))
    df = frontal.copy()
    df["findings"] = [texts.get(int(s), ("", ""))[0] for s in df["study_id"]]
    df["impression"] = [texts.get(int(s), ("", ""))[1] for s in df["study_id"]]
    df = df[((df["findings"] != "") | (df["impression"] != "")) & ~df["study_id"].isin(held_out)]
    atomic_write(path, lambda p: df.to_csv(p, index=False))
    atomic_json(stamp, {"key": key, "bytes": path.stat().st_size, "sha256": file_sha256(path)})
    return path, df.reset_index(drop=True)


def _cached_table(path: Path, stamp: Path, key: str) -> pd.DataFrame | None:
    """The stored table if it was made from these label files and is intact (size and SHA-256
    as recorded in ``stamp``); a damaged one is reported in one warning line, then rebuilt."""
    if not (path.is_file() and stamp.is_file()):
        return None
    try:
        record = read_sidecar(stamp, ("key", "bytes", "sha256"))
    except Damaged:
        return None  # an older stamp (plain text): rebuild quietly
    if record["key"] != key:
        return None  # other label files: a new table
    if path.stat().st_size != record["bytes"] or file_sha256(path) != record["sha256"]:
        discard(log, "MIMIC-CXR pre-training table", path, "no longer matches its recorded size and SHA-256",
                [path, stamp])
        return None
    return pd.read_csv(path, dtype={"dicom_id": str}, keep_default_na=False)


def real_corpus(cfg, root: Path):
    """PairCorpus of the official train split for a method config (first ``corpus_size`` pairs)."""
    from benchmark.data.types import PairCorpus
    from benchmark.data.real.images import cached_stack

    _, df = prepare_table(root)
    folder = find_folder(root, "mimic")
    rows = df[df["split"] == "train"].reset_index(drop=True)
    if cfg.corpus_size and cfg.corpus_size > 0:
        rows = rows.iloc[: cfg.corpus_size]
    size = round(cfg.image_size * 8 / 7)
    ids = rows["dicom_id"].astype(str).tolist()
    stack = cached_stack("mimic", ids, [jpg_path(folder, a, b, c) for a, b, c in
                                        rows[["subject_id", "study_id", "dicom_id"]].itertuples(index=False)], size,
                         folder)
    keep = {i: k for k, i in enumerate(ids)}
    pos = [keep[i] for i in stack.ids]
    fingerprint = hashlib.sha256(f"{TABLE_VERSION}|{stack.key}|{','.join(stack.ids)}".encode()).hexdigest()[:12]
    return PairCorpus(ids=stack.ids, images=stack.images, findings=[str(rows["findings"][k]) for k in pos],
                      impressions=[str(rows["impression"][k]) for k in pos], source=f"real: {TITLE}",
                      fingerprint=fingerprint)
