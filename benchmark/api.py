"""The Python API: what the CLI's ``run`` and ``pretrain`` do, callable from a notebook.

    import benchmark
    r = benchmark.run("imitate", "rsna_cls", 0.01, seed=42, profile="smoke")
    r.value, r.metrics                      # the trial's test metric, every metric
    enc = benchmark.load_encoder("imitate", profile="smoke")   # images -> pooled features
    df = benchmark.results(task="rsna_cls")                     # the store's trials

Config overrides are one mapping, as ``--set`` takes them: ``overrides={"lr": 1e-4,
"hierarchical": False, "task.lr": 1e-3, "seed": 3}`` (a key the method and the task share
takes its ``method.`` or ``task.`` prefix; no key can collide with a parameter of these
functions: the method's ``seed`` is not the trial's). ``--set`` pairs in a list also do.
``run(..., baseline="random")`` runs the untrained encoder beside the trial, on the same
training subset (what the CLI's ``run`` prints beside every phantom trial).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from benchmark.pretraining import Pretrained
    from benchmark.store import Store, Trial

__all__ = ["RunResult", "baselines", "load_encoder", "pretrain", "results", "run"]

Overrides = Mapping[str, Any] | Iterable[tuple[str, Any]]
#: method keys a baseline shares with the run: the transferred encoder's architecture and initialisation
ENCODER_KEYS = ("backbone", "backbone_weights")


@dataclass(frozen=True)
class RunResult:
    """One trial's stored result: ``trial`` is the store's row, ``reused`` says whether it was
    found finished in the store (not run again), ``store`` is the store's file. ``baseline``:
    the trial of ``run(..., baseline=...)`` on the same subset (a RunResult), the reason it
    failed (a string), or None (not asked for, or not applicable: real data, the baseline
    itself, a task that needs a text tower); ``baseline_method``: the method asked for."""

    trial: Trial
    reused: bool
    store: str
    baseline: RunResult | str | None = None
    baseline_method: str | None = None

    @property
    def value(self) -> float:
        """The task's primary metric on the test split."""
        return self.trial.value

    @property
    def metrics(self) -> dict[str, float]:
        return self.trial.metrics

    def as_dict(self) -> dict[str, Any]:
        """The object ``run --json`` prints; a baseline that was asked for is under its method's name
        (null where it does not apply)."""
        t = self.trial
        out = {
            "method": t.method, "task": t.task, "protocol": t.protocol, "fraction": t.fraction, "seed": t.seed,
            "data_source": t.data_source, "metric": t.metric, "value": t.value, "metrics": t.metrics,
            "config_hash": t.method_hash, "task_config_hash": t.task_hash, "device": t.device,
            "seconds": t.seconds, "reused": self.reused, "references": t.refs,
        }
        if self.baseline_method is None:
            return out
        out[self.baseline_method] = None
        if isinstance(self.baseline, str):
            out[self.baseline_method] = {"method": self.baseline_method, "status": "failed",
                                         "error": self.baseline.removeprefix("failed: ")}
        elif self.baseline is not None:
            b = self.baseline.trial
            out[self.baseline_method] = {
                "method": b.method, "status": b.status, "value": b.value, "metrics": b.metrics,
                "config_hash": b.method_hash, "seconds": b.seconds, "reused": self.baseline.reused, "references": b.refs,
            }
        return out


def set_pairs(method: str, overrides: Overrides, checkpoint: str | Path | None = None, **extra: Any) -> list[tuple[str, Any]]:
    """``--set`` pairs: the overrides, then the named options that were given (later wins), then
    ``--checkpoint`` as ``checkpoint_path`` (for the ``checkpoint`` method only)."""
    if isinstance(overrides, (str, bytes)):
        raise UserError(f"overrides must be a mapping of config keys to values, got {overrides!r}")
    pairs = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
    if not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
        raise UserError(f"overrides must be a mapping of config keys to values, got {overrides!r}")
    out = [*pairs, *((k, v) for k, v in extra.items() if v is not None)]
    if checkpoint is not None:
        if method != "checkpoint":
            raise UserError(f"--checkpoint is for --method checkpoint, not {method!r}")
        out.append(("checkpoint_path", str(Path(checkpoint).expanduser())))
    return out


