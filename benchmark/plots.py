"""Figures from the results store, with seaborn on matplotlib's Agg backend (no
display needed): label-efficiency curves (metric vs label fraction, one line per
method, error bars = std over seeds) and an ablation chart (each method's
variants beside it). One data source per figure, never phantom beside real.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import UserError
from benchmark.paths import writable_dir
from benchmark.store import Trial
from benchmark.tables import (
    data_kind,
    describe_source,
    finished,
    method_labels,
    row_order,
)


def frame(trials: list[Trial], variants: dict[tuple[str, str], str], data: str | None):
    """Finished trials of one data kind as a long table (value in %), labelled like the table rows."""
    import pandas as pd

    done = finished(trials)
    if data is None:  # real when there is any: it is what a figure is for
        data = "real" if any(data_kind(t.data_source) == "real" for t in done) else "phantom"
    done = [t for t in done if data_kind(t.data_source) == data]
    labels = method_labels(done, variants)
    rows = [{"label": labels[(t.method, t.method_hash)], "method": t.method, "variant": bool(variants.get((t.method, t.method_hash))),
             "task": t.task, "protocol": t.protocol, "metric": t.metric, "source": t.data_source,
             "fraction": t.fraction, "seed": t.seed, "value": 100.0 * t.value} for t in done]
    return pd.DataFrame(rows), data


def _save(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    return paths


def write_plots(trials: list[Trial], variants: dict[tuple[str, str], str], out: str | Path, data: str | None = None) -> list[Path]:
    """Write the figures; returns their paths. Nothing finished: a UserError saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df, data = frame(trials, variants, data)
    if df.empty:
        raise UserError(f"no finished {data}-data trials in the store to plot (run a grid first)")
    out = writable_dir(Path(out), "the --out folder", "pass --out DIR with a folder you can write")
    sns.set_theme(style="whitegrid", context="paper")
    written: list[Path] = []
    order = [label for label, _ in sorted({(r.label, r.method) for r in df.itertuples()}, key=row_order)]
    for (source, protocol), part in df.groupby(["source", "protocol"]):
        tasks = sorted(part["task"].unique())
        grid = sns.relplot(
            data=part, x="fraction", y="value", hue="label", hue_order=[x for x in order if x in set(part["label"])],
            col="task", col_order=tasks, col_wrap=min(3, len(tasks)), kind="line", marker="o", errorbar="sd",
            err_style="bars", facet_kws={"sharey": False}, height=3, aspect=1.2,
        )
        grid.set(xscale="log")
        if grid.legend is not None:
            grid.legend.set_title("method")
        for ax, task in zip(grid.axes.flat, tasks):
            ax.set_xticks(sorted(part["fraction"].unique()))
            ax.set_xticklabels([f"{100 * f:g}%" for f in sorted(part["fraction"].unique())])
            metric = part.loc[part["task"] == task, "metric"].iloc[0]
            ax.set_title(task)
            ax.set_ylabel(f"{metric} (%)")
            ax.set_xlabel("training labels")
        grid.figure.suptitle(f"label efficiency, {protocol} protocol, {describe_source(source)}", y=1.03, fontsize=9)
        written += _save(grid.figure, out, f"label_efficiency_{data}_{protocol}")
        plt.close(grid.figure)

        ablated = part[part["method"].isin(part.loc[part["variant"], "method"])]
        if not ablated.empty:
            ablated = ablated.assign(column=[f"{t} {100 * f:g}%" for t, f in zip(ablated["task"], ablated["fraction"])])
            fig, ax = plt.subplots(figsize=(max(4, 1.6 * ablated["column"].nunique()), 3.2))
            sns.barplot(data=ablated, x="column", y="value", hue="label",
                        hue_order=[x for x in order if x in set(ablated["label"])], errorbar="sd", ax=ax)
            ax.set_xlabel("task, training labels")
            ax.set_ylabel("primary metric (%)")
            ax.set_title(f"ablations, {protocol} protocol, {describe_source(source)}", fontsize=9)
            ax.legend(fontsize=7, loc="lower right", title="method", title_fontsize=7)
            written += _save(fig, out, f"ablations_{data}_{protocol}")
            plt.close(fig)
    return written
