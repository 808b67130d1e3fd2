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
images the encoder was trained on. ``data prepare`` (table, image cache and
the 5x200 lists at once) is ``benchmark.data.real.prepare``. This module also
registers the 5x200 zero-shot set carved out of the same download. Phantom
stand-ins: ``phantom_corpus`` (pairs) and ``phantom_5x200``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.dataset import DataSet, Report
from benchmark.data.integrity import Damaged, discard, read_sidecar
from benchmark.data.phantom.datasets import phantom_corpus
from benchmark.data.phantom.fivex200 import phantom_5x200
from benchmark.data.real import labels as L
from benchmark.data.real.fingerprint import file_sha256, files_fingerprint
from benchmark.data.real.images import MAX_BAD, cached_stack
from benchmark.data.real.layout import Layout, find_folder, label_files
from benchmark.data.real.loaders import text_set
from benchmark.data.real.splittable import RECIPE_VERSION, SplitTable, five_by_200
from benchmark.data.types import LABELER_OBSERVATIONS, PairCorpus
from benchmark.errors import UserError
from benchmark.paths import atomic_json, atomic_write, cache_dir
from benchmark.progress import Progress
from benchmark.registry import DATASETS

log = logging.getLogger(__name__)

TITLE = "MIMIC-CXR-JPG 2.0.0"
LAYOUT = Layout("mimic", TITLE,
                ("mimic-cxr-jpg/2.0.0", "mimic-cxr-jpg", "physionet.org/files/mimic-cxr-jpg/2.0.0",
                 "MIMIC-CXR-JPG", "mimic"),
                ("mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-split.csv", "mimic-cxr-2.0.0-chexpert.csv"),
                "files")
#: Official row counts of the three CSVs.
ROWS = {"mimic-cxr-2.0.0-metadata.csv": 377110, "mimic-cxr-2.0.0-split.csv": 377110,
        "mimic-cxr-2.0.0-chexpert.csv": 227827}
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


def report_dirs(folder: Path) -> list[Path]:
    """Folders that may hold the ``files/pXX/.../sXXXXXXXX.txt`` reports."""
    candidates = [folder, folder.parent / "mimic-cxr-reports", folder.parent / "mimic-cxr" / "2.0.0",
                  folder.parent / "mimic-cxr", folder.parent.parent / "mimic-cxr-reports"]
    return [c / "files" for c in candidates if (c / "files").is_dir()]


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
    folder, files = label_files(root, LAYOUT)
    meta = L.read_csv(files[LAYOUT.labels[0]], ("dicom_id", "subject_id", "study_id", "ViewPosition"),
                      cells={"dicom_id": L.ID})
    L.check_rows(files[LAYOUT.labels[0]], len(meta), LAYOUT.labels[0], ROWS[LAYOUT.labels[0]])
    split = L.read_csv(files[LAYOUT.labels[1]], ("dicom_id", "split"), cells={"dicom_id": L.ID})
    L.check_rows(files[LAYOUT.labels[1]], len(split), LAYOUT.labels[1], ROWS[LAYOUT.labels[1]])
    chex = L.read_csv(files[LAYOUT.labels[2]], ("subject_id", "study_id") + LABELER_OBSERVATIONS,
                      cells={c: L.LABELER for c in LABELER_OBSERVATIONS})
    L.check_rows(files[LAYOUT.labels[2]], len(chex), LAYOUT.labels[2], ROWS[LAYOUT.labels[2]])
    meta = meta[meta["ViewPosition"].isin(FRONTAL)]
    frontal = meta[["dicom_id", "subject_id", "study_id", "ViewPosition"]].merge(
        split[["dicom_id", "split"]], on="dicom_id", how="left", validate="one_to_one")
    if frontal["split"].isna().any():
        first = frontal.loc[frontal["split"].isna(), "dicom_id"].iloc[0]
        raise UserError(f"{files[LAYOUT.labels[1]]} has no split for image {first}: not the 2.0.0 files?")
    return folder, frontal.reset_index(drop=True), chex


