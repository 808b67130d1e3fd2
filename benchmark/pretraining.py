"""The method-agnostic pre-training loop (the "GPU runner").

A method supplies model + loss (``Method.training_step``); this loop supplies
AdamW, cosine warm restarts stepped per iteration with the period set from the
real iteration count, the device policy's precision (``benchmark.device.policy``: bf16
autocast and fused AdamW on CUDA, fp16 with a GradScaler on a GPU without bf16, plain fp32
on CPU unless ``BENCHMARK_DEVICE_POLICY`` stands in for CUDA) and channels_last,
checkpoints that resume to the same result, progress, and a loss curve
(``losses.csv``) with every loss term in its own column. The same loop runs in
each process of a DDP run (``ddp_workers > 1``, ``benchmark.ddp``): rank 0
writes the files, the loss curve holds the terms averaged over processes.

Output, under ``$BENCHMARK_HOME/encoders/<method>-<hash>/``: ``encoder.safetensors``
(the transferred image encoder, torchvision key names for the ResNets),
``model.safetensors`` (the whole method), ``meta.json``, ``losses.csv`` and ``tb/``
(the loss terms as TensorBoard scalars, or a wandb run: ``benchmark.loggers``).
Caches written before safetensors hold ``encoder.pt`` / ``model.pt``: they are still
read (weights-only), and a rebuild writes safetensors.
The hash covers the method name, its resolved config and the corpus
fingerprint, so every distinct pre-training happens once; a lock file (``.lock``)
makes a second process asking for the same encoder wait for the first.

Every file here is a derived cache, read without running code (safetensors holds
tensors only; a ``.pt`` is read with ``torch.load(weights_only=True)``: a file planted
in a shared cache runs no code). A damaged one (truncated, corrupt, not this
loop's) is never a traceback: a cached encoder whose ``meta.json``, encoder or
model file does not read is reported in one
warning line and rebuilt; a ``checkpoint.pt`` that does not read is reported and
pre-training starts again from step 0. Temporary files a killed writer left are
removed while the folder's lock is held.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from benchmark.config import to_dict
from benchmark.data.pairs import EpochBatches, PairViews
from benchmark.device import (
    autocast,
    describe,
    maybe_compile,
    memory_format,
    out_of_memory_as,
    pick_device,
    policy,
    seed_everything,
)
from benchmark.distributed import all_finite
from benchmark.errors import TrainingDiverged, UserError, overflow_as_divergence
from benchmark.loggers import open_logger
from benchmark.methods.base import MethodConfig
from benchmark.paths import (
    META,
    atomic_json,
    atomic_safetensors_save,
    atomic_torch_save,
    atomic_write,
    cache_dir,
    exclusive,
    remove_stale_temps,
)
from benchmark.progress import Progress
from benchmark.registry import METHODS
from benchmark.version import __version__, git_revision

log = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
ENCODER = "encoder.safetensors"  # the transferred image encoder (its architecture: meta.json's encoder_arch)
#: the whole method (heads, text projection): what zero-shot and retrieval load (``runner.load_method``);
#: written only for a method with a joint image-text space, the only ones those tasks run
MODEL = "model.safetensors"
#: what caches from before safetensors hold instead (read, never written)
LEGACY = {ENCODER: "encoder.pt", MODEL: "model.pt"}
RESUME_KEYS = frozenset({"model", "optimizer", "scheduler", "method_rng", "torch_rng", "step", "history"})


class DamagedCache(Exception):
    """A cached file that does not read or does not fit: rebuilt, never shown as a traceback."""


@dataclass
class Pretrained:
    path: Path  # encoder.safetensors (encoder.pt in a cache from before safetensors)
    meta: dict
    reused: bool
    state: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # the encoder's tensors, once read

    def weights(self) -> dict[str, torch.Tensor]:
        """The encoder's state dict: the one checked at lookup or just trained, else read now."""
        if self.state is None:
            self.state = read_weights(self.path)
        return self.state

    @property
    def arch(self) -> str | dict | None:
        """The encoder's architecture spec (``methods.backbones``); None for caches written before it
        was recorded, which hold torchvision ResNets (``backbone_of`` reads the depth from the keys)."""
        return self.meta.get("encoder_arch")


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + (str(exc) or "empty").splitlines()[0][:160]


