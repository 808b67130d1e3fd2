"""Faults (issue 8): a diverging loss or a GPU out-of-memory fails the trial with
one line and a store row saying why, a grid goes on past it, a killed
pre-training resumes to the same encoder, the store survives kills and
concurrent writers, and the same command twice gives the same metrics."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.store import Store

SMOKE = ["--task", "rsna_cls", "--profile", "smoke"]


def failed_row(store_path: Path) -> tuple[str, str]:
    rows = sqlite3.connect(store_path).execute("SELECT status, error FROM trials").fetchall()
    assert len(rows) == 1
    return rows[0]


def one_line_failure(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 1
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("failed: ")]
    assert len(err) == 1, err
    for f in fragments:
        assert f in err[0], err[0]
    return err[0]


def test_nan_in_pretraining_fails_the_trial_at_its_step(capsys, isolated_home):
    one_line_failure(capsys, ["run", "--method", "imitate", *SMOKE, "--set", "method.lr=1e30"],
                     "imitate pre-training loss became nan at step 2", "recorded in the store as failed")
    status, error = failed_row(isolated_home / "store.sqlite")
    assert status == "failed" and error == "TrainingDiverged: imitate pre-training loss became nan at step 2"


def test_an_overflowing_optimiser_step_is_a_divergence_too(capsys, isolated_home):
    """At lr 1e38 Adam raises a RuntimeError (float32 overflow) before any NaN: same one line, same row."""
    one_line_failure(capsys, ["run", "--method", "imitate", *SMOKE, "--set", "method.lr=1e38"],
                     "imitate pre-training at step 1: the optimiser step overflowed float32; lower lr")
    status, error = failed_row(isolated_home / "store.sqlite")
    assert status == "failed" and error.startswith("TrainingDiverged: imitate pre-training at step 1")


def test_nan_in_a_task_head_fails_the_trial_at_its_step(capsys, isolated_home):
    one_line_failure(capsys, ["run", "--method", "random", *SMOKE, "--set", "task.lr=1e30"],
                     "rsna_cls training loss became nan at epoch 1, step 3")
    assert failed_row(isolated_home / "store.sqlite")[0] == "failed"


def test_nan_in_ddp_pretraining_is_one_line_too(capsys, isolated_home):
    """The worker's exception comes back through Ray Train as the same one line, no traceback."""
    assert main(["run", "--method", "imitate", *SMOKE, "--set", "method.lr=1e30", "--set", "ddp_workers=2",
                 "--set", "corpus_size=16"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == ("failed: imitate pre-training loss became nan at step 2 "
                                            "(recorded in the store as failed)")
    assert failed_row(isolated_home / "store.sqlite")[0] == "failed"


def test_gpu_out_of_memory_names_the_sizes(capsys, monkeypatch, isolated_home):
    from methods.imitate import Imitate
    from tasks.classification import Classification

    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Imitate, "training_step", oom)
    one_line_failure(capsys, ["run", "--method", "imitate", *SMOKE],
                     "GPU out of memory in imitate pre-training at batch_size 4, image_size 32",
                     "--set method.batch_size")
    monkeypatch.setattr(Classification, "fit_evaluate", oom)
    one_line_failure(capsys, ["run", "--method", "random", *SMOKE],
                     "GPU out of memory in rsna_cls at batch_size 4, image_size 32", "--set task.batch_size")


def test_a_grid_goes_on_past_a_diverging_method(capsys, isolated_home):
    rc = main(["grid", "--methods", "imitate,random", "--tasks", "rsna_cls", "--fractions", "1", "--seeds", "42",
               "--profile", "smoke", "--set", "method.lr=1e30"])  # random trains nothing: only imitate diverges
    out = capsys.readouterr().out
    assert rc == 1 and "1 done" in out and "1 failed" in out, out
    rows = dict(sqlite3.connect(isolated_home / "store.sqlite").execute("SELECT method, status || ' ' || ifnull(error, '') FROM trials"))
    assert rows["random"].startswith("finished")
    assert rows["imitate"].startswith("failed pre-training failed: TrainingDiverged") and "at step 2" in rows["imitate"]


def _cli(*args: str, home: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "BENCHMARK_HOME": str(home), "BENCHMARK_STORE": str(home / "store.sqlite"), "OMP_NUM_THREADS": "1"}
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.Popen([sys.executable, "-m", "benchmark", *args], env=env, text=True, **streams)


def test_a_killed_pretraining_resumes_to_the_same_encoder(tmp_path):
    argv = ["pretrain", "--method", "imitate", "--profile", "smoke", "--set", "epochs=6", "--set", "checkpoint_every=1"]
    straight = _cli(*argv, home=tmp_path / "straight")
    killed = _cli(*argv, home=tmp_path / "killed")
    deadline = time.monotonic() + 240
    while not list((tmp_path / "killed").glob("encoders/*/checkpoint.pt")):
        assert killed.poll() is None, killed.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)  # mid-run, with no chance to clean up
    killed.wait()
    assert not list((tmp_path / "killed").glob("encoders/*/meta.json"))
    resumed = _cli(*argv, home=tmp_path / "killed")
    for proc in (straight, resumed):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    assert "resuming imitate pre-training at step" in err
    a, b = (torch.load(next((tmp_path / h).glob("encoders/*/encoder.pt"))) for h in ("straight", "killed"))
    metas = [json.loads(next((tmp_path / h).glob("encoders/*/meta.json")).read_text()) for h in ("straight", "killed")]
    assert metas[0]["steps"] == metas[1]["steps"] == 12
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), atol=1e-5), key


