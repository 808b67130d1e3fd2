"""Encoders as safetensors (issue 17, item 4): new caches write encoder/model.safetensors,
caches from before (.pt) still load, ``export ENCODER --out DIR`` writes a Hub-style folder
that ``benchmark.load_encoder(DIR)`` and ``--method checkpoint --checkpoint DIR`` read back
to the same features, and ``--method checkpoint`` takes a .safetensors file."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

import benchmark
from benchmark.cli import main
from benchmark.errors import UserError

X = torch.Generator().manual_seed(0)
FIXED = torch.randn(2, 3, 64, 64, generator=X)  # a fixed input


def features(encoder) -> torch.Tensor:
    with torch.no_grad():
        return encoder(FIXED)


def test_export_round_trip_gives_identical_features_and_a_model_card(tmp_path, capsys):
    pre = benchmark.pretrain("imitate", profile="smoke")
    folder = pre.path.parent
    assert pre.path.name == "encoder.safetensors" and (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.pt"))  # one format in a new cache
    assert "git_rev" in pre.meta and "created" in pre.meta
    out = tmp_path / "exported" / "imitate"
    assert main(["export", folder.name, "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["format"] == "medvlp-bench-encoder" and config["backbone"] == "resnet50"
    assert config["method"] == "imitate" and config["image_size"] == pre.meta["config"]["image_size"]
    assert config["normalisation"]["downstream"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == pre.weights().keys()
    assert all(torch.equal(weights[k], v) for k, v in pre.weights().items())
    card = (out / "README.md").read_text()
    corpus = pre.meta["corpus"]
    assert "`imitate`" in card and corpus["fingerprint"] in card and f"{corpus['source']}, {corpus['pairs']} pairs" in card
    assert "Phantom weights" in card and "- phantom" in card  # phantom-trained weights say so
    assert f"| steps | {pre.meta['steps']} |" in card and pre.meta["config_hash"] in card

    named = benchmark.load_encoder("imitate", profile="smoke", device="cpu")
    back = benchmark.load_encoder(out, profile="smoke", device="cpu")
    assert torch.equal(features(back), features(named))  # bit-identical
    again = tmp_path / "empty"
    again.mkdir()  # an empty --out folder is fine
    assert main(["export", str(folder), "--out", str(again)]) == 0
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_an_exported_folder_runs_as_a_checkpoint_with_its_own_backbone(tmp_path, capsys):
    """A ResNet-18 export: --method checkpoint takes its backbone from config.json and gives the
    trial the same result as the encoder it came from; another --set backbone is refused."""
    argv = ["run", "--task", "rsna_cls", "--profile", "smoke", "--json"]
    assert main(["run", "--method", "random", "--set", "backbone=resnet18", *argv[1:]]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    cached = benchmark.pretrain("random", profile="smoke", overrides={"backbone": "resnet18"}).path.parent
    out = tmp_path / "r18"
    assert main(["export", str(cached), "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["backbone"] == "resnet18"
    assert "Not pre-trained here" in (out / "README.md").read_text()
    capsys.readouterr()
    assert main(["run", "--method", "checkpoint", "--checkpoint", str(out), *argv[1:]]) == 0
    via = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert via["value"] == first["value"] and via["metrics"] == first["metrics"]
    stored = benchmark.results(method="checkpoint")
    assert stored["method_config"][0]["backbone"] == "resnet18"
    assert benchmark.load_encoder(out, profile="smoke", device="cpu").width == 512
    with pytest.raises(UserError, match="keys do not match a ResNet-50 .* add --set backbone=resnet18"):
        benchmark.load_encoder(out, profile="smoke", device="cpu", overrides={"backbone": "resnet50"})


def test_an_old_pt_cache_still_loads(caplog):
    """A cache written before safetensors (encoder.pt, model.pt) is read as it is: no rebuild."""
    pre = benchmark.pretrain("random", profile="smoke")
    folder = pre.path.parent
    before = features(benchmark.load_encoder("random", profile="smoke", device="cpu"))
    torch.save(load_file(folder / "encoder.safetensors"), folder / "encoder.pt")
    (folder / "encoder.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, folder / "model.pt")  # an old cache held one for every method
    caplog.set_level(logging.INFO)
    again = benchmark.pretrain("random", profile="smoke")
    assert again.reused and again.path == folder / "encoder.pt"
    assert torch.equal(features(benchmark.load_encoder("random", profile="smoke", device="cpu")), before)
    assert not [r for r in caplog.records if "damaged" in r.getMessage()]
    assert sorted(p.name for p in folder.glob("*.pt")) == ["encoder.pt", "model.pt"]  # read, not rewritten
    (folder / "encoder.pt").write_bytes((folder / "encoder.pt").read_bytes()[:1000])  # a damaged old cache
    rebuilt = benchmark.pretrain("random", profile="smoke")
    assert not rebuilt.reused and rebuilt.path.name == "encoder.safetensors" and not list(folder.glob("*.pt"))
    assert any("is damaged (encoder.pt" in r.getMessage() for r in caplog.records)


def test_a_safetensors_checkpoint_through_method_checkpoint(tmp_path, capsys):
    """A released encoder as .safetensors, in MGCA's key layout: the same format detection and
    strict mapping as a .pth, the same features as the weights it holds."""
    mine = benchmark.pretrain("random", profile="smoke").weights()
    save_file({f"img_encoder_q.model.{k}": v for k, v in mine.items()}, tmp_path / "mgca.safetensors")
    loaded = benchmark.load_encoder(tmp_path / "mgca.safetensors", profile="smoke", device="cpu")
    assert torch.equal(features(loaded), features(benchmark.load_encoder("random", profile="smoke", device="cpu")))
    assert main(["pretrain", "--method", "checkpoint", "--checkpoint", str(tmp_path / "mgca.safetensors"),
                 "--profile", "smoke"]) == 0
    assert "checkpoint cached: 0 steps" in capsys.readouterr().out  # load_encoder cached it
    broken = {f"img_encoder_q.model.{k}": v for k, v in mine.items() if not k.startswith("layer4.")}
    save_file(broken, tmp_path / "short.safetensors")
    with pytest.raises(UserError, match="missing .*layer4"):
        benchmark.load_encoder(tmp_path / "short.safetensors", profile="smoke", device="cpu")


def test_one_name_per_encoder_from_pretrain_to_run_to_export(tmp_path, capsys, isolated_home):
    """Issue 27: run printed one hash and the encoder's folder and card another, export refused the
    printed name, and a run after pretrain --max-steps 5 pre-trained again. Now the name pretrain,
    run and the store say is the folder's and the card's; run --encoder and load_encoder take it."""
    import json
    from pathlib import Path

    assert main(["pretrain", "--method", "convirt", "--profile", "smoke", "--max-steps", "1", "--json"]) == 0
    pre = json.loads(capsys.readouterr().out)
    name = Path(pre["encoder"]).parent.name
    assert pre["steps"] == 1 and name == f"convirt-{pre['config_hash']}"

    argv = ["run", "--encoder", name, "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    run = json.loads(captured.out)
    assert (run["method"], f"convirt-{run['config_hash']}") == ("convirt", name)
    assert f"encoder {name} (export and run --encoder take this name)" in captured.err
    assert [p.name for p in (isolated_home / "home" / "encoders").glob("convirt-*")] == [name]  # not trained again
    assert list((isolated_home / "runs").glob(f"*/{name}")), "the trial's runs/ folder carries the same name"

    assert main(["export", name, "--out", str(tmp_path / "out")]) == 0
    assert name in (tmp_path / "out" / "README.md").read_text()
    encoder = benchmark.load_encoder(name, profile="smoke", device="cpu")
    assert encoder.width > 0
    assert main(["run", "--encoder", "convirt-000000000000", "--task", "rsna_cls", "--profile", "smoke"]) == 2
    assert "no cached encoder 'convirt-000000000000'" in capsys.readouterr().err
    assert main(["run", "--method", "convirt", "--encoder", name, "--task", "rsna_cls"]) == 2
