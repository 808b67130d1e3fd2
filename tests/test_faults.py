"""Faults (issue 8): a diverging loss or a GPU out-of-memory fails the trial with
one line and a store row saying why, a grid goes on past it, a killed
pre-training resumes to the same encoder, the store survives kills and
concurrent writers, and the same command twice gives the same metrics."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

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


@pytest.mark.parametrize("stand_in", ["", "cuda"])
def test_an_overflowing_optimiser_step_is_a_divergence_too(capsys, isolated_home, monkeypatch, stand_in):
    """At lr 1e38 plain AdamW raises a RuntimeError (float32 overflow) before any NaN: same one line, same
    row. Fused AdamW (the CUDA path, and its CPU stand-in) does not raise: the next step's loss is NaN.
    The expectation follows the device the run gets, so the test holds on a GPU machine too."""
    from benchmark.device import POLICY_ENV, pick_device, policy

    monkeypatch.setenv(POLICY_ENV, stand_in)
    if policy(pick_device()).fused_adamw:
        said, stored = "imitate pre-training loss became nan at step 2", "TrainingDiverged: imitate pre-training loss"
    else:
        said = "imitate pre-training at step 1: the optimiser step overflowed float32; lower lr"
        stored = "TrainingDiverged: imitate pre-training at step 1"
    one_line_failure(capsys, ["run", "--method", "imitate", *SMOKE, "--set", "method.lr=1e38"], said)
    status, error = failed_row(isolated_home / "store.sqlite")
    assert status == "failed" and error.startswith(stored)


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
    from benchmark.methods.imitate import Imitate
    from benchmark.tasks.classification import Classification

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
    a, b = (load_file(next((tmp_path / h).glob("encoders/*/encoder.safetensors"))) for h in ("straight", "killed"))
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


LOCK_HOLDER = """
import logging, sys, time
from pathlib import Path
from benchmark.paths import exclusive
logging.basicConfig(level=logging.INFO, format="%(message)s")
with exclusive(Path(sys.argv[1]), "doing the same work"):
    print("in", flush=True)
    time.sleep(float(sys.argv[2]))
print("out", flush=True)
"""


def _lock_holder(lock: Path, seconds: float, **streams) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(lock), str(seconds)], text=True,
                            stdout=subprocess.PIPE, **streams)


# issue 16: the encoder lock is filelock's; the same behaviour as the fcntl one, in seconds
@pytest.mark.parametrize("first", ["finishes", "is killed"])
def test_the_encoder_lock_waits_for_a_stopped_holder_and_is_freed_when_it_ends(tmp_path, first):
    lock = tmp_path / ".lock"
    one = _lock_holder(lock, 60 if first == "is killed" else 1.0)
    assert one.stdout.readline().strip() == "in"
    one.send_signal(signal.SIGSTOP)  # holds the lock without running
    log = tmp_path / "two.log"
    with log.open("w") as fh:
        two = _lock_holder(lock, 0, stderr=fh)
    deadline = time.monotonic() + 60
    try:
        while "waiting for another process doing the same work" not in log.read_text():
            assert two.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        assert two.poll() is None  # still waiting: the stopped holder keeps the lock
    finally:
        one.send_signal(signal.SIGKILL if first == "is killed" else signal.SIGCONT)
    assert two.communicate(timeout=60)[0].split() == ["in", "out"]
    assert one.wait(timeout=60) == (-signal.SIGKILL if first == "is killed" else 0)
    assert log.read_text().count("waiting for another process") == 1
    assert lock.exists()
    three = _lock_holder(lock, 0, stderr=subprocess.PIPE)  # nobody holds it: no wait, no message
    out, err = three.communicate(timeout=60)
    assert out.split() == ["in", "out"] and "waiting" not in err


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
    # pinned to the CPU: the claim is bit-identical reruns, which cuDNN's kernels do not promise on a GPU
    argv = ["run", "--method", method, "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5", "--json",
            "--device", "cpu"]
    results = []
    for home in ("first", "second"):  # separate caches: pre-training, data and head all run again
        proc = _cli(*argv, home=tmp_path / home)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["metrics"] == results[1]["metrics"]
    assert results[0]["config_hash"] == results[1]["config_hash"]


# ------------------------------------------------------------------ issue 14: checkpoints and caches
class Command:
    """Pickles as ``os.system(command)``: what a planted file would run on a plain torch.load."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def encoder_folder(method: str, sets: list | None = None) -> Path:
    from benchmark.factory import method_key, resolve
    from benchmark.pretraining import encoder_dir

    return encoder_dir(method, method_key(resolve(method, None, "smoke", sets or []), None))