def fivex200_rows(frontal: pd.DataFrame, chex: pd.DataFrame) -> pd.DataFrame:
    """The 5x200 set: the 5x200 rule (``splittable.five_by_200``) on frontal images joined
    with the labeler's table (NaN -> 0), ``sample(n=200, random_state=0)`` per class."""
    df = frontal.merge(chex, on=["subject_id", "study_id"], how="inner")
    return five_by_200(df, LAYOUT.labels[2])


def recipe_5x200(root: Path) -> SplitTable:
    """The MIMIC 5x200 zero-shot set as a split table (test only), with report text when present."""
    folder, frontal, chex = tables(root)
    five = fivex200_rows(frontal, chex).reset_index(drop=True)
    five["id"] = five["dicom_id"]
    dirs = report_dirs(folder)
    texts = []
    for subject, study in five[["subject_id", "study_id"]].itertuples(index=False):
        p = report_path(dirs, subject, study)
        texts.append(" ".join(x for x in findings_impression(p.read_text(errors="replace")) if x) if p else "")
    five["text"] = texts
    return SplitTable(FiveBy200.name, "", folder, five, {"test": np.arange(len(five))}, "y", f"{TITLE} 5x200")


def pretrain_splits(root: Path) -> SplitTable:
    """The pre-training table's rows per official split (train / val = "validate" / test), as a split table."""
    _, df = prepare_table(root)
    df = df.assign(id=df["dicom_id"].astype(str))
    rows = {name: np.flatnonzero((df["split"] == official).to_numpy())
            for name, official in (("train", "train"), ("val", "validate"), ("test", "test"))}
    return SplitTable(LAYOUT.key, "", find_folder(root, LAYOUT), df, rows, None, f"{TITLE} pre-training table")


def table_path() -> Path:
    return cache_dir("real", "mimic") / "mimic-cxr-pretrain.csv"


def prepare_table(root: Path) -> tuple[Path, pd.DataFrame]:
    """Write (or reuse) the pre-training table; returns (its path, the table)."""
    folder, frontal, chex = tables(root)
    dirs = report_dirs(folder)
    if not dirs:
        raise UserError(f"no MIMIC-CXR report text under {folder}: expected files/pXX/pXXXXXXXX/sXXXXXXXX.txt there "
                        f"or in {folder.parent / 'mimic-cxr-reports'} (the mimic-cxr-reports.zip download)")
    labels_fp = files_fingerprint(label_files(root, LAYOUT)[1].values())  # the CSVs' content, not where the root is
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
    _, df = prepare_table(root)
    folder = find_folder(root, LAYOUT)
    rows = df[df["split"] == "train"].reset_index(drop=True)
    if cfg.corpus_size and cfg.corpus_size > 0:
        rows = rows.iloc[: cfg.corpus_size]
    size = round(cfg.image_size * 8 / 7)
    ids = rows["dicom_id"].astype(str).tolist()
    stack = cached_stack(LAYOUT.key, ids, [jpg_path(folder, a, b, c) for a, b, c in
                                        rows[["subject_id", "study_id", "dicom_id"]].itertuples(index=False)], size,
                         folder)
    keep = {i: k for k, i in enumerate(ids)}
    pos = [keep[i] for i in stack.ids]
    fingerprint = hashlib.sha256(f"{TABLE_VERSION}|{stack.key}|{','.join(stack.ids)}".encode()).hexdigest()[:12]
    return PairCorpus(ids=stack.ids, images=stack.images, findings=[str(rows["findings"][k]) for k in pos],
                      impressions=[str(rows["impression"][k]) for k in pos], source=f"real: {TITLE}",
                      fingerprint=fingerprint)


