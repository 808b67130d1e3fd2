"""results / table / plot on a synthetic store: hand-computed cells, bolding,
missing cells, real/phantom separation, reference rows, files written."""

import csv
import io
import json

import pytest

from benchmark.cli import main
from benchmark.store import Store, Trial
from benchmark.tables import build_tables, load_reference, render


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
    # the best of the column, in bold; one seed and no stored bootstrap interval: no interval
    assert lines["imitate"] == ["**83.3 ± 3.1 [75.7, 90.9] n=3**", "**90.0 n=1**"]
    # 60, 70: std 7.07, t(0.975, 1) = 12.706 -> +- 63.5; no fraction-1 trial
    assert lines["random"] == ["65.0 ± 7.1 [1.5, 128.5] n=2", "-"]
    assert lines["imitate-flat"] == ["72.0 ± 2.8 [46.6, 97.4] n=2", "-"]
    assert "convirt" not in text  # real-data trials are not in a phantom table


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
    assert "\\textbf{60.0 $\\pm$ 7.1 [-3.5, 123.5] n=2}" in latex and "$^\\dagger$" in latex


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
    assert {"method", "config", "task", "protocol", "fraction", "seed", "data", "status", "metric", "value", "seconds",
            "error"} == set(rows[0])
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
