"""results / table / plot on a synthetic store: hand-computed cells, bolding,
missing cells, real/phantom separation, reference rows, files written."""

import csv
import io
import json

import pytest

from benchmark.cli import main
from benchmark.report.tables import build_tables, load_reference, render
from benchmark.store import Store, Trial


def trial(method, value, *, task="rsna_cls", fraction=0.1, seed=42, source="phantom-v1", mhash=None, metric="auroc",
          status="finished", protocol="mgca"):
    return Trial(method=method, method_hash=mhash or f"{method}hash0000", task=task, task_hash=f"{task}-th",
                 protocol=protocol, fraction=fraction, seed=seed, data_source=source, status=status, metric=metric,
                 value=value, seconds=1.5)


@pytest.fixture
def store():
    s = Store()
    rows = [
        trial("imitate", 0.80, seed=42), trial("imitate", 0.84, seed=0), trial("imitate", 0.86, seed=1),
        trial("random", 0.60, seed=42), trial("random", 0.70, seed=0),
        trial("imitate", 0.90, fraction=1.0),  # random has no fraction-1 trial: a missing cell
        trial("imitate", 0.70, mhash="flathash0000", seed=42), trial("imitate", 0.74, mhash="flathash0000", seed=0),
        trial("random", 0.99, seed=7, status="failed"),  # failed trials never count
        trial("convirt", 0.55, source="real"), trial("convirt", 0.65, source="real", seed=0),
        trial("imitate", 0.4, task="siim_seg", metric="dice", fraction=1.0),
    ]
    for r in rows:
        s.record(r)
    s.label_variant("imitate", "flathash0000", "imitate-flat")
    return s


def test_cells_mean_std_n_bold_and_missing(store):
    tables = build_tables(store.all(), store.variants(), data="phantom")
    by_metric = {t.metric: t for t in tables}
    assert set(by_metric) == {"auroc", "dice"}
    auroc = by_metric["auroc"]
    assert auroc.columns == [("rsna_cls", 0.1), ("rsna_cls", 1.0)]
    assert [r.label for r in auroc.rows] == ["random", "imitate", "imitate-flat"]  # baselines first, variant after
    text = render(auroc, "markdown")
    assert "phantom data" in text.splitlines()[0] and "auroc" in text.splitlines()[0]
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in text.splitlines()
             if line.startswith("| ") and "method" not in line}
    # imitate at 10 %: 80, 84, 86 -> mean 83.33, sample std 3.06, t(0.975, 2) = 4.3027 -> +- 7.59;
    # the best of the column, in bold (told apart from the runner-up, imitate-flat, on their shared seeds 42
    # and 0: differences 10 and 10, interval [10, 10]); at 100 % one row and one seed: nothing to tell it
    # apart from, so no bold; one seed and no stored bootstrap interval: no interval
    assert lines["imitate"] == ["**83.3 ± 3.1 [75.7, 90.9] n=3**", "90.0 n=1"]
    # 60, 70: std 7.07, t(0.975, 1) = 12.706 -> +- 63.5; no fraction-1 trial
    assert lines["random"] == ["65.0 ± 7.1 [1.5, 128.5] n=2", "-"]
    assert lines["imitate-flat"] == ["72.0 ± 2.8 [46.6, 97.4] n=2", "-"]
    assert "convirt" not in text  # real-data trials are not in a phantom table


@pytest.mark.parametrize("b_values, bold", [
    ((0.70, 0.71, 0.72), True),     # paired differences 10, 10, 10: apart
    ((0.80, 0.81, 0.82), False),    # a tie: the same values
    ((0.85, 0.75, 0.86), False),    # differences -5, 6, -4: the interval spans 0
])
def test_a_best_is_bold_only_where_its_paired_interval_against_the_runner_up_excludes_0(b_values, bold):
    """Issue 27: a smoke grid gave 46.7 in every cell, each one bold; a cell is bold only when told apart."""
    trials = [trial("imitate", v, seed=s) for v, s in zip((0.80, 0.81, 0.82), (0, 1, 2))]
    trials += [trial("convirt", v, seed=s) for v, s in zip(b_values, (0, 1, 2))]
    text = render(build_tables(trials, {})[0], "markdown")
    cells = "".join(line for line in text.splitlines() if line.startswith(("| imitate", "| convirt")))
    assert ("**" in cells) is bold, text


