"""Figures from the results store, with seaborn on matplotlib's Agg backend (no
display needed): label-efficiency curves (metric vs label fraction, one line per
method, with 95 % interval bars and bands) and an ablation chart (each method's
variants beside it, with 95 % interval bars). The intervals are the tables'
(benchmark.report.results.cell_of): over seeds, or a one-seed trial's bootstrap over test
images. Each task's trivial references (predict nothing, a constant score, ...; stored with
its trials) are dashed lines. One data source per figure, never phantom beside real. Lines are labelled like
the table rows (with the backbone when a figure holds several); ``by="backbone"``
draws one figure per backbone (file names end in ``_<backbone>``).
"""

from __future__ import annotations

import math
from pathlib import Path

from benchmark.errors import UserError
from benchmark.paths import writable_dir
from benchmark.report.results import (
    backbone,
    cell_of,
    check_grouping,
    data_kind,
    describe_source,
    finished,
    method_labels,
    row_order,
    trivial_values,
)
from benchmark.store import Trial


def frame(trials: list[Trial], variants: dict[tuple[str, str], str], data: str | None, by: str = "method"):
    """Finished trials of one data kind as a long table (value in %), labelled like the table rows;
    ``group`` is the trial's backbone with ``by="backbone"`` (a figure each), else empty."""
    import pandas as pd

    done = finished(trials)
    if data is None:  # real when there is any: it is what a figure is for
        data = "real" if any(data_kind(t.data_source) == "real" for t in done) else "phantom"
    done = [t for t in done if data_kind(t.data_source) == data]
    group = {id(t): backbone(t) if check_grouping(by) == "backbone" else "" for t in done}
    labels: dict[tuple[str, str], str] = {}
    for name in set(group.values()):  # labelled within each figure
        labels.update(method_labels([t for t in done if group[id(t)] == name], variants))
    rows = [{"label": labels[(t.method, t.method_hash)], "method": t.method, "group": group[id(t)],
             "variant": bool(variants.get((t.method, t.method_hash))),
             "task": t.task, "protocol": t.protocol, "metric": t.metric, "source": t.data_source,
             "profile": t.profile or "not recorded",
             "fraction": t.fraction, "seed": t.seed, "value": 100.0 * t.value, "trial": t} for t in done]
    return pd.DataFrame(rows), data


