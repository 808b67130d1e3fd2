"""The results store under faults (issue 14): read-only commands never write, another
application's database is refused and left byte-identical, older stores are migrated
and newer ones read, a store that cannot take a result is found before training, a
failed forced re-run keeps the finished row, and a NaN test metric is a failed trial
(valid JSON, later runs work). Trials run through the real CLI with the task's
fit_evaluate replaced, so no test waits for training."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import benchmark.runner
import benchmark.store
from benchmark.cli import main
from benchmark.errors import TrainingDiverged
from benchmark.store import APPLICATION_ID, SCHEMA_VERSION, TRIALS, Store, Trial
from benchmark.tasks.classification import Classification

RUN = ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke"]
READERS = [["results"], ["results", "--format", "json"], ["table"], ["plot", "--out", "{tmp}/plots"]]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def no_nan(text: str):
    """json.loads that refuses NaN and Infinity (Python's json accepts them; JSON does not)."""
    def refuse(name: str):
        raise AssertionError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def metrics(monkeypatch):
    """Set ``metrics.value`` to what the next trial's fit_evaluate returns (an exception is raised)."""
    class Box:
        value: object = {"auroc": 0.7, "val_loss": 0.5}

    def fit_evaluate(self, fit):
        if isinstance(Box.value, Exception):
            raise Box.value
        return dict(Box.value)

    monkeypatch.setattr(Classification, "fit_evaluate", fit_evaluate)
    return Box


@pytest.fixture
def no_training(monkeypatch):
    """A trial that gets as far as its encoder fails the test: the store was checked too late."""
    def trained(*args, **kwargs):
        raise AssertionError("the trial started training before the store was checked")

    monkeypatch.setattr(benchmark.runner, "get_encoder", trained)


def foreign_db(path: Path, kind: str) -> Path:
    db = sqlite3.connect(path)
    if kind == "other tables":
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        db.execute("CREATE TABLE orders (id INTEGER, user INTEGER)")
        db.execute("INSERT INTO users VALUES (1, 'ada')")
    elif kind == "foreign trials":
        db.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY, patient TEXT, arm TEXT, outcome REAL)")
        db.execute("INSERT INTO trials VALUES (1, 'p1', 'placebo', 0.2)")
    else:  # our columns exactly, but another application's file
        db.execute(TRIALS)
        db.execute("PRAGMA application_id = 1234")
    db.commit()
    db.close()
    return path


# ---------------------------------------------------------------- another application's database

@pytest.mark.parametrize("kind, why", [("other tables", "it has tables orders, users and no trials table"),
                                       ("foreign trials", "its trials table lacks the column(s) method, method_hash"),
                                       ("application id", "another application's database (application id 0x4d2)")])
