"""``data check NAME``: what of a data set is under the data root, and can its tasks run.

Why: a first run should not decode for an hour before failing on a missing
folder. This reads the label files, runs the split recipe and looks for every
image file (existence only, no decoding), then reports counts and the first
few missing paths. Boxes (RSNA, Object-CXR) are checked too: zero or negative
width or height, or reaching outside the image (its size read from the file's
header), are counted and the first few listed; the loaders clip such boxes to
the image and drop those left without area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.data.real.images import MAX_BAD
from benchmark.data.real.layout import LAYOUTS, find_folder, layout, mimic_report_dirs
from benchmark.errors import UserError

SHOW = 5


@dataclass
class Report:
    dataset: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def check(name: str, root: Path) -> Report:
    from benchmark.data.real.loaders import image_paths
    from benchmark.data.real.manifests import VARIANTS, dataset_name, variant_table

    dataset = dataset_name(name)
    key = {"chexpert5x200": "chexpert", "mimic5x200": "mimic"}.get(dataset, dataset)
    rep = Report(dataset, ok=False)
    try:
        folder = find_folder(root, key)
    except UserError as exc:
        rep.lines.append(f"not found: {exc}")
        return rep
    rep.lines.append(f"{layout(key).title}: {folder}")
    try:
        tables = [(variant, variant_table(k, variant, root)) for k, variant in VARIANTS[dataset]]
    except UserError as exc:
        rep.lines.append(f"label files: {exc}")
        return rep
    for name_, path in tables[0][1].files.items():
        rep.lines.append(f"  label file {name_}: {path}")
    ids: dict[str, Path] = {}
    for variant, st in tables:
        for split, rows in st.rows.items():
            rep.counts[f"{variant + '-' if variant else ''}{split}"] = len(rows)
            part = st.ids(split)
            ids.update(zip(part, image_paths(st, part)))
    rep.lines.append("  splits: " + ", ".join(f"{k} {v}" for k, v in rep.counts.items()))
    rep.missing = [str(p) for p in ids.values() if not p.is_file()]
    present = len(ids) - len(rep.missing)
    rep.lines.append(f"  images: {present} of {len(ids)} found")
    for p in rep.missing[:SHOW]:
        rep.lines.append(f"    missing {p}")
    if len(rep.missing) > SHOW:
        rep.lines.append(f"    ... and {len(rep.missing) - SHOW} more")
    rep.lines += box_lines([st for _, st in tables], ids)
    if dataset == "mimic5x200" and not mimic_report_dirs(folder):
        rep.lines.append("  reports: none found (zero-shot runs without them; pre-training needs them)")
    rep.ok = len(rep.missing) <= max(MAX_BAD, len(ids) // 100) and present > 0
    rep.lines.append("can run: yes" + (" (missing images are left out with a warning)" if rep.missing else "")
                     if rep.ok else "can run: no (too many images missing)")
    return rep


def box_lines(tables: list, paths: dict[str, Path]) -> list[str]:
    """The report lines about invalid boxes of the tables that carry boxes (none if all are valid)."""
    from benchmark.data.real.images import image_shape
    from benchmark.data.real.labels import box_problem

    bad, total, seen = [], 0, set()
    for st in tables:
        if "boxes" not in st.table:
            continue
        for i, boxes in zip(st.table["id"].astype(str), st.table["boxes"]):
            if i in seen or not boxes:
                continue
            seen.add(i)
            total += len(boxes)
            shape = image_shape(paths[i]) if i in paths and paths[i].is_file() else None
            for box in boxes:
                why = box_problem(box, *(shape or (None, None)))
                if why:
                    bad.append(f"    {i}: x {box[0]:g} y {box[1]:g} w {box[2]:g} h {box[3]:g}: {why}")
    if not bad:
        return [f"  boxes: {total}, all valid"] if seen or total else []
    return [f"  boxes: {len(bad)} of {total} invalid (loaders clip them to the image and drop those without area):",
            *bad[:SHOW]] + ([f"    ... and {len(bad) - SHOW} more"] if len(bad) > SHOW else [])


def check_mimic(root: Path) -> Report:
    """The pre-training corpus: CSVs, reports and the train split's images."""
    from benchmark.data.real.mimic import jpg_path, tables

    rep = Report("mimic", ok=False)
    try:
        folder, frontal, _ = tables(root)
    except UserError as exc:
        rep.lines.append(f"not usable: {exc}")
        return rep
    rep.lines.append(f"{LAYOUTS['mimic'].title}: {folder}")
    dirs = mimic_report_dirs(folder)
    rep.lines.append(f"  report folders: {', '.join(map(str, dirs)) or 'none found'}")
    rep.counts = {str(k): int(v) for k, v in frontal["split"].value_counts().items()}
    rep.lines.append("  frontal images per split: " + ", ".join(f"{k} {v}" for k, v in rep.counts.items()))
    paths = [jpg_path(folder, a, b, c) for a, b, c in frontal[["subject_id", "study_id", "dicom_id"]].itertuples(index=False)]
    rep.missing = [str(p) for p in paths if not p.is_file()]
    rep.lines.append(f"  images: {len(paths) - len(rep.missing)} of {len(paths)} found")
    for p in rep.missing[:SHOW]:
        rep.lines.append(f"    missing {p}")
    rep.ok = bool(dirs) and len(rep.missing) <= max(MAX_BAD, len(paths) // 100)
    rep.lines.append("can run: yes" if rep.ok else "can run: no" + ("" if dirs else " (no report text)"))
    return rep


def run_check(name: str, root: Path) -> Report:
    return check_mimic(root) if name == "mimic" else check(name, root)