def check(root: Path) -> Report:
    """``data check``: the CSVs, the reports and the images of every frontal row."""
    rep = Report(LAYOUT.key, ok=False)
    try:
        folder, frontal, _ = tables(root)
    except UserError as exc:
        rep.lines.append(f"not usable: {exc}")
        return rep
    rep.lines.append(f"{LAYOUT.title}: {folder}")
    dirs = report_dirs(folder)
    rep.lines.append(f"  report folders: {', '.join(map(str, dirs)) or 'none found'}")
    rep.counts = {str(k): int(v) for k, v in frontal["split"].value_counts().items()}
    rep.lines.append("  frontal images per split: " + ", ".join(f"{k} {v}" for k, v in rep.counts.items()))
    paths = [jpg_path(folder, a, b, c) for a, b, c in frontal[["subject_id", "study_id", "dicom_id"]].itertuples(index=False)]
    rep.missing = [str(p) for p in paths if not p.is_file()]
    rep.lines.append(f"  images: {len(paths) - len(rep.missing)} of {len(paths)} found")
    for p in rep.missing[:5]:
        rep.lines.append(f"    missing {p}")
    rep.ok = bool(dirs) and len(rep.missing) <= max(MAX_BAD, len(paths) // 100)
    rep.lines.append("can run: yes" if rep.ok else "can run: no" + ("" if dirs else " (no report text)"))
    return rep


def prepare(root: Path, size: int = 256, split: str = "train", limit: int = 0) -> dict:
    """The pre-training table and the image cache of ``split`` at ``size`` (``data prepare``)."""
    path, df = prepare_table(root)
    folder = find_folder(root, LAYOUT)
    rows = df[df["split"] == split]
    if limit:
        rows = rows.iloc[:limit]
    stack = cached_stack(LAYOUT.key, rows["dicom_id"].tolist(),
                         [jpg_path(folder, a, b, c) for a, b, c in rows[["subject_id", "study_id", "dicom_id"]]
                          .itertuples(index=False)], size, folder)
    return {"table": path, "rows": len(df), "split_rows": len(rows), "images": len(stack.ids), "bad": stack.bad,
            "size": size}


class Corpus(DataSet):
    """The pre-training corpus: frontal images with FINDINGS and IMPRESSION."""

    name = LAYOUT.key
    layout = LAYOUT
    fractions = False  # ``data split`` writes the official splits of the pre-training table, no subsets
    corpus = True

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return pretrain_splits(root)

    def check(self, root: Path) -> Report:
        return check(root)

    def pairs(self, cfg, root: Path) -> PairCorpus:
        return real_corpus(cfg, root)

    def prepare(self, root: Path, size: int, split: str = "train", limit: int = 0) -> dict:
        return prepare(root, size, split, limit)

    def phantom_pairs(self, n: int, size: int) -> PairCorpus:
        return phantom_corpus(n, size)


class FiveBy200(DataSet):
    """The zero-shot / retrieval set carved out of the corpus (held out of pre-training)."""

    name = f"{LAYOUT.key}5x200"
    layout = LAYOUT
    held_out = True

    def recipe(self, root: Path, variant: str) -> SplitTable:
        return recipe_5x200(root)

    def image_paths(self, st: SplitTable, ids: list[str]) -> list[Path]:
        part = st.table.set_index("id")
        return [jpg_path(st.folder, part.at[i, "subject_id"], part.at[i, "study_id"], i) for i in ids]

    def load(self, st: SplitTable, split: str, cfg) -> object:
        return text_set(st, split, cfg, self.image_paths(st, st.ids(split)))

    def phantom(self, split: str, n: int, size: int) -> object:
        return phantom_5x200(split, n, size)

    def check_lines(self, st: SplitTable) -> list[str]:
        if report_dirs(st.folder):
            return []
        return ["  reports: none found (zero-shot runs without them; pre-training needs them)"]


DATASETS.register(Corpus.name)(Corpus())
DATASETS.register(FiveBy200.name)(FiveBy200())