def run(
    method: str, task: str, fraction: float = 1.0, *, seed: int = 42, profile: str = "cpu", protocol: str | None = None,
    checkpoint: str | Path | None = None, data_root: str | None = None, device: str = "auto", force: bool = False,
    store: str | Path | Store | None = None, overrides: Overrides = (), baseline: str | None = None,
) -> RunResult:
    """One trial, as ``python -m benchmark run``: pre-train ``method`` (or reuse its cached
    encoder), fit ``task`` on ``fraction`` of its training labels (the subset ``seed``
    draws), store the test metrics. A trial the store has finished is returned, not
    re-run (``force=True`` re-runs it). ``store``: a file or a :class:`~benchmark.store.Store`
    (default ``$BENCHMARK_STORE`` or ``results/benchmark.sqlite``). ``baseline``: a method
    (``"random"``) run beside it on phantom data, see :func:`run_baseline`."""
    from benchmark.runner import run_trial
    from benchmark.store import Store

    pairs = set_pairs(method, overrides, checkpoint, **{"task.protocol": protocol})
    if store is not None and not isinstance(store, Store):
        store = Store(store)
    out = run_trial(method, task, fraction, seed, profile, pairs, data_root, device, force, store)
    main = RunResult(out.trial, out.reused, out.store_path)
    if baseline is None:
        return main
    beside = run_baseline(main, baseline, profile=profile, overrides=pairs, data_root=data_root, device=device,
                          store=store)
    return RunResult(main.trial, main.reused, main.store, beside, baseline)


def run_baseline(main: RunResult, baseline: str, *, profile: str = "cpu", overrides: Overrides = (),
                 data_root: str | None = None, device: str = "auto", store: str | Path | Store | None = None,
                 ) -> RunResult | str | None:
    """``baseline``'s trial beside ``main``: the same task config, fraction, seed (hence the same
    training subset), protocol and backbone (``overrides``' task keys and its encoder keys), through
    the same runner and store (stored after the first time). Phantom data only; None for the
    baseline itself and for tasks it cannot run (zero-shot and retrieval need a text tower);
    the reason as a string when its trial failed."""
    from benchmark.config import route_sets
    from benchmark.errors import TrialFailed
    from benchmark.factory import method_class, resolve

    t = main.trial
    if t.method == baseline or not t.data_source.startswith("phantom"):
        return None
    pairs = set_pairs(t.method, overrides, None)
    resolved = resolve(t.method, t.task, profile, pairs)
    if resolved.task_cls.needs_text_tower and not method_class(baseline).has_joint_space():
        return None
    routed = route_sets(pairs, {"method": resolved.method_cls.config_class, "task": resolved.task_cls.config_class})
    kept = [(f"task.{key}", value) for key, value in routed["task"].items()]
    kept += [(f"method.{key}", value) for key, value in routed["method"].items() if key in ENCODER_KEYS]
    try:
        out = run(baseline, t.task, t.fraction, seed=t.seed, profile=profile, data_root=data_root, device=device,
                  store=store if store is not None else main.store, overrides=kept)
    except TrialFailed as exc:
        return f"failed: {exc}"
    if (out.trial.task_hash, out.trial.data_source) != (t.task_hash, t.data_source):
        raise RuntimeError(f"the {baseline} trial's task config {out.trial.task_hash} is not the run's {t.task_hash}")
    return out


def pretrain(
    method: str, *, profile: str = "cpu", checkpoint: str | Path | None = None, data_root: str | None = None,
    device: str = "auto", force: bool = False, max_steps: int | None = None, overrides: Overrides = (),
) -> Pretrained:
    """Pre-train ``method`` and cache its encoder, as ``python -m benchmark pretrain``; a
    cached one is reused (``force=True`` re-trains). Returns the cache entry: ``path``
    (``encoder.safetensors``), ``meta`` (steps, final loss, corpus, seconds), ``reused`` and
    ``weights()`` (the encoder's state dict)."""
    from benchmark.data.sources import data_root as root_of
    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    resolved = resolve(method, None, profile, set_pairs(method, overrides, checkpoint, max_steps=max_steps))
    return get_encoder(resolved, root_of(data_root), device, force)


