"""Render a stack of phantom images into cached ``.npy`` files, on every core.

Why: phantom v2's training splits hold 10,000 images (1 % = 100), so a cold
cache is seconds of work per core, not milliseconds. Images are independent
(image i depends only on its seeded stream), so chunks of rows are drawn in
forked worker processes and written by the parent in order: the files are the
same byte for byte at any number of workers.

``draw(i)`` returns ``(arrays, meta)``: one (size, size) uint8 array per output
file, and whatever per-image metadata the caller keeps (labels, boxes), which
comes back in row order.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import integrity
from benchmark.paths import atomic_memmaps
from benchmark.progress import Progress

Draw = Callable[[int], tuple[tuple[np.ndarray, ...], Any]]
#: Below this many images a pool costs more than it saves.
PARALLEL_MIN = 512
CHUNK = 250
#: In a worker process only: the draw function its pool was made for (set by ``_install``;
#: with fork the function reaches the worker by memory, not by pickling, so closures work).
_worker_draw: Draw | None = None


def render_workers() -> int:
    """Worker processes for a cold render: the usable cores (at most 8), or
    ``BENCHMARK_RENDER_WORKERS``; 1 where fork is unavailable (macOS, Windows)."""
    if sys.platform != "linux":
        return 1
    value = os.environ.get("BENCHMARK_RENDER_WORKERS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(8, len(os.sched_getaffinity(0))))


def _install(draw: Draw) -> None:
    global _worker_draw
    _worker_draw = draw


def _draw_rows(start: int, stop: int) -> tuple[list[tuple[np.ndarray, ...]], list[Any]]:
    assert _worker_draw is not None, "called outside a render worker"
    drawn = [_worker_draw(i) for i in range(start, stop)]
    return [d[0] for d in drawn], [d[1] for d in drawn]


def render_stack(paths: Sequence[Path], n: int, size: int, draw: Draw, desc: str) -> tuple[dict[str, dict], list[Any]]:
    """Fill one (n, size, size) uint8 ``.npy`` per path with ``draw(i)``'s arrays, atomically.

    Returns (the files' integrity records, for the sidecar under ``integrity.KEY``;
    the per-image metadata in row order)."""
    metas: list[Any] = [None] * n
    workers = render_workers() if n >= PARALLEL_MIN else 1
    with atomic_memmaps(paths, (n, size, size)) as arrays, Progress(total=n, desc=desc, unit="img") as bar:
        if workers == 1:
            for i in range(n):
                outs, metas[i] = draw(i)
                for arr, out in zip(arrays, outs):
                    arr[i] = out
                bar.update()
        else:
            ctx = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_install, initargs=(draw,)) as pool:
                starts = range(0, n, CHUNK)
                jobs = [pool.submit(_draw_rows, s, min(s + CHUNK, n)) for s in starts]
                for start, job in zip(starts, jobs):
                    outs, chunk_meta = job.result()
                    for k, row in enumerate(outs):
                        for arr, out in zip(arrays, row):
                            arr[start + k] = out
                    metas[start:start + len(outs)] = chunk_meta
                    bar.update(len(outs))
    return integrity.records(paths), metas