def weights_file(folder: Path, name: str) -> Path:
    """``folder/name`` (a safetensors file), or the ``.pt`` a cache from before safetensors
    holds in its place when only that exists."""
    path = folder / name
    legacy = folder / LEGACY.get(name, name)
    return legacy if not path.exists() and legacy.exists() else path


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict file of this cache (safetensors, or a ``.pt`` read weights-only);
    :class:`DamagedCache` naming the file when it does not read (missing, truncated,
    corrupt, planted)."""
    path = Path(path)  # meta.json and --json give paths as strings
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # whatever the damage: the file is derived and is rebuilt
        raise DamagedCache(f"{path.name}: {_first_line(exc)}") from None
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise DamagedCache(f"{path.name} holds no state dict of tensors")
    return state


def load_model_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load ``folder/model.safetensors`` (or an older cache's ``model.pt``) into ``model``
    (strictly); :class:`DamagedCache` when it does not read or does not fit the method
    (e.g. a file from an older version)."""
    path = weights_file(folder, MODEL)
    state = read_weights(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DamagedCache(f"{path.name} does not fit the method ({_first_line(exc)})") from None


def _check_archive(path: Path) -> None:
    """Cheap check of a weights file without reading its tensors: a safetensors header
    whose tensors must fit the file's length (safetensors checks it on opening), or a
    torch zip file's directory, which a truncated file has lost from its end."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(path, framework="pt") as opened:
                if not list(opened.keys()):
                    raise DamagedCache(f"{path.name} holds no tensors")
        except DamagedCache:
            raise
        except Exception as exc:  # safetensors' own error type for a bad header or a short file
            raise DamagedCache(f"{path.name}: {_first_line(exc)}") from None
        return
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("/data.pkl") for name in archive.namelist()):
                raise DamagedCache(f"{path.name} is not a PyTorch file")
    except (OSError, zipfile.BadZipFile) as exc:
        raise DamagedCache(f"{path.name}: {_first_line(exc)}") from None


def read_meta(out: Path) -> dict:
    try:
        meta = json.loads((out / META).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: JSON or UTF-8 decoding
        raise DamagedCache(f"{META}: {_first_line(exc)}") from None
    if not isinstance(meta, dict) or not {"method", "steps", "corpus", "final_loss", "seconds", "device"} <= meta.keys():
        raise DamagedCache(f"{META} lacks the fields of a finished encoder")
    return meta


def discard(out: Path, why: str) -> None:
    """Mark the cached encoder in ``out`` unfinished (one warning line), so that it is rebuilt."""
    log.warning("the cached encoder in %s is damaged (%s); rebuilding it", out, why)
    (out / META).unlink(missing_ok=True)


def encoder_dir(method: str, key: str) -> Path:
    """``$BENCHMARK_HOME/encoders/<method>-<key>``: ``key`` is the method config's store hash (the
    trial's ``method_hash``, ``benchmark.factory.method_key``), so the name a trial prints, the
    store's row, its ``runs/`` folder, the encoder's folder and its model card are one name."""
    return cache_dir("encoders", f"{method}-{key}")


def cached_encoder(method: str, key: str, corpus_fingerprint: str) -> Pretrained | None:
    """The finished encoder in the cache, checked: ``meta.json`` and the encoder's weights
    are read (the tensors are kept for the caller, not read twice), the model file's
    header (or zip directory) is checked, and it must have been trained on this corpus.
    None when there is none, or (after one warning) when a file is damaged or the corpus
    is another: the caller rebuilds it."""
    out = encoder_dir(method, key)
    if not (out / META).exists():
        return None
    hit = finished_encoder(out)
    if hit is not None and hit.meta.get("corpus", {}).get("fingerprint") != corpus_fingerprint:
        log.warning("the cached encoder in %s was made from another corpus (%s, not %s); rebuilding it",
                    out, hit.meta.get("corpus", {}).get("fingerprint"), corpus_fingerprint)
        (out / META).unlink(missing_ok=True)
        return None
    return hit


def finished_encoder(out: Path) -> Pretrained | None:
    """The finished encoder in the cache folder ``out`` (see :func:`cached_encoder`)."""
    try:
        meta = read_meta(out)
        path = weights_file(out, ENCODER)
        state = read_weights(path)
        if (model := weights_file(out, MODEL)).exists():  # absent for a method without a joint space
            _check_archive(model)
    except DamagedCache as exc:
        discard(out, str(exc))
        return None
    return Pretrained(path, meta, reused=True, state=state)


def save_weights(model: torch.nn.Module, out: Path) -> dict[str, torch.Tensor]:
    """Write the transferred encoder, and the whole method where a later step reads it (a method
    with a joint space: zero-shot and retrieval load it), as safetensors (an older cache's
    ``.pt`` files go: the folder holds one format); returns the encoder's state."""
    encoder_state = {k: v.detach().cpu() for k, v in model.image_encoder().state_dict().items()}
    atomic_safetensors_save(encoder_state, out / ENCODER, {"format": "pt"})
    if type(model).has_joint_space():
        atomic_safetensors_save(model.state_dict(), out / MODEL, {"format": "pt"})
    else:
        (out / MODEL).unlink(missing_ok=True)
    for legacy in LEGACY.values():
        (out / legacy).unlink(missing_ok=True)
    return encoder_state


def export_baseline(method: str, cfg: MethodConfig, key: str) -> Pretrained:
    """Encoder of a method that is not pre-trained here (``random``, ``checkpoint``), cached
    under ``key`` (the method config's store hash)."""
    cls = METHODS.get(method)
    fingerprint = f"baseline:{cls.fingerprint(cfg)}"
    if hit := cached_encoder(method, key, fingerprint):
        return hit
    out = encoder_dir(method, key)
    model = cls(cfg)
    encoder_state = save_weights(model, out)
    meta = {
        "method": method, "config": to_dict(cfg), "config_hash": out.name.rsplit("-", 1)[-1],
        "corpus": {"source": "none", "fingerprint": fingerprint, "pairs": 0}, "steps": 0, "seconds": 0.0,
        "device": "cpu", "final_loss": math.nan, "version": __version__, "encoder_arch": model.image_encoder().arch,
        "git_rev": git_revision(), "created": _now(),
    }
    atomic_json(out / META, meta)  # written last: its presence marks a finished encoder
    return Pretrained(out / ENCODER, meta, reused=False, state=encoder_state)


def pretrain(method: str, cfg: MethodConfig, corpus, key: str, device: str = "auto", force: bool = False) -> Pretrained:
    """Pre-train ``method`` on ``corpus`` (or reuse the cached result) and return its encoder,
    cached under ``key`` (the method config's store hash: ``benchmark.factory.method_key``).

    ``cfg.ddp_workers > 1`` runs the same loop in that many DDP processes through
    Ray Train (``benchmark.ddp``); otherwise it runs here."""
    if not force and (hit := cached_encoder(method, key, corpus.fingerprint)):
        return hit
    out = encoder_dir(method, key)
    with exclusive(out / ".lock", f"pre-training the same {method} encoder"):
        if not force and (hit := cached_encoder(method, key, corpus.fingerprint)):
            return hit  # the process we waited for made it
        return _pretrain(method, cfg, corpus, device, force, out)


def _pretrain(method: str, cfg: MethodConfig, corpus, device: str, force: bool, out: Path) -> Pretrained:
    if stale := remove_stale_temps(out):  # we hold the lock: no live writer owns them
        log.info("removed %d temporary file(s) a killed run left in %s", stale, out)
    if force:
        for name in (META, ENCODER, MODEL, *LEGACY.values(), CHECKPOINT, "losses.csv"):  # meta.json first
            (out / name).unlink(missing_ok=True)
    n, global_batch = len(corpus), cfg.batch_size * cfg.ddp_workers
    if n < global_batch:
        raise UserError(
            f"the corpus has {n} pairs, fewer than one global batch ({cfg.batch_size} x {cfg.ddp_workers} "
            "processes): lower batch_size or ddp_workers, or raise corpus_size"
        )
    per_epoch = EpochBatches(n, cfg.batch_size, cfg.seed, 0, cfg.ddp_workers).batches_per_epoch
    planned = per_epoch * cfg.epochs
    if cfg.max_steps and cfg.max_steps > planned:  # a cap above the run's own length would silently do less
        raise UserError(
            f"max_steps {cfg.max_steps} is more than this run's {planned} steps ({cfg.epochs} epoch(s) of {n} pairs in "
            f"batches of {global_batch}: {per_epoch} a pass); set epochs={-(-cfg.max_steps // per_epoch)} as well, "
            f"or max_steps <= {planned}"
        )
    if cfg.ddp_workers > 1:
        from benchmark.ddp import run_ddp

        run_ddp(train_loop, method, cfg, corpus, device, out)
        return Pretrained(weights_file(out, ENCODER), read_meta(out), reused=False)
    return train_loop(method, cfg, corpus, pick_device(device), out)


@torch.enable_grad()  # also when a task rebuilds a damaged encoder from inside its no_grad evaluation
def train_loop(method: str, cfg: MethodConfig, corpus, dev: torch.device, out: Path, resume: bool = True) -> Pretrained:
    """The loop itself, in one process or in each DDP process (rank 0 writes the files).
    ``resume``: continue from ``checkpoint.pt`` if there is a readable one."""
    from benchmark.distributed import mean_terms, world

    rank, size = world()
    n, bs = len(corpus), cfg.batch_size
    seed_everything(cfg.seed)

    model = METHODS.get(method)(cfg)
    model.text_device = str(dev)  # the frozen text encoder on the loop's device (--device cpu, cuda:N)
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
    precision = policy(dev)
    scaler = precision.scaler()
    period = max(1, round(cfg.lr_restart_epochs * steps_per_epoch) if cfg.lr_restart_epochs else total)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=period, eta_min=cfg.min_lr)

    step, history = 0, []
    ckpt_path = out / CHECKPOINT
    state = read_resume(ckpt_path, model, opt) if resume else None
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            model.load_rng_state(state["method_rng"])
            torch.set_rng_state(state["torch_rng"])
            if dev.type == "cuda" and torch.is_tensor(state.get("cuda_rng")):
                torch.cuda.set_rng_state(state["cuda_rng"], dev)
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except (RuntimeError, ValueError, TypeError, KeyError, IndexError) as exc:  # half applied: start clean
            log.warning("ignoring the pre-training checkpoint %s (%s); starting from step 0", ckpt_path, _first_line(exc))
            return train_loop(method, cfg, corpus, dev, out, resume=False)
        step, history = state["step"], state["history"]
        check_weights(model, f"{method} pre-training", f"in the checkpoint of step {step} ({ckpt_path})")
        log.info("resuming %s pre-training at step %d/%d from %s", method, step, total, ckpt_path)

    def save_checkpoint() -> None:
        if rank:
            return
        atomic_torch_save(
            {
                "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "method_rng": model.rng_state(), "torch_rng": torch.get_rng_state(), "step": step, "history": history,
                "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
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
    # rank 0 logs the curves; a run from step 0 starts them afresh (a resumed one appends)
    logger = open_logger(out, f"pretrain/{out.name}", {"method": method, **to_dict(cfg)},
                         fresh=step == 0, enabled=rank == 0)
    if rank == 0:
        log.info(
            "pre-training %s on %d %s pairs: %d steps (batch %d%s, %d px) on %s; %s",
            method, n, corpus.source, total, bs, f" x {size} DDP processes" if size > 1 else "", cfg.image_size,
            describe(dev), precision.describe(),
        )
    with logger, Progress(total=total, desc=f"pretrain {method}", unit="step", disable=rank > 0) as bar, \
            out_of_memory_as(f"{method} pre-training", bs, cfg.image_size, "method."):
        bar.update(step)
        while step < total:
            epoch, offset = divmod(step, steps_per_epoch)
            dataset.epoch = sampler.epoch = epoch
            sampler.start = offset
            for batch in loader:
                terms = train_step(step_model, to_device(batch, dev), opt, params, cfg.grad_clip, f"{method} pre-training",
                                   step, scaler=scaler)
                sched.step()
                step += 1
                row = {"step": step, "epoch": epoch, "lr": opt.param_groups[0]["lr"]}
                row.update({k: float(v.detach()) for k, v in mean_terms(terms).items()})
                history.append(row)
                logger.scalars(step, {k: v for k, v in row.items() if k not in ("step", "epoch")}, "pretrain/")
                bar.update(1, loss=row["loss"])
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                    save_checkpoint()
                if step >= total:
                    break

    check_weights(model, f"{method} pre-training", f"after step {step}")  # fused AdamW never raises on an overflow
    seconds = time.monotonic() - started
    meta = {
        "method": method, "config": to_dict(cfg), "config_hash": out.name.rsplit("-", 1)[-1],
        "corpus": {"source": corpus.source, "fingerprint": corpus.fingerprint, "pairs": n},
        "steps": step, "seconds": round(seconds, 2), "device": describe(dev), "precision": precision.describe(),
        "processes": size,
        "threads": torch.get_num_threads(), "final_loss": history[-1]["loss"] if history else math.nan,
        "version": __version__, "encoder_arch": model.image_encoder().arch,
        "git_rev": git_revision(), "created": _now(),
    }
    if rank:
        return Pretrained(out / ENCODER, meta, reused=False)
    encoder_state = save_weights(model, out)
    _write_losses(out / "losses.csv", history)
    cache = getattr(model, "_text_cache", None)
    if cache is not None:
        meta["text_cache"] = {"hits": cache.hits, "misses": cache.misses}
    atomic_json(out / META, meta)  # written last: its presence marks a finished encoder
    ckpt_path.unlink(missing_ok=True)  # the optimiser state is 2x the model: drop it once done
    log.info("pre-trained %s in %.1fs, final loss %.4f -> %s", method, seconds, meta["final_loss"], out)
    return Pretrained(out / ENCODER, meta, reused=False, state=encoder_state)


def read_resume(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict | None:
    """The checkpoint to resume from, read weights-only (a planted file runs no code)
    and checked against this run's model and optimiser; None when there is none, or,
    with one warning, when it is damaged or not this run's (pre-training starts over)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        problem = _resume_mismatch(state, model, opt)
    except Exception as exc:  # truncated, corrupt, refused by the weights-only loader: a derived file
        problem = _first_line(exc)
    if problem:
        log.warning("ignoring the pre-training checkpoint %s (%s); starting from step 0", path, problem)
        return None
    return state


def _resume_mismatch(state: object, model: torch.nn.Module, opt: torch.optim.Optimizer) -> str | None:
    """Why ``state`` cannot be this run's checkpoint, or None: the keys, the model's
    tensor shapes, the optimiser's groups and moment shapes, a step that matches the history."""
    if not isinstance(state, dict) or not RESUME_KEYS <= state.keys():
        return f"not a checkpoint of this loop ({type(state).__name__} without {sorted(RESUME_KEYS)})"
    mine, theirs = model.state_dict(), state["model"]
    if not isinstance(theirs, dict) or theirs.keys() != mine.keys():
        return "its model keys are not this method's"
    wrong = [k for k, v in mine.items() if not torch.is_tensor(theirs[k]) or theirs[k].shape != v.shape]
    if wrong:
        return f"its model tensors have other shapes ({wrong[:3]})"
    params = [p for group in opt.param_groups for p in group["params"]]
    saved = state["optimizer"]
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) or \
            [len(g.get("params", ())) for g in saved.get("param_groups", ()) if isinstance(g, dict)] != \
            [len(g["params"]) for g in opt.param_groups]:
        return "its optimiser groups are not this run's"
    for pid, moments in saved["state"].items():  # AdamW's moments have their parameter's shape
        if not isinstance(pid, int) or not 0 <= pid < len(params) or not isinstance(moments, dict) or any(
                torch.is_tensor(v) and v.dim() and v.shape != params[pid].shape for v in moments.values()):
            return "its optimiser state does not fit the parameters"
    step, history = state["step"], state["history"]
    if not isinstance(step, int) or not isinstance(history, list) or len(history) != step or \
            not all(isinstance(row, dict) for row in history):
        return "its step count does not match its loss history"
    if not isinstance(state["method_rng"], dict) or not torch.is_tensor(state["torch_rng"]):
        return "its random states are not tensors"
    return None


def check_weights(model: torch.nn.Module, what: str, when: str) -> None:
    """Every weight and buffer finite, or a TrainingDiverged line naming when and how many: an
    optimiser step that overflows (fused AdamW on CUDA does not raise) must not leave an encoder of
    NaNs in the cache for the next trial to blame its task for."""
    state = model.state_dict()
    bad = [k for k, v in state.items() if torch.is_floating_point(v) and not bool(torch.isfinite(v).all())]
    if bad:
        raise TrainingDiverged(f"{what}: {len(bad)} of {len(state)} weight tensors are not finite {when} "
                               f"(first: {bad[0]}); nothing was cached")


def make_optimizer(model: torch.nn.Module, cfg: MethodConfig, dev: torch.device):
    """(trainable parameters, AdamW) as the loop uses them: fused where the device policy says (CUDA)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups: list[dict] = [{"params": params}]
    if cfg.backbone_lr and cfg.backbone_lr != cfg.lr:  # the image encoder at its own rate, the rest at lr
        encoder = {id(p) for p in getattr(model, "module", model).image_encoder().parameters()}
        groups = [{"params": [p for p in params if id(p) in encoder], "lr": cfg.backbone_lr},
                  {"params": [p for p in params if id(p) not in encoder]}]
        groups = [g for g in groups if g["params"]]
    opt = torch.optim.AdamW(
        groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), weight_decay=cfg.weight_decay, fused=policy(dev).fused_adamw
    )
    return params, opt


def to_device(batch: dict, dev: torch.device) -> dict[str, torch.Tensor]:
    """A loader batch on ``dev``: views in the loop's memory format, plus ``index``."""
    fmt = memory_format(dev)
    views = {k: v.to(dev, non_blocking=True, memory_format=fmt) for k, v in batch.items() if k.startswith("view")}
    return {**views, "index": batch["index"].to(dev)}


def train_step(model, batch: dict[str, torch.Tensor], opt, params, grad_clip: float = 0.0, what: str = "pre-training",
               step: int = 0, step_fn=None, scaler: torch.amp.GradScaler | None = None) -> dict[str, torch.Tensor]:
    """One optimiser step of the loop: the method's loss under the device policy's autocast, a
    finite check (in every DDP process), backward, optional clipping, AdamW; with a GradScaler
    (fp16), the scaled backward, unscaled clipping and the scaler's step (which skips a step whose
    gradients overflowed, and lowers the scale). ``model`` is the Method or its DDP wrapper
    (called, so that DDP syncs); ``step_fn(batch)`` replaces it (``benchmark speed`` times naive
    steps with it)."""
    with autocast(params[0].device):
        terms = (step_fn or model)(batch)
    loss = terms["loss"]
    if not all_finite(loss):
        raise TrainingDiverged(f"{what} loss became {loss.item()} at step {step + 1}")
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        with overflow_as_divergence(f"{what} at step {step + 1}"):
            opt.step()
        return terms
    scaler.scale(loss).backward()
    if grad_clip:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    with overflow_as_divergence(f"{what} at step {step + 1}"):
        scaler.step(opt)
    scaler.update()
    return terms


def _now() -> str:
    """When an encoder was made (UTC, ISO 8601, to the second): its model card's date."""
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
