"""grid and tune through Ray Tune on the smoke profile (tiny phantom runs), resume
from the store, experiment files, and bad input."""

import csv
import json
import re

import pytest

from benchmark.cli import main
from benchmark.store import Store

GRID = ["grid", "--methods", "random,imitate", "--tasks", "rsna_cls", "--fractions", "0.1,0.2", "--seeds", "42",
        "--profile", "smoke"]


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module (grid and tune join it instead of starting their own)."""
    from benchmark.raycluster import connect

    session = connect(None, num_cpus=2)
    yield session
    import ray

    ray.shutdown()


def _key(method, fraction, seed=42, profile="smoke"):
    from benchmark.factory import plan_trial

    trial, _, _ = plan_trial(method, "rsna_cls", fraction, seed, profile, [])
    return trial


def test_grid_runs_only_the_missing_trials_then_nothing(ray_session, capsys, isolated_home):
    # a finished trial (run outside the grid) and a failed one are already in the store
    assert main(["run", "--method", "random", "--task", "rsna_cls", "--fraction", "0.1", "--profile", "smoke"]) == 0
    store = Store()
    before = store.finished(_key("random", 0.1))
    failed = _key("imitate", 0.2)
    failed.status, failed.error = "failed", "RuntimeError: killed"
    store.record(failed)
    capsys.readouterr()

    assert main(GRID + ["--cpus-per-encoder", "2"]) == 0
    out = capsys.readouterr().out
    ran = set(re.findall(r"\[grid\] \d/4 (\S+ rsna_cls fraction \S+ seed 42): auroc", out))
    assert ran == {"random rsna_cls fraction 0.2 seed 42", "imitate rsna_cls fraction 0.1 seed 42",
                   "imitate rsna_cls fraction 0.2 seed 42"}  # the failed one again, the finished one not
    assert "3 to run, 1 already finished (skipped)" in out
    assert "grid: 4 trials: 3 done, 1 skipped (already finished), 0 failed" in out
    # pre-training once per method config, before its trials; imitate's encoder shared by its two trials
    assert len(re.findall(r"\[pretrain\] \d/2 imitate \(imitate-\w+\): encoder ready in", out)) == 1
    assert len(list((isolated_home / "home" / "encoders").glob("imitate-*"))) == 1
    # the encoder trained alone on both CPUs, the trials one CPU each
    import torch  # a trial asks for a GPU where the cluster has one (raycluster.trial_resources)

    gpus = 1 if torch.cuda.is_available() else 0
    assert f"each trial 1 CPU, {gpus} GPU; each pre-training job 2 CPU" in out
    meta = json.loads(next((isolated_home / "home" / "encoders").glob("imitate-*/meta.json")).read_text())
    assert meta["threads"] == 2

    trials = Store().all()
    assert len(trials) == 4 and all(t.status == "finished" and 0 <= t.value <= 1 for t in trials)
    again = Store().finished(_key("random", 0.1))
    assert (again.finished_at, again.value) == (before.finished_at, before.value)  # not run again
    imitate = [t for t in trials if t.method == "imitate"]
    assert len({t.method_hash for t in imitate}) == 1 and {t.pretrain_seconds for t in imitate} == {0.0}

    assert main(GRID) == 0  # everything finished: no Ray trial at all
    out = capsys.readouterr().out
    assert "[grid]" not in out and "grid: 4 trials: 0 done, 4 skipped (already finished), 0 failed" in out


def test_grid_interrupted_by_ctrl_c_resumes_with_the_same_command(ray_session, capsys, monkeypatch):
    """Ctrl-C after the first finished trial: what finished is kept, the same command runs only the rest."""
    import os
    import signal

    import benchmark.orchestrate.grid

    say = benchmark.orchestrate.grid.say

    def say_then_interrupt(line):
        say(line)
        if re.match(r"\[grid\] \d/3 random", line):
            os.kill(os.getpid(), signal.SIGINT)  # Tune's handler stops the run; fit() returns

    argv = ["grid", "--methods", "random", "--tasks", "rsna_cls", "--fractions", "0.1,0.2,0.5", "--seeds", "42",
            "--profile", "smoke"]
    with monkeypatch.context() as patch:
        patch.setattr(benchmark.orchestrate.grid, "say", say_then_interrupt)
        assert main(argv) == 1
    out = capsys.readouterr().out
    assert "not run (interrupted)" in out
    kept = {t.fraction for t in Store().all() if t.status == "finished"}
    assert 1 <= len(kept) < 3

    assert main(argv) == 0
    out = capsys.readouterr().out
    ran = {float(f) for f in re.findall(r"\[grid\] \d/3 random rsna_cls fraction (\S+) seed 42: auroc", out)}
    assert ran == {0.1, 0.2, 0.5} - kept  # exactly the missing ones
    assert f"{3 - len(kept)} done, {len(kept)} skipped" in out
    assert sorted(t.fraction for t in Store().all() if t.status == "finished") == [0.1, 0.2, 0.5]


def test_tune_selects_on_validation_with_per_epoch_reports(ray_session, capsys, isolated_home):
    argv = ["tune", "--method", "random", "--task", "rsna_cls", "--fraction", "0.5", "--trials", "2",
            "--profile", "smoke", "--name", "t1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "best (selected on validation -val_loss" in out and "--set task.lr=" in out
    folder = isolated_home / "tune" / "t1"
    rows = list(csv.DictReader((folder / "trials.csv").open()))
    assert len(rows) == 2 and {r["status"] for r in rows} <= {"finished", "stopped early (ASHA)"}
    best = json.loads((folder / "best.json").read_text())
    finished = [r for r in rows if r["status"] == "finished"]
    assert best["selected_on"] == "-val_loss"
    assert float(best["best"]["val_score"]) == pytest.approx(max(float(r["val_score"]) for r in finished))
    stored = Store(folder / "trials.sqlite").all()
    assert len(stored) == len(finished)
    for r in finished:  # the score is minus the stored validation loss; ASHA saw one report per epoch + the end
        t = next(t for t in stored if t.task_config["lr"] == pytest.approx(float(r["task.lr"])))
        assert float(r["val_score"]) == pytest.approx(-t.metrics["val_loss"])
        assert int(r["reports"]) == t.metrics["epochs"] + 1
    assert Store().all() == []  # search trials stay out of the main store


def test_ablation_experiment_expands_to_named_variants():
    from benchmark.experiments import load_experiment
    from benchmark.orchestrate.grid import expand

    spec = load_experiment("imitate_ablations")
    store = Store()
    plan = expand(spec, "smoke", [], None, None, store)
    assert len(plan.todo) == 9 * 3 * 3 * 3 and not plan.finished
    hashes = {it.entry.label: it.trial.method_hash for it in plan.todo}
    assert len(set(hashes.values())) == 9  # every variant its own config (and pre-training)
    assert ("imitate", hashes["imitate-flat"], "imitate-flat") in plan.variants
    assert store.variants() == {}  # planning only reads the store: names are written when the grid runs
    flat = next(it for it in plan.todo if it.entry.label == "imitate-flat")
    assert flat.trial.method_config["hierarchical"] is False and flat.trial.protocol == "mgca"


def test_phantom_power_blocks_add_100_percent_with_fewer_seeds(capsys):
    """The main grid (11 entries x 2 tasks x 1 % x 5 seeds) plus its block (rsna_cls x 100 % x 2 seeds)."""
    from benchmark.experiments import load_experiment
    from benchmark.orchestrate.grid import expand

    spec = load_experiment("phantom_power")
    assert spec.profile == "phantom" and spec.cpus_per_encoder == 2  # encoders one at a time on both cores
    plan = expand(spec, "smoke", [], None, None, Store())
    cells = [(it.entry.label, it.trial.task, it.trial.fraction, it.trial.seed) for it in plan.todo]
    assert len(cells) == len(set(cells)) == 11 * 2 * 5 + 11 * 2
    full = sorted({(t, f, s) for _, t, f, s in cells if f == 1.0})
    assert full == [("rsna_cls", 1.0, 0), ("rsna_cls", 1.0, 42)]
    hashes = {it.entry.label: it.trial.method_hash for it in plan.todo}
    assert hashes["random"] != hashes["random-init1"] and len(set(hashes.values())) == 11
    assert main(["grid", "--experiment", "phantom_power", "--profile", "smoke", "--seeds", "42", "--dry-run"]) == 0
    assert "22 to run" in capsys.readouterr().out  # --seeds names what runs: the file's blocks step aside


def test_experiment_blocks_bad_keys_and_labels(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    head = "methods: [random, {method: imitate, variant: flat, set: {hierarchical: false}}]\ntasks: [rsna_cls]\nfractions: [0.01]\nseeds: [42]\n"
    bad.write_text(head + "blocks: [{methods: [flat, imitat], fractions: [1.0]}]\n")
    assert main(["grid", "--experiment", str(bad), "--dry-run"]) == 2
    assert "unknown method entry in a block" in capsys.readouterr().err
    bad.write_text(head + "blocks: [{fraction: [1.0]}]\n")
    assert main(["grid", "--experiment", str(bad), "--dry-run"]) == 2
    assert "unknown key(s) ['fraction'] in a block" in capsys.readouterr().err
    bad.write_text(head + "cpus_per_encoder: 0\n")
    assert main(["grid", "--experiment", str(bad), "--dry-run"]) == 2
    assert "'cpus_per_encoder' must be a number > 0, got 0" in capsys.readouterr().err
    bad.write_text(head + "blocks: [{methods: [flat], fractions: [1.0], seeds: [0, 1]}]\n")
    assert main(["grid", "--experiment", str(bad), "--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 to run" in out and "flat rsna_cls fraction 1 seed 1" in out and "random rsna_cls fraction 1" not in out


def test_running_a_plan_names_its_variants_in_the_store():
    from benchmark.orchestrate.grid import Plan, run_plan

    store = Store()
    summary = run_plan(Plan("smoke", None, variants=[("imitate", "abc123", "imitate-flat")]), store)
    assert summary.total == 0 and store.variants() == {("imitate", "abc123"): "imitate-flat"}  # no Ray: nothing to run


def test_paper_grid_leaves_out_what_cannot_run(capsys):
    assert main(["grid", "--experiment", "imitate_tmi2024", "--profile", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 6 methods x 7 trained tasks x 3 fractions x 3 seeds + 5 methods with a text tower x 2 zero-shot tasks once
    assert "388 to run, 0 already finished, 2 not applicable" in out
    assert "to run: imitate rsna_zs fraction 1 seed 42" in out and "rsna_zs fraction 0.1" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["grid", "--methods", "imitate,imitat", "--tasks", "rsna_cls"], "unknown method 'imitat'; valid: imitate"),
        (["grid", "--methods", "imitate", "--tasks", "rsna"], "unknown task 'rsna'"),
        (["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--fractions", "0.1,1.5"], "fraction must be in (0, 1]"),
        (["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--fractions", "ten"], "bad fraction 'ten'"),
        (["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--seeds", "1.5"], "bad seed '1.5'"),
        (["grid", "--experiment", "no/such/file.yaml"], "experiment file no/such/file.yaml not found"),
        (["grid", "--experiment", "imitate_tmi2024", "--methods", "random"], "not both"),
        (["grid", "--methods", "imitate"], "grid needs --methods and --tasks"),
        (["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--set", "los=cicl"], "unknown --set key 'los'"),
        (["grid", "--methods", "random", "--tasks", "rsna_cls", "--address", "nohost"], "expected HOST:PORT"),
        (["grid", "--methods", "random", "--tasks", "rsna_cls", "--address", "127.0.0.1:1"], "no Ray cluster answers"),
        (["tune", "--method", "imitate", "--task", "rsna_zs"], "trains nothing"),
        (["tune", "--method", "imitat", "--task", "rsna_cls"], "unknown method 'imitat'"),
        (["tune", "--method", "random", "--task", "rsna_cls", "--trials", "0"], "--trials must be >= 1"),
    ],
)
def test_bad_input(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_experiment_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [imitate]\ntasks: [rsna_cls]\nfractions: [0.1]\nseeds: [42]\n"
                   "methods_extra: 1\n")
    assert main(["grid", "--experiment", str(bad)]) == 2
    assert "unknown key(s) ['methods_extra']" in capsys.readouterr().err
    bad.write_text("methods: [{method: imitate, set: {loss: infonce}}]\ntasks: [rsna_cls]\nfractions: [0.1]\nseeds: [42]\n")
    assert main(["grid", "--experiment", str(bad)]) == 2
    assert "give it a variant name" in capsys.readouterr().err
