"""Render-speed benchmark: ``OMP_NUM_THREADS=1 taskset -c 0 python -m benchmark.data.phantom.bench``.

Why a module: the speed figures quoted in ``render``'s docstring must be
reproducible with one command.
"""

from __future__ import annotations

import time

import numpy as np

from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.render import render

CASES: list[list[Lesion]] = [
    [],
    [Lesion("opacity", "right", "lower", 0.6)],
    [Lesion("effusion", "left", "lower", 0.5), Lesion("cardiomegaly", "center", "middle", 0.5)],
    [Lesion("opacity", "bilateral", "middle", 0.5), Lesion("nodule", "left", "upper", 0.4)],
    [Lesion("edema", "bilateral", "middle", 0.6), Lesion("pneumothorax", "right", "upper", 0.5)],
    [Lesion("pacemaker", "left", "upper", 0.5), Lesion("interstitial", "bilateral", "lower", 0.5)],
]


def main(n: int = 300, sizes: tuple[int, ...] = (64, 128, 224, 256)) -> dict[int, float]:
    """Mean CPU milliseconds per image for each size, over ``n`` renders cycling through CASES.

    CPU (process) time, not wall time, so a busy machine does not inflate it.
    """
    out = {}
    for size in sizes:
        render([], np.random.default_rng(0), size)  # warm caches
        t0 = time.process_time()
        for i in range(n):
            render(CASES[i % len(CASES)], np.random.default_rng(i), size)
        out[size] = (time.process_time() - t0) / n * 1e3
        print(f"{size:4d} px: {out[size]:6.2f} ms/image")
    return out


if __name__ == "__main__":
    main()
