"""Which data a run uses: the real downloads under a data root, or the phantom.

No data root configured -> phantom. A data root configured -> real data or a
clear error; never a silent fallback to phantom data.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmark.errors import UserError

PHANTOM = "phantom"


def data_root(arg: str | None = None) -> Path | None:
    """``--data-root`` or ``BENCHMARK_DATA``; a configured root must exist."""
    value = arg or os.environ.get("BENCHMARK_DATA")
    if not value:
        return None
    root = Path(value).expanduser()
    if not root.is_dir():
        raise UserError(f"data root {root} does not exist or is not a folder (from {'--data-root' if arg else 'BENCHMARK_DATA'})")
    return root


def pretrain_corpus(cfg, root: Path | None):
    """The image/report pairs a method pre-trains on."""
    if root is not None:
        from benchmark.data.real import real_corpus

        return real_corpus(cfg, root)
    from benchmark.data.phantom.datasets import phantom_corpus

    stored = round(cfg.image_size * 8 / 7)  # the margin the random crop takes
    if not 16 <= stored <= 2048:
        raise UserError(f"image_size must be in [14, 1792] on phantom data (the corpus is stored at 8/7 of it "
                        f"for the random crop), got {cfg.image_size}")
    return phantom_corpus(cfg.corpus_size, stored)


#: data set key -> "module:function" of its phantom stand-in, called as f(split, n, size)
PHANTOM_SETS = {
    "rsna": "datasets:phantom_rsna",
    "chexpert5x200": "fivex200:phantom_5x200",
    "mimic5x200": "fivex200:phantom_5x200",
    "chexpert": "sets:phantom_chexpert",
    "covidx": "sets:phantom_covidx",
    "siim": "sets:phantom_siim",
    "nih": "sets:phantom_nih",
    "object_cxr": "sets:phantom_object_cxr",
}


def task_splits(cfg, root: Path | None, splits: tuple[str, ...] = ("train", "val", "test")) -> tuple[dict[str, object], str]:
    """({split: data} for the splits a task uses, data source name) for a task config."""
    if root is not None:
        from benchmark.data.real import real_task_splits

        data = real_task_splits(cfg, root, splits)
        return data, next(iter(data.values())).source
    import importlib

    if cfg.dataset not in PHANTOM_SETS:
        raise UserError(f"no phantom stand-in for data set {cfg.dataset!r} yet; available: {', '.join(PHANTOM_SETS)}")
    module, function = PHANTOM_SETS[cfg.dataset].split(":")
    make = getattr(importlib.import_module(f"benchmark.data.phantom.{module}"), function)
    sizes = {"train": cfg.phantom_train, "val": cfg.phantom_val, "test": cfg.phantom_test}
    return {split: make(split, sizes[split], cfg.image_size) for split in splits}, PHANTOM


def trial_fingerprints(root: Path | None, dataset: str, pretrains: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Extra store-key inputs (method hash, task hash) for a trial: on real data the split
    recipe's version with the fingerprints of the MIMIC-CXR CSVs (methods that pre-train) and
    of the task data set's label files; on phantom data none, so phantom keys stay as they were."""
    if root is None:
        return (), ()
    from benchmark.data.real.fingerprint import dataset_fingerprint
    from benchmark.data.real.splittable import RECIPE_VERSION

    corpus = (f"mimic:{RECIPE_VERSION}:{dataset_fingerprint('mimic', root)}",) if pretrains else ()
    return corpus, (f"{dataset}:{RECIPE_VERSION}:{dataset_fingerprint(dataset, root)}",)
