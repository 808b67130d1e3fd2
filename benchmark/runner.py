"""One trial: encoder (pre-train or reuse) -> task fit on the fraction subset -> test
metrics -> results store. What to run comes from :mod:`benchmark.factory` (names ->
configs -> objects); this module only runs it."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.data.sources import pretrain_corpus, task_splits
from benchmark.data.splits import fraction_subset
from benchmark.errors import TrialFailed, UserError
from benchmark.factory import Resolved, check_source, make_method, make_task, method_key, plan_trial
from benchmark.loggers import open_logger
from benchmark.store import Store, Trial
from benchmark.tasks.base import EpochReport, Fit
from benchmark.version import __version__, git_revision

log = logging.getLogger(__name__)


def get_encoder(resolved: Resolved, root, device: str = "auto", force: bool = False):
    from benchmark.pretraining import export_baseline, pretrain

    check_source(resolved, root)
    key = method_key(resolved, root)  # the encoder's folder is named as the trial's method_hash
    if not resolved.method_cls.pretrains:
        return export_baseline(resolved.method, resolved.method_cfg, key)
    corpus = pretrain_corpus(resolved.method_cfg, root)
    pre = pretrain(resolved.method, resolved.method_cfg, corpus, key, device=device, force=force)
    if pre.reused:
        log.info("reusing the cached %s encoder %s (pretrain --force re-trains it)", resolved.method, pre.path.parent)
    return pre


@dataclass
class Outcome:
    trial: Trial
    reused: bool
    store_path: str


def run_trial(
    method: str,
    task: str,
    fraction: float,
    seed: int = 42,
    profile: str = "cpu",
    sets: list[tuple[str, Any]] = (),
    data_root_arg: str | None = None,
    device: str = "auto",
    force: bool = False,
    store: Store | None = None,
    on_epoch: EpochReport | None = None,
) -> Outcome:
    """Run one trial (or find it finished in the store) and record it. ``on_epoch(epoch, score)``
    hears every validation pass that may select the head (a search's scheduler)."""
    from benchmark.device import describe, pick_device

    trial, resolved, root = plan_trial(method, task, fraction, seed, profile, sets, data_root_arg)
    store = store or Store()
    if not force and (done := store.finished(trial)):
        return Outcome(done, reused=True, store_path=str(store.path))
    store.ensure_writable()  # a store that cannot take the result says so now, not after training

    dev = pick_device(device)
    started = time.monotonic()
    trial.device, trial.version, trial.git_rev = describe(dev), __version__, git_revision()
    try:
        return _run(trial, resolved, root, dev, started, store, on_epoch)
    except UserError:
        raise
    except Exception as exc:  # recorded as failed; a TrialFailed is one line, anything else keeps its traceback
        trial.status, trial.error = "failed", f"{type(exc).__name__}: {exc}"
        trial.seconds = round(time.monotonic() - started, 2)
        exc.recorded_in = None  # what the CLI's failure line points at
        if store.record(trial):
            exc.recorded_in = str(store.path)
        else:  # a failed forced re-run never replaces the finished result
            kept = store.find(trial)
            log.warning("this forced re-run failed and is not recorded: the store keeps the finished result of %s "
                        "(%s = %s)", kept.finished_at, kept.metric, kept.value)
        raise


def _run(trial: Trial, resolved: Resolved, root, dev, started: float, store: Store,
         on_epoch: EpochReport | None = None) -> Outcome:
    from benchmark.device import out_of_memory_as

    task, tcfg, fraction, seed, tag = trial.task, resolved.task_cfg, trial.fraction, trial.seed, trial.data_source
    pre = get_encoder(resolved, root, device=str(dev))
    task_obj = make_task(resolved)
    splits, _ = task_splits(tcfg, root, task_obj.splits)
    splits["test"] = task_obj.test_split(splits["test"])
    trial.refs = task_obj.references(task_obj.test_labels(splits["test"]))  # from the test labels alone
    train, ids = splits.get("train"), []
    if train is not None:
        ids, manifest = fraction_subset(task, tag, train.ids, task_obj.strata(train), fraction, seed, tcfg.subset)
        log.info("%s: training on %d of %d images (fraction %g, seed %d, subset rule %s; list %s)",
                 task, len(ids), len(train.ids), fraction, seed, tcfg.subset, manifest)
    encoder_state = pre.weights()  # read (and checked) once, when the cache was looked up
    with open_logger(trial_folder(trial, store.path), f"{task}/{trial.method}-{trial.method_hash}", trial_info(trial),
                     fresh=True) as curves:
        fit = Fit(encoder_state, pre.path.parent.name, train, ids, splits.get("val"), splits["test"], seed, dev,
                  load_method=lambda: load_method(resolved, pre, lambda: get_encoder(resolved, root, device=str(dev))),
                  on_epoch=on_epoch, log=lambda epoch, scalars: curves.scalars(epoch, scalars), encoder_arch=pre.arch)
        with out_of_memory_as(task, tcfg.batch_size, tcfg.image_size, "task."):
            metrics = task_obj.fit_evaluate(fit)
    value = float(metrics[tcfg.metric])
    if not math.isfinite(value):  # no result: e.g. AUROC of a test set with one class, or a head gone to NaN
        raise TrialFailed(f"{task}: test {tcfg.metric} is {value} (undefined: no valid result; "
                          "a test set with a single class, or predictions that are NaN)")
    trial.status, trial.metric, trial.value = "finished", tcfg.metric, value
    trial.metrics = metrics
    trial.seconds = round(time.monotonic() - started, 2)
    trial.pretrain_seconds = 0.0 if pre.reused else pre.meta.get("seconds")
    try:
        store.record(trial)
    except UserError as exc:  # checked writable before training, lost since: the result is still said
        raise UserError(f"{exc}; the trial's result, not stored: {task} {tcfg.metric} = {value:.4f}") from None
    return Outcome(trial, reused=False, store_path=str(store.path))


def trial_folder(trial: Trial, store_path: str | Path) -> Path:
    """A trial's own folder (its training curves, in ``tb/``): ``runs/`` beside its results
    store, one level per part of the trial's key, so TensorBoard groups a method config's trials."""
    return (Path(store_path).parent / "runs" / trial.data_source / f"{trial.method}-{trial.method_hash}"
            / f"{trial.task}-{trial.task_hash}" / f"{trial.protocol}-f{trial.fraction:g}-seed{trial.seed}")


def trial_info(trial: Trial) -> dict[str, Any]:
    """What a wandb run records about its trial (TensorBoard has its folder's name)."""
    return {"method": trial.method, "method_config": trial.method_config, "task": trial.task,
            "task_config": trial.task_config, "fraction": trial.fraction, "seed": trial.seed,
            "data_source": trial.data_source, "git_rev": trial.git_rev}


def load_method(resolved: Resolved, pre, rebuild=None):
    """The whole pre-trained method (heads, text tower) from its ``model.pt``; a damaged
    file is reported in one warning and rebuilt with ``rebuild()`` (which returns the new
    encoder), then loaded again."""
    from benchmark.pretraining import DamagedCache, discard, load_model_weights

    model = make_method(resolved)
    try:
        load_model_weights(model, pre.path.parent)
    except DamagedCache as exc:
        if rebuild is None:
            raise
        discard(pre.path.parent, str(exc))
        pre = rebuild()
        model = make_method(resolved)
        load_model_weights(model, pre.path.parent)
    return model
