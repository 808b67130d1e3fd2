"""Store the trivial references with phantom trials recorded before they were stored.

    python tools/backfill_references.py --store results/phantom_power.sqlite

A trial recorded since the store's schema 2 carries ``refs`` (what trivial predictors score on its
test split, ``tasks.references``). Older phantom trials can get them after the fact: a phantom
test split depends only on the stored task config (its data set, ``phantom_test`` and
``image_size``), so it is rendered again and the references computed exactly as a trial does.
Real-data trials are left as they are (their split needs the label files: ``baselines TASK``).
"""

from __future__ import annotations

import argparse

from benchmark.config import build
from benchmark.data import catalog
from benchmark.registry import TASK_KINDS
from benchmark.store import Store


def backfill(store: Store) -> int:
    import benchmark.tasks  # noqa: F401  (registers the task kinds)

    done: dict[str, dict] = {}  # task hash -> references (one test split per task config)
    count = 0
    for trial in store.all():
        if trial.refs or trial.status != "finished" or not trial.data_source.startswith("phantom"):
            continue
        if trial.task_hash not in done:
            values = {k: v for k, v in trial.task_config.items()}
            cls = TASK_KINDS.get(values["kind"])
            cfg = build(cls.config_class, values, f"stored task {trial.task}")
            kind = cls(cfg)
            test = kind.test_split(catalog.dataset(cfg.dataset).phantom("test", cfg.phantom_test, cfg.image_size))
            done[trial.task_hash] = kind.references(kind.test_labels(test))
        trial.refs = done[trial.task_hash]
        store.record(trial)
        count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    args = parser.parse_args()
    print(f"stored references with {backfill(Store(args.store))} trial(s) in {args.store}")


if __name__ == "__main__":
    main()
