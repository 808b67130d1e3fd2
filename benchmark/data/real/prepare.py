"""``data prepare NAME``: the pre-training corpus's table and image cache of one official
split, and the id lists of the held-out zero-shot sets, made in one go before a long
run (every one is otherwise made on first use).
"""

from __future__ import annotations

import logging
from pathlib import Path

from benchmark.data import catalog
from benchmark.data.real.manifests import write_ids
from benchmark.errors import UserError
from benchmark.paths import cache_dir

log = logging.getLogger(__name__)


def prepare(root: Path, size: int = 256, split: str = "train", limit: int = 0) -> dict:
    """The corpus's table and image cache of ``split`` at ``size``, and the held-out sets' id
    lists: those carved out of the corpus's download must succeed, the others may be absent."""
    corpus = catalog.corpus()
    info = corpus.prepare(root, size, split, limit)
    out = cache_dir("real", "5x200")
    held = sorted((d for d in catalog.everything() if d.held_out), key=lambda d: d.layout != corpus.layout)
    lists = {}
    for d in held:
        try:
            lists[d.name] = write_ids(out / f"{d.name}.txt", d.split_table(root).ids("test"))
        except UserError as exc:
            if d.layout == corpus.layout:
                raise
            log.warning("%s list not written: %s", d.name, exc)
    return {**info, "lists": lists}
