"""Hyper-parameter searches: a method's declared space (``configs/sweeps/<method>.yaml``,
data not code) sampled by Optuna's TPE through Ray Tune's OptunaSearch, with ASHA
stopping poor trials early.

Selection is on the validation split, never the test split. The score each
trial reports is higher-is-better: the task's ``val_<metric>`` when it selects
on its validation metric (detection's val_map, finetune classification's
val_auroc), else minus its validation loss (mgca classification and
segmentation select on val_loss). ASHA sees that score after every head-training
epoch (the trial's ``on_epoch`` callback, handed to the task's fit) and once more at the end; pre-training inside
a trial reports nothing, so ASHA only cuts trials during downstream training.

Search trials go to their own store (``results/tune/<name>/trials.sqlite``), not
the main one, so that tables compare configured methods rather than every
sampled configuration; a re-run with the same name and seed finds its finished
trials there.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.config import available, named_yaml
from benchmark.errors import UserError
from benchmark.orchestrate.raytune import (
    encoder_job,
    pretrain_encoders,
    reporter,
    say,
    worker_base,
    worker_setup,
)
from benchmark.progress import heartbeat
from benchmark.raycluster import (
    check_address,
    connect,
    storage_dir,
    trial_resources,
)
from benchmark.registry import unknown_name
from benchmark.report.results import trivial_text
from benchmark.store import Store

KINDS = ("uniform", "loguniform", "int", "choice")


@dataclass
class Param:
    key: str  # a --set key: method.lr, task.weight_decay
    kind: str
    args: list

    @property
    def name(self) -> str:  # Ray/Optuna-safe
        return self.key.replace(".", "__")

    def domain(self):
        from ray import tune

        if self.kind == "uniform":
            return tune.uniform(*self.args)
        if self.kind == "loguniform":
            return tune.loguniform(*self.args)
        if self.kind == "int":
            return tune.randint(self.args[0], self.args[1] + 1)  # inclusive upper bound, as written
        return tune.choice(self.args)


#: a method without a sweep file searches its own lr over this factor either side, and the head's space
DEFAULT_LR_FACTOR = 10.0
DEFAULT_HEAD_SPACE = "sweep_head_only"


def default_space(method: str) -> dict:
    """The search space of a method with no ``sweeps/<method>.yaml``: the downstream head's
    (``includes/sweep_head_only.yaml``: its lr and weight decay) and, where the method's YAML sets
    a pre-training ``lr``, that lr over a factor of ten either side."""
    from benchmark.config import load_yaml
    from benchmark.paths import config_dir

    space = dict(load_yaml(config_dir() / "includes" / f"{DEFAULT_HEAD_SPACE}.yaml")["space"])
    lr = named_yaml("methods", method).get("lr")
    if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0:
        space = {"method.lr": {"loguniform": [lr / DEFAULT_LR_FACTOR, lr * DEFAULT_LR_FACTOR]}, **space}
    return space


def load_space(method: str) -> list[Param]:
    """``configs/sweeps/<method>.yaml``: ``space: {KEY: {uniform|loguniform|int: [low, high]} | {choice: [...]}}``;
    without one, :func:`default_space`."""
    if method not in available("methods"):
        raise unknown_name("method", method, available("methods"))
    if method in available("sweeps"):
        space = named_yaml("sweeps", method).get("space")
    else:
        space = default_space(method)
    if not isinstance(space, dict) or not space:
        raise UserError(f"configs/sweeps/{method}.yaml needs a non-empty 'space:' mapping")
    params = []
    for key, spec in space.items():
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
            raise UserError(f"configs/sweeps/{method}.yaml: {key}: expected one of {', '.join(KINDS)} with its values")
        kind, args = next(iter(spec.items()))
        if not isinstance(args, list) or not args or (kind != "choice" and len(args) != 2):
            raise UserError(f"configs/sweeps/{method}.yaml: {key}: {kind} takes " + ("a list of values" if kind == "choice" else "[low, high]"))
        if kind in ("uniform", "loguniform"):
            args = [float(a) for a in args]
            if not args[0] < args[1] or (kind == "loguniform" and args[0] <= 0):
                raise UserError(f"configs/sweeps/{method}.yaml: {key}: need 0 < low < high for {kind}, got {args}")
        params.append(Param(str(key), kind, args))
    return params


def score_of(metrics: dict[str, float | None]) -> tuple[str, float]:
    """The validation value a trial is selected on, as higher-is-better (NaN, stored as null, stays NaN:
    such a trial is never the best)."""
    def number(value: float | None) -> float:
        return math.nan if value is None else float(value)

    for key, value in metrics.items():
        if key.startswith("val_") and key not in ("val_loss", "val_note"):
            return key, number(value)
    if "val_loss" in metrics:
        return "-val_loss", -number(metrics["val_loss"])
    raise UserError("this task reports no validation value to select on")


def search_trainable(space: dict) -> None:
    """One sampled configuration: pre-train (if it samples pre-training keys) and fit, reporting the
    validation score every epoch (for ASHA) and at the end with the test metrics."""
    from ray import tune

    fixed = space["fixed"]
    worker_setup(fixed)
    from benchmark.runner import run_trial

    def on_epoch(epoch: int, score: float) -> None:
        tune.report({"score": score, "epoch": epoch})

    sampled = [(p["key"], space[p["name"]]) for p in fixed["params"]]
    out = run_trial(fixed["method"], fixed["task"], fixed["fraction"], fixed["seed"], fixed["profile"],
                    [*[tuple(s) for s in fixed["sets"]], *sampled], fixed["data_root"], fixed["device"],
                    store=Store(fixed["store"]), on_epoch=on_epoch)
    t = out.trial
    selected, score = score_of(t.metrics)
    tune.report({"score": score, "final": 1, "selected_on": selected, "test_metric": t.metric, "test_value": t.value,
                 "test_trivial": trivial_text(t), "method_hash": t.method_hash, "reused": int(out.reused)})


@dataclass
class SearchResult:
    name: str
    folder: Path
    metric: str  # the task's primary (test) metric
    selected_on: str
    rows: list[dict] = field(default_factory=list)
    best: dict | None = None
    best_sets: list[str] = field(default_factory=list)  # the best trial as --set KEY=VALUE


def run_search(method: str, task: str, fraction: float, seed: int, n_trials: int, profile: str,
               sets: list[tuple[str, Any]], protocol: str | None, data_root_arg: str | None, device: str = "auto",
               address: str | None = None, cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
               name: str | None = None) -> SearchResult:
    from benchmark.factory import plan_trial, resolve

    if n_trials < 1:
        raise UserError(f"--trials must be >= 1, got {n_trials}")
    params = load_space(method)
    if protocol:
        sets = [("task.protocol", protocol), *sets]
    if name is not None and (Path(name).name != name or name in (".", "..")):
        raise UserError(f"--name {name!r}: give a plain name without '/' (it names the search's folder)")
    resolved = resolve(method, task, profile, sets)
    if "val" not in resolved.task_cls.splits:
        raise UserError(f"task {task!r} trains nothing (no validation split to select on): search a task with training")
    for p in params:  # every key routes and every value type-checks before Ray starts
        low = p.args[0]
        resolve(method, task, profile, [*sets, (p.key, low)])
    base, _, _ = plan_trial(method, task, fraction, seed, profile, sets, data_root_arg)
    if address:
        check_address(address)  # before anything is written
    name = name or f"{method}-{task}-{fraction:g}-seed{seed}"
    folder = storage_dir("tune") / name
    search_store = Store(folder / "trials.sqlite")
    pretrains_in_trials = any(p.key.startswith("method.") for p in params)
    epochs = resolved.task_cfg.epochs

    session = connect(address)
    try:
        import optuna
        from optuna.samplers import TPESampler
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial comes from the callback
        resources = trial_resources(session, cpus_per_trial, gpus_per_trial)
        root = str(Path(data_root_arg).resolve()) if data_root_arg else None
        worker = worker_base(profile, root, device, search_store.path)
        fixed = {**worker, "method": method, "task": task, "fraction": float(fraction), "seed": seed,
                 "sets": [list(s) for s in sets], "params": [{"key": p.key, "name": p.name} for p in params]}
        if not pretrains_in_trials:  # one encoder for every trial: pre-train it once, first
            job = encoder_job(base, sets, method, resolved.method_cls.pretrains)
            outcome = pretrain_encoders([job], worker, resources, f"{name}-pretrain", folder)
            if outcome.get(job.key, {}).get("status") != "ready":
                raise UserError(f"pre-training {method} failed or was interrupted; see the line above")
        say(f"[tune] {name}: {n_trials} trials of {', '.join(p.key for p in params)} on {session.where}; "
            "selecting on the validation score (val_<metric>, or -val_loss where the task selects on its loss); "
            f"ASHA over up to {epochs + 1} reports per trial")
        last: dict[str, dict] = {}

        def track(trial, result: dict) -> None:
            if result.get("status") == "failed":
                last.setdefault(trial.trial_id, {"config": trial.config})["error"] = result["error"]
                return
            last[trial.trial_id] = {"config": trial.config, **result}
            if result.get("final"):
                say(f"[tune] trial {trial.trial_id}: {result['selected_on']} {result['score']:.4f} "
                    f"({', '.join(f'{p.key}={_fmt(trial.config[p.name])}' for p in params)})")

        tuner = tune.Tuner(
            tune.with_resources(search_trainable, resources),
            param_space={"fixed": fixed, **{p.name: p.domain() for p in params}},
            tune_config=tune.TuneConfig(
                metric="score", mode="max", num_samples=n_trials,
                search_alg=OptunaSearch(sampler=TPESampler(seed=seed % 2**32)),  # numpy seeds: 32 bits
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs + 1,
                                        grace_period=min(3, epochs + 1), reduction_factor=3),
                trial_dirname_creator=lambda t: t.trial_id,
            ),
            run_config=tune.RunConfig(name="ray", storage_path=str(folder), verbose=0, callbacks=[reporter(track)]),
        )
        with heartbeat(f"tune {name}", lambda: f"{n_trials} trials sampled or to sample; results so far in {folder}",
                       write=say):
            tuner.fit()
    finally:
        session.close()
    return _collect(name, folder, params, last, resolved.task_cfg.metric)


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _collect(name: str, folder: Path, params: list[Param], last: dict[str, dict], metric: str) -> SearchResult:
    rows = []
    for trial_id, res in last.items():
        status = "failed" if "error" in res else ("finished" if res.get("final") else "stopped early (ASHA)")
        row = {"trial": trial_id, **{p.key: res["config"].get(p.name) for p in params}, "status": status,
               "reports": res.get("training_iteration"), "val_score": res.get("score"),
               f"test_{metric}": res.get("test_value") if res.get("final") else None,
               "test_trivial": res.get("test_trivial", ""), "method_hash": res.get("method_hash")}
        rows.append(row)
    finished = [r for r in rows if r["status"] == "finished" and r["val_score"] is not None and math.isfinite(r["val_score"])]
    selected = next((res["selected_on"] for res in last.values() if res.get("final")), "validation")
    result = SearchResult(name, folder, metric, selected, rows)
    if finished:
        result.best = max(finished, key=lambda r: r["val_score"])
        result.best_sets = [f"{p.key}={result.best[p.key]}" for p in params]
    with (folder / "trials.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["trial"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (folder / "best.json").write_text(json.dumps(
        {"selected_on": selected, "best": result.best, "sets": result.best_sets}, indent=1, default=str))
    return result


def search_lines(result: SearchResult) -> list[str]:
    from tabulate import tabulate

    def shown(row: dict) -> dict:
        return {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}

    lines = [tabulate([shown(r) for r in sorted(result.rows, key=lambda r: math.inf if r["val_score"] is None else -r["val_score"])],
                      headers="keys", tablefmt="simple") if result.rows else "no trials ran"]
    if result.best is None:
        lines.append(f"search {result.name}: no trial finished")
    else:
        b = result.best
        lines.append(f"best (selected on validation {result.selected_on} = {b['val_score']:.4f}; "
                     f"its test {result.metric} = {b[f'test_{result.metric}']:.4f}"
                     + (f", beside {b['test_trivial']} on the same test split" if b.get("test_trivial") else "") + "):")
        lines.append("  " + " ".join(f"--set {s}" for s in result.best_sets))
    lines.append(f"stored in {result.folder} (trials.csv, best.json, trials.sqlite, Ray state in ray/)")
    return lines
