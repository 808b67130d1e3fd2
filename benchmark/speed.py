"""``benchmark speed``: how close the pre-training step is to the bare backbone.

Three things are timed in one process, interleaved step by step (so a machine
shared with other jobs slows all three alike), after warm-up; each figure is the
median over the timed steps (CUDA events on a GPU, ``time.perf_counter`` on CPU):

- ceiling: the config's backbone (ResNet-50 unless ``--set backbone=...``, any timm name) forward
  + backward + AdamW step on the views the method's
  step sees, one pass per view (IMITATE: two views, 2 x batch images; ConVIRT,
  GLoRIA, PRIOR, ASG: one), with the loop's dtype, memory format and optimiser,
  through the loop's own ``train_step``;
- step: the method's pre-training step exactly as ``benchmark.pretraining`` runs it
  (``train_step``: autocast, ``training_step``, backward, clipping, AdamW) on
  batches from the loop's data pipeline; ``step_data`` also counts fetching the
  batch from the loader (augmentation), which the loop does between steps;
- naive: what the authors' code does per step, from the same modules
  (``benchmark.speed_naive``), on the same batches.

``--task NAME``: the wall time of a 1/10/100 % x 3-seed linear-probe grid against
one trial, both with cold feature caches and fresh results stores, after the
encoder is pre-trained (untimed).
"""

from __future__ import annotations

import datetime
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)
GRID_FRACTIONS = (0.01, 0.1, 1.0)
GRID_SEEDS = (42, 0, 1)


class Timer:
    """Seconds of ``fn()``: CUDA events on the GPU it was given (``cuda:N``: that GPU's stream, not
    the current device's), perf_counter on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            with torch.cuda.device(self.device):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize(self.device)
            return start.elapsed_time(end) / 1000
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started


class Ceiling(nn.Module):
    """The bare backbone as a "method": one forward per view, a trivial loss."""

    def __init__(self, arch: str = "resnet50") -> None:
        super().__init__()
        from benchmark.models.backbones import build_backbone

        self.backbone = build_backbone(arch, "none")

    def image_encoder(self) -> nn.Module:
        """The module a method config's ``backbone_lr`` applies to (``make_optimizer``)."""
        return self.backbone

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = sum(self.backbone(v)[-1].float().mean() for k, v in batch.items() if k.startswith("view"))
        return {"loss": loss}


@dataclass
class SpeedResult:
    method: str
    device: str
    batch_size: int
    image_size: int
    steps: int
    warmup: int
    views: int
    backbone: str = "resnet50"
    seconds: dict[str, float] = field(default_factory=dict)  # median seconds per step

    def pairs_per_s(self, key: str) -> float | None:
        s = self.seconds.get(key)
        return self.batch_size / s if s else None

    def as_dict(self) -> dict:
        out = {
            "method": self.method, "device": self.device, "batch_size": self.batch_size,
            "image_size": self.image_size, "backbone": self.backbone, "views": self.views, "steps": self.steps, "warmup": self.warmup,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        for key in ("ceiling", "step", "step_data", "naive"):
            rate = self.pairs_per_s(key)
            out[f"{key}_pairs_per_s"] = round(rate, 3) if rate else None
        step, ceiling, naive = (out[f"{k}_pairs_per_s"] for k in ("step", "ceiling", "naive"))
        out["step_over_ceiling"] = round(step / ceiling, 3) if ceiling else None
        out["step_over_naive"] = round(step / naive, 3) if naive else None
        out["step_data_over_ceiling"] = round(out["step_data_pairs_per_s"] / ceiling, 3) if ceiling else None
        return out


def measure_steps(method: str, profile: str = "cpu", sets=(), device: str = "auto", steps: int = 5, warmup: int = 2,
                  data_root_arg: str | None = None, compile: bool = False) -> SpeedResult:
    """Ceiling, step and naive step of ``method`` (see the module docstring)."""
    from benchmark.data.pairs import EpochBatches, PairViews
    from benchmark.data.sources import data_root, pretrain_corpus
    from benchmark.device import (
        describe,
        maybe_compile,
        memory_format,
        pick_device,
        policy,
        seed_everything,
    )
    from benchmark.errors import UserError
    from benchmark.factory import resolve
    from benchmark.pretraining import make_optimizer, to_device, train_step
    from benchmark.progress import Progress
    from benchmark.speed_naive import naive_step_fn

    if steps < 1 or warmup < 0:
        raise UserError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    resolved = resolve(method, None, profile, list(sets))
    if not resolved.method_cls.pretrains:
        raise UserError(f"method {method!r} is not pre-trained here: there is no step to time")
    cfg = resolved.method_cfg
    dev = pick_device(device)
    corpus = pretrain_corpus(cfg, data_root(data_root_arg))
    if len(corpus) < cfg.batch_size:
        raise UserError(f"the corpus has {len(corpus)} pairs, fewer than batch_size={cfg.batch_size}: raise corpus_size")
    seed_everything(cfg.seed)
    fmt = memory_format(dev)

    model = resolved.method_cls(cfg)
    model.prepare(corpus)
    model = maybe_compile(model.to(dev, memory_format=fmt).train(), compile)
    params, opt = make_optimizer(model, cfg, dev)
    scaler, c_scaler = policy(dev).scaler(), policy(dev).scaler()  # fp16 (a GPU without bf16): as the loop steps
    naive = naive_step_fn(model, corpus)
    ceiling = maybe_compile(Ceiling(cfg.backbone).to(dev, memory_format=fmt).train(), compile)  # both or neither: a fair ratio
    c_params, c_opt = make_optimizer(ceiling, cfg, dev)

    dataset = PairViews(corpus.images, model.train_transform(), cfg.seed, model.views)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=EpochBatches(len(corpus), cfg.batch_size, cfg.seed),
                                         num_workers=cfg.num_workers, pin_memory=dev.type == "cuda")

    def batches():
        epoch = 0
        while True:
            dataset.epoch = loader.batch_sampler.epoch = epoch
            yield from loader
            epoch += 1

    stream = batches()
    first = to_device(next(stream), dev)
    views = {k: v for k, v in first.items() if k.startswith("view")}  # the views the method's step sees
    timer = Timer(dev)
    fetched: dict[str, Any] = {}

    def fetch():
        fetched["batch"] = to_device(next(stream), dev)

    runs = {
        "ceiling": lambda: train_step(ceiling, views, c_opt, c_params, cfg.grad_clip, "ceiling", scaler=c_scaler),
        "step": lambda: train_step(model, fetched["batch"], opt, params, cfg.grad_clip, method, scaler=scaler),
        "naive": (lambda: train_step(model, fetched["batch"], opt, params, cfg.grad_clip, f"naive {method}", step_fn=naive,
                                     scaler=scaler)) if naive else None,
    }
    times: dict[str, list[float]] = {k: [] for k in ("ceiling", "step", "step_data", "naive")}
    log.info("timing %s (%s) on %s: %d warm-up + %d timed steps of each (batch %d, %d px)",
             method, cfg.backbone, describe(dev), warmup, steps, cfg.batch_size, cfg.image_size)
    with Progress(total=warmup + steps, desc=f"speed {method}", unit="round") as bar:  # a line every 10 s in a log
        for i in range(warmup + steps):
            data_s = timer(fetch)
            row = {k: timer(fn) for k, fn in runs.items() if fn is not None}
            if i >= warmup:
                for k, v in row.items():
                    times[k].append(v)
                times["step_data"].append(row["step"] + data_s)
            bar.update(1, step_s=row["step"])
    return SpeedResult(
        method, describe(dev) + (" compiled" if compile else ""), cfg.batch_size, cfg.image_size, steps, warmup, len(views),
        cfg.backbone, {k: statistics.median(v) for k, v in times.items() if v},
    )


