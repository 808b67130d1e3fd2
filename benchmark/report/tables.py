"""Paper-style tables from the results store (``table``): rows = methods and ablation variants, columns = task x
fraction, cells = mean +- sample std over seeds with n, best per column in bold.

A table only ever holds one data source (phantom numbers never sit beside real
ones), one protocol and one metric; its title says which. Rows are method
configs (method + config hash), so two configs of one method never average
together; published numbers come from ``results/reference/*.csv`` as separate,
marked rows. The numbers (cells, labels, which trials count) come from
:mod:`benchmark.report.results`. ``by="backbone"`` makes one table per backbone too
(each a comparison of methods on one backbone); by default a table holding several
backbones labels its rows with them, so each method's backbones sit side by side.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import UserError
from benchmark.paths import reference_dir
from benchmark.report.results import (
    BOOTSTRAP_MARK,
    MISSING,
    Cell,
    as_metric,
    backbone,
    cell_of,
    check_grouping,
    data_kind,
    describe_source,
    difference,
    display_labels,
    finished,
    method_labels,
    row_order,
    trivial_values,
)
from benchmark.stats import PairedDifference
from benchmark.store import Trial, to_json

REFERENCE_COLUMNS = ("method", "task", "protocol", "metric", "fraction", "value", "source")
SIGNIFICANT_MARK = "*"  # a paired difference whose 95 % interval excludes 0
TRIVIAL = "trivial"  # the source of a trivial reference row
TRIVIAL_MARK = "◦"  # a paired difference with a side at or below the trivial reference: not between encoders


# ---------------------------------------------------------------- paper-style tables

@dataclass
class Row:
    label: str
    #: str: a published value; float: a trivial reference (in %)
    cells: dict[tuple[str, float], Cell | str | float] = field(default_factory=dict)
    source: str = ""  # set on reference rows
    method: str = ""
    config: str = ""


@dataclass
class Table:
    title: str
    metric: str
    protocol: str
    data_source: str
    columns: list[tuple[str, float]]  # (task, fraction)
    rows: list[Row]
    reference: list[Row] = field(default_factory=list)
    trivial: list[Row] = field(default_factory=list)  # what a predictor that sees no image scores (source "trivial")
    notes: list[str] = field(default_factory=list)
    vs: str | None = None  # the baseline row's label of the paired differences
    diffs: dict[tuple[str, tuple[str, float]], PairedDifference | None] = field(default_factory=dict)

    def best(self) -> dict[tuple[str, float], float]:
        """The best mean per column among measured rows (every metric here is higher-is-better), for
        the columns where it is told apart: above every trivial reference (a best that a predictor
        seeing no image matches is not marked) and above the runner-up with their paired interval
        over shared seeds excluding 0 (a tie, one seed, or an interval across 0 is not a best)."""
        out = {}
        for col in self.columns:
            cells = sorted((r.cells[col] for r in self.rows if isinstance(r.cells.get(col), Cell)),
                           key=lambda c: c.mean, reverse=True)
            if len(cells) < 2 or cells[0].mean <= self.trivial_max(col):
                continue
            apart = difference(cells[0], cells[1])
            if apart is not None and apart.excludes_zero and apart.mean > 0:
                out[col] = cells[0].mean
        return out

    def trivial_max(self, col: tuple[str, float]) -> float:
        """The highest trivial reference of a column in % (-inf where none is stored)."""
        return max((float(r.cells[col]) for r in self.trivial if col in r.cells), default=-math.inf)

    def explained(self, label: str, col: tuple[str, float]) -> bool:
        """Whether the row or the baseline sits at or below the column's trivial reference: their
        difference is then not one between encoders."""
        cells = [r.cells.get(col) for r in self.rows if r.label in (label, self.vs)]
        return any(isinstance(c, Cell) and c.mean <= self.trivial_max(col) for c in cells)

    def baseline(self) -> Row | None:
        return next((r for r in self.rows if r.label == self.vs), None)


def build_tables(trials: list[Trial], variants: dict[tuple[str, str], str], data: str | None = None,
                 protocol: str | None = None, reference: list[dict] | None = None, vs: str | None = None,
                 by: str = "method", metric: str | None = None) -> list[Table]:
    """One table per (data source, protocol, metric) from the finished trials, and per backbone
    with ``by="backbone"``; ``vs`` (a row label) adds every row's paired difference against that row;
    ``metric``: any stored metric instead of each trial's primary one (trials without it are left out).
    Each table carries the trivial references stored with its trials as rows of their own."""
    check_grouping(by)
    done = [m for t in finished(trials) if (m := as_metric(t, metric)) is not None]
    if data is not None:
        done = [t for t in done if data_kind(t.data_source) == data]
    if protocol is not None:
        done = [t for t in done if t.protocol == protocol]
    groups: dict[tuple[str, str, str, str, str], list[Trial]] = {}
    for t in done:  # a profile is a budget: smoke numbers never share a table with phantom-profile ones
        key = (t.data_source, t.profile or "", t.protocol, t.metric, backbone(t) if by == "backbone" else "")
        groups.setdefault(key, []).append(t)
    tables = []
    for (source, profile, proto, metric, net), group in sorted(groups.items(), key=lambda kv: (data_kind(kv[0][0]), kv[0])):
        tables.append(_table(source, proto, metric, group, variants, reference, net, profile))
    if vs is not None and tables:
        _add_differences(tables, vs)
    return tables


def _add_differences(tables: list[Table], vs: str) -> None:
    labels = sorted({r.label for t in tables for r in t.rows})
    if vs not in labels:
        raise UserError(f"--vs {vs!r} is not a row of these tables; the rows are: {', '.join(labels)}")
    for table in tables:
        table.vs = vs
        base = table.baseline()
        if base is None:
            table.notes.append(f"no {vs!r} row in this table: no paired differences")
            continue
        for row in table.rows:
            if row is base:
                continue
            for col in table.columns:
                cell, ref = row.cells.get(col), base.cells.get(col)
                if isinstance(cell, Cell) and isinstance(ref, Cell):
                    table.diffs[(row.label, col)] = difference(cell, ref)
        table.notes.append(
            f"difference vs {vs}: row - {vs} over the seeds both have (same seed = same training subset), "
            f"mean [95 % paired t-interval] n=pairs; {SIGNIFICANT_MARK} = the interval excludes 0; "
            f"{TRIVIAL_MARK} = a side at or below the trivial reference (not a difference between encoders); "
            f"{MISSING} = no shared seed")


def nothing_to_show(trials: list[Trial], data: str | None = None, protocol: str | None = None,
                    metric: str | None = None) -> str:
    """Why :func:`build_tables` found nothing, naming the filter that left nothing (and what there is)."""
    done = finished(trials)
    if not trials:
        return "no trials stored"
    if not done:
        return f"no finished trials with a value ({len(trials)} stored, none finished with a number)"
    if metric is not None and not any(as_metric(t, metric) is not None for t in done):
        stored = sorted({k for t in done for k, v in (t.metrics or {}).items()
                         if isinstance(v, (int, float)) and not k.endswith(("ci_low", "ci_high"))} | {t.metric for t in done})
        return f"no finished trial stored the metric {metric!r} (they stored: {', '.join(stored)})"
    if data is not None:
        kinds = sorted({data_kind(t.data_source) for t in done})
        if data not in kinds:
            return f"no finished {data}-data trials (the finished ones are {' and '.join(kinds)}-data)"
        done = [t for t in done if data_kind(t.data_source) == data]
    which = f"{data}-data " if data else ""
    if protocol is not None:
        return (f"no finished {which}trials with protocol {protocol!r} (the finished ones have protocol "
                f"{', '.join(sorted({t.protocol for t in done}))})")
    return f"no finished {which}trials"


def _table(source: str, proto: str, metric: str, trials: list[Trial], variants: dict, reference: list[dict] | None,
           net: str = "", profile: str = "") -> Table:
    row_label = method_labels(trials, variants)
    task_label = display_labels({(t.task, t.task_hash) for t in trials}, lambda k: k[0])
    cells: dict[tuple[str, str], dict[tuple[str, float], list[Trial]]] = {}
    for t in trials:
        col = (task_label[(t.task, t.task_hash)], t.fraction)
        cells.setdefault((t.method, t.method_hash), {}).setdefault(col, []).append(t)
    columns = sorted({c for row in cells.values() for c in row})
    keys = sorted(cells, key=lambda k: row_order((row_label[k], k[0])))
    rows = [Row(row_label[k], {c: cell_of(v) for c, v in cells[k].items()}, method=k[0], config=k[1]) for k in keys]
    title = (f"{metric} (%), {proto} protocol, " + (f"backbone {net}, " if net else "") + describe_source(source)
             + (f", profile {profile}" if profile else ", profile not recorded (stored before schema 3)"))
    table = Table(title, metric, proto, source, columns, rows)
    _add_trivial(table, trials, task_label)
    rules = sorted({(task_label[(t.task, t.task_hash)], t.task_config.get("subset", "stratified"))
                    for t in trials if "train_images" in (t.metrics or {})})
    if rules:
        table.notes.append("training subsets: " + "; ".join(f"{task} {rule}" for task, rule in rules)
                           + " (mgca: MGCA's sample(frac, random_state=42), one subset for every seed; "
                             "stratified: a stratified draw per seed)")
    boot = any(isinstance(c, Cell) and c.ci_kind == "bootstrap" for r in rows for c in r.cells.values())
    table.notes.append("cell: mean ± std over seeds [95 % t-interval over seeds] n=seeds"
                       + (f"; {BOOTSTRAP_MARK} one seed: 95 % bootstrap interval over test images" if boot else "")
                       + "; bold: the best, where its paired interval against the runner-up (shared seeds) excludes 0")
    if reference is not None:
        _add_reference(table, reference)
    return table


def _add_trivial(table: Table, trials: list[Trial], task_label: dict) -> None:
    """One row per trivial reference (``predict-nothing``, ``constant-score``, ...) from the
    references stored with the trials; a column whose trials stored none is left blank, and said."""
    by_column: dict[str, list[Trial]] = {}
    for t in trials:
        by_column.setdefault(task_label[(t.task, t.task_hash)], []).append(t)
    rows: dict[str, Row] = {}
    missing = set()
    for col in table.columns:
        values = trivial_values(by_column.get(col[0], []), table.metric)
        if not values:
            missing.add(col[0])
        for name, value in values.items():
            rows.setdefault(name, Row(f"{name} (trivial)", source=TRIVIAL)).cells[col] = value
    table.trivial = list(rows.values())
    if rows:
        table.notes.append("(trivial): what a predictor that sees no image scores on the same test split, from its labels "
                           "alone; a difference between rows that do not both exceed it is not one between encoders")
    missing = sorted(missing)
    if missing:
        table.notes.append(f"no trivial reference stored for {', '.join(missing)} (trials from before they were stored; "
                           "`python -m benchmark baselines TASK` computes them)")


def _add_reference(table: Table, reference: list[dict]) -> None:
    if table.protocol != "mgca":
        table.notes.append("published numbers are under the mgca protocol: none shown for this protocol")
        return
    wanted = {(task, frac) for task, frac in table.columns}
    by_row: dict[tuple[str, str], Row] = {}
    for ref in reference:
        col = (ref["task"], ref["fraction"])
        if col not in wanted or ref["metric"] != table.metric or ref["protocol"] != table.protocol:
            continue
        key = (ref["method"], ref["source"])
        trivial = ref["method"].endswith(f"({TRIVIAL})")  # a real split's reference, not a published result
        label = ref["method"].replace(f"({TRIVIAL})", f"({TRIVIAL}, real test split) †") if trivial \
            else f"{ref['method']} † ({ref['source']})"
        row = by_row.setdefault(key, Row(label, source=ref["source"]))
        row.cells[col] = ref["value"]
    table.reference = list(by_row.values())
    published = sorted({r.source for r in table.reference if not r.label.endswith("real test split) †")})
    if published:
        table.notes.append("† published numbers (real data, mgca protocol), not run here, from: " + "; ".join(published))
    if len(published) < len({r.source for r in table.reference}):
        table.notes.append(f"({TRIVIAL}, real test split) †: what predicting nothing / everything or a constant score "
                           "scores on the real MGCA test split, from its label files (`baselines TASK --data-root DIR`); "
                           "a published number at or below it is explained by a trivial predictor")
    if table.reference and data_kind(table.data_source) == "phantom":
        table.notes.append("the measured rows are phantom data: do not compare them with the published rows")


def load_reference(folder: Path | None = None) -> list[dict]:
    """Published numbers: every ``*.csv`` with the columns of :data:`REFERENCE_COLUMNS`
    (the shipped ones unless ``folder`` is given)."""
    rows = []
    for path in sorted(Path(folder or reference_dir()).glob("*.csv")):
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(REFERENCE_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise UserError(f"reference file {path} lacks column(s) {sorted(missing)}")
            for line, row in enumerate(reader, start=2):
                try:
                    fraction = float(row["fraction"])
                except ValueError:
                    raise UserError(f"{path} line {line}: bad fraction {row['fraction']!r}") from None
                rows.append({**{k: row[k].strip() for k in REFERENCE_COLUMNS}, "fraction": fraction})
    return rows


# ---------------------------------------------------------------- rendering

def _cell_text(row: Row, col, best: dict, bold) -> str:
    cell = row.cells.get(col)
    if cell is None:
        return MISSING
    if isinstance(cell, str):
        return cell or MISSING
    if isinstance(cell, float):
        return f"{cell:.1f}"
    text = cell.text()
    return bold(text) if not row.source and math.isclose(cell.mean, best.get(col, math.nan)) else text


def diff_text(diff: PairedDifference | None, explained: bool = False) -> str:
    """``+12.3 [4.1, 20.5]* n=5``: * when the interval excludes 0; one pair has no interval;
    ``explained`` (a side at or below the trivial reference): marked ◦ and never *."""
    if diff is None:
        return MISSING
    ci = f" [{diff.ci[0]:+.1f}, {diff.ci[1]:+.1f}]" if diff.ci is not None else ""
    mark = TRIVIAL_MARK if explained else SIGNIFICANT_MARK if diff.excludes_zero else ""
    return f"{diff.mean:+.1f}{ci}{mark} n={diff.n}"


def _diff_body(table: Table) -> list[list[str]]:
    base = table.baseline()
    return [[r.label, *(diff_text(table.diffs.get((r.label, c)), table.explained(r.label, c)) for c in table.columns)]
            for r in table.rows if r is not base]


def _header(col: tuple[str, float]) -> str:
    return f"{col[0]} {100 * col[1]:g}%"


def render(table: Table, fmt: str = "markdown") -> str:
    best = table.best()
    if fmt == "csv":
        return _render_csv(table, best)
    if fmt == "json":
        return to_json(table_dict(table), indent=1)
    from tabulate import tabulate

    latex = fmt == "latex"
    bold = (lambda s: f"\\textbf{{{s}}}") if latex else (lambda s: f"**{s}**")
    body = [[r.label, *(_cell_text(r, c, best, bold) for c in table.columns)]
            for r in table.rows + table.trivial + table.reference]
    headers = ["method", *(_header(c) for c in table.columns)]
    diff_title = f"paired difference vs {table.vs} (points)"
    has_diffs = table.vs is not None and table.baseline() is not None
    if latex:
        parts = [f"% {table.title}", _latex_table(body, headers)]
        if has_diffs:
            parts += [f"% {diff_title}", _latex_table(_diff_body(table), [f"vs {table.vs}", *headers[1:]])]
        return "\n".join([*parts, *(f"% {n}" for n in table.notes)])
    parts = [f"**{table.title}**", "", tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)]
    if has_diffs:
        parts += ["", f"_{diff_title}_", "",
                  tabulate(_diff_body(table), headers=[f"vs {table.vs}", *headers[1:]], tablefmt="github",
                           disable_numparse=True)]
    return "\n".join([*parts, *([""] + [f"_{n}_" for n in table.notes] if table.notes else [])])


def _latex_table(body: list[list[str]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate([[_latex(x) for x in row] for row in body], headers=[_latex(h) for h in headers],
                    tablefmt="latex_raw", disable_numparse=True)


def _latex(text: str) -> str:
    return (text.replace("%", "\\%").replace("_", "\\_").replace("±", "$\\pm$").replace("†", "$^\\dagger$")
            .replace(BOOTSTRAP_MARK, "$^\\ddagger$").replace(SIGNIFICANT_MARK, "$^*$").replace(TRIVIAL_MARK, "$^\\circ$"))


def _diff_dict(diff: PairedDifference | None) -> dict | None:
    if diff is None:
        return None
    low, high = diff.ci if diff.ci is not None else (None, None)
    return {"mean": diff.mean, "std": diff.std, "n": diff.n, "ci_low": low, "ci_high": high,
            "excludes_zero": diff.excludes_zero}


def table_dict(table: Table) -> dict:
    """Every number of the table (values in %): per cell mean, std, n, the 95 % interval and its kind,
    the per-seed values and, with ``vs``, the paired difference against the baseline row."""
    best = table.best()
    rows = []
    for row in table.rows:
        cells = []
        for col in table.columns:
            cell = row.cells.get(col)
            if not isinstance(cell, Cell):
                continue
            entry = {"task": col[0], "fraction": col[1], **cell.as_dict(),
                     "best": math.isclose(cell.mean, best.get(col, math.nan))}
            if table.vs is not None and row.label != table.vs:
                entry["vs"] = _diff_dict(table.diffs.get((row.label, col)))
                if entry["vs"] is not None:
                    entry["vs"]["explained_by_trivial"] = table.explained(row.label, col)
            cells.append(entry)
        rows.append({"label": row.label, "method": row.method, "config": row.config, "cells": cells})
    reference = [{"label": r.label, "source": r.source,
                  "cells": [{"task": c[0], "fraction": c[1], "published": v} for c, v in r.cells.items()]}
                 for r in table.reference]
    trivial = [{"label": r.label, "name": r.label.removesuffix(" (trivial)"),
                "cells": [{"task": c[0], "fraction": c[1], "value": float(v)} for c, v in r.cells.items()]}
               for r in table.trivial]
    return {"title": table.title, "metric": table.metric, "unit": "%", "protocol": table.protocol,
            "data_source": table.data_source, "level": 0.95, "vs": table.vs,
            "columns": [{"task": t, "fraction": f} for t, f in table.columns], "rows": rows,
            "trivial": trivial, "reference": reference, "notes": table.notes}


CSV_COLUMNS = ("table", "row", "task", "fraction", "mean", "std", "n", "ci_low", "ci_high", "ci_kind", "best", "source",
               "vs", "diff_mean", "diff_ci_low", "diff_ci_high", "diff_n", "diff_excludes_zero", "diff_explained_by_trivial")


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def _render_csv(table: Table, best: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    for row in table.rows + table.trivial + table.reference:
        for col in table.columns:
            cell = row.cells.get(col)
            line = {"table": table.title, "row": row.label, "task": col[0], "fraction": col[1]}
            if isinstance(cell, Cell):
                d = cell.as_dict()
                line.update(mean=_num(d["mean"]), std=_num(d["std"]), n=d["n"], ci_low=_num(d["ci_low"]),
                            ci_high=_num(d["ci_high"]), ci_kind=d["ci_kind"] or "",
                            best=int(math.isclose(cell.mean, best.get(col, math.nan))), source="measured")
                if table.vs is not None and row.label != table.vs:
                    line["vs"] = table.vs
                    if (diff := table.diffs.get((row.label, col))) is not None:
                        low, high = diff.ci if diff.ci is not None else (None, None)
                        line.update(diff_mean=_num(diff.mean), diff_ci_low=_num(low), diff_ci_high=_num(high),
                                    diff_n=diff.n, diff_excludes_zero=int(diff.excludes_zero),
                                    diff_explained_by_trivial=int(table.explained(row.label, col)))
            elif isinstance(cell, float):
                line.update(mean=_num(cell), best=0, source=row.source)
            elif isinstance(cell, str):
                line.update(mean=cell, best=0, source=row.source)
            else:
                continue
            writer.writerow(line)
    return out.getvalue().rstrip("\n")


def render_all(tables: list[Table], fmt: str = "markdown") -> str:
    if fmt == "json":
        return to_json([table_dict(t) for t in tables], indent=1)
    if fmt == "csv" and tables:
        parts = [render(t, "csv") for t in tables]
        return "\n".join([parts[0], *(p.split("\n", 1)[1] for p in parts[1:] if "\n" in p)])
    return "\n\n".join(render(t, fmt) for t in tables)
