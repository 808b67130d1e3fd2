"""random and checkpoint: no pre-training, strict import of released encoders."""

import json

import pytest
import torch
import torchvision

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.methods.baselines import load_encoder_state, read_checkpoint
from benchmark.models.encoders import ResNetStages


def reference_encoder(seed: int = 3) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = torchvision.models.resnet50()
    with torch.no_grad():  # non-trivial BN statistics, so a mix-up would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    return net.state_dict()


def wrap(state, fmt):
    prefix = {"torchvision": "", "mgca": "img_encoder_q.model.", "gloria": "gloria.img_encoder.model.",
              "prior": "image_encoder.encoder."}[fmt]
    keys = {prefix + k: v for k, v in state.items() if not (fmt != "torchvision" and k.startswith("fc."))}
    if fmt == "mgca":  # MGCA's checkpoints also hold the text tower and heads
        keys["text_encoder_q.model.embeddings.word_embeddings.weight"] = torch.zeros(3, 2)
    if fmt in ("gloria", "prior", "mgca"):
        return {"state_dict": keys, "epoch": 3}  # Lightning wrapper
    return keys


@pytest.mark.parametrize("fmt", ["torchvision", "mgca", "gloria", "prior"])
def test_import_round_trip_every_format(fmt, tmp_path):
    state = reference_encoder()
    if fmt == "prior":  # PRIOR's stem takes one channel
        state = dict(state, **{"conv1.weight": state["conv1.weight"].sum(1, keepdim=True)})
    path = tmp_path / f"{fmt}.ckpt"
    torch.save(wrap(state, fmt), path)
    for asked in ("auto", fmt):
        backbone = ResNetStages()
        assert load_encoder_state(backbone, read_checkpoint(path), asked) == fmt
        got = backbone.state_dict()
        for key, value in got.items():
            expected = state[key]
            if key == "conv1.weight" and fmt == "prior":
                expected = expected.repeat(1, 3, 1, 1) / 3
            assert torch.equal(value, expected), key
    if fmt == "prior":  # same function of a replicated grayscale image
        gray = torch.rand(1, 1, 32, 32)
        one = torch.nn.functional.conv2d(gray, state["conv1.weight"], stride=2, padding=3)
        three = torch.nn.functional.conv2d(gray.expand(1, 3, 32, 32), backbone.conv1.weight, stride=2, padding=3)
        assert torch.allclose(one, three, atol=1e-5)


