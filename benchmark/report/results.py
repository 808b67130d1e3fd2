"""What the results store's trials say, before any table or figure: the trial list
(``results``), which trials count (finished, with a finite value), their row labels
(variant names; a name shared by two configs gets its config hash), and the cell of
one method on one (task, fraction) with its 95 % interval. Tables and plots both
read their numbers from here, so they never disagree.

A trial's backbone is its method config's ``backbone`` (``resnet50`` when the config
predates the field). Rows of one table or figure that hold more than one backbone
name it: ``imitate (resnet18)``; a single-backbone store's labels stay as they were.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field, replace
from functools import cached_property

from benchmark.errors import UserError
from benchmark.report.trivial import PARTS, trivial_best
from benchmark.stats import (
    PairedDifference,
    SeedInterval,
    paired_difference,
    seed_interval,
)
from benchmark.store import Trial, to_json

#: where a method whose YAML has no ``order:`` goes: after the shipped ones
LAST = 1000
MISSING = "-"
BOOTSTRAP_MARK = "‡"  # a one-seed cell whose interval is over test images


def data_kind(source: str) -> str:
    return "phantom" if source.startswith("phantom") else "real"


def finished(trials: list[Trial]) -> list[Trial]:
    """The trials that count in tables and plots: finished, with a finite value."""
    return [t for t in trials if t.status == "finished" and t.value is not None and math.isfinite(t.value)]


def as_metric(trial: Trial, metric: str | None) -> Trial | None:
    """The trial as if ``metric`` were its primary one (its value, and its interval as
    ``ci_low/ci_high``), for a table or figure of any stored metric; None when it did not store
    a finite value of it. ``metric`` None or the trial's own: the trial itself."""
    if metric is None or metric == trial.metric:
        return trial
    value = (trial.metrics or {}).get(metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    interval = {"ci_low": trial.metrics.get(f"{metric}_ci_low"), "ci_high": trial.metrics.get(f"{metric}_ci_high")}
    return replace(trial, metric=metric, value=float(value), metrics={**trial.metrics, **interval})


def trivial_values(trials: list[Trial], metric: str) -> dict[str, float]:
    """{reference name: value in %} under ``metric`` from the references stored with ``trials``,
    trials of one task config (they share one test split, hence its references)."""
    out: dict[str, float] = {}
    for t in trials:
        for name, row in ((t.refs or {}).get("rows") or {}).items():
            value = row.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out.setdefault(name, 100.0 * value)
    return dict(sorted(out.items()))  # by name: the same order from a store (sorted JSON) and from memory


DEFAULT_BACKBONE = "resnet50"  # what a method config without ``backbone`` built
#: ``--by``: rows per method config (backbones labelled when several), or a table / figure per backbone
GROUPINGS = ("method", "backbone")


def check_grouping(by: str) -> str:
    if by not in GROUPINGS:
        raise UserError(f"--by {by!r}: choose one of {', '.join(GROUPINGS)}")
    return by


def backbone(trial: Trial) -> str:
    """The trial's image backbone as a short name: a config's ``model`` where the method
    evaluates a released model whole (``open_clip``: its image tower is the encoder, the
    config's ``backbone`` field is unused), else the config's ``backbone`` (a name, or a spec
    dict's ``name``), ``resnet50`` when absent."""
    cfg = trial.method_config or {}
    if cfg.get("model"):
        return str(cfg["model"])
    spec = cfg.get("backbone") or DEFAULT_BACKBONE
    if isinstance(spec, dict):
        return str(spec.get("name") or json.dumps(spec, sort_keys=True))
    return str(spec)


def method_labels(trials: list[Trial], variants: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """(method, config hash) -> its row name: the variant's name, else the method's; with the
    backbone in brackets when ``trials`` hold more than one backbone."""
    nets = {(t.method, t.method_hash): backbone(t) for t in trials}
    several = len(set(nets.values())) > 1

    def name(key: tuple[str, str]) -> str:
        base = variants.get(key) or key[0]
        return f"{base} ({nets[key]})" if several else base

    return display_labels(set(nets), name)


def display_labels(keys: set[tuple[str, str]], name) -> dict[tuple[str, str], str]:
    """Display names; a name shared by two configs gets its config hash appended."""
    base = {k: name(k) for k in keys}
    counts: dict[str, int] = {}
    for v in base.values():
        counts[v] = counts.get(v, 0) + 1
    return {k: v if counts[v] == 1 else f"{v} [{k[1][:6]}]" for k, v in base.items()}


def method_rank(method: str) -> int:
    """A method's place in tables and plots: its YAML's ``order:`` (the controls first, the proposed
    method last, as papers print them), read from the config (no method module is imported);
    a method without one (or without a YAML: a store from elsewhere) comes after the shipped ones."""
    from benchmark.config import find_config, load_yaml

    path = find_config("methods", method)
    rank = load_yaml(path).get("order") if path is not None else None
    return rank if isinstance(rank, int) and not isinstance(rank, bool) else LAST


def row_order(label_method: tuple[str, str]) -> tuple:
    label, method = label_method
    return method_rank(method), method, label != method, label


def describe_source(source: str) -> str:
    if data_kind(source) == "phantom":
        return f"phantom data ({source}: synthetic stand-in, not real-data numbers)"
    return "real data"


# ---------------------------------------------------------------- the trial list: one row per trial

RESULT_COLUMNS = ("method", "encoder", "task", "protocol", "fraction", "seed", "data", "profile", "status", "metric",
                  "value", "trivial", "seconds", "error")
ERROR_WIDTH = 60  # the table view cuts a failure's reason here (JSON and CSV keep it whole)


def trivial_text(trial: Trial) -> str:
    """``predict-nothing 0.6700``: the best trivial reference of the trial's primary metric ('' if none stored)."""
    best = trivial_best(trial.refs, trial.metric or "")
    return f"{best[0]} {best[1]:.4f}" if best else ""


def result_rows(trials: list[Trial]) -> list[dict]:
    """One row per trial: its key, value and the best trivial reference of its metric, then the
    metric's parts (``dice_pos``, ``empty_acc``, ...) where any trial stored them."""
    parts = [p for p in PARTS if any(p in (t.metrics or {}) for t in trials)]
    return [
        {"method": t.method, "encoder": f"{t.method}-{t.method_hash}", "task": t.task, "protocol": t.protocol,
         "fraction": t.fraction, "seed": t.seed, "data": t.data_source, "profile": t.profile or MISSING,
         "status": t.status, "metric": t.metric, "value": t.value,
         "trivial": trivial_text(t), **{p: (t.metrics or {}).get(p) for p in parts}, "seconds": t.seconds,
         "error": t.error}
        for t in trials
    ]


def format_results(trials: list[Trial], fmt: str = "table", where: str = "the store") -> str:
    """The trial list; a value that is not a number (NaN, stored as null) is null in JSON and blank in CSV.
    JSON also holds each trial's every metric and its references."""
    rows = result_rows(trials)
    if fmt == "json":
        return to_json([{**r, "metrics": t.metrics, "references": t.refs} for r, t in zip(rows, trials)], indent=1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    from tabulate import tabulate

    if not rows:
        return f"no trials stored yet in {where} (run `python -m benchmark run ...` or `grid ...`)"
    number = lambda v, fmt_: MISSING if v is None else format(v, fmt_)
    shown = [{**r, "fraction": f"{r['fraction']:g}", "value": number(r["value"], ".4f"),
              "seconds": number(r["seconds"], ".1f"), "error": _cut(r["error"] or ""),
              **{p: number(r[p], ".4f") for p in r if p not in RESULT_COLUMNS}} for r in rows]
    if not any(r["error"] for r in rows):
        shown = [{k: v for k, v in r.items() if k != "error"} for r in shown]
    return tabulate(shown, headers="keys", tablefmt="simple", disable_numparse=True)


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 3] + "..."


# ---------------------------------------------------------------- cells: one method on one (task, fraction)

@dataclass
class Cell:
    """One method's result on one (task, fraction): the per-seed values (in %) and their interval.

    The 95 % interval is over seeds (a t-interval of the mean) when there are two
    or more; with one seed it is the trial's stored bootstrap interval over test
    images (``ci_low``/``ci_high`` in its metrics), when the task stored one.
    """

    values: list[float]  # in %, one per seed
    seeds: list[int] = field(default_factory=list)  # values[i] is seed seeds[i]'s
    bootstrap: tuple[float, float] | None = None  # in %, from a one-seed trial's metrics

    @property
    def n(self) -> int:
        return len(self.values)

    @cached_property
    def summary(self) -> SeedInterval:
        return seed_interval(self.values)

    @property
    def mean(self) -> float:
        return self.summary.mean

    @property
    def std(self) -> float | None:
        return self.summary.std

    @property
    def ci(self) -> tuple[float, float] | None:
        if self.summary.ci is not None:
            return self.summary.ci
        return self.bootstrap if self.n == 1 else None

    @property
    def ci_kind(self) -> str | None:
        """"seeds" (t-interval over seeds), "bootstrap" (one seed, over test images) or None (no interval)."""
        if self.summary.ci is not None:
            return "seeds"
        return "bootstrap" if self.ci is not None else None

    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.values))

    def text(self) -> str:
        """``83.3 ± 3.1 [75.7, 90.9] n=3``; a bootstrap interval (n=1) is marked ‡."""
        std = f" ± {self.std:.1f}" if self.std is not None else ""
        ci = f" [{self.ci[0]:.1f}, {self.ci[1]:.1f}]{BOOTSTRAP_MARK if self.ci_kind == 'bootstrap' else ''}" \
            if self.ci is not None else ""
        return f"{self.mean:.1f}{std}{ci} n={self.n}"

    def as_dict(self) -> dict:
        low, high = self.ci if self.ci is not None else (None, None)
        return {"mean": self.mean, "std": self.std, "n": self.n, "ci_low": low, "ci_high": high,
                "ci_kind": self.ci_kind, "seeds": self.seeds, "values": self.values}


def cell_of(trials: list[Trial]) -> Cell:
    """The cell of one method's finished trials on one (task, fraction): values in %, by seed."""
    ordered = sorted(trials, key=lambda t: t.seed)
    boot = None
    if len(ordered) == 1:
        m = ordered[0].metrics or {}
        low, high = m.get("ci_low"), m.get("ci_high")
        if isinstance(low, (int, float)) and isinstance(high, (int, float)) and math.isfinite(low) and math.isfinite(high):
            boot = (100.0 * low, 100.0 * high)
    return Cell([100.0 * t.value for t in ordered], [t.seed for t in ordered], boot)


def difference(cell: Cell, baseline: Cell) -> PairedDifference | None:
    """cell - baseline over the seeds both have (same seed: same training subset); None without a shared seed."""
    mine, theirs = cell.by_seed(), baseline.by_seed()
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return None
    return paired_difference([mine[s] for s in shared], [theirs[s] for s in shared])
