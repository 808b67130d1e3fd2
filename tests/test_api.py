"""The Python API (issue 16): ``benchmark.run``, ``results``, ``load_encoder``, ``pretrain``, on the
smoke profile, checked against what the CLI prints and what the classification task computes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import benchmark
from benchmark.cli import main
from benchmark.errors import UserError

TRIAL = ("random", "rsna_cls", 0.5)


def _cli_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_run_returns_what_the_cli_prints_and_results_has_it(capsys, tmp_path, monkeypatch):
    result = benchmark.run(*TRIAL, seed=3, profile="smoke")
    assert isinstance(result, benchmark.RunResult) and result.reused is False
    assert result.trial.status == "finished" and result.metrics["auroc"] == result.value
    # the CLI in another store: the same trial computed again, the same record
    monkeypatch.setenv("BENCHMARK_STORE", str(tmp_path / "cli.sqlite"))
    printed = _cli_json(capsys, "run", "--method", "random", "--task", "rsna_cls", "--fraction", "0.5", "--seed", "3",
                        "--profile", "smoke", "--json")
    assert printed.pop("random") is None  # the CLI's baseline beside the run: none for random itself
    ours = result.as_dict()
    assert (printed.pop("seconds"), ours.pop("seconds")) and printed.pop("reused") is False
    ours.pop("reused")
    assert printed == json.loads(json.dumps(ours)) and printed["value"] == result.value

    monkeypatch.setenv("BENCHMARK_STORE", str(tmp_path / "store.sqlite"))  # the API's store (the default)
    again = benchmark.run(*TRIAL, seed=3, profile="smoke")
    assert again.reused is True and again.value == result.value
    frame = benchmark.results()
    assert len(frame) == 1 and frame.loc[0, "value"] == result.value
    assert (frame.loc[0, "method"], frame.loc[0, "task"], frame.loc[0, "seed"]) == ("random", "rsna_cls", 3)
    assert frame.loc[0, "method_hash"] == result.trial.method_hash and frame.loc[0, "metrics"]["auroc"] == result.value
    assert len(benchmark.results(method=["imitate", "random"], fraction=0.5)) == 1
    assert benchmark.results(method="imitate").empty and list(benchmark.results(method="imitate")) == list(frame)
    assert len(benchmark.results(store=tmp_path / "cli.sqlite", task="rsna_cls")) == 1
    with pytest.raises(UserError, match="results\\(\\) has no column 'metod'; filter on: method, "):
        benchmark.results(metod="random")
    with pytest.raises(UserError, match="results store .*nowhere.sqlite does not exist"):
        benchmark.results(store=tmp_path / "nowhere.sqlite")


def test_a_loaded_encoder_gives_the_classification_tasks_features(tmp_path):
    """The features the task cached for its test split (mgca protocol, rsna_cls's 299/224 input scale)."""
    from benchmark.data.sources import task_splits
    from benchmark.data.transforms import downstream_batch
    from benchmark.factory import resolve
    from benchmark.tasks.base import batches

    benchmark.run(*TRIAL, profile="smoke")
    cfg = resolve("random", "rsna_cls", "smoke").task_cfg
    assert cfg.upsample_ratio != 1.0
    test = task_splits(cfg, None, ("test",))[0]["test"]
    cached = [torch.load(p) for p in (tmp_path / "home" / "features").glob("*/*.pt")]
    task_features = next(c["features"] for c in cached if c["ids"] == list(test.ids))

    encoder = benchmark.load_encoder("random", profile="smoke", upsample_ratio=cfg.upsample_ratio, device="cpu")
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        ours = torch.cat([encoder(downstream_batch(test.images[idx], cfg.image_size)) for idx in batches(len(test.ids), 64)])
    assert ours.shape == task_features.shape == (len(test.ids), encoder.width)
    torch.testing.assert_close(ours, task_features, rtol=0, atol=1e-6)
    plain = benchmark.load_encoder("random", profile="smoke", device="cpu")  # no upsampling: other features
    with torch.no_grad():
        assert not torch.allclose(plain(downstream_batch(test.images[:4], cfg.image_size)), task_features[:4])


def test_pretrain_and_a_weights_file(tmp_path):
    import benchmark.pretraining  # noqa: F401  the loop's module does not shadow the API function

    assert benchmark.pretrain is benchmark.api.pretrain
    pre = benchmark.pretrain("random", profile="smoke")
    assert pre.path.is_file() and pre.meta["method"] == "random"
    torch.save(pre.weights(), tmp_path / "weights.pth")
    from_file = benchmark.load_encoder(tmp_path / "weights.pth", profile="smoke", device="cpu")
    named = benchmark.load_encoder("random", profile="smoke", device="cpu")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(from_file(x), named(x), rtol=0, atol=0)
    with pytest.raises(UserError, match="'radnom' is neither a method .* nor a weights file"):
        benchmark.load_encoder("radnom")
    with pytest.raises(UserError, match="--checkpoint is for --method checkpoint, not 'random'"):
        benchmark.pretrain("random", checkpoint=tmp_path / "weights.pth")


def test_overrides_are_one_mapping_and_a_baseline_runs_beside():
    """No override key collides with a parameter (the method's ``seed`` is not the trial's), and
    ``baseline="random"`` is the CLI's comparison, run by the API on the same subset (issue 26)."""
    r = benchmark.run("supervised", "rsna_cls", 0.5, seed=3, profile="smoke",
                      overrides={"seed": 1, "task.epochs": 1, "backbone": "resnet18"}, baseline="random")
    assert (r.trial.seed, r.trial.method_config["seed"], r.trial.task_config["epochs"]) == (3, 1, 1)
    b = r.baseline.trial
    assert (b.method, b.task_hash, b.fraction, b.seed) == ("random", r.trial.task_hash, 0.5, 3)
    assert b.method_config["backbone"] == "resnet18" and b.method_config["seed"] != 1  # encoder keys only
    assert r.as_dict()["random"]["value"] == b.value and "random" not in benchmark.run(*TRIAL, profile="smoke").as_dict()
    assert benchmark.run("random", "rsna_cls", 0.5, seed=3, profile="smoke", baseline="random").baseline is None
    with pytest.raises(UserError, match="overrides must be a mapping of config keys to values, got 'lr=1'"):
        benchmark.run(*TRIAL, profile="smoke", overrides="lr=1")
    with pytest.raises(TypeError):
        benchmark.run(*TRIAL, profile="smoke", lr=1e-4)  # no keyword overrides beside the parameters


def test_import_benchmark_stays_cheap():
    """The API loads on first use: a submodule's import pulls in neither it nor torch."""
    code = ("import sys, benchmark, benchmark.config, benchmark.cli; "
            "print('torch' in sys.modules, 'benchmark.api' in sys.modules, sorted(benchmark.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=2)
    assert out[:2] == ["False", "False"]
    assert out[2].strip() == str(["RunResult", "baselines", "load_encoder", "pretrain", "results", "run"])
    with pytest.raises(AttributeError, match="no attribute 'runn'"):
        benchmark.runn  # noqa: B018