def speed_lines(result: dict) -> list[str]:
    def rate(key):
        v = result.get(f"{key}_pairs_per_s")
        return f"{v:9.2f} pairs/s" if v else "        - (none)"

    backbone = result.get("backbone", "resnet50")  # results saved before the field was added were ResNet-50
    head = (f"{result['method']} ({backbone}) on {result['device']}: batch {result['batch_size']}, {result['image_size']} px, "
            f"median of {result['steps']} steps after {result['warmup']} warm-up")
    lines = [head]
    lines += [f"  ceiling   {rate('ceiling')}   {backbone} fwd+bwd+AdamW on {result['views']} x batch images",
              f"  step      {rate('step')}   the pre-training step (benchmark.pretraining.train_step)",
              f"  step+data {rate('step_data')}   the same plus fetching the batch (augmentation)",
              f"  naive     {rate('naive')}   the authors' per-step work (benchmark.speed_naive)"]
    for key, label in (("step_over_ceiling", "step / ceiling"), ("step_data_over_ceiling", "step+data / ceiling"),
                       ("step_over_naive", "step / naive")):
        if result.get(key) is not None:
            lines.append(f"  {label:20s} {result[key]:.3f}")
    return lines


# -- --task: the linear-probe grid against one trial ------------------------------
def measure_task(method: str, task: str, profile: str = "cpu", sets=(), device: str = "auto",
                 data_root_arg: str | None = None) -> dict:
    """Wall time of one trial (fraction 1, seed 42) and of the 3 x 3 grid, each with a
    cold feature cache and a fresh results store (so nothing stored is reused)."""
    from benchmark.data.sources import data_root
    from benchmark.device import describe, pick_device
    from benchmark.factory import resolve
    from benchmark.paths import cache_dir
    from benchmark.runner import get_encoder, run_trial
    from benchmark.store import Store

    dev = pick_device(device)
    resolved = resolve(method, task, profile, list(sets))
    pre = get_encoder(resolved, data_root(data_root_arg), device=str(dev))  # untimed: shared by every trial
    features = cache_dir("features", pre.path.parent.name)

    def trials(grid) -> float:
        shutil.rmtree(features, ignore_errors=True)  # cold: the first trial computes the features
        with tempfile.TemporaryDirectory(prefix="speed-store-") as tmp:
            store = Store(Path(tmp) / "store.sqlite")
            started = time.perf_counter()
            for fraction, seed in grid:
                run_trial(method, task, fraction, seed, profile, list(sets), data_root_arg, str(dev), store=store)
            return time.perf_counter() - started

    # untimed warm-up: renders the task's data and fills import / allocator caches
    trials([(GRID_FRACTIONS[0], GRID_SEEDS[0])])
    one = trials([(1.0, 42)])
    grid = trials([(f, s) for f in GRID_FRACTIONS for s in GRID_SEEDS])
    return {
        "method": method, "task": task, "device": describe(dev), "single_trial_s": round(one, 3),
        "grid_s": round(grid, 3), "grid_trials": len(GRID_FRACTIONS) * len(GRID_SEEDS),
        "grid_over_single": round(grid / one, 3),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def task_lines(result: dict) -> list[str]:
    return [
        f"{result['method']} -> {result['task']} on {result['device']}, cold feature cache each time:",
        f"  one trial (fraction 1, seed 42)        {result['single_trial_s']:8.2f} s",
        f"  grid of {result['grid_trials']} (1/10/100 % x seeds 42,0,1)  {result['grid_s']:8.2f} s",
        f"  grid / one trial                       {result['grid_over_single']:8.3f}",
    ]

