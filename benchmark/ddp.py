"""Multi-process (DDP) pre-training through Ray Train: ``ddp_workers: N``.

Each Ray Train worker runs the pre-training loop it is given
(``benchmark.pretraining.train_loop``, passed in by ``pretrain``: this module sits
below it and never imports it) in a torch process group
(gloo on CPU, NCCL on GPUs, set up by Ray Train), one GPU per worker when the
run is on CUDA. ``batch_size`` is per process, as in the authors' runs (IMITATE:
128 per GPU); a global batch is ``batch_size x N`` consecutive entries of the
epoch's permutation, so the data order does not depend on N.

Contrastive negatives are per process unless ``gather_negatives: true``
(PRIOR's YAML: its code gathers features across GPUs for the global loss),
which makes every loss compare the global batch (``Method.negatives``).
BatchNorm statistics stay per process (plain DDP, no SyncBatchNorm).

The Ray instance: the running one (a grid's), else ``BENCHMARK_RAY_ADDRESS``,
else a local one sized to the machine; the workers take the free CPUs (GPUs).
Rank 0 writes the checkpoint, the encoder, meta.json and its log and progress
lines (``ddp.log``, which the driver prints as they come) to ``$BENCHMARK_HOME``,
which on a multi-node cluster must be a shared file system. A killed run
resumes from its last checkpoint with the same command, as a single-process run
does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmark.errors import TrialFailed, UserError
from benchmark.paths import cache_dir

log = logging.getLogger(__name__)
PROGRESS = "ddp.log"  # rank 0's log lines and progress, beside the checkpoint

#: ``loop(method, cfg, corpus, device, out)``: the pre-training loop each process runs
Loop = Callable[..., object]


def _worker(config: dict) -> None:
    """One DDP process (runs inside a Ray Train worker)."""
    import ray.train.torch
    import torch

    os.environ.update(config["env"])
    if ray.train.get_context().get_world_rank() == 0:  # the driver echoes this file (Ray keeps worker output)
        sys.stderr = open(Path(config["out"]) / PROGRESS, "a", buffering=1)  # noqa: SIM115  (open for the process's life)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr,
                        force=True)
    # Ray Train logs the loop's exception with its traceback; the driver raises it again (a failed
    # trial or a user's mistake as one line, anything else with Ray's copy of the traceback)
    logging.getLogger("ray.train.v2._internal.util").setLevel(logging.CRITICAL)
    dev = ray.train.torch.get_device() if config["cuda"] else torch.device("cpu")
    torch.set_num_threads(max(1, int(config["threads"])))
    config["loop"](config["method"], config["cfg"], config["corpus"], dev, Path(config["out"]))


def run_ddp(loop: Loop, method: str, cfg, corpus, device: str, out: Path) -> None:
    """Run ``loop`` in ``cfg.ddp_workers`` processes; raises what a worker raised. ``loop`` is
    pickled by reference (a module-level function), so every worker imports it itself."""
    from benchmark import raycluster

    session = raycluster.connect(os.environ.get("BENCHMARK_RAY_ADDRESS") or None)
    try:
        # the cluster's GPUs count, not the driver's: on a cluster the driver may have none
        preference = device if device != "auto" else os.environ.get("BENCHMARK_DEVICE", "auto")
        cuda = preference.startswith("cuda") or (preference == "auto" and session.gpus > 0)
        workers = cfg.ddp_workers
        kind, total = ("GPUs", session.gpus) if cuda else ("CPUs", session.cpus)
        if total < workers:  # no use waiting for them to free up
            raise UserError(f"ddp_workers={workers} needs {workers} {kind}; {session.where} has {total:g} in all: "
                            "lower ddp_workers, or set BENCHMARK_RAY_ADDRESS to a larger cluster")
        # what is free, not what the cluster has: inside a Tune trial that trial holds some, and a
        # request larger than what can be had waits forever
        free_cpus, free_gpus = _free(workers, cuda)
        if cuda and free_gpus < workers:
            raise UserError(f"ddp_workers={workers} needs {workers} free GPUs; {session.where} has {free_gpus:g}")
        if free_cpus < workers:
            raise UserError(f"ddp_workers={workers} needs {workers} free CPUs; {session.where} has {free_cpus:g}")
        cpus = 1.0 if cuda else float(free_cpus // workers)  # on CPU the cores are the compute: share them out
        _fit(loop, method, cfg, corpus, out, workers, cuda, cpus)
    finally:
        session.close()


def _free(workers: int, cuda: bool, wait: float = 30.0) -> tuple[float, float]:
    """Free (CPUs, GPUs), waited for a little: a run that just ended frees its workers late."""
    import ray  # after raycluster.connect: it sets Ray's environment before the first import

    deadline = time.monotonic() + wait
    while True:
        free = ray.available_resources()
        cpus, gpus = float(free.get("CPU", 0)), float(free.get("GPU", 0))
        if (cpus >= workers and (gpus >= workers or not cuda)) or time.monotonic() > deadline:
            return cpus, gpus
        time.sleep(0.5)


def _fit(loop: Loop, method: str, cfg, corpus, out: Path, workers: int, cuda: bool, cpus: float) -> None:
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchConfig, TorchTrainer

    env = {k: v for k, v in os.environ.items() if k.startswith(("BENCHMARK_", "HF_", "TQDM_", "TRANSFORMERS_"))}
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"loop": loop, "method": method, "cfg": cfg, "corpus": corpus, "out": str(out), "cuda": cuda,
                           "threads": cpus, "env": env},
        torch_config=TorchConfig(backend="nccl" if cuda else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=cuda, resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(name=out.name, storage_path=str(cache_dir("ray_train").resolve()),
                             failure_config=FailureConfig(max_failures=0)),
    )
    log.info("pre-training %s in %d DDP processes through Ray Train (%s)", method, workers, "NCCL" if cuda else "gloo")
    try:
        with _echo(out / PROGRESS):
            trainer.fit()
    except TrainingFailedError as exc:
        cause = _first_worker_error(exc)
        if isinstance(cause, (UserError, TrialFailed)):
            raise type(cause)(str(cause)) from None
        raise
    if not (out / "meta.json").exists():
        raise RuntimeError(f"Ray Train finished but rank 0 wrote no encoder to {out}")


@contextlib.contextmanager
def _echo(path: Path, every: float = 1.0):
    """Print the lines appended to ``path`` (rank 0's log and progress) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    done = threading.Event()

    def follow() -> None:
        with open(path) as fh:
            fh.seek(0, os.SEEK_END)  # a resumed run appends: only this run's lines
            while True:
                finished = done.is_set()
                for line in fh:
                    print(line.rstrip("\n"), file=sys.stderr, flush=True)
                if finished:
                    return
                done.wait(every)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


def _first_worker_error(exc: Exception) -> BaseException | None:
    """What the lowest-ranked failed worker raised (Ray Train's WorkerGroupError maps
    ranks to the workers' own exceptions); None for a controller error."""
    failures = getattr(exc, "worker_failures", None) or {}
    return failures[min(failures)] if failures else None
