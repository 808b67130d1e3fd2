"""Tables from the results store: the trial list (``results``) and paper-style
comparisons (``table``): rows = methods and ablation variants, columns = task x
fraction, cells = mean +- sample std over seeds with n, best per column in bold.

A table only ever holds one data source (phantom numbers never sit beside real
ones), one protocol and one metric; its title says which. Rows are method
configs (method + config hash), so two configs of one method never average
together; published numbers come from ``results/reference/*.csv`` as separate,
marked rows.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import UserError
from benchmark.paths import reference_dir
from benchmark.store import Trial, to_json

REFERENCE_COLUMNS = ("method", "task", "protocol", "metric", "fraction", "value", "source")
#: row order: lower bounds first, the proposed method last (as the papers print them)
METHOD_ORDER = ("random", "checkpoint", "convirt", "gloria", "prior", "asg", "imitate")
MISSING = "-"


def data_kind(source: str) -> str:
    return "phantom" if source.startswith("phantom") else "real"


def finished(trials: list[Trial]) -> list[Trial]:
    """The trials that count in tables and plots: finished, with a finite value."""
    return [t for t in trials if t.status == "finished" and t.value is not None and math.isfinite(t.value)]


def method_labels(trials: list[Trial], variants: dict[tuple[str, str], str]) -> dict[tuple[str, str], str]:
    """(method, config hash) -> its row name: the variant's name, else the method's."""
    return display_labels({(t.method, t.method_hash) for t in trials}, lambda k: variants.get(k) or k[0])


# ---------------------------------------------------------------- results: one row per trial

RESULT_COLUMNS = ("method", "config", "task", "protocol", "fraction", "seed", "data", "status", "metric", "value", "seconds",
                  "error")
ERROR_WIDTH = 60  # the table view cuts a failure's reason here (JSON and CSV keep it whole)


def result_rows(trials: list[Trial]) -> list[dict]:
    return [
        {"method": t.method, "config": t.method_hash, "task": t.task, "protocol": t.protocol, "fraction": t.fraction,
         "seed": t.seed, "data": t.data_source, "status": t.status, "metric": t.metric, "value": t.value,
         "seconds": t.seconds, "error": t.error}
        for t in trials
    ]


def format_results(trials: list[Trial], fmt: str = "table", where: str = "the store") -> str:
    """The trial list; a value that is not a number (NaN, stored as null) is null in JSON and blank in CSV."""
    rows = result_rows(trials)
    if fmt == "json":
        return to_json(rows, indent=1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    from tabulate import tabulate

    if not rows:
        return f"no trials stored yet in {where} (run `python -m benchmark run ...` or `grid ...`)"
    shown = [{**r, "fraction": f"{r['fraction']:g}", "value": MISSING if r["value"] is None else f"{r['value']:.4f}",
              "seconds": MISSING if r["seconds"] is None else f"{r['seconds']:.1f}",
              "error": _cut(r["error"] or "")} for r in rows]
    if not any(r["error"] for r in rows):
        shown = [{k: v for k, v in r.items() if k != "error"} for r in shown]
    return tabulate(shown, headers="keys", tablefmt="simple", disable_numparse=True)


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 3] + "..."


# ---------------------------------------------------------------- paper-style tables

@dataclass
class Cell:
    values: list[float]  # in %, one per seed

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n > 1 else None

    def text(self) -> str:
        std = f" ± {self.std:.1f}" if self.std is not None else ""
        return f"{self.mean:.1f}{std} (n={self.n})"


@dataclass
class Row:
    label: str
    cells: dict[tuple[str, float], Cell | str] = field(default_factory=dict)  # str: a published value
    source: str = ""  # set on reference rows


@dataclass
class Table:
    title: str
    metric: str
    protocol: str
    data_source: str
    columns: list[tuple[str, float]]  # (task, fraction)
    rows: list[Row]
    reference: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def best(self) -> dict[tuple[str, float], float]:
        """Best mean per column among measured rows (every metric here is higher-is-better)."""
        out = {}
        for col in self.columns:
            means = [r.cells[col].mean for r in self.rows if isinstance(r.cells.get(col), Cell)]
            if means:
                out[col] = max(means)
        return out


def row_order(label_method: tuple[str, str]) -> tuple:
    label, method = label_method
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, label != method, label


def describe_source(source: str) -> str:
    if data_kind(source) == "phantom":
        return f"phantom data ({source}: synthetic stand-in, not real-data numbers)"
    return "real data"


def build_tables(trials: list[Trial], variants: dict[tuple[str, str], str], data: str | None = None,
                 protocol: str | None = None, reference: list[dict] | None = None) -> list[Table]:
    """One table per (data source, protocol, metric) from the finished trials."""
    done = finished(trials)
    if data is not None:
        done = [t for t in done if data_kind(t.data_source) == data]
    if protocol is not None:
        done = [t for t in done if t.protocol == protocol]
    groups: dict[tuple[str, str, str], list[Trial]] = {}
    for t in done:
        groups.setdefault((t.data_source, t.protocol, t.metric), []).append(t)
    tables = []
    for (source, proto, metric), group in sorted(groups.items(), key=lambda kv: (data_kind(kv[0][0]), kv[0])):
        tables.append(_table(source, proto, metric, group, variants, reference))
    return tables


def nothing_to_show(trials: list[Trial], data: str | None = None, protocol: str | None = None) -> str:
    """Why :func:`build_tables` found nothing, naming the filter that left nothing (and what there is)."""
    done = finished(trials)
    if not trials:
        return "no trials stored"
    if not done:
        return f"no finished trials with a value ({len(trials)} stored, none finished with a number)"
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


def display_labels(keys: set[tuple[str, str]], name) -> dict[tuple[str, str], str]:
    """Display names; a name shared by two configs gets its config hash appended."""
    base = {k: name(k) for k in keys}
    counts: dict[str, int] = {}
    for v in base.values():
        counts[v] = counts.get(v, 0) + 1
    return {k: v if counts[v] == 1 else f"{v} [{k[1][:6]}]" for k, v in base.items()}


def _table(source: str, proto: str, metric: str, trials: list[Trial], variants: dict, reference: list[dict] | None) -> Table:
    row_label = method_labels(trials, variants)
    task_label = display_labels({(t.task, t.task_hash) for t in trials}, lambda k: k[0])
    cells: dict[tuple[str, str], dict[tuple[str, float], list[float]]] = {}
    for t in trials:
        col = (task_label[(t.task, t.task_hash)], t.fraction)
        cells.setdefault((t.method, t.method_hash), {}).setdefault(col, []).append(100.0 * t.value)
    columns = sorted({c for row in cells.values() for c in row})
    keys = sorted(cells, key=lambda k: row_order((row_label[k], k[0])))
    rows = [Row(row_label[k], {c: Cell(v) for c, v in cells[k].items()}) for k in keys]
    title = f"{metric} (%), {proto} protocol, {describe_source(source)}"
    table = Table(title, metric, proto, source, columns, rows)
    if reference is not None:
        _add_reference(table, reference)
    return table


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
        row = by_row.setdefault(key, Row(f"{ref['method']} † ({ref['source']})", source=ref["source"]))
        row.cells[col] = ref["value"]
    table.reference = list(by_row.values())
    if table.reference:
        sources = sorted({r.source for r in table.reference})
        table.notes.append("† published numbers (real data, mgca protocol), not run here, from: " + "; ".join(sources))
        if data_kind(table.data_source) == "phantom":
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
    text = cell.text()
    return bold(text) if not row.source and math.isclose(cell.mean, best.get(col, math.nan)) else text


def _header(col: tuple[str, float]) -> str:
    return f"{col[0]} {100 * col[1]:g}%"


def render(table: Table, fmt: str = "markdown") -> str:
    best = table.best()
    if fmt == "csv":
        return _render_csv(table, best)
    from tabulate import tabulate

    latex = fmt == "latex"
    bold = (lambda s: f"\\textbf{{{s}}}") if latex else (lambda s: f"**{s}**")
    body = [[r.label, *(_cell_text(r, c, best, bold) for c in table.columns)] for r in table.rows + table.reference]
    headers = ["method", *(_header(c) for c in table.columns)]
    if latex:
        body = [[_latex(x) for x in row] for row in body]
        text = tabulate(body, headers=[_latex(h) for h in headers], tablefmt="latex_raw", disable_numparse=True)
        return "\n".join([f"% {table.title}", text, *(f"% {n}" for n in table.notes)])
    text = tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)
    return "\n".join([f"**{table.title}**", "", text, *([""] + [f"_{n}_" for n in table.notes] if table.notes else [])])


def _latex(text: str) -> str:
    return text.replace("%", "\\%").replace("_", "\\_").replace("±", "$\\pm$").replace("†", "$^\\dagger$")


def _render_csv(table: Table, best: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["table", "row", "task", "fraction", "mean", "std", "n", "best", "source"])
    for row in table.rows + table.reference:
        for col in table.columns:
            cell = row.cells.get(col)
            if isinstance(cell, Cell):
                std = "" if cell.std is None else f"{cell.std:.4f}"
                writer.writerow([table.title, row.label, col[0], col[1], f"{cell.mean:.4f}", std, cell.n,
                                 int(math.isclose(cell.mean, best.get(col, math.nan))), "measured"])
            elif isinstance(cell, str):
                writer.writerow([table.title, row.label, col[0], col[1], cell, "", "", 0, row.source])
    return out.getvalue().rstrip("\n")


def render_all(tables: list[Table], fmt: str = "markdown") -> str:
    if fmt == "csv" and tables:
        parts = [render(t, "csv") for t in tables]
        return "\n".join([parts[0], *(p.split("\n", 1)[1] for p in parts[1:] if "\n" in p)])
    return "\n\n".join(render(t, fmt) for t in tables)
