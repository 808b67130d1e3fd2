"""What the TensorBoard logger costs a pre-training step: not part of the package.

    python tools/logger_cost.py [--steps 2000] [--repeats 5]

Times ``TensorBoardLogger.scalars`` with six terms (a step's loss terms and the learning
rate) over ``--steps`` calls, ``--repeats`` times, closing the writer inside the timing
(so its thread's share counts), and prints the median microseconds per step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmark.loggers import TensorBoardLogger, read_scalars

TERMS = {"loss": 1.0, "cicl": 0.5, "image_image": 0.3, "image_text": 0.2, "view_view": 0.1, "lr": 1e-3}


def per_step_us(steps: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        logger = TensorBoardLogger(Path(folder))
        start = time.perf_counter()
        for step in range(steps):
            logger.scalars(step, TERMS, "pretrain/")
        logger.close()
        seconds = time.perf_counter() - start
        if len(read_scalars(Path(folder))["pretrain/loss"]) != steps:
            raise RuntimeError("the event file lost steps")
    return seconds / steps * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    runs = [per_step_us(args.steps) for _ in range(args.repeats)]
    print(f"TensorBoard logger, six terms: median {statistics.median(runs):.1f} us a step "
          f"({', '.join(f'{r:.1f}' for r in runs)}; {args.repeats} x {args.steps} steps)")


if __name__ == "__main__":
    main()
