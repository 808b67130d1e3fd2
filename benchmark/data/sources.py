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
    """The image/report pairs a method pre-trains on (the corpus data set's, or its phantom stand-in)."""
    from benchmark.data import catalog  # imported when data is wanted: it imports the data set modules

    corpus = catalog.corpus()
    if root is not None:
        return corpus.pairs(cfg, root)
    stored = round(cfg.image_size * 8 / 7)  # the margin the random crop takes
    if not 16 <= stored <= 2048:
        raise UserError(f"image_size must be in [14, 1792] on phantom data (the corpus is stored at 8/7 of it "
                        f"for the random crop), got {cfg.image_size}")
    return corpus.phantom_pairs(cfg.corpus_size, stored)


def task_splits(cfg, root: Path | None, splits: tuple[str, ...] = ("train", "val", "test")) -> tuple[dict[str, object], str]:
    """({split: data} for the splits a task uses, data source name) for a task config."""
    from benchmark.data import catalog

    ds = catalog.dataset(cfg.dataset)
    if root is not None:
        st = ds.split_table(root, cfg.kind)
        missing = [s for s in splits if s not in st.rows]
        if missing:
            raise UserError(f"the real {cfg.dataset} data has no {', '.join(missing)} split (it has {', '.join(st.rows)})")
        from benchmark.data.real.loaders import warn_repairs

        data = {split: ds.load(st, split, cfg) for split in splits}
        warn_repairs(data, list(st.files.values()))
        return data, next(iter(data.values())).source
    sizes = {"train": cfg.phantom_train, "val": cfg.phantom_val, "test": cfg.phantom_test}
    return {split: ds.phantom(split, sizes[split], cfg.image_size) for split in splits}, PHANTOM


def corpus_fingerprints(root: Path | None, pretrains: bool) -> tuple[str, ...]:
    """Extra inputs of a method config's store hash: on real data the split recipe's version with the
    fingerprint of the pre-training corpus's label files (methods that pre-train); on phantom data
    none, so phantom keys stay as they were."""
    if root is None or not pretrains:
        return ()
    from benchmark.data import catalog
    from benchmark.data.real.splittable import RECIPE_VERSION

    corpus = catalog.corpus()
    return (f"{corpus.name}:{RECIPE_VERSION}:{corpus.fingerprint(root)}",)


def task_fingerprints(root: Path | None, dataset: str) -> tuple[str, ...]:
    """Extra inputs of a task config's store hash: on real data the split recipe's version with the
    fingerprint of the task data set's label files; on phantom data none."""
    if root is None:
        return ()
    from benchmark.data import catalog
    from benchmark.data.real.splittable import RECIPE_VERSION

    return (f"{dataset}:{RECIPE_VERSION}:{catalog.dataset(dataset).fingerprint(root)}",)
