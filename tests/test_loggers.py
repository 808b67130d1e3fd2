"""Training curves (issue 17, item 5): every pre-training loss term and every downstream
validation score as TensorBoard scalars, read back from the event files; ``--logger none``
writes none; ``--logger wandb`` logs the same values to an offline run."""

from __future__ import annotations

import csv
import sys
import types

import pytest

import benchmark
from benchmark.cli import main
from benchmark.loggers import read_scalars
from benchmark.runner import run_trial, trial_folder


def test_pretraining_loss_terms_are_in_the_event_file():
    pre = benchmark.pretrain("imitate", profile="smoke")
    folder = pre.path.parent
    with open(folder / "losses.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    terms = [k for k in rows[0] if k not in ("step", "epoch")]
    assert pre.meta["steps"] >= 2 and {"loss", "lr", "impression_text", "findings_text"} <= set(terms)  # IMITATE's terms, each its own column
    curves = read_scalars(folder / "tb")
    assert set(curves) == {f"pretrain/{t}" for t in terms}
    for term in terms:
        steps, values = zip(*curves[f"pretrain/{term}"])
        assert list(steps) == [int(r["step"]) for r in rows] == list(range(1, pre.meta["steps"] + 1))
        assert values == pytest.approx([float(r[term]) for r in rows], rel=1e-6)  # event files hold float32


def test_validation_scores_are_in_the_trials_folder(tmp_path):
    heard = []
    out = run_trial("random", "rsna_cls", 1.0, 42, "smoke", on_epoch=lambda epoch, score: heard.append((epoch, score)))
    curves = read_scalars(trial_folder(out.trial, out.store_path) / "tb")
    assert heard and sorted(curves) == ["train/loss", "val/score"]
    assert [s for s, _ in curves["val/score"]] == [e for e, _ in heard]
    assert len(curves["train/loss"]) == len(curves["val/score"]) and all(v > 0 for _, v in curves["train/loss"])
    assert [v for _, v in curves["val/score"]] == pytest.approx([v for _, v in heard], rel=1e-6)
    assert trial_folder(out.trial, out.store_path).is_relative_to(tmp_path / "runs" / out.trial.data_source)


@pytest.mark.parametrize("task, protocol", [("rsna_cls", "finetune"), ("siim_seg", "mgca"), ("rsna_det", "mgca"),
                                            ("rsna_det", "finetune")])
def test_every_kind_and_protocol_writes_curves_and_says_why_a_validation_value_is_undefined(task, protocol, tmp_path):
    """Issue 27: detection and finetune runs wrote no curves folder and printed val_map n/a and
    val_auroc -inf. Now every epoch's training loss is a curve, and a validation metric is a number
    or NaN with its reason (smoke's 8-image validation splits have no lesion or one class)."""
    out = run_trial("random", task, 1.0, 42, "smoke", [("task.protocol", protocol), ("task.epochs", 2)])
    curves = read_scalars(trial_folder(out.trial, out.store_path) / "tb")
    assert len(curves["train/loss"]) >= 1 and all(v == v and v > 0 for _, v in curves["train/loss"])
    vals = {k: v for k, v in out.trial.metrics.items() if k.startswith("val_") and k != "val_note"}
    assert len(vals) == 1
    (name, value), = vals.items()
    if value is None or value != value:  # undefined (NaN, stored as null): said why
        assert "undefined on every validation pass" in out.trial.metrics["val_note"]
    else:
        assert abs(value) != float("inf") and "val_note" not in out.trial.metrics, vals


def test_logger_none_writes_no_curves(tmp_path, capsys):
    assert main(["pretrain", "--method", "imitate", "--profile", "smoke", "--logger", "none", "--json"]) == 0
    folder = benchmark.pretrain("imitate", profile="smoke").path.parent
    assert (folder / "losses.csv").is_file() and not (folder / "tb").exists()
    assert main(["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--logger", "none"]) == 0
    assert not (tmp_path / "runs").exists()


def test_wandb_logs_the_same_terms_offline(monkeypatch):
    """A stand-in wandb module (the real one is optional): the run is offline without an API key and
    gets every loss term per step."""
    runs = []

    class Run:
        def __init__(self, **kwargs):
            self.kwargs, self.logged, self.finished = kwargs, [], False
            runs.append(self)

        def log(self, values, step):
            self.logged.append((step, values))

        def finish(self):
            self.finished = True

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: Run(**kw)))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("BENCHMARK_LOGGER", "wandb")
    pre = benchmark.pretrain("imitate", profile="smoke")
    (run,) = runs
    assert run.kwargs["mode"] == "offline" and run.kwargs["config"]["method"] == "imitate" and run.finished
    assert [step for step, _ in run.logged] == list(range(1, pre.meta["steps"] + 1))
    assert run.logged[-1][1]["pretrain/loss"] == pytest.approx(pre.meta["final_loss"])
    assert not (pre.path.parent / "tb").exists()


def test_progress_says_it_is_alive_every_interval_in_a_log_even_inside_one_long_step(monkeypatch, capsys):
    """Issue 27: `speed` printed one line in four minutes (a line came only when a unit ended). Off a
    terminal a heartbeat writes the line every interval, also while one unit of work is still running."""
    import time

    from benchmark.progress import Progress, heartbeat

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    with Progress(total=3, desc="slow", interval=0.2, unit="step") as bar:
        time.sleep(0.75)  # one step that takes 3-4 intervals, no update meanwhile
        bar.update(1, loss=1.5)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[slow]")]
    assert len(lines) >= 2 and lines[0].startswith("[slow] 0/3 step") and all("\n" not in x for x in lines)
    said = []
    with heartbeat("grid", lambda: "1 of 4 trials reported", interval=0.1, write=said.append):
        time.sleep(0.35)
    assert len(said) >= 2 and said[0].startswith("[grid] 1 of 4 trials reported (")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    with heartbeat("quiet", lambda: "x", interval=0.05, write=said.append):
        time.sleep(0.2)
    assert not [s for s in said if s.startswith("[quiet]")]