def baselines(task: str, *, profile: str = "cpu", data_root: str | None = None,
              overrides: Overrides = ()) -> dict[str, Any]:
    """What trivial predictors (predict nothing, the whole image, a constant score, the majority
    class, chance) score on ``task``'s test split, from its labels alone: on real data the split
    recipe over the label files (no image is read), on the phantom its rendered test split.
    Returns {task, data_source, split, n, references: {name: {metric: value}}, ...}; a trial
    stores the same numbers for the split it was scored on."""
    from benchmark.data import catalog
    from benchmark.data.sources import data_root as root_of
    from benchmark.factory import resolve_task, source_tag

    task_cls, cfg = resolve_task(task, profile, set_pairs("", overrides, None))
    kind = task_cls(cfg)
    root = root_of(data_root)
    ds = catalog.dataset(cfg.dataset)
    if root is None:
        test = kind.test_split(ds.phantom("test", cfg.phantom_test, cfg.image_size))
        labels = kind.test_labels(test)
    else:
        st = ds.split_table(root, cfg.kind)
        if "test" not in st.rows:
            raise UserError(f"the real {cfg.dataset} data has no test split (it has {', '.join(st.rows)})")
        labels = ds.test_labels(st, "test")
    refs = kind.references(labels)
    return {"task": task, "kind": cfg.kind, "metric": cfg.metric, "data_source": source_tag(root),
            "test_subset": getattr(cfg, "test_subset", "all"), **refs}


def _method_of(method_or_path: str | Path) -> tuple[str, str | Path | None]:
    """(method, checkpoint file): a registered method's name, else a weights file for ``checkpoint``."""
    from benchmark.factory import cached_encoder_config, method_names
    from benchmark.hubfolder import is_export

    names = method_names()
    if isinstance(method_or_path, str) and (method_or_path in names or cached_encoder_config(method_or_path)):
        return method_or_path, None  # a method, or a cached encoder by its printed name
    path = Path(method_or_path).expanduser()
    if path.is_file() or is_export(path):
        return "checkpoint", method_or_path
    raise UserError(f"{str(method_or_path)!r} is neither a method ({', '.join(sorted(names))}) nor a weights file "
                    "nor an exported encoder folder")


def load_encoder(
    method_or_path: str | Path, *, profile: str = "cpu", upsample_ratio: float = 1.0, data_root: str | None = None,
    device: str = "auto", force: bool = False, overrides: Overrides = (),
) -> nn.Module:
    """The transferred image encoder as the classification task uses it: a module in eval
    mode, frozen, that maps a batch of images (N x 3 x S x S, as
    :func:`benchmark.data.transforms.downstream_batch` makes them from uint8 images) to
    pooled features (N x ``.width``: the last stage averaged on CNNs, a ViT's [CLS]). ``method_or_path``: a method (pre-trained
    first if it is not cached), a released weights file (``.pt``/``.pth``/``.safetensors``,
    read as ``--method checkpoint``; ``checkpoint_format=...`` picks the key mapping) or a
    folder that ``export`` wrote (its backbone from its config.json, loaded strictly). ``upsample_ratio``: the task's input
    scale (``rsna_cls``: 1.3348214, MGCA's 299 px from 224). ``device``: where it pre-trains
    (if it must) and where the module is put (auto: CUDA if present)."""
    import torch

    from benchmark.device import pick_device
    from benchmark.tasks.classification import PooledEncoder

    method, checkpoint = _method_of(method_or_path)
    dev = pick_device(device)
    pre = pretrain(method, profile=profile, checkpoint=checkpoint, data_root=data_root, device=str(dev), force=force,
                   overrides=overrides)
    encoder = PooledEncoder(pre.weights(), upsample_ratio, pre.arch).to(dev, memory_format=torch.channels_last)
    return encoder.eval().requires_grad_(False)


def results(store: str | Path | Store | None = None, **filters: Any) -> pd.DataFrame:
    """The store's trials as a pandas DataFrame, one row per trial (the store's columns;
    ``metrics``, ``method_config`` and ``task_config`` hold dicts). ``filters`` keep the
    rows whose column equals the value, or is one of a list's values:
    ``results(task="rsna_cls", method=["imitate", "random"], status="finished")``."""
    import pandas as pd

    from benchmark.store import COLUMNS, Store

    if not isinstance(store, Store):
        if store is not None and not Path(store).exists():
            raise UserError(f"results store {store} does not exist")
        store = Store(store, readonly=True)
    columns = list(COLUMNS)
    frame = pd.DataFrame([{c: getattr(t, c) for c in columns} for t in store.all()], columns=columns)
    for key, wanted in filters.items():
        if key not in columns:
            raise UserError(f"results() has no column {key!r}; filter on: {', '.join(columns)}")
        choices = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
        frame = frame[frame[key].isin(choices)]
    return frame.reset_index(drop=True)
