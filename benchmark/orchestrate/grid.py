"""Grids: expand method entries x tasks x fractions x seeds into trials, leave out the
ones the store has finished, and run the rest as Ray Tune trials.

Two phases, so pre-training happens once per method config and before the
trials that need it: phase 1 is one Tune trial per distinct method config
(pre-train, or find the cached encoder; baselines export theirs), phase 2 one
Tune trial per downstream trial, which then finds that encoder in the cache.

Resume needs no Tune state: the store is the source of truth. Every finished
trial is recorded by its worker the moment it finishes (and again by the driver
from the reported result, idempotently), so re-running the same command after a
Ctrl-C, a killed driver or a lost node runs exactly the trials still missing.

The Ray glue searches share (worker set-up, the pre-training phase's encoders,
the result callback) is in :mod:`benchmark.orchestrate.raytune`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.experiments import GridSpec, MethodEntry, trial_sets
from benchmark.orchestrate.raytune import (
    encoder_job,
    fit_configs,
    pretrain_encoders,
    say,
    worker_base,
    worker_setup,
)
from benchmark.raycluster import connect, storage_dir, trial_resources
from benchmark.report.results import trivial_text
from benchmark.store import Store, Trial


@dataclass
class GridTrial:
    entry: MethodEntry
    sets: list[tuple[str, Any]]
    trial: Trial  # the store key (and configs) of this trial
    pretrains: bool = True  # False: a baseline whose encoder is exported, not trained

    @property
    def name(self) -> str:
        t = self.trial
        return f"{self.entry.label} {t.task} fraction {t.fraction:g} seed {t.seed}"

    @property
    def encoder_key(self) -> str:
        """The method config whose encoder this trial needs (its pre-training job's key)."""
        return f"{self.trial.method}-{self.trial.method_hash}"


@dataclass
class Plan:
    profile: str
    data_root: str | None
    todo: list[GridTrial] = field(default_factory=list)
    finished: list[GridTrial] = field(default_factory=list)  # in the store already: skipped
    not_applicable: list[str] = field(default_factory=list)  # e.g. zero-shot with a method that has no text tower
    variants: list[tuple[str, str, str]] = field(default_factory=list)  # (method, config hash, name): labelled when run

    @property
    def total(self) -> int:
        return len(self.todo) + len(self.finished)


def expand(spec: GridSpec, profile: str, cli_sets: list[tuple[str, Any]], protocol: str | None,
           data_root_arg: str | None, store: Store) -> Plan:
    """Every trial of the grid with its store key; bad names or overrides fail here, before Ray starts.
    Only reads the store (a dry run plans on a read-only one).

    A task that trains nothing (zero-shot) runs once, at fraction 1 and the first seed."""
    from benchmark.data.sources import data_root

    root = data_root(data_root_arg)
    plan = Plan(profile, str(root.resolve()) if root else None)
    seen: set[tuple] = set()
    for entries, tasks, part_fractions, part_seeds in spec.parts():
        _expand_part(plan, seen, spec, entries, tasks, part_fractions, part_seeds, profile, cli_sets, protocol, store)
    return plan


def _expand_part(plan: Plan, seen: set[tuple], spec: GridSpec, entries: list, tasks: list[str], part_fractions: list[float],
                 part_seeds: list[int], profile: str, cli_sets: list[tuple[str, Any]], protocol: str | None,
                 store: Store) -> None:
    """The trials of one part of a grid (the main grid or one block), skipping those already planned."""
    from benchmark.factory import plan_trial, resolve

    for entry in entries:
        sets = trial_sets(spec, entry, cli_sets, protocol)
        for task in tasks:
            resolved = resolve(entry.method, task, profile, sets)
            if resolved.task_cls.needs_text_tower and not resolved.method_cls.has_joint_space():
                plan.not_applicable.append(f"{entry.label} x {task}: {task} needs a text tower")
                continue
            trains = "train" in resolved.task_cls.splits
            fractions, seeds = (part_fractions, part_seeds) if trains else ([1.0], part_seeds[:1])
            base, _, _ = plan_trial(entry.method, task, fractions[0], seeds[0], profile, sets, plan.data_root)
            if entry.variant and (base.method, base.method_hash, entry.variant) not in plan.variants:
                plan.variants.append((base.method, base.method_hash, entry.variant))
            for fraction in fractions:
                for seed in seeds:
                    trial = dataclasses.replace(base, fraction=float(fraction), seed=int(seed))
                    if trial.key() in seen:
                        continue
                    seen.add(trial.key())
                    item = GridTrial(entry, sets, trial, resolved.method_cls.pretrains)
                    (plan.finished if store.finished(trial) else plan.todo).append(item)


# ---------------------------------------------------------------- the trials' phase (runs in workers)

def trial_trainable(space: dict) -> None:
    """Phase 2: one downstream trial through the runner (which records it in the store)."""
    from ray import tune

    config = space["spec"]
    worker_setup(config)
    from benchmark.runner import run_trial

    try:
        out = run_trial(config["method"], config["task"], config["fraction"], config["seed"], config["profile"],
                        [tuple(s) for s in config["sets"]], config["data_root"], config["device"],
                        store=Store(config["store"]))
        t = out.trial
        tune.report({"status": "finished", "value": t.value, "metric": t.metric, "seconds": t.seconds or 0.0,
                     "trial": json.dumps(dataclasses.asdict(t), default=str)})
    except Exception as exc:  # noqa: BLE001  (the driver records and prints the failure)
        tune.report({"status": "failed", "error": f"{type(exc).__name__}: {exc}"})


# ---------------------------------------------------------------- driver

@dataclass
class Summary:
    total: int
    skipped: int
    done: int = 0
    failed: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    not_applicable: list[str] = field(default_factory=list)
    storage: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.not_run


def run_plan(plan: Plan, store: Store, address: str | None = None, cpus_per_trial: float | None = None,
             gpus_per_trial: float | None = None, device: str = "auto", num_cpus: int | None = None,
             cpus_per_encoder: float | None = None) -> Summary:
    """Run the plan's missing trials on Ray; print a line per finished trial; return the tally.
    ``cpus_per_encoder``: each pre-training job's CPUs (default: a trial's), so that encoders
    trained one at a time get the whole machine while the trials still run side by side."""
    summary = Summary(plan.total, len(plan.finished), not_applicable=list(plan.not_applicable))
    for variant in plan.variants:
        store.label_variant(*variant)
    if not plan.todo:
        return summary
    store.ensure_writable()  # before Ray starts and anything trains: the store can take the results
    session = connect(address, num_cpus)
    try:
        resources = trial_resources(session, cpus_per_trial, gpus_per_trial)
        encoder_resources = trial_resources(session, cpus_per_encoder or cpus_per_trial, gpus_per_trial)
        storage = storage_dir("ray")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        summary.storage = str(storage)
        say(f"[grid] {len(plan.todo)} to run, {len(plan.finished)} already finished (skipped), on {session.where} "
            f"({session.cpus:g} CPU, {session.gpus:g} GPU; each trial {resources['cpu']:g} CPU, {resources['gpu']:g} GPU"
            + (f"; each pre-training job {encoder_resources['cpu']:g} CPU" if encoder_resources != resources else "") + ")")
        base = worker_base(plan.profile, plan.data_root, device, store.path)
        ready = _pretrain_phase(plan, base, encoder_resources, f"grid-{stamp}-pretrain", storage, summary, store)
        if ready is not None:
            _trial_phase(plan, ready, base, resources, f"grid-{stamp}-trials", storage, store, summary)
    finally:
        session.close()
    return summary


def _pretrain_phase(plan: Plan, base: dict, resources: dict, name: str, storage: Path, summary: Summary,
                   store: Store) -> set[str] | None:
    """Pre-train each distinct method config once; returns the configs ready, or None when interrupted.
    A trial whose encoder failed is recorded as failed (the store says why; the next run tries again)."""
    jobs = {}
    for item in plan.todo:
        jobs.setdefault(item.encoder_key, encoder_job(item.trial, item.sets, item.entry.label, item.pretrains))
    outcome = pretrain_encoders(list(jobs.values()), base, resources, name, storage)
    ready = {k for k, r in outcome.items() if r.get("status") == "ready"}
    interrupted = len(outcome) < len(jobs)
    for item in plan.todo:
        key = item.encoder_key
        if key in outcome and key not in ready:
            summary.failed.append(f"{item.name}: pre-training failed: {outcome[key].get('error')}")
            item.trial.status, item.trial.error = "failed", f"pre-training failed: {outcome[key].get('error')}"
            store.record(item.trial)
        elif interrupted or key not in outcome:
            summary.not_run.append(item.name)
    return None if interrupted else ready


def _trial_phase(plan: Plan, ready: set[str], base: dict, resources: dict, name: str, storage: Path,
                 store: Store, summary: Summary) -> None:
    items = [it for it in plan.todo if it.encoder_key in ready]
    if not items:
        return
    configs = [{**base, "index": i, "method": it.trial.method, "task": it.trial.task, "fraction": it.trial.fraction,
                "seed": it.trial.seed, "sets": it.sets} for i, it in enumerate(items)]
    seen: set[int] = set()

    def on_result(config: dict, result: dict) -> None:
        if config["index"] in seen:
            return
        seen.add(config["index"])
        item = items[config["index"]]
        n = f"{summary.skipped + len(seen)}/{summary.total}"
        if result.get("status") == "finished":
            trial = Trial(**json.loads(result["trial"]))
            store.record(trial)  # the driver's copy: same key, same row
            summary.done += 1
            trivial = f"; {ref}" if (ref := trivial_text(trial)) else ""
            say(f"[grid] {n} {item.name}: {result['metric']} {result['value']:.4f}{trivial} ({result.get('seconds', 0):.1f}s)")
        else:
            summary.failed.append(f"{item.name}: {result.get('error')}")
            say(f"[grid] {n} {item.name}: FAILED {result.get('error')}")

    fit_configs(trial_trainable, configs, resources, name, storage, on_result)
    summary.not_run.extend(it.name for i, it in enumerate(items) if i not in seen)


def summary_lines(summary: Summary) -> list[str]:
    lines = [f"grid: {summary.total} trials: {summary.done} done, {summary.skipped} skipped (already finished), "
             f"{len(summary.failed)} failed" + (f", {len(summary.not_run)} not run" if summary.not_run else "")]
    if summary.not_applicable:
        lines.append(f"  not applicable (left out): {'; '.join(summary.not_applicable)}")
    lines += [f"  failed: {x}" for x in summary.failed]
    if summary.not_run:
        lines.append(f"  not run (interrupted): {len(summary.not_run)}; run the same command again to finish them")
    if summary.storage:
        lines.append(f"  Ray Tune state: {summary.storage}")
    return lines