def test_a_profile_is_named_and_never_shares_a_table():
    trials = [trial("imitate", 0.8, seed=s) for s in (0, 1)] + [trial("random", 0.6, seed=s) for s in (0, 1)]
    for t in trials[:2]:
        t.profile = "smoke"
    for t in trials[2:]:
        t.profile = "phantom"
    tables = build_tables(trials, {})
    assert sorted(t.title.rsplit("profile ", 1)[1] for t in tables) == ["phantom", "smoke"]
    assert [[r.label for r in t.rows] for t in tables] in ([["random"], ["imitate"]], [["imitate"], ["random"]])


def test_real_and_phantom_never_share_a_table(store):
    tables = build_tables(store.all(), store.variants())
    kinds = [{t.data_source} for t in tables]
    assert all(len(k) == 1 for k in kinds)
    assert [t.data_source for t in tables] == ["phantom-v1", "phantom-v1", "real"]
    real = build_tables(store.all(), store.variants(), data="real")
    assert len(real) == 1 and [r.label for r in real[0].rows] == ["convirt"]
    assert "real data" in render(real[0]).splitlines()[0]


def test_reference_rows_are_marked_and_never_bold(store):
    ref = load_reference()
    mgca_siim = {r["value"] for r in ref if r["method"] == "MGCA" and r["task"] == "siim_seg"}
    assert mgca_siim == {"49.7", "59.3", "64.2"}  # read from published.md
    assert {r["value"] for r in ref if r["method"] == "MGCA" and r["task"] == "object_cxr_det" and r["fraction"] == 0.01} == {"<1"}
    real = build_tables(store.all(), store.variants(), data="real", reference=ref)[0]
    text = render(real)
    convirt_ref = [line for line in text.splitlines() if line.startswith("| ConVIRT †")]
    assert len(convirt_ref) == 1 and "77.4" not in convirt_ref[0]  # RSNA 1 % only: the measured column is 10 %
    assert "80.1" in convirt_ref[0] and "G2D" in convirt_ref[0] and "**" not in convirt_ref[0]
    asg = [line for line in text.splitlines() if line.startswith("| ASG (CNN) †")]
    assert asg and "88.8" in asg[0] and "ASG official README" in asg[0]
    assert "published numbers" in text
    latex = render(real, "latex")
    # the one measured row: no runner-up to be told apart from, so no bold (published rows never are)
    assert "60.0 $\\pm$ 7.1 [-3.5, 123.5] n=2" in latex and "\\textbf" not in latex and "$^\\dagger$" in latex