def test_ddp_prefix_is_stripped(tmp_path):
    path = tmp_path / "ddp.pth"
    torch.save({"module." + k: v for k, v in reference_encoder().items()}, path)
    assert load_encoder_state(ResNetStages(), read_checkpoint(path)) == "torchvision"


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    state = reference_encoder()
    del state["layer4.2.conv3.weight"]
    state["layer5.0.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        load_encoder_state(ResNetStages(), read_checkpoint(path), "torchvision")
    assert "1 missing ['layer4.2.conv3.weight']" in str(err.value)
    assert "1 unexpected ['layer5.0.weight']" in str(err.value)
    with pytest.raises(UserError, match="missing"):  # the right keys under the wrong format
        load_encoder_state(ResNetStages(), read_checkpoint(path), "gloria")


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b""])
def test_not_a_checkpoint(content, tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(path)


def test_wrong_kind_of_file(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(UserError, match="no state dict of tensors"):
        read_checkpoint(path)
    torch.save({"a.weight": torch.zeros(1)}, path)
    with pytest.raises(UserError, match="no ResNet-50 encoder keys"):
        load_encoder_state(ResNetStages(), read_checkpoint(path))


def test_checkpoint_method_through_the_cli(tmp_path, capsys):
    path = tmp_path / "imitate_release.pth"
    torch.save(reference_encoder(), path)
    assert main(["pretrain", "--method", "checkpoint", "--checkpoint", str(path), "--profile", "smoke", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["steps"] == 0
    encoder = torch.load(meta["encoder"])
    assert torch.equal(encoder["layer3.1.bn2.running_var"], reference_encoder()["layer3.1.bn2.running_var"])
    assert main(["run", "--method", "checkpoint", "--checkpoint", str(tmp_path / "nope.pth"), "--task", "rsna_seg",
                 "--profile", "smoke"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "--method", "imitate", "--checkpoint", str(path), "--task", "rsna_seg"]) == 2
    assert "--checkpoint is for --method checkpoint" in capsys.readouterr().err


def test_random_is_seeded_and_untrained(capsys):
    assert main(["run", "--method", "random", "--task", "rsna_seg", "--profile", "smoke", "--fraction", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["method"] == "random" and 0 <= out["value"] <= 1
    from benchmark.factory import resolve
    from benchmark.methods.baselines import RandomInit
    from benchmark.runner import get_encoder

    a = torch.load(get_encoder(resolve("random", None, "smoke"), None).path)
    b = torch.load(get_encoder(resolve("random", None, "smoke", [("seed", 1)]), None).path)
    assert not torch.equal(a["conv1.weight"], b["conv1.weight"])
    torch.manual_seed(123)  # the global RNG does not matter, the config seed does
    again = RandomInit(resolve("random", None, "smoke").method_cfg).backbone.state_dict()
    assert torch.equal(a["conv1.weight"], again["conv1.weight"])


# ---------------------------------------------------------------- released checkpoints as they are published
class Command:
    """Pickles as a call of ``func(arg)``: what a planted checkpoint would run on a plain torch.load."""

    def __init__(self, func, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


def foreign_object(tmp_path):
    """An instance of a class from a package this machine lacks (a Lightning callback, an OmegaConf node)."""
    import sys
    import types

    module = types.ModuleType("some_lab_config")
    Config = type("Config", (), {"__module__": module.__name__})
    module.Config = Config
    sys.modules[module.__name__] = module
    try:
        obj = Config()
        obj.lr, obj.data = 1e-4, tmp_path / "data"
        return obj, lambda: sys.modules.pop(module.__name__)
    except BaseException:
        sys.modules.pop(module.__name__)
        raise


def lightning_checkpoint(tmp_path, extra: dict | None = None) -> tuple:
    import argparse

    import numpy as np

    state = reference_encoder()
    hyper = {"args": argparse.Namespace(img_encoder="resnet_50", lr=2e-5, data_dir=tmp_path / "mimic"),
             "data_dir": tmp_path / "mimic", "temperature": np.float64(0.07), "max_epochs": np.int64(50),
             "crop": np.array([224, 224])}
    from omegaconf import (
        OmegaConf,  # a test dependency: GLoRIA's and MGCA's releases hold such configs
    )

    hyper["cfg"] = OmegaConf.create({"model": {"vision": {"model_name": "resnet_50"}}, "lr": 5e-5})
    ckpt = {"epoch": 14, "global_step": 9000, "pytorch-lightning_version": "1.5.9", "hyper_parameters": hyper,
            "state_dict": wrap(state, "mgca")["state_dict"], "optimizer_states": [{"state": {}, "param_groups": []}],
            **(extra or {})}
    obj, forget = foreign_object(tmp_path)
    ckpt["callbacks"] = {"ModelCheckpoint": obj}
    path = tmp_path / "mgca_resnet_50.ckpt"
    torch.save(ckpt, path)
    forget()  # the class is gone when the file is read, as on a user's machine
    return path, state


def assert_same_encoder(backbone, state):
    for key, value in backbone.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key


def test_a_lightning_checkpoint_with_hyper_parameter_objects_loads(tmp_path):
    path, state = lightning_checkpoint(tmp_path)
    with pytest.raises(Exception, match="Weights only load failed"):  # what plain torch does with it
        torch.load(path, weights_only=True)
    backbone = ResNetStages()
    assert load_encoder_state(backbone, read_checkpoint(path)) == "mgca"
    assert_same_encoder(backbone, state)


def test_legacy_format_checkpoints_load_the_same_way(tmp_path):
    import argparse

    state = reference_encoder()
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": state, "hparams": argparse.Namespace(lr=1.0)}, path, _use_new_zipfile_serialization=False)
    backbone = ResNetStages()
    assert load_encoder_state(backbone, read_checkpoint(path)) == "torchvision"
    assert_same_encoder(backbone, state)


@pytest.mark.parametrize("target", ["os.system", "builtins.exec", "builtins.eval", "subprocess.Popen"])
def test_a_malicious_checkpoint_runs_no_code(target, tmp_path):
    import builtins
    import os
    import subprocess

    marker = tmp_path / "MARKER"
    func, arg = {
        "os.system": (os.system, f"touch {marker}"),
        "builtins.exec": (builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.eval": (builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": (subprocess.Popen, ["touch", str(marker)]),
    }[target]
    path, state = lightning_checkpoint(tmp_path, {"hyper_parameters": Command(func, arg), "loops": [Command(func, arg)]})
    backbone = ResNetStages()
    assert load_encoder_state(backbone, read_checkpoint(path)) == "mgca"  # the weights are read
    assert_same_encoder(backbone, state)
    # a file that is nothing but the command is refused in one line
    torch.save(Command(func, arg), tmp_path / "command.pth")
    with pytest.raises(UserError, match=r"holds no state dict of tensors \(found <not loaded: "):
        read_checkpoint(tmp_path / "command.pth")
    # so are the weights with a command in their place
    torch.save({"state_dict": {"conv1.weight": Command(func, arg)}}, tmp_path / "hidden.pth")
    with pytest.raises(UserError, match="holds no state dict of tensors"):
        read_checkpoint(tmp_path / "hidden.pth")
    assert not marker.exists()
    ran = torch.load(tmp_path / "command.pth", weights_only=False)  # the control: a plain load does run it
    getattr(ran, "wait", lambda: None)()  # (Popen runs beside us)
    assert marker.exists()


def test_a_lightning_checkpoint_through_the_cli(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    import os

    path, state = lightning_checkpoint(tmp_path, {"loops": Command(os.system, f"touch {marker}")})
    assert main(["pretrain", "--method", "checkpoint", "--checkpoint", str(path), "--profile", "smoke", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    encoder = torch.load(meta["encoder"], weights_only=True)
    assert torch.equal(encoder["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])
    assert not marker.exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_of_non_finite_weights_names_the_file(bad, tmp_path, capsys):
    state = reference_encoder()
    state = {k: torch.full_like(v, bad) if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "diverged.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        load_encoder_state(ResNetStages(), read_checkpoint(path), source=str(path))
    assert str(err.value).startswith(f"{path}: 265 of 318 encoder tensors hold NaN or infinite values")
    state = reference_encoder()
    state["layer3.1.bn2.running_var"][5] = bad  # one bad number is enough
    torch.save(state, path)
    with pytest.raises(UserError, match=r"1 of 318 encoder tensors .*'layer3.1.bn2.running_var'"):
        load_encoder_state(ResNetStages(), read_checkpoint(path), source=str(path))
