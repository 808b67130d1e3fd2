"""``data prepare mimic``: the MIMIC-CXR pre-training table, the image cache of one
official split, and the 5x200 zero-shot id lists, made in one go before a long run
(every one is otherwise made on first use). Above ``mimic``, ``mgca`` and
``manifests``, whose pieces it puts together.
"""

from __future__ import annotations

import logging
from pathlib import Path

from benchmark.data.real.images import cached_stack
from benchmark.data.real.layout import find_folder
from benchmark.data.real.manifests import write_ids
from benchmark.data.real.mgca import chexpert5x200
from benchmark.data.real.mimic import jpg_path, mimic5x200, prepare_table
from benchmark.errors import UserError
from benchmark.paths import cache_dir

log = logging.getLogger(__name__)


def prepare(root: Path, size: int = 256, split: str = "train", limit: int = 0) -> dict:
    """The table, the image cache of ``split`` at ``size`` and the 5x200 id lists (CLI ``data prepare mimic``)."""
    path, df = prepare_table(root)
    folder = find_folder(root, "mimic")
    rows = df[df["split"] == split]
    if limit:
        rows = rows.iloc[:limit]
    stack = cached_stack("mimic", rows["dicom_id"].tolist(),
                         [jpg_path(folder, a, b, c) for a, b, c in rows[["subject_id", "study_id", "dicom_id"]]
                          .itertuples(index=False)], size, folder)
    out = cache_dir("real", "5x200")
    lists = {"mimic5x200": write_ids(out / "mimic5x200.txt", mimic5x200(root).ids("test"))}
    try:
        lists["chexpert5x200"] = write_ids(out / "chexpert5x200.txt", chexpert5x200(root).ids("test"))
    except UserError as exc:
        log.warning("CheXpert 5x200 list not written: %s", exc)
    return {"table": path, "rows": len(df), "split_rows": len(rows), "images": len(stack.ids), "bad": stack.bad,
            "size": size, "lists": lists}