def damaged_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "damaged" in r.getMessage()]


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["planted", "truncated", "another run's"])
def test_a_planted_or_damaged_resume_checkpoint_runs_no_code_and_starts_over(damage, tmp_path, caplog, capsys):
    marker = tmp_path / "MARKER"
    ckpt = encoder_folder("imitate") / "checkpoint.pt"
    if damage == "planted":  # weights next to a command, as a plain torch.load would run it
        torch.save({"model": {}, "step": 0, "history": [], "hook": Command(f"touch {marker}")}, ckpt)
    elif damage == "truncated":
        torch.save({"model": {"w": torch.zeros(1000)}, "step": 3}, ckpt)
        truncate(ckpt)
    else:  # weights-only loadable, but not this run's: a step that its history does not back
        torch.save({"model": {"w": torch.zeros(3)}, "optimizer": {}, "scheduler": {}, "method_rng": {},
                    "torch_rng": torch.get_rng_state(), "step": 5, "history": []}, ckpt)
    caplog.set_level(logging.INFO)
    assert main(["pretrain", "--method", "imitate", "--profile", "smoke", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["steps"] == 2 and not meta["reused"]  # trained from step 0 to the end
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(f"ignoring the pre-training checkpoint {ckpt} ("), warnings
    assert warnings[0].endswith("); starting from step 0") and "\n" not in warnings[0]
    assert not any("resuming" in r.getMessage() for r in caplog.records)
    assert not marker.exists()
    assert not ckpt.exists()  # replaced by the run's own and removed when it finished


def test_a_resume_checkpoint_loads_weights_only(tmp_path):
    """Every piece the loop saves (model, AdamW, scheduler, RNG states, history) loads with
    weights_only=True and passes the resume check, for every pre-trained method."""
    import io

    import benchmark.methods  # noqa: F401
    from benchmark.factory import resolve
    from benchmark.pretraining import RESUME_KEYS, make_optimizer, read_resume
    from benchmark.registry import METHODS

    for name in ("imitate", "convirt", "gloria", "prior", "asg"):
        cfg = resolve(name, None, "smoke").method_cfg
        model = METHODS.get(name)(cfg)
        params, opt = make_optimizer(model, cfg, torch.device("cpu"))
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3)
        for p in params:
            p.grad = torch.ones_like(p)
        opt.step()
        sched.step()
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "method_rng": model.rng_state(), "torch_rng": torch.get_rng_state(), "step": 1,
                 "history": [{"step": 1, "loss": 0.5}], "cuda_rng": None}
        assert RESUME_KEYS <= state.keys()
        buf = io.BytesIO()
        torch.save(state, buf)
        buf.seek(0)
        torch.load(buf, weights_only=True)
        torch.save(state, tmp_path / "checkpoint.pt")
        assert read_resume(tmp_path / "checkpoint.pt", model, opt) is not None, name
        state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(7)  # a moment of the wrong shape
        torch.save(state, tmp_path / "checkpoint.pt")
        assert read_resume(tmp_path / "checkpoint.pt", model, opt) is None, name


@pytest.mark.parametrize("kind", ["encoder.safetensors", "model.safetensors", "meta.json"])
def test_a_damaged_cached_encoder_is_rebuilt_with_one_warning(kind, caplog, capsys):
    method = "imitate" if kind == "model.safetensors" else "random"  # random stores no model file (no joint space)
    argv = ["run", "--method", method, "--task", "rsna_cls", "--profile", "smoke", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = next(Path(os.environ["BENCHMARK_HOME"]).glob(f"encoders/{method}-*"))
    if kind == "meta.json":
        (folder / kind).write_bytes(b'{"method": "random", "steps"')  # cut mid-write by a full disk
    else:
        truncate(folder / kind)
    caplog.set_level(logging.INFO)
    assert main([*argv, "--seed", "1"]) == 0  # another trial: its encoder is looked up again
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    warnings = damaged_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].startswith(f"the cached encoder in {folder} is damaged ({kind}"), warnings
    assert warnings[0].endswith("; rebuilding it") and "\n" not in warnings[0]
    load_file(folder / "encoder.safetensors")
    if method == "imitate":
        load_file(folder / "model.safetensors")
    assert json.loads((folder / "meta.json").read_text())["method"] == method
    assert again["config_hash"] == first["config_hash"] and 0 <= again["value"] <= 1
    caplog.clear()
    assert main([*argv, "--seed", "2"]) == 0 and not damaged_warnings(caplog)  # healed