@pytest.mark.parametrize("first", ["finishes", "is killed"])
def test_a_second_pretraining_of_the_same_encoder_waits_for_the_first(tmp_path, first):
    """The second process waits on the encoder's lock, then reuses the first one's encoder, or, if the
    first was killed, takes over from its checkpoint; it never trains beside it."""
    argv = ["pretrain", "--method", "imitate", "--profile", "smoke", "--set", "epochs=6", "--set", "checkpoint_every=1"]
    one = _cli(*argv, home=tmp_path)
    deadline = time.monotonic() + 240
    while not list(tmp_path.glob("encoders/*/checkpoint.pt")):
        assert one.poll() is None, one.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    one.send_signal(signal.SIGSTOP)  # holds the lock, mid-run
    log = tmp_path / "two.log"
    with log.open("w") as fh:
        two = _cli(*argv, home=tmp_path, stderr=fh)
    try:
        while "waiting for another process pre-training the same imitate encoder" not in log.read_text():
            assert two.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        one.send_signal(signal.SIGKILL if first == "is killed" else signal.SIGCONT)
    out, _ = two.communicate(timeout=300)
    assert two.returncode == 0, log.read_text()[-2000:]
    if first == "finishes":
        assert one.wait(timeout=300) == 0
        assert out.startswith("imitate cached: 12 steps"), out
    else:
        one.wait()
        assert "resuming imitate pre-training at step" in log.read_text()
        assert out.startswith("imitate pre-trained: 12 steps"), out


WRITER = """
import sys
from benchmark.store import Store, Trial
store = Store(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.record(Trial(method=sys.argv[2], method_hash="h", task="rsna_cls", task_hash="t", protocol="mgca",
                       fraction=1.0, seed=i, data_source="phantom-v1", status="finished", metric="auroc",
                       value=i / 1000, metrics={"auroc": i / 1000, "pad": "x" * 2000}))
"""


def _writer(path: Path, name: str, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(n)], stderr=subprocess.PIPE, text=True)


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    writers = [_writer(path, name, 150) for name in ("a", "b")]
    for w in writers:
        assert w.wait(timeout=120) == 0, w.stderr.read()
    counts = dict(sqlite3.connect(path).execute("SELECT method, count(*) FROM trials GROUP BY method"))
    assert counts == {"a": 150, "b": 150}


def test_the_store_survives_a_kill_during_writes(tmp_path):
    path = tmp_path / "store.sqlite"
    Store(path).close()
    writer = _writer(path, "a", 100000)
    db = sqlite3.connect(path, timeout=30)
    deadline = time.monotonic() + 120
    while db.execute("SELECT count(*) FROM trials").fetchone()[0] < 50:
        assert writer.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    db.close()
    store = Store(path)  # opens (and recovers the WAL) without complaint
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    trials = store.all()
    assert len(trials) >= 50
    assert all(t.status == "finished" and t.metrics["pad"] == "x" * 2000 for t in trials)  # whole rows only
    assert sorted(t.seed for t in trials) == list(range(len(trials)))  # no gap: one transaction per result


@pytest.mark.parametrize("method", ["imitate"])
def test_the_same_command_twice_gives_identical_metrics(tmp_path, method):
    argv = ["run", "--method", method, "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5", "--json"]
    results = []
    for home in ("first", "second"):  # separate caches: pre-training, data and head all run again
        proc = _cli(*argv, home=tmp_path / home)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["config_hash"] == results[1]["config_hash"]
