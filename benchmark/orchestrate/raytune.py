"""The Ray Tune glue that grids and searches share: what a worker gets from the
driver and how it sets itself up, the callback that hands every result back to the
driver, a list of configs run as Tune trials, and the pre-training phase (each
distinct method config's encoder made once, before the trials that need it).

Workers get plain dicts (configs, metrics), never tensors; a worker records its own
trial in the store and the driver hears of it through :func:`reporter`.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
from benchmark.store import Trial

#: driver environment handed to every worker (a cluster node has its own environment)
FORWARD_ENV = ("BENCHMARK_HOME", "HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE",
               "TOKENIZERS_PARALLELISM", "BENCHMARK_TEXT_CACHE", "BENCHMARK_CONFIG_PATH", "BENCHMARK_LOGGER", "WANDB_MODE")

#: ``on_result(config, result)``: the driver's handler of one trial's result
OnResult = Callable[[dict, dict], None]


def say(line: str) -> None:
    """A progress line of the driver (stdout, flushed: logs stay readable when not a TTY)."""
    print(line, file=sys.stdout, flush=True)


def worker_base(profile: str, data_root: str | None, device: str, store: Path) -> dict:
    """What every worker needs from the driver, beside its own trial's keys."""
    return {"profile": profile, "data_root": data_root, "device": device, "store": str(Path(store).resolve()),
            "env": {k: os.environ[k] for k in FORWARD_ENV if k in os.environ}}


def worker_setup(config: dict) -> None:
    """Run first in every trainable: the driver's environment, data root and store."""
    os.environ.update(config["env"])
    os.environ.pop("BENCHMARK_DATA", None)  # the driver passes the data root it keyed the trials with
    os.environ["BENCHMARK_STORE"] = config["store"]
    logging.basicConfig(level=logging.WARNING)
    if config.get("threads"):
        # torch's threads = the trial's CPUs: Ray's OMP_NUM_THREADS reaches torch only when set
        # before torch's first import, which a reused worker may have done under other resources
        import torch

        torch.set_num_threads(int(config["threads"]))


def reporter(on_result: Callable[[Any, dict], None]):
    """A Tune callback handing each result (or a trial's crash, as status "failed") with its Ray trial to
    ``on_result(trial, result)`` in the driver. Tune pickles its callbacks with the experiment state;
    the pickled copy carries no hook (the hook may hold the store's connection)."""
    from ray import tune

    class Reporter(tune.Callback):
        def __init__(self, hook) -> None:
            self.hook = hook

        def __getstate__(self) -> dict:
            return {}

        def __setstate__(self, state: dict) -> None:
            self.hook = lambda trial, result: None

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.hook(trial, result)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.hook(trial, {"status": "failed", "error": f"Ray trial {trial.trial_id} errored (see {trial.local_path})"})

    return Reporter(on_result)


def fit_configs(trainable: Callable[[dict], None], configs: list[dict], resources: dict, name: str, storage: Path,
                on_result: OnResult) -> None:
    """One Tune trial per config (``space["spec"]`` in the trainable), on reused workers; a trial
    lost with its node runs again elsewhere. Returns when all ended or the run was interrupted."""
    from ray import tune

    from benchmark.progress import heartbeat

    ended: set[str] = set()

    def heard(trial, result) -> None:
        ended.add(trial.trial_id)
        on_result(trial.config["spec"], result)

    tuner = tune.Tuner(
        tune.with_resources(trainable, resources),
        param_space={"spec": tune.grid_search([{**c, "threads": max(1, int(resources["cpu"]))} for c in configs])},
        tune_config=tune.TuneConfig(trial_dirname_creator=lambda t: t.trial_id, reuse_actors=True),  # no new worker per trial
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=0, callbacks=[reporter(heard)],
            failure_config=tune.FailureConfig(max_failures=2),  # a lost node: the trial runs again elsewhere
        ),
    )
    with heartbeat(name, lambda: f"{len(ended)} of {len(configs)} trials reported; the others running or queued",
                   write=say):
        tuner.fit()


# ---------------------------------------------------------------- the pre-training phase

@dataclass
class EncoderJob:
    """One method config's encoder, to be made before its trials run."""

    key: str  # "<method>-<method config hash>": the encoder cache's folder
    method: str
    task: str  # any task of the config's trials (resolving needs one)
    sets: list[tuple[str, Any]]
    label: str  # as printed: the method entry's label
    in_driver: bool  # a baseline (exported, not trained) or DDP pre-training: made in the driver


def encoder_job(trial: Trial, sets: list[tuple[str, Any]], label: str, pretrains: bool = True) -> EncoderJob:
    """The encoder job of a trial. DDP pre-training runs in the driver: its Ray Train workers
    would wait behind a Tune trial holding the CPUs."""
    ddp = int(trial.method_config.get("ddp_workers", 1)) > 1
    return EncoderJob(f"{trial.method}-{trial.method_hash}", trial.method, trial.task, list(sets), label,
                      in_driver=not pretrains or ddp)


def pretrain_encoders(jobs: list[EncoderJob], base: dict, resources: dict, name: str, storage: Path) -> dict[str, dict]:
    """Make each job's encoder (pre-train, or find it cached), printing a line per job. Returns each
    job's result by key, ``{"status": "ready", ...}`` or ``{"status": "failed", "error": ...}``; a job
    missing from it did not run (the phase was interrupted)."""
    configs = [{**base, "key": job.key, "method": job.method, "task": job.task, "sets": job.sets, "label": job.label}
               for job in jobs]
    outcome: dict[str, dict] = {}

    def on_result(config: dict, result: dict) -> None:
        if config["key"] in outcome:
            return
        outcome[config["key"]] = result
        if result.get("status") == "ready":
            how = "cached" if result.get("reused") else f"ready in {result.get('seconds', 0):.1f}s"
            say(f"[pretrain] {len(outcome)}/{len(configs)} {config['label']} ({config['key']}): encoder {how}")
        else:
            say(f"[pretrain] {len(outcome)}/{len(configs)} {config['label']} ({config['key']}) FAILED: {result.get('error')}")

    for job, config in zip(jobs, configs):
        if job.in_driver:
            on_result(config, make_encoder(config))
    trained = [config for job, config in zip(jobs, configs) if not job.in_driver]
    if trained:
        fit_configs(pretrain_trainable, trained, resources, name, storage, on_result)
    return outcome


def pretrain_trainable(space: dict) -> None:
    """A pre-training phase's Tune trial: the encoder of one method config (pre-trained once, then cached)."""
    from ray import tune

    config = space["spec"]
    worker_setup(config)
    tune.report(make_encoder(config, in_trial=True))


def make_encoder(config: dict, in_trial: bool = False) -> dict:
    """The encoder of one method config as a result row. In the driver a user's mistake stops
    the run; in a trial every error is reported, and the driver says which config failed and why."""
    from benchmark.data.sources import data_root
    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    try:
        resolved = resolve(config["method"], config["task"], config["profile"], [tuple(s) for s in config["sets"]])
        pre = get_encoder(resolved, data_root(config["data_root"]), config["device"])
        return {"status": "ready", "reused": bool(pre.reused), "seconds": float(pre.meta.get("seconds") or 0.0)}
    except Exception as exc:
        if isinstance(exc, UserError) and not in_trial:
            raise
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
