"""What the cache integrity check costs: the sampled-row record of a paper-scale image
stack (3,955 x 293 x 293 uint8, 340 MB) against hashing it whole. Medians, page cache warm.

    .venv/bin/python tools/integrity_cost.py
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.data.integrity import record


def median_ms(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stack.npy"
        stack = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(3955, 293, 293))
        stack[:] = np.random.default_rng(0).integers(0, 256, stack.shape, dtype=np.uint8)
        stack.flush()
        del stack

        def stack_map() -> np.ndarray:
            return np.load(path, mmap_mode="r")

        sampled = median_ms(lambda: record(stack_map()), 7)
        whole = median_ms(lambda: hashlib.sha256(np.ascontiguousarray(stack_map()).data).hexdigest(), 3)
        print(f"sampled record: {sampled:.1f} ms; whole SHA-256: {whole:.0f} ms (medians, page cache warm)")


if __name__ == "__main__":
    main()