def test_table_csv_and_cli_formats(store, capsys):
    assert main(["table", "--data", "phantom", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    cell = next(r for r in rows if r["row"] == "imitate" and r["task"] == "rsna_cls" and r["fraction"] == "0.1")
    assert float(cell["mean"]) == pytest.approx(83.3333, abs=1e-3)
    assert float(cell["std"]) == pytest.approx(3.0551, abs=1e-3) and cell["n"] == "3" and cell["best"] == "1"
    assert all("phantom" in r["table"] for r in rows)
    assert main(["table", "--data", "phantom", "--reference"]) == 0
    out = capsys.readouterr().out
    assert "RSNA" not in out and "Random Init †" in out and "do not compare" in out


def test_results_lists_every_trial(store, capsys):
    assert main(["results", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 12
    assert {"method", "encoder", "task", "protocol", "fraction", "seed", "data", "profile", "status", "metric", "value",
            "trivial", "seconds", "error", "metrics", "references"} == set(rows[0])
    assert rows[0]["encoder"] == f"{rows[0]['method']}-{rows[0]['method']}hash0000"
    assert sum(r["status"] == "failed" for r in rows) == 1
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    assert "flathash0000" in out and "0.8400" in out and "failed" in out
    assert main(["results", "--format", "csv"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 13


def test_plot_writes_files(store, tmp_path, capsys):
    out = tmp_path / "plots"
    assert main(["plot", "--out", str(out), "--data", "phantom"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["ablations_phantom_mgca.pdf", "ablations_phantom_mgca.png",
                     "label_efficiency_phantom_mgca.pdf", "label_efficiency_phantom_mgca.png"]
    assert all((out / n).stat().st_size > 1000 for n in names)
    assert (out / "label_efficiency_phantom_mgca.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["table"], "no trials stored in"),
        (["table", "--store", "/no/such.sqlite"], "does not exist"),
        (["plot", "--out", "x"], "no finished phantom-data trials"),
        (["table", "--format", "html"], "invalid choice"),
    ],
)
def test_bad_input(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_read_commands_never_make_the_default_store(isolated_home, capsys):
    """`results`, `table`, `plot` on a store that does not exist yet: nothing stored, and nothing created."""
    store = isolated_home / "store.sqlite"
    assert main(["results"]) == 0 and f"no trials stored yet in {store}" in capsys.readouterr().out
    assert main(["table"]) == 2 and main(["plot", "--out", str(isolated_home / "plots")]) == 2
    assert not store.exists() and not (isolated_home / "plots").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["table", "--protocol", "bogus"], "no finished trials with protocol 'bogus' (the finished ones have protocol mgca) in "),
        (["table", "--data", "real", "--protocol", "finetune"],
         "no finished real-data trials with protocol 'finetune' (the finished ones have protocol mgca)"),
    ],
)
def test_table_names_the_filter_that_left_nothing(store, argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_table_names_the_data_kind_that_is_missing(capsys):
    Store().record(trial("imitate", 0.8))
    assert main(["table", "--data", "real"]) == 2
    assert "no finished real-data trials (the finished ones are phantom-data)" in capsys.readouterr().err
    Store().record(trial("imitate", None, status="failed", seed=1, source="real"))
    assert main(["table", "--data", "real"]) == 2  # a failed real trial is no real result
    assert "no finished real-data trials (the finished ones are phantom-data)" in capsys.readouterr().err


def test_a_nan_value_is_null_in_json_and_a_dash_in_the_table(capsys):
    """An older version stored a NaN metric as a finished row with a NULL value: it is listed, never tabled."""
    s = Store()
    s.record(trial("imitate", float("nan")))
    s.record(trial("imitate", 0.8, seed=0))
    assert s.finished(trial("imitate", 0.0)) is None  # not a result: the trial runs again
    assert main(["results", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)  # valid JSON: null, never a bare NaN
    assert [r["value"] for r in rows] == [None, 0.8]
    assert main(["results"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if " 42 " in x)
    assert "finished" in line and " - " in line
    assert main(["table", "--format", "csv"]) == 0
    cells = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(c["n"], c["mean"]) for c in cells] == [("1", "80.0000")]


# ---------------------------------------------------------------- issue 15: intervals, --vs, the run's random line

def test_one_seed_cell_uses_the_stored_bootstrap_interval(capsys):
    """n = 1: the interval is the trial's own bootstrap over test images (ci_low/ci_high, same units as the value),
    marked ‡; n >= 2: over seeds, whatever the trials stored."""
    s = Store()
    s.record(Trial(**{**trial("imitate", 0.90).__dict__, "metrics": {"auroc": 0.90, "ci_low": 0.87, "ci_high": 0.93}}))
    for seed, v in [(0, 0.6), (1, 0.7)]:
        s.record(Trial(**{**trial("random", v, seed=seed).__dict__, "metrics": {"ci_low": 0.0, "ci_high": 1.0}}))
    s.record(trial("convirt", 0.8))  # one seed, no stored interval: none shown
    table = build_tables(s.all(), {})[0]
    cells = {r.label: r.cells[("rsna_cls", 0.1)] for r in table.rows}
    assert cells["imitate"].ci == pytest.approx((87.0, 93.0)) and cells["imitate"].ci_kind == "bootstrap"
    assert cells["imitate"].text() == "90.0 [87.0, 93.0]‡ n=1"
    assert cells["random"].ci_kind == "seeds" and cells["random"].ci == pytest.approx((1.47, 128.53), abs=0.01)
    assert cells["convirt"].ci is None and cells["convirt"].text() == "80.0 n=1"
    assert "bootstrap interval over test images" in render(table)
    assert main(["table", "--json"]) == 0
    rows = {r["label"]: r["cells"][0] for r in json.loads(capsys.readouterr().out)[0]["rows"]}
    assert {k: rows["imitate"][k] for k in ("mean", "std", "n", "ci_kind")} == {"mean": 90.0, "std": None, "n": 1,
                                                                                  "ci_kind": "bootstrap"}
    assert (rows["imitate"]["ci_low"], rows["imitate"]["ci_high"]) == pytest.approx((87.0, 93.0))
    assert rows["convirt"]["ci_kind"] is None and rows["convirt"]["ci_low"] is None
    assert rows["random"]["std"] == pytest.approx(7.0711, abs=1e-4) and rows["random"]["values"] == [60.0, 70.0]


@pytest.fixture
def paired_store():
    """Crafted seeds: imitate beats random clearly at 1 % (every seed +15..+25), not at 10 % (+-); the variant
    shares no seed with random at 1 %; convirt has one shared seed at 10 %."""
    s = Store()
    seeds = [0, 1, 2, 3, 4]
    base1 = [0.50, 0.60, 0.55, 0.52, 0.58]
    for seed, b, d in zip(seeds, base1, [0.20, 0.15, 0.25, 0.18, 0.22]):
        s.record(trial("random", b, fraction=0.01, seed=seed))
        s.record(trial("imitate", b + d, fraction=0.01, seed=seed))
    for seed, b, d in zip(seeds, [0.70, 0.72, 0.68, 0.71, 0.69], [0.03, -0.04, 0.02, -0.01, 0.01]):
        s.record(trial("random", b, seed=seed))
        s.record(trial("imitate", b + d, seed=seed))
    for seed in (10, 11):
        s.record(trial("imitate", 0.9, fraction=0.01, seed=seed, mhash="flathash0000"))
    s.record(trial("convirt", 0.75, seed=3))
    s.label_variant("imitate", "flathash0000", "imitate-flat")
    return s


def test_vs_marks_exactly_the_cells_whose_interval_excludes_zero(paired_store, capsys):
    from scipy import stats as sps

    assert main(["table", "--vs", "random"]) == 0
    text = capsys.readouterr().out
    diff_part = text.split("paired difference vs random")[1]
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in diff_part.splitlines()
             if line.startswith("| ") and "vs random" not in line}
    assert set(lines) == {"imitate", "imitate-flat", "convirt"}  # the baseline has no row of its own
    at1 = sps.ttest_rel([b + d for b, d in zip([50, 60, 55, 52, 58], [20, 15, 25, 18, 22])], [50, 60, 55, 52, 58])
    ci = at1.confidence_interval(0.95)
    assert lines["imitate"][0] == f"+20.0 [{ci.low:+.1f}, {ci.high:+.1f}]* n=5"  # excludes 0: marked
    assert lines["imitate"][1].startswith("+0.2 [") and "*" not in lines["imitate"][1]  # straddles 0: not marked
    assert lines["imitate-flat"] == ["-", "-"]  # seeds 10, 11 against 0..4: no pair
    assert lines["convirt"] == ["-", "+4.0 n=1"]  # one pair: a difference, no interval, no mark
    assert "* = the interval excludes 0" in text
    assert main(["table", "--vs", "random", "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)[0]
    marked = {(r["label"], c["fraction"]) for r in table["rows"] for c in r["cells"] if (c.get("vs") or {}).get("excludes_zero")}
    assert marked == {("imitate", 0.01)}
    imitate = next(r for r in table["rows"] if r["label"] == "imitate")["cells"]
    assert imitate[0]["vs"]["n"] == 5 and (imitate[0]["vs"]["ci_low"], imitate[0]["vs"]["ci_high"]) == pytest.approx(
        (ci.low, ci.high))
    assert "vs" not in next(r for r in table["rows"] if r["label"] == "random")["cells"][0]
    assert main(["table", "--vs", "random", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["row"], r["fraction"]) for r in rows if r["diff_excludes_zero"] == "1"} == {("imitate", "0.01")}
    assert main(["table", "--vs", "imitate-flat", "--format", "latex"]) == 0  # a variant's name is a row too
    assert "vs imitate-flat" in capsys.readouterr().out


def test_vs_never_pairs_across_phantom_versions(capsys):
    """phantom-v1 and phantom-v2 results sit in separate tables; their same seeds are different images: no pairs."""
    s = Store()
    for seed in range(3):
        s.record(trial("random", 0.5 + 0.01 * seed, seed=seed, source="phantom-v1"))
        s.record(trial("imitate", 0.8 + 0.01 * seed, seed=seed, source="phantom-v2"))
        s.record(trial("imitate", 0.7 + 0.02 * seed, seed=seed, source="phantom-v1"))
    tables = build_tables(s.all(), {}, vs="random")
    assert [t.data_source for t in tables] == ["phantom-v1", "phantom-v2"]
    assert all({r.label for r in t.rows} == ({"random", "imitate"} if t.data_source == "phantom-v1" else {"imitate"})
               for t in tables)
    v1, v2 = tables
    assert v1.diffs[("imitate", ("rsna_cls", 0.1))].mean == pytest.approx(21.0)  # 70, 72, 74 - 50, 51, 52
    assert v2.diffs == {} and "no 'random' row in this table" in render(v2)
    assert main(["table", "--json"]) == 0
    assert [t["data_source"] for t in json.loads(capsys.readouterr().out)] == ["phantom-v1", "phantom-v2"]


def test_json_flag_and_format_conflict(paired_store, capsys):
    assert main(["table", "--json"]) == 0
    flag = capsys.readouterr().out
    assert main(["table", "--format", "json"]) == 0
    assert capsys.readouterr().out == flag
    assert main(["table", "--json", "--format", "csv"]) == 2
    assert "two formats" in capsys.readouterr().err


def test_plot_intervals_are_the_table_intervals(paired_store):
    from benchmark.report.plots import summary

    df, data = summary(paired_store.all(), paired_store.variants(), None)
    assert data == "phantom" and set(df["source"]) == {"phantom-v1"}
    table = build_tables(paired_store.all(), paired_store.variants())[0]
    for row in table.rows:
        for col, cell in row.cells.items():
            point = df[(df["label"] == row.label) & (df["task"] == col[0]) & (df["fraction"] == col[1])]
            assert len(point) == 1 and point["mean"].iloc[0] == pytest.approx(cell.mean)
            if cell.ci is None:
                assert point["low"].isna().all()
            else:  # the table's interval, clipped to the metric's 0..100 range
                low, high = max(cell.ci[0], 0.0), min(cell.ci[1], 100.0)
                assert (point["low"].iloc[0], point["high"].iloc[0]) == pytest.approx((low, high))


def test_plot_legend_names_every_line_and_bands_stay_in_range(tmp_path, monkeypatch):
    """Issue 27: the legend named only the first task's lines, and a two-seed t-interval ran the AUROC
    axis from -40 to 130. The figures are read back before they close."""
    import matplotlib.pyplot as plt
    import numpy as np

    from benchmark.report.plots import write_plots
    from benchmark.store import Trial
    from benchmark.tasks.references import classification_references

    refs = classification_references(np.array([0, 1, 0, 1]), 4)
    trials = [Trial(m, m[:3] + "0" * 9, task, "t" + task, "mgca", 1.0, seed, "phantom-v2", "finished", "auroc", v,
                    {"auroc": v}, refs=refs)
              for task, methods in (("rsna_cls", ("random", "imitate")), ("chexpert_cls", ("random", "convirt")))
              for m in methods for seed, v in ((0, 0.55), (1, 0.95))]
    for t in trials:
        t.profile = "phantom"
    figures = []
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    write_plots(trials, {}, tmp_path)
    fig = figures[0]
    labels = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert {"random", "imitate", "convirt", "constant-score (trivial)"} <= set(labels), labels
    title = fig._suptitle.get_text()  # the profile and the data source (phantom, not real-data numbers)
    assert "profile phantom" in title and "phantom data (phantom-v2: synthetic stand-in" in title, title
    for ax in fig.axes:
        if ax.get_visible():
            low, high = ax.get_ylim()
            assert low > -10 and high < 110, (low, high)  # the band of 55/95 over two seeds is clipped to 0..100


def test_run_prints_random_beside_the_value_and_reuses_it(capsys, tmp_path):
    """The default job's comparison line: the untrained encoder on the same task config, fraction, seed and
    backbone, through the same store: stored by the first run, reused by the second; not run for random itself.
    (A checkpoint run: no pre-training; its method keys other than the backbone's stay its own.)"""
    import torch
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    tail = ["--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5", "--seed", "3", "--set", "task.epochs=1",
            "--set", "backbone=resnet18", "--json"]
    argv = ["run", "--method", "checkpoint", "--checkpoint", str(path), *tail]
    assert main(argv) == 0
    out = (lambda c: c.err + c.out)(capsys.readouterr())
    first = json.loads(out.strip().splitlines()[-1])
    assert "beside it, the untrained random encoder on the same subset: auroc = " in out and "results/PHANTOM.md" in out
    rand = first["random"]
    stored = {(t.method, t.seed, t.fraction, t.task_hash): t for t in Store().all()}
    twin = stored[("random", 3, 0.5, first["task_config_hash"])]  # same seed, fraction and task config (epochs=1)
    assert twin.value == rand["value"] and rand["reused"] is False and twin.method_hash == rand["config_hash"]
    assert twin.method_config["backbone"] == "resnet18" and "checkpoint_path" not in twin.method_config
    assert f"auroc = {rand['value']:.4f}" in out
    if min(first["value"], rand["value"]) > 0.5:  # both above the constant score: the difference is printed
        assert f"auroc: checkpoint - random = {first['value'] - rand['value']:+.4f}" in out
    else:  # one at or below AUROC 50: no difference is claimed
        assert "auroc: not compared:" in out and "constant-score (0.5000)" in out and "(difference" not in out
    assert main(argv) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["random"]["reused"] is True and again["random"]["value"] == rand["value"]
    assert len(Store().all()) == 2
    assert main(["run", "--method", "random", *tail]) == 0
    alone = capsys.readouterr().out
    assert json.loads(alone.strip().splitlines()[-1])["random"] is None and "beside it" not in alone


# ---------------------------------------------------------------- issue 17: backbones

def backbone_trial(method, value, net, **kw):
    """A trial whose method config names ``net`` (None: a config from before the field, i.e. resnet50)."""
    t = trial(method, value, mhash=f"{method}-{net}-hash", **kw)
    t.method_config = {} if net is None else {"backbone": net}
    return t


@pytest.fixture
def two_backbones():
    s = Store()
    for seed, (a, b, c) in enumerate([(0.80, 0.70, 0.60), (0.84, 0.74, 0.62)]):
        s.record(backbone_trial("imitate", a, None, seed=seed))  # no backbone key: resnet50
        s.record(backbone_trial("imitate", b, "resnet18", seed=seed))
        s.record(backbone_trial("random", c, "resnet18", seed=seed))
    return s


def test_two_backbones_label_the_rows_and_by_backbone_splits_the_table(two_backbones, capsys, tmp_path):
    (table,) = build_tables(two_backbones.all(), {})
    cells = {r.label: r.cells[("rsna_cls", 0.1)].mean for r in table.rows}
    assert cells == pytest.approx({"random (resnet18)": 61.0, "imitate (resnet18)": 72.0, "imitate (resnet50)": 82.0})
    assert [r.label for r in table.rows] == ["random (resnet18)", "imitate (resnet18)", "imitate (resnet50)"]
    split = build_tables(two_backbones.all(), {}, by="backbone")
    assert [t.title.split(", ")[2] for t in split] == ["backbone resnet18", "backbone resnet50"]
    assert [[r.label for r in t.rows] for t in split] == [["random", "imitate"], ["imitate"]]
    assert [t.rows[-1].cells[("rsna_cls", 0.1)].mean for t in split] == pytest.approx([72.0, 82.0])
    diffs = build_tables(two_backbones.all(), {}, vs="imitate (resnet50)")[0].diffs
    assert diffs[("imitate (resnet18)", ("rsna_cls", 0.1))].mean == pytest.approx(-10.0)  # same seeds, paired
    assert main(["table", "--by", "backbone", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {(r["row"], "backbone resnet18" in r["table"]) for r in rows} == {("random", True), ("imitate", True),
                                                                           ("imitate", False)}
    assert main(["plot", "--by", "backbone", "--out", str(tmp_path / "plots")]) == 0
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == [f"label_efficiency_phantom_mgca_{net}.{ext}" for net in ("resnet18", "resnet50") for ext in ("pdf", "png")]


def test_plot_lines_are_labelled_with_the_backbone(two_backbones):
    from benchmark.report.plots import summary

    df, _ = summary(two_backbones.all(), {}, None)
    assert sorted(set(df["label"])) == ["imitate (resnet18)", "imitate (resnet50)", "random (resnet18)"]
    df, _ = summary(two_backbones.all(), {}, None, by="backbone")
    assert sorted(set(zip(df["group"], df["label"]))) == [("resnet18", "imitate"), ("resnet18", "random"),
                                                          ("resnet50", "imitate")]


def test_an_open_clip_trial_is_grouped_by_its_model_not_the_unused_backbone_field(two_backbones):
    from benchmark.report.results import backbone

    clip = backbone_trial("open_clip", 0.9, "resnet50", seed=0)
    clip.method_config["model"] = "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    assert backbone(clip) == "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    two_backbones.record(clip)
    split = build_tables(two_backbones.all(), {}, by="backbone")
    assert [t.title.split(", ")[2] for t in split] == [
        "backbone hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "backbone resnet18",
        "backbone resnet50"]
    assert [r.label for r in split[0].rows] == ["open_clip"]
