"""The numbers behind results/PHANTOM.md, from the phantom_power store: not part of the package.

    python tools/phantom_report.py --store results/phantom_power.sqlite [--plots results]

Prints (markdown) the table with 95 % intervals and the paired differences
against ``random`` (``benchmark table --vs random``), each encoder's
pre-training (steps, seconds, threads, from the encoder cache's meta.json when
the cache is still there), and the issue's checks: the positive control
(supervised - random >= 10 points at 1 % on rsna_cls and siim_seg, interval
excluding 0), IMITATE - random >= 5 points with its interval excluding 0, and
the negative control (random-init1 - random: the interval must hold 0). With
``--plots DIR`` it also writes the label-efficiency plot and the ablation chart.

Only the trials of the experiment as it is configured now count (its plan's store keys);
stored trials of superseded configs (an entry whose profile settings changed since) are
printed after, in a table of their own, for the record.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from benchmark.experiments import load_experiment
from benchmark.orchestrate.grid import expand
from benchmark.paths import cache_dir
from benchmark.report.plots import write_plots
from benchmark.report.results import Cell, difference
from benchmark.report.tables import Table, build_tables, render
from benchmark.stats import PairedDifference
from benchmark.store import Store, Trial

CHECKS = (  # (row, baseline, task, fraction, the difference it must reach in points; None: the interval must hold 0)
    ("supervised", "random", "rsna_cls", 0.01, 10.0),
    ("supervised", "random", "siim_seg", 0.01, 10.0),
    ("imitate", "random", "rsna_cls", 0.01, 5.0),
    ("imitate", "random", "siim_seg", 0.01, 5.0),
    ("random-init1", "random", "rsna_cls", 0.01, None),
    ("random-init1", "random", "siim_seg", 0.01, None),
)


def cell(tables: list[Table], label: str, task: str, fraction: float) -> Cell | None:
    for table in tables:
        for row in table.rows:
            found = row.cells.get((task, fraction))
            if row.label == label and isinstance(found, Cell):
                return found
    return None


def verdict(diff: PairedDifference | None, target: float | None) -> str:
    if diff is None or diff.ci is None:
        return "not measured (fewer than 2 paired seeds)"
    if target is None:
        return "holds 0: passes" if not diff.excludes_zero else "excludes 0: FAILS"
    reached = diff.mean >= target and diff.ci[0] > 0
    return f"{'reaches' if reached else 'does not reach'} +{target:g} with the interval above 0"


def checks(tables: list[Table]) -> list[str]:
    lines = ["| check | task | n | difference (points) | 95 % interval | verdict |", "|---|---|---|---|---|---|"]
    for row, base, task, fraction, target in CHECKS:
        mine, theirs = cell(tables, row, task, fraction), cell(tables, base, task, fraction)
        diff = difference(mine, theirs) if mine is not None and theirs is not None else None
        ci = f"[{diff.ci[0]:+.1f}, {diff.ci[1]:+.1f}]" if diff is not None and diff.ci is not None else "-"
        mean = f"{diff.mean:+.1f}" if diff is not None else "-"
        n = diff.n if diff is not None else 0
        lines.append(f"| {row} - {base} | {task} {100 * fraction:g} % | {n} | {mean} | {ci} | {verdict(diff, target)} |")
    return lines


def encoder_meta(method: str, config: dict) -> dict:
    """The cached encoder's meta.json whose config is this trial's (the folder's hash also covers
    the corpus, so it is found by content); {} when the cache is gone. Its seconds are those of
    the last (resumed) part of a pre-training that was interrupted."""
    runtime = {"num_workers", "checkpoint_every"}
    want = {k: v for k, v in config.items() if k not in runtime}
    for meta_path in cache_dir("encoders").glob(f"{method}-*/meta.json"):
        meta = json.loads(meta_path.read_text())
        if {k: v for k, v in (meta.get("config") or {}).items() if k not in runtime} == want:
            return meta
    return {}


def pretraining(store: Store) -> list[str]:
    """One line per pre-trained method config of the store: its cache's meta.json, if still there."""
    labels = store.variants()
    seen = {(t.method, t.method_hash): t.method_config for t in store.all()}
    lines = ["| entry | config | steps | seconds | device |", "|---|---|---|---|---|"]
    for (method, config), cfg in sorted(seen.items()):
        meta = encoder_meta(method, cfg)
        if method == "random":
            meta = {"steps": 0, "seconds": 0.0, "device": "(no pre-training)"}
        seconds = meta.get("seconds")
        lines.append(f"| {labels.get((method, config), method)} | {config} | {meta.get('steps', '?')} | "
                     f"{'?' if seconds is None else f'{seconds:.0f}'} | {meta.get('device', 'cache gone')} |")
    return lines


def current_keys(experiment: str, store: Store) -> set[tuple]:
    """The store keys of every trial the experiment plans today (finished or not)."""
    spec = load_experiment(experiment)
    plan = expand(spec, spec.profile or "phantom", [], spec.protocol, None, store)
    return {item.trial.key() for item in plan.todo + plan.finished}


def split_current(trials: list[Trial], keys: set[tuple]) -> tuple[list[Trial], list[Trial]]:
    return [t for t in trials if t.key() in keys], [t for t in trials if t.key() not in keys]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="results/phantom_power.sqlite")
    parser.add_argument("--experiment", default="phantom_power", help="whose current configs count")
    parser.add_argument("--plots", default=None, help="write phantom_label_efficiency.png / phantom_ablation.png here")
    args = parser.parse_args()
    store = Store(args.store, readonly=True)
    current, superseded = split_current(store.all(), current_keys(args.experiment, store))
    tables = build_tables(current, store.variants(), "phantom", vs="random")
    for table in tables:
        print(render(table, "markdown"), end="\n\n")
    print("\n".join(pretraining(store)), end="\n\n")
    print("\n".join(checks(tables)), end="\n\n")
    if superseded:
        print(f"Superseded configs ({len(superseded)} trials, not in the tables above):\n")
        for table in build_tables(superseded, store.variants(), "phantom"):
            print(render(table, "markdown"), end="\n\n")
    if args.plots:
        with tempfile.TemporaryDirectory() as tmp:
            for path in write_plots(current, store.variants(), tmp, "phantom"):
                if path.suffix == ".png":
                    target = Path(args.plots) / f"phantom_{path.name}"
                    shutil.copyfile(path, target)
                    print(f"wrote {target}")


if __name__ == "__main__":
    main()