def test_a_model_file_that_does_not_fit_is_rebuilt_when_loaded(caplog, capsys):
    """model.safetensors is read when a joint-space task needs the whole method: one that does not
    load (here a valid file of other keys, which the lookup's cheap check passes) is rebuilt then."""
    argv = ["run", "--method", "imitate", "--task", "rsna_zs", "--profile", "smoke", "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    folder = encoder_folder("imitate")
    save_file({"some.other.weight": torch.zeros(2)}, folder / "model.safetensors")
    caplog.set_level(logging.INFO)
    assert main([*argv, "--seed", "1", "--force"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    warnings = damaged_warnings(caplog)
    assert len(warnings) == 1 and f"{folder} is damaged (model.safetensors does not fit the method" in warnings[0], warnings
    assert any("pre-trained imitate" in r.getMessage() for r in caplog.records)  # re-pre-trained
    assert again["value"] == first["value"]  # the same encoder and heads again: zero-shot has no head to fit
    assert "some.other.weight" not in load_file(folder / "model.safetensors")


def _stop_mid_write(proc: subprocess.Popen, folder: Path, deadline: float, old: tuple[Path, ...] = ()) -> Path:
    """SIGSTOP ``proc`` while it is writing a temporary file in ``folder`` (not one of ``old``); that file."""

    def writing() -> list[Path]:
        return [p for p in folder.glob(".checkpoint.pt.*.tmp") if p not in old]

    while True:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        if writing():
            proc.send_signal(signal.SIGSTOP)
            while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
                time.sleep(0.001)  # the signal is delivered asynchronously: wait until it has stopped
            if tmps := writing():
                return tmps[0]
            proc.send_signal(signal.SIGCONT)  # it had just finished: catch the next one
        time.sleep(0.002)


def test_killed_or_terminated_pretraining_leaves_no_temporary_file(tmp_path):
    argv = ["pretrain", "--method", "imitate", "--profile", "smoke", "--set", "epochs=6", "--set", "checkpoint_every=1"]
    deadline = time.monotonic() + 300
    killed = _cli(*argv, home=tmp_path)
    while not list(tmp_path.glob("encoders/imitate-*")):
        assert killed.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    folder = next(tmp_path.glob("encoders/imitate-*"))
    left = _stop_mid_write(killed, folder, deadline)
    killed.send_signal(signal.SIGKILL)  # no cleanup runs: the half-written file stays
    killed.wait()
    assert left.exists()

    terminated = _cli(*argv, home=tmp_path)  # takes over: removes the stale file under the lock
    _stop_mid_write(terminated, folder, deadline, old=(left,))
    assert not left.exists()
    terminated.send_signal(signal.SIGTERM)
    terminated.send_signal(signal.SIGCONT)
    _, err = terminated.communicate(timeout=120)
    assert terminated.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == "terminated (SIGTERM)" and "Traceback" not in err, err[-2000:]
    assert "removed 1 temporary file(s) a killed run left in" in err
    assert not list(folder.glob(".*.tmp"))  # its own half-written file went with it

    had_checkpoint = (folder / "checkpoint.pt").exists()  # the kills may both have come during the first write
    finished = _cli(*argv, home=tmp_path)
    out, err = finished.communicate(timeout=300)
    assert finished.returncode == 0, err[-2000:]
    assert ("resuming imitate pre-training at step" in err) == had_checkpoint, err[-2000:]
    assert out.startswith("imitate pre-trained: 12 steps") and "ignoring" not in err
    assert not list(folder.glob(".*.tmp")) and not (folder / "checkpoint.pt").exists()


def test_a_pretrain_failure_does_not_claim_a_store(capsys):
    assert main(["pretrain", "--method", "imitate", "--profile", "smoke", "--set", "lr=1e30"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed: ")]
    assert err == ["failed: imitate pre-training loss became nan at step 2 (no encoder was cached)"], err


def test_non_finite_weights_after_the_last_step_are_one_line_and_never_cached(monkeypatch, capsys):
    """Issue 28: fused AdamW (the CUDA path) finishes an overflowing step without raising; the
    encoder of NaNs was cached and the next trial blamed its task. A step that leaves NaN weights
    stands in for it here."""
    import torch

    from benchmark import pretraining
    from benchmark.paths import cache_dir

    real = pretraining.train_step

    def overflowing(model, batch, opt, params, *args, **kwargs):
        terms = real(model, batch, opt, params, *args, **kwargs)
        with torch.no_grad():
            params[0].fill_(float("nan"))  # what a silent overflow leaves
        return terms

    monkeypatch.setattr(pretraining, "train_step", overflowing)
    assert main(["pretrain", "--method", "convirt", "--profile", "smoke", "--max-steps", "1"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed: ")]
    assert len(err) == 1 and "weight tensors are not finite after step" in err[0] and "nothing was cached" in err[0]
    assert not list(cache_dir("encoders").glob("convirt-*/meta.json"))  # no finished encoder
