"""The method-agnostic pre-training loop (the "GPU runner").

A method supplies model + loss (``Method.training_step``); this loop supplies
AdamW, cosine warm restarts stepped per iteration with the period set from the
real iteration count, bf16 autocast and channels_last on CUDA (plain fp32 on
CPU), checkpoints that resume to the same result, progress, and a loss curve
(``losses.csv``) with every loss term in its own column. The same loop runs in
each process of a DDP run (``ddp_workers > 1``, ``benchmark.ddp``): rank 0
writes the files, the loss curve holds the terms averaged over processes.

Output, under ``$BENCHMARK_HOME/encoders/<method>-<hash>/``: ``encoder.pt`` (the
transferred ResNet-50, torchvision key names), ``model.pt`` (the whole method),
``meta.json``, ``losses.csv``.
The hash covers the method name, its resolved config and the corpus
fingerprint, so every distinct pre-training happens once; a lock file (``.lock``)
makes a second process asking for the same encoder wait for the first.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmark import __version__
from benchmark.config import config_hash, to_dict
from benchmark.data.pairs import EpochBatches, PairViews
from benchmark.device import (
    autocast,
    describe,
    maybe_compile,
    memory_format,
    out_of_memory_as,
    pick_device,
    seed_everything,
)
from benchmark.distributed import all_finite
from benchmark.errors import TrainingDiverged, UserError, overflow_as_divergence
from benchmark.paths import (
    atomic_json,
    atomic_torch_save,
    atomic_write,
    cache_dir,
    exclusive,
)
from benchmark.progress import Progress
from benchmark.registry import METHODS
from methods.base import MethodConfig

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
ENCODER = "encoder.pt"  # the transferred image encoder (torchvision ResNet-50 keys)
MODEL = "model.pt"  # the whole method (heads, text projection): zero-shot and retrieval need it


@dataclass
class Pretrained:
    path: Path  # encoder.pt
    meta: dict
    reused: bool


def encoder_dir(method: str, cfg: MethodConfig, corpus_fingerprint: str) -> Path:
    return cache_dir("encoders", f"{method}-{config_hash(method, cfg, corpus_fingerprint)}")


def cached_encoder(method: str, cfg: MethodConfig, corpus_fingerprint: str) -> Pretrained | None:
    out = encoder_dir(method, cfg, corpus_fingerprint)
    if (out / ENCODER).exists() and (out / "meta.json").exists():
        return Pretrained(out / ENCODER, json.loads((out / "meta.json").read_text()), reused=True)
    return None


def export_baseline(method: str, cfg: MethodConfig) -> Pretrained:
    """Encoder of a method that is not pre-trained here (``random``, ``checkpoint``)."""
    cls = METHODS.get(method)
    fingerprint = f"baseline:{cls.fingerprint(cfg)}"
    if hit := cached_encoder(method, cfg, fingerprint):
        return hit
    out = encoder_dir(method, cfg, fingerprint)
    model = cls(cfg)
    atomic_torch_save({k: v.detach().cpu() for k, v in model.image_encoder().state_dict().items()}, out / ENCODER)
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / MODEL)
    meta = {
        "method": method, "config": to_dict(cfg), "config_hash": out.name.rsplit("-", 1)[-1],
        "corpus": {"source": "none", "fingerprint": fingerprint, "pairs": 0}, "steps": 0, "seconds": 0.0,
        "device": "cpu", "final_loss": math.nan, "version": __version__,
    }
    atomic_json(out / "meta.json", meta)  # written last: its presence marks a finished encoder
    return Pretrained(out / ENCODER, meta, reused=False)


def pretrain(method: str, cfg: MethodConfig, corpus, device: str = "auto", force: bool = False) -> Pretrained:
    """Pre-train ``method`` on ``corpus`` (or reuse the cached result) and return its encoder.

    ``cfg.ddp_workers > 1`` runs the same loop in that many DDP processes through
    Ray Train (``benchmark.ddp``); otherwise it runs here."""
    if not force and (hit := cached_encoder(method, cfg, corpus.fingerprint)):
        return hit
    out = encoder_dir(method, cfg, corpus.fingerprint)
    with exclusive(out / ".lock", f"pre-training the same {method} encoder"):
        if not force and (hit := cached_encoder(method, cfg, corpus.fingerprint)):
            return hit  # the process we waited for made it
        return _pretrain(method, cfg, corpus, device, force, out)


def _pretrain(method: str, cfg: MethodConfig, corpus, device: str, force: bool, out: Path) -> Pretrained:
    if force:
        for name in (ENCODER, MODEL, CHECKPOINT, "meta.json", "losses.csv"):
            (out / name).unlink(missing_ok=True)
    n, global_batch = len(corpus), cfg.batch_size * cfg.ddp_workers
    if n < global_batch:
        raise UserError(
            f"the corpus has {n} pairs, fewer than one global batch ({cfg.batch_size} x {cfg.ddp_workers} "
            "processes): lower batch_size or ddp_workers, or raise corpus_size"
        )
    if cfg.ddp_workers > 1:
        from benchmark.ddp import run_ddp

        run_ddp(method, cfg, corpus, device, out)
        return Pretrained(out / ENCODER, json.loads((out / "meta.json").read_text()), reused=False)
    return train_loop(method, cfg, corpus, pick_device(device), out)


def train_loop(method: str, cfg: MethodConfig, corpus, dev: torch.device, out: Path) -> Pretrained:
    """The loop itself, in one process or in each DDP process (rank 0 writes the files)."""
    from benchmark.distributed import mean_terms, world

    rank, size = world()
    n, bs = len(corpus), cfg.batch_size
    seed_everything(cfg.seed)

    model = METHODS.get(method)(cfg)
    if rank == 0:  # the first process fills the on-disk text cache; the others read it
        model.prepare(corpus)
    if size > 1:
        torch.distributed.barrier()
        if rank:
            model.prepare(corpus)
    model = maybe_compile(model.to(dev, memory_format=memory_format(dev)))
    step_model = model
    if size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # unused parameters: PRIOR's stages switch modules on and off mid-run
        step_model = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=True
        )

    sampler = EpochBatches(n, bs, cfg.seed, rank, size)
    steps_per_epoch = sampler.batches_per_epoch
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    params, opt = make_optimizer(model, cfg, dev)
    period = max(1, round(cfg.lr_restart_epochs * steps_per_epoch) if cfg.lr_restart_epochs else total)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=period, eta_min=cfg.min_lr)

    step, history = 0, []
    ckpt_path = out / CHECKPOINT
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=dev, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        model.load_rng_state(state["method_rng"])
        torch.set_rng_state(state["torch_rng"])
        step, history = state["step"], state["history"]
        log.info("resuming %s pre-training at step %d/%d from %s", method, step, total, ckpt_path)

    def save_checkpoint() -> None:
        if rank:
            return
        atomic_torch_save(
            {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "method_rng": model.rng_state(), "torch_rng": torch.get_rng_state(), "step": step, "history": history,
            },
            ckpt_path,
        )
        _write_losses(out / "losses.csv", history)

    dataset = PairViews(corpus.images, model.train_transform(), cfg.seed, model.views)
    loader = DataLoader(
        dataset, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=dev.type == "cuda",
        persistent_workers=False,
    )
    started = time.monotonic()
    model.train()
    if rank == 0:
        log.info(
            "pre-training %s on %d %s pairs: %d steps (batch %d%s, %d px) on %s",
            method, n, corpus.source, total, bs, f" x {size} DDP processes" if size > 1 else "", cfg.image_size,
            describe(dev),
        )
    with Progress(total=total, desc=f"pretrain {method}", unit="step", disable=rank > 0) as bar, \
            out_of_memory_as(f"{method} pre-training", bs, cfg.image_size, "method."):
        bar.update(step)
        while step < total:
            epoch, offset = divmod(step, steps_per_epoch)
            dataset.epoch = sampler.epoch = epoch
            sampler.start = offset
            for batch in loader:
                terms = train_step(step_model, to_device(batch, dev), opt, params, cfg.grad_clip, f"{method} pre-training", step)
                sched.step()
                step += 1
                row = {"step": step, "epoch": epoch, "lr": opt.param_groups[0]["lr"]}
                row.update({k: float(v.detach()) for k, v in mean_terms(terms).items()})
                history.append(row)
                bar.update(1, loss=row["loss"])
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                    save_checkpoint()
                if step >= total:
                    break

    seconds = time.monotonic() - started
    meta = {
        "method": method, "config": to_dict(cfg), "config_hash": out.name.rsplit("-", 1)[-1],
        "corpus": {"source": corpus.source, "fingerprint": corpus.fingerprint, "pairs": n},
        "steps": step, "seconds": round(seconds, 2), "device": describe(dev), "processes": size,
        "final_loss": history[-1]["loss"] if history else math.nan,
        "version": __version__,
    }
    if rank:
        return Pretrained(out / ENCODER, meta, reused=False)
    encoder_state = {k: v.detach().cpu() for k, v in model.image_encoder().state_dict().items()}
    atomic_torch_save(encoder_state, out / ENCODER)
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / MODEL)
    _write_losses(out / "losses.csv", history)
    cache = getattr(model, "_text_cache", None)
    if cache is not None:
        meta["text_cache"] = {"hits": cache.hits, "misses": cache.misses}
    atomic_json(out / "meta.json", meta)  # written last: its presence marks a finished encoder
    ckpt_path.unlink(missing_ok=True)  # the optimiser state is 2x the model: drop it once done
    log.info("pre-trained %s in %.1fs, final loss %.4f -> %s", method, seconds, meta["final_loss"], out)
    return Pretrained(out / ENCODER, meta, reused=False)


def make_optimizer(model: torch.nn.Module, cfg: MethodConfig, dev: torch.device):
    """(trainable parameters, AdamW) as the loop uses them: fused on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, fused=dev.type == "cuda"
    )
    return params, opt