def _safe(name: str) -> str:
    """A backbone's name as a file-name part (a hub id or a spec may hold / : and spaces)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return paths


def summary(trials: list[Trial], variants: dict[tuple[str, str], str], data: str | None, by: str = "method"):
    """One row per (source, protocol, group, label, task, fraction): mean and 95 % interval in %, as the table cells."""
    import pandas as pd

    df, data = frame(trials, variants, data, by)
    if df.empty:
        return df, data
    rows = []
    keys = ["source", "profile", "protocol", "group", "label", "method", "variant", "task", "metric", "fraction"]
    for key, group in df.groupby(keys, sort=False):
        cell = cell_of(list(group["trial"]))
        low, high = cell.ci if cell.ci is not None else (math.nan, math.nan)
        low, high = max(low, 0.0), min(high, 100.0)  # a t-interval of two seeds can run past the metric's range
        rows.append({**dict(zip(keys, key)), "mean": cell.mean, "low": low, "high": high, "n": cell.n,
                     "ci_kind": cell.ci_kind})
    return pd.DataFrame(rows), data


def _yerr(part) -> list:
    """Asymmetric error-bar lengths; a point without an interval gets none."""
    import numpy as np

    low = (part["mean"] - part["low"]).to_numpy(dtype=float)
    high = (part["high"] - part["mean"]).to_numpy(dtype=float)
    return [np.nan_to_num(low), np.nan_to_num(high)]


def write_plots(trials: list[Trial], variants: dict[tuple[str, str], str], out: str | Path, data: str | None = None,
                by: str = "method") -> list[Path]:
    """Write the figures (one set per backbone with ``by="backbone"``); returns their paths.
    Nothing finished: a UserError saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    df, data = summary(trials, variants, data, by)
    if df.empty:
        raise UserError(f"no finished {data}-data trials in the store to plot (run a grid first)")
    out = writable_dir(Path(out), "the --out folder", "pass --out DIR with a folder you can write")
    sns.set_theme(style="whitegrid", context="paper")
    written: list[Path] = []
    order = [label for label, _ in sorted({(r.label, r.method) for r in df.itertuples()}, key=row_order)]
    # one colour per row: the default palette repeats after 10, husl spaces any number apart
    colours = dict(zip(order, sns.color_palette("deep" if len(order) <= 10 else "husl", n_colors=len(order))))
    caption = "bars and bands: 95 % interval (t over seeds; one seed: bootstrap over test images)"
    several = df["profile"].nunique() > 1  # a profile is a budget: its own figures (named by it when several)
    for (source, profile, protocol, group), part in df.groupby(["source", "profile", "protocol", "group"]):
        suffix, net = (f"_{_safe(group)}", f", backbone {group}") if group else ("", "")
        suffix += f"_{_safe(profile)}" if several else ""
        net += f", profile {profile}"
        tasks = sorted(part["task"].unique())
        ncols = min(3, len(tasks))
        nrows = -(-len(tasks) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3 * nrows), squeeze=False)
        for ax, task in zip(axes.flat, tasks):
            on_task = part[part["task"] == task]
            for label in [x for x in order if x in set(on_task["label"])]:
                line = on_task[on_task["label"] == label].sort_values("fraction")
                ax.errorbar(line["fraction"], line["mean"], yerr=_yerr(line), marker="o", capsize=3, label=label,
                            color=colours[label])
                ax.fill_between(line["fraction"], line["low"], line["high"], color=colours[label], alpha=0.15,
                                linewidth=0)
            metric = on_task["metric"].iloc[0]
            same_split = [t for t in finished(trials) if (t.task, t.data_source, t.protocol) == (task, source, protocol)
                          and (t.profile or "not recorded") == profile]
            for k, (name, value) in enumerate(sorted(trivial_values(same_split, metric).items())):
                ax.axhline(value, linestyle="--", linewidth=1, color=str(0.3 + 0.25 * k), label=f"{name} (trivial)")
            fractions = sorted(on_task["fraction"].unique())
            ax.set_xscale("log")
            ax.set_xticks(fractions)
            ax.set_xticklabels([f"{100 * f:g}%" for f in fractions])
            ax.minorticks_off()
            ax.set_title(task)
            ax.set_ylabel(f"{on_task['metric'].iloc[0]} (%)")
            ax.set_xlabel("training labels")
        for ax in list(axes.flat)[len(tasks):]:
            ax.set_visible(False)
        legend: dict[str, object] = {}  # every axis's lines (a method may be on one task only), each label once
        for ax in list(axes.flat)[:len(tasks)]:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                legend.setdefault(label, handle)
        handles, labels = list(legend.values()), list(legend)
        fig.legend(handles, labels, title="method", loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
        fig.suptitle(f"label efficiency, {protocol} protocol{net}, {describe_source(source)}\n{caption}", fontsize=8)
        fig.tight_layout()
        written += _save(fig, out, f"label_efficiency_{data}_{protocol}{suffix}")
        plt.close(fig)

        ablated = part[part["method"].isin(part.loc[part["variant"], "method"])]
        if not ablated.empty:
            ablated = ablated.assign(column=[f"{t} {100 * f:g}%" for t, f in zip(ablated["task"], ablated["fraction"])])
            columns = sorted(ablated["column"].unique())
            labels = [x for x in order if x in set(ablated["label"])]
            width = 0.8 / len(labels)
            fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(columns)), 3.2))
            for i, label in enumerate(labels):
                bars = ablated[ablated["label"] == label].set_index("column").reindex(columns)
                x = np.arange(len(columns)) + (i - (len(labels) - 1) / 2) * width
                ax.bar(x, bars["mean"], width, yerr=_yerr(bars), capsize=2, label=label, color=colours[label])
            ax.set_xticks(np.arange(len(columns)))
            ax.set_xticklabels(columns)
            ax.set_xlabel("task, training labels")
            ax.set_ylabel("primary metric (%)")
            ax.set_title(f"ablations, {protocol} protocol{net}, {describe_source(source)}\n{caption}", fontsize=8)
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), title="method", title_fontsize=7)
            written += _save(fig, out, f"ablations_{data}_{protocol}{suffix}")
            plt.close(fig)
    return written
