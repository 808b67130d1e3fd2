"""The CUDA path on the CPU (issue 28): ``BENCHMARK_DEVICE_POLICY=cuda`` turns on what a GPU run
uses (bf16 autocast, fused AdamW, channels_last), ``cuda-fp16`` what a GPU without bf16 uses
(fp16 autocast and a GradScaler). CI has no GPU: these tests are how the GPU path runs at all.
Every method pre-trains two steps under it with its loss in float32 (the loss core runs outside
autocast), every task kind runs a trial, fp16 scales and resumes, and an overflow under fused
AdamW is one line with nothing cached."""

from __future__ import annotations

import pytest
import torch

import benchmark
from benchmark.cli import main
from benchmark.device import POLICY_ENV, policy
from benchmark.errors import UserError
from benchmark.factory import method_class, method_names, resolve
from benchmark.runner import get_encoder

#: what tests/test_every_method.py cannot build offline either
ELSEWHERE = {"checkpoint", "open_clip"}


@pytest.fixture
def stand_in(monkeypatch):
    def use(which: str) -> None:
        monkeypatch.setenv(POLICY_ENV, which)
    return use


def test_the_policy_of_each_device_and_stand_in(monkeypatch, stand_in):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    plain = policy(cpu)
    assert (plain.dtype, plain.fused_adamw, plain.grad_scaler, plain.tag) == (None, False, False, "")
    assert plain.describe() == "float32, channels_last (CPU)"
    stand_in("cuda")
    bf16 = policy(cpu)
    assert (bf16.dtype, bf16.fused_adamw, bf16.grad_scaler, bf16.tag) == (torch.bfloat16, True, False, "bf16")
    assert bf16.describe() == f"bf16 autocast, fused AdamW, channels_last (stand-in {POLICY_ENV}=cuda)"
    stand_in("cuda-fp16")
    assert policy(cpu).describe() == f"fp16 autocast, GradScaler, fused AdamW, channels_last (stand-in {POLICY_ENV}=cuda-fp16)"
    assert isinstance(policy(cpu).scaler(), torch.amp.GradScaler)
    stand_in("tpu")
    with pytest.raises(UserError, match=f"{POLICY_ENV}='tpu' is not a policy; use auto, cuda or cuda-fp16"):
        policy(cpu)
    # a GPU is chosen by its capability, whatever the stand-in says
    stand_in("")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    old = policy(gpu)
    assert (old.dtype, old.grad_scaler, old.fused_adamw) == (torch.float16, True, True)
    assert old.describe().endswith("(CUDA without bf16: Tesla V100)")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert policy(gpu).dtype == torch.bfloat16 and not policy(gpu).grad_scaler


def test_a_bad_policy_value_is_one_line_before_any_work(stand_in, capsys, isolated_home):
    stand_in("tpu")
    assert main(["pretrain", "--method", "imitate", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {POLICY_ENV}='tpu' is not a policy; use auto, cuda or cuda-fp16"
    assert not list((isolated_home / "home").glob("encoders/*/meta.json"))  # nothing was trained


@pytest.mark.parametrize("name", [n for n in method_names() if n not in ELSEWHERE and method_class(n).pretrains])
def test_every_method_pretrains_under_the_cuda_stand_in(name, monkeypatch, stand_in, isolated_home):
    stand_in("cuda")
    cls = method_class(name)
    real_step, seen = cls.training_step, []

    def watched(self, *a, **k):
        terms = real_step(self, *a, **k)
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), terms["loss"].dtype,
                     {k: v.dtype for k, v in terms.items()}))
        return terms

    monkeypatch.setattr(cls, "training_step", watched)
    pre = benchmark.pretrain(name, profile="smoke")
    assert pre.meta["precision"].startswith("bf16 autocast, fused AdamW, channels_last (stand-in")
    assert len(seen) == pre.meta["steps"] == 2
    for on, dtype, loss_dtype, terms in seen:
        assert on and dtype == torch.bfloat16  # the step really ran under autocast
        assert loss_dtype == torch.float32, terms  # the loss core is float32 whatever autocast does
    assert torch.isfinite(torch.tensor(pre.meta["final_loss"]))
    assert all(torch.isfinite(v).all() for v in pre.weights().values() if torch.is_floating_point(v))