def to_device(batch: dict, dev: torch.device) -> dict[str, torch.Tensor]:
    """A loader batch on ``dev``: views in the loop's memory format, plus ``index``."""
    fmt = memory_format(dev)
    views = {k: v.to(dev, non_blocking=True, memory_format=fmt) for k, v in batch.items() if k.startswith("view")}
    return {**views, "index": batch["index"].to(dev)}


def train_step(model, batch: dict[str, torch.Tensor], opt, params, grad_clip: float = 0.0, what: str = "pre-training",
               step: int = 0, step_fn=None) -> dict[str, torch.Tensor]:
    """One optimiser step of the loop: the method's loss under autocast, a finite
    check (in every DDP process), backward, optional clipping, AdamW.
    ``model`` is the Method or its DDP wrapper (called, so that DDP syncs);
    ``step_fn(batch)`` replaces it (``benchmark speed`` times naive steps with it)."""
    with autocast(params[0].device):
        terms = (step_fn or model)(batch)
    loss = terms["loss"]
    if not all_finite(loss):
        raise TrainingDiverged(f"{what} loss became {loss.item()} at step {step + 1}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    with overflow_as_divergence(f"{what} at step {step + 1}"):
        opt.step()
    return terms


def _write_losses(path: Path, history: list[dict]) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history)

    atomic_write(path, write)  # a kill mid-write leaves the last complete curve