def test_a_foreign_database_is_refused_by_every_command_and_left_byte_identical(kind, why, tmp_path, capsys,
                                                                                 monkeypatch, no_training):
    path = foreign_db(tmp_path / "app.sqlite", kind)
    before, files = digest(path), beside(path)
    monkeypatch.setenv("BENCHMARK_STORE", str(path))
    argvs = [[a.replace("{tmp}", str(tmp_path)) for a in argv] for argv in READERS]
    argvs += [["results", "--store", str(path)], ["grid", "--methods", "random", "--tasks", "rsna_cls", "--dry-run"], RUN]
    for argv in argvs:
        assert main(argv) == 2, argv
        err = one_line(capsys)
        assert f"{path} is not a medvlp-bench results store ({why}" in err, (argv, err)
        assert digest(path) == before and beside(path) == files, argv  # no table, no WAL, no journal left
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_a_foreign_database_through_a_real_process(tmp_path):
    path = foreign_db(tmp_path / "app.sqlite", "other tables")
    before = digest(path)
    proc = subprocess.run([sys.executable, "-m", "benchmark", "results", "--store", str(path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "BENCHMARK_HOME": str(tmp_path / "home")})
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
    assert "is not a medvlp-bench results store" in proc.stderr and digest(path) == before


# ---------------------------------------------------------------- readers never write

def legacy_store(path: Path, missing: tuple[str, ...] = ()) -> Path:
    """A store as an older medvlp-bench left it: no version marks, rollback journal, maybe fewer columns."""
    db = sqlite3.connect(path)
    db.execute(TRIALS)
    for column in missing:
        db.execute(f"ALTER TABLE trials DROP COLUMN {column}")
    cols = ["method", "method_hash", "task", "task_hash", "protocol", "fraction", "seed", "data_source", "status",
            "metric", "value"]
    db.execute(f"INSERT INTO trials ({', '.join(cols)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               ("convirt", "old", "rsna_cls", "t", "mgca", 0.1, 42, "phantom-v1", "finished", "auroc", 0.61))
    db.commit()
    db.close()
    return path


def test_readers_leave_a_store_byte_identical(tmp_path, capsys, monkeypatch):
    path = legacy_store(tmp_path / "old.sqlite")
    before = digest(path)
    monkeypatch.setenv("BENCHMARK_STORE", str(path))
    for argv in READERS + [["table", "--protocol", "mgca"], ["grid", "--methods", "random", "--tasks", "rsna_cls",
                                                                "--profile", "smoke", "--dry-run"]]:
        argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
        assert main(argv) == 0, (argv, capsys.readouterr().err)
        assert digest(path) == before and beside(path) == ["old.sqlite"], argv
    out = capsys.readouterr().out
    assert "0.6100" in out and "3 to run, 0 already finished" in out
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0  # not migrated by a reader
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["trials"]


def test_read_commands_on_odd_files(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert main(["results", "--store", str(empty)]) == 0 and "no trials stored yet" in capsys.readouterr().out
    assert empty.stat().st_size == 0 and beside(empty) == ["empty.sqlite"]
    null = tmp_path / "null.sqlite"
    null.symlink_to(os.devnull)
    for argv in (["results", "--store", str(null)], RUN):
        monkeypatch.setenv("BENCHMARK_STORE", str(null))
        assert main(argv) == 2 and "is not a regular file" in one_line(capsys)
    monkeypatch.setenv("BENCHMARK_STORE", str(tmp_path / "no" / "such" / "store.sqlite"))
    assert main(["results"]) == 0 and "no trials stored yet in" in capsys.readouterr().out
    assert main(["grid", "--methods", "random", "--tasks", "rsna_cls", "--dry-run"]) == 0
    assert not (tmp_path / "no").exists()  # a read made no folder and no file


# ---------------------------------------------------------------- schema versions

def test_an_older_store_is_migrated_in_place_by_a_writer(tmp_path, capsys, monkeypatch, metrics):
    path = legacy_store(tmp_path / "old.sqlite", missing=("metrics", "device", "git_rev"))
    monkeypatch.setenv("BENCHMARK_STORE", str(path))
    assert main(["results"]) == 0 and "0.6100" in capsys.readouterr().out  # read as it is first
    assert main(RUN) == 0, capsys.readouterr().err
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    trials = Store(path, readonly=True).all()
    assert [(t.method, t.value) for t in trials] == [("convirt", 0.61), ("random", 0.7)]  # the old row kept
    assert trials[1].metrics == {"auroc": 0.7, "val_loss": 0.5} and trials[1].device and trials[0].metrics == {}


def newer_store(path: Path) -> Path:
    Store(path).record(Trial("imitate", "h", "rsna_cls", "t", "mgca", 0.1, 42, "phantom-v1", status="finished",
                             metric="auroc", value=0.8))
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE trials ADD COLUMN lineage TEXT NOT NULL DEFAULT 'x'")
    db.execute("ALTER TABLE trials ADD COLUMN energy_kwh REAL")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    return path


def test_a_newer_store_is_read_but_not_written(tmp_path, capsys, monkeypatch, no_training):
    path = newer_store(tmp_path / "new.sqlite")
    monkeypatch.setenv("BENCHMARK_STORE", str(path))
    assert main(["results", "--format", "json"]) == 0
    assert [r["value"] for r in no_nan(capsys.readouterr().out)] == [0.8]
    assert main(["table"]) == 0 and "80.0 n=1" in capsys.readouterr().out
    before = digest(path)
    assert main(RUN) == 2
    assert f"was written by a newer medvlp-bench (store schema {SCHEMA_VERSION + 1}" in one_line(capsys)
    assert digest(path) == before


def test_extra_columns_a_writer_cannot_fill(tmp_path, capsys, monkeypatch, no_training):
    path = tmp_path / "extra.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE trials")
    db.execute(TRIALS.replace("finished_at TEXT", "finished_at TEXT, reviewer TEXT NOT NULL"))
    db.commit()
    db.close()
    monkeypatch.setenv("BENCHMARK_STORE", str(path))
    assert main(["results"]) == 0
    assert main(RUN) == 2 and "has column(s) reviewer this medvlp-bench cannot fill" in one_line(capsys)


# ---------------------------------------------------------------- checked before training

def test_a_locked_store_is_found_before_training(tmp_path, capsys, monkeypatch, no_training):
    """Another process holds the write lock (a real process): `run` says so in one line, having trained
    nothing; readers are not blocked (WAL)."""
    path = tmp_path / "store.sqlite"
    Store(path).record(Trial("imitate", "h", "rsna_cls", "t", "mgca", 0.1, 42, "phantom-v1", status="finished",
                             metric="auroc", value=0.8))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys, time\n"
         "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
         "db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(benchmark.store, "BUSY_TIMEOUT", 0.3)
        monkeypatch.setenv("BENCHMARK_STORE", str(path))
        started = time.monotonic()
        assert main(RUN) == 2
        assert f"results store {path} is locked by another process" in one_line(capsys)
        assert main(["results"]) == 0 and "0.8000" in capsys.readouterr().out
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_store_is_found_before_training(tmp_path, capsys, monkeypatch, no_training):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    path.chmod(0o444)
    monkeypatch.setenv("BENCHMARK_STORE", str(path))
    assert main(RUN) == 2 and "readonly database" in one_line(capsys)
    assert main(["results"]) == 0  # reading it is fine


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes read-only folders")
def test_a_store_in_a_read_only_folder_is_read_not_written(tmp_path, capsys, monkeypatch, no_training):
    """A shared results folder this user may only read: WAL needs a -shm file it cannot make, so the store
    (with no -wal left) is read as immutable; a run says it cannot write there."""
    folder = tmp_path / "shared"
    folder.mkdir()
    store = Store(folder / "store.sqlite")
    store.record(Trial("imitate", "h", "rsna_cls", "t", "mgca", 0.1, 42, "phantom-v1", status="finished",
                       metric="auroc", value=0.8))
    store.close()  # the last connection: the WAL is checkpointed and its files removed
    assert sorted(p.name for p in folder.iterdir()) == ["store.sqlite"]
    folder.chmod(0o555)
    try:
        monkeypatch.setenv("BENCHMARK_STORE", str(folder / "store.sqlite"))
        assert main(["results"]) == 0 and "0.8000" in capsys.readouterr().out
        assert main(RUN) == 2 and "cannot write to the results store" in one_line(capsys)
    finally:
        folder.chmod(0o755)


def test_a_store_lost_after_the_check_still_says_the_result(tmp_path, capsys, monkeypatch, metrics):
    """The store became unwritable during training: one line that still carries the result."""
    def locked(self, trial):
        raise benchmark.store.UserError(f"results store {self.path} is locked by another process")

    monkeypatch.setattr(Store, "record", locked)
    assert main(RUN) == 2
    assert "the trial's result, not stored: rsna_cls auroc = 0.7000" in one_line(capsys)


# ---------------------------------------------------------------- forced re-runs and NaN metrics

def _stored() -> Trial:
    trials = Store(readonly=True).all()
    assert len(trials) == 1
    return trials[0]


def test_a_failed_forced_rerun_keeps_the_finished_row(capsys, metrics, caplog):
    assert main(RUN) == 0
    first = _stored()
    assert (first.status, first.value) == ("finished", 0.7)
    metrics.value = TrainingDiverged("rsna_cls head loss became nan at epoch 1")
    assert main([*RUN, "--force"]) == 1
    err = capsys.readouterr().err
    assert "loss became nan" in err and "(not recorded: the store keeps its finished result)" in err, err
    kept = _stored()
    assert (kept.status, kept.value, kept.finished_at, kept.error) == ("finished", 0.7, first.finished_at, None)
    assert "this forced re-run failed and is not recorded" in caplog.text
    assert main(RUN) == 0 and "stored result from" in capsys.readouterr().out  # still reused
    metrics.value = {"auroc": 0.9, "val_loss": 0.1}
    assert main([*RUN, "--force"]) == 0  # a forced re-run that finishes does replace it
    assert _stored().value == 0.9


def test_a_nan_test_metric_is_a_failed_trial_and_later_runs_work(capsys, metrics):
    metrics.value = {"auroc": float("nan"), "val_loss": 0.5}
    assert main([*RUN, "--json"]) == 1
    err = capsys.readouterr().err
    assert "rsna_cls: test auroc is nan (undefined" in err
    failed = _stored()
    assert failed.status == "failed" and failed.value is None and "test auroc is nan" in failed.error
    assert main(["results", "--format", "json"]) == 0
    assert no_nan(capsys.readouterr().out)[0]["error"].startswith("TrialFailed: rsna_cls: test auroc is nan")
    assert main(["results"]) == 0 and "test auroc is nan" in capsys.readouterr().out
    assert main(["table"]) == 2 and "no finished trials with a value (1 stored" in one_line(capsys)
    metrics.value = {"auroc": 0.75, "val_loss": float("nan")}  # the next run of that trial runs and finishes
    assert main([*RUN, "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = no_nan(out[-1])  # valid JSON: the NaN validation loss is null
    assert result["value"] == 0.75 and result["metrics"]["val_loss"] is None and not result["reused"]
    assert main([*RUN, "--json"]) == 0  # reused from the store, NULL metric and all
    out = (lambda c: c.err + c.out)(capsys.readouterr())
    assert "reused" in out and "val_loss n/a" in out and no_nan(out.strip().splitlines()[-1])["reused"] is True


def test_an_older_finished_row_without_a_value_runs_again(metrics):
    """A NaN stored by an older version: a finished row with a NULL value is no result; the trial runs."""
    from benchmark.factory import plan_trial

    trial, _, _ = plan_trial("random", "rsna_cls", 1.0, 42, "smoke", [])
    trial.status, trial.metric, trial.value = "finished", "auroc", float("nan")
    Store().record(trial)
    assert Store().finished(trial) is None
    assert main(RUN) == 0
    assert _stored().value == 0.7