def test_fp16_with_a_grad_scaler_resumes_to_the_same_encoder(monkeypatch, stand_in, isolated_home):
    from benchmark.methods.imitate import Imitate

    stand_in("cuda-fp16")
    sets = [("epochs", 2), ("checkpoint_every", 1)]  # 4 steps, a checkpoint each
    monkeypatch.setenv("BENCHMARK_HOME", str(isolated_home / "straight"))
    straight = get_encoder(resolve("imitate", None, "smoke", sets), None)
    assert straight.meta["precision"].startswith("fp16 autocast, GradScaler, fused AdamW")

    monkeypatch.setenv("BENCHMARK_HOME", str(isolated_home / "killed"))
    real_step, calls, saved = Imitate.training_step, [], []

    def dies_at_step_3(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            folder = next((isolated_home / "killed").glob("encoders/imitate-*"))
            saved.append(torch.load(folder / "checkpoint.pt", weights_only=True))
            raise KeyboardInterrupt
        return real_step(self, *a, **k)

    monkeypatch.setattr(Imitate, "training_step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        get_encoder(resolve("imitate", None, "smoke", sets), None)
    assert saved and saved[0]["scaler"]["scale"] > 0  # the scaler's state travels with the checkpoint
    monkeypatch.setattr(Imitate, "training_step", real_step)
    resumed = get_encoder(resolve("imitate", None, "smoke", sets), None)
    assert resumed.meta["steps"] == 4
    a, b = straight.weights(), resumed.weights()
    for key, value in a.items():
        assert torch.allclose(value.float(), b[key].float(), atol=1e-5), key


@pytest.mark.parametrize("method, task", [("random", "rsna_cls"), ("random", "siim_seg"), ("random", "rsna_det"),
                                          ("imitate", "rsna_zs"), ("imitate", "chexpert5x200_ret")])
def test_every_task_kind_runs_under_the_cuda_stand_in(method, task, stand_in, isolated_home):
    stand_in("cuda")
    r = benchmark.run(method, task, 1.0, profile="smoke", overrides={"task.epochs": 1})
    assert r.trial.status == "finished" and 0 <= r.value <= 1
    # test metrics are numbers, not NaN (a detection run's val_map can be undefined on either path: issue 27)
    assert all(v is not None and v == v for k, v in r.metrics.items() if not k.startswith("val_"))
    if task == "rsna_cls":  # features made under autocast are cached apart from the float32 ones
        assert list((isolated_home / "home" / "features").glob("*/*-bf16.pt"))


def test_an_overflow_under_fused_adamw_is_one_line_and_nothing_is_cached(capsys, stand_in, isolated_home):
    """Fused AdamW finishes an overflowing step without raising (the CUDA path): the weights are
    checked after the last step, and the run is one line naming it; no encoder is cached."""
    from benchmark.paths import cache_dir

    stand_in("cuda")
    assert main(["pretrain", "--method", "convirt", "--profile", "smoke", "--max-steps", "1", "--set", "lr=1e38"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("failed: ")]
    assert len(err) == 1 and "weight tensors are not finite after step 1" in err[0] and "nothing was cached" in err[0]
    assert not list(cache_dir("encoders").glob("convirt-*/meta.json"))


def test_speed_times_the_gpu_it_was_given(monkeypatch):
    """``speed --device cuda:1`` recorded its events on the current device (cuda:0) and waited for
    that one: the timer enters the given device for its events and synchronises that device."""
    from benchmark.speed import Timer

    seen = []

    class Device:
        def __init__(self, device):
            self.index = torch.device(device).index

        def __enter__(self):
            seen.append(("enter", self.index))

        def __exit__(self, *exc):
            seen.append(("exit", self.index))

    class Event:
        def __init__(self, enable_timing=False):
            self.at = None

        def record(self):
            self.at = len(seen)
            seen.append(("record", seen[-1][1] if seen else None))

        def elapsed_time(self, other):
            return 1500.0

    monkeypatch.setattr(torch.cuda, "device", Device)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: seen.append(("sync", torch.device(device).index)))
    assert Timer(torch.device("cuda:1"))(lambda: seen.append(("work", 1))) == 1.5
    assert seen == [("enter", 1), ("record", 1), ("work", 1), ("record", 1), ("sync", 1), ("exit", 1)]


def test_doctor_rehearses_the_gpu_check_on_the_cpu(capsys, isolated_home, tmp_path):
    """``benchmark doctor`` (what a GPU user runs first) on the CPU stand-in: every method's step,
    a trial per task kind with its trivial reference, resume equality, the overflow check; one
    report, as markdown and as one JSON document; nothing of the user's home is touched."""
    import json

    out = tmp_path / "report.md"
    argv = ["doctor", "--stand-in", "--profile", "smoke", "--steps", "1", "--warmup", "0"]
    assert main([*argv, "--json", "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["machine"]["precision"].startswith("bf16 autocast, fused AdamW")
    assert {r["method"] for r in report["steps"]} == {"asg", "convirt", "gloria", "imitate", "prior", "supervised"}
    assert all(r["step_pairs_per_s"] > 0 and r["ceiling_pairs_per_s"] > 0 for r in report["steps"])
    assert [r["task"] for r in report["trials"]] == ["rsna_cls", "siim_seg", "rsna_det", "rsna_zs", "chexpert5x200_ret"]
    assert all(r["trivial"] is not None for r in report["trials"])
    assert report["resume"]["equal"] and report["resume"]["steps"] == 4
    assert report["overflow"] == {"caught": True, "nothing_cached": True, "line": report["overflow"]["line"]}
    assert "not finite after step 1" in report["overflow"]["line"]
    text = out.read_text()
    assert "| rsna_cls | random | auroc |" in text and "**all checks passed**" in text
    assert not (isolated_home / "home").exists() and not (isolated_home / "store.sqlite").exists()


def test_doctor_without_a_gpu_or_the_stand_in_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: doctor runs for real")
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: doctor checks the CUDA path and this run's device is cpu") and "\n" not in err
