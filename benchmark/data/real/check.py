"""``data check NAME``: what of a data set is under the data root, and can its tasks run.

Why: a first run should not decode for an hour before failing on a missing
folder. This reads the label files, runs the split recipe and looks for every
image file (existence only, no decoding), then reports counts and the first
few missing paths. Boxes (of the data sets whose tables carry them) are checked
too: zero or negative width or height, or reaching outside the image (its size
read from the file's header), are counted and the first few listed; the loaders
clip such boxes to the image and drop those left without area. A data set may add lines of its own
(``DataSet.check_lines``) or check itself entirely (``DataSet.check``: the
pre-training corpus, whose table is not a split recipe's).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.data import catalog
from benchmark.data.dataset import Report
from benchmark.data.real.images import MAX_BAD
from benchmark.data.real.layout import find_folder
from benchmark.data.real.manifests import dataset_name
from benchmark.errors import UserError

SHOW = 5


def check(name: str, root: Path) -> Report:
    dataset = dataset_name(name)
    ds = catalog.dataset(dataset)
    own = ds.check(root)
    if own is not None:
        return own
    rep = Report(dataset, ok=False)
    if ds.layout is None:
        rep.lines.append(f"{dataset}: no real-data layout (it runs on the phantom data only)")
        return rep
    try:
        folder = find_folder(root, ds.layout)
    except UserError as exc:
        rep.lines.append(f"not found: {exc}")
        return rep
    rep.lines.append(f"{ds.layout.title}: {folder}")
    try:
        tables = [(variant, ds.split_table(root, variant=variant)) for variant in ds.variants]
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
            ids.update(zip(part, ds.image_paths(st, part)))
    rep.lines.append("  splits: " + ", ".join(f"{k} {v}" for k, v in rep.counts.items()))
    rep.missing = [str(p) for p in ids.values() if not p.is_file()]
    present = len(ids) - len(rep.missing)
    rep.lines.append(f"  images: {present} of {len(ids)} found")
    for p in rep.missing[:SHOW]:
        rep.lines.append(f"    missing {p}")
    if len(rep.missing) > SHOW:
        rep.lines.append(f"    ... and {len(rep.missing) - SHOW} more")
    rep.lines += box_lines([st for _, st in tables], ids)
    rep.lines += ds.check_lines(tables[0][1])
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


def run_check(name: str, root: Path) -> Report:
    return check(name, root)
