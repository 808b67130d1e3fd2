"""Backbones through timm (issue 17, item 1): ``build_backbone``'s contract on a torchvision
ResNet, a timm CNN and a ViT; every task kind on each through ``run --method random --set
backbone=NAME``; IMITATE pre-training on a timm CNN; one-line refusals."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.factory import resolve
from benchmark.methods.imitate import Imitate, token_counts
from benchmark.models.backbones import backbone_shape, build_backbone, pooled
from benchmark.runner import get_encoder
from benchmark.tasks.base import transferred_encoder

NAMES = ("resnet18", "resnet50", "convnext_tiny", "vit_base_patch16_224")
#: per name at 64 px: the levels' channels, strides, and the pooled width
SHAPES = {
    "resnet18": ((64, 128, 256, 512), (4, 8, 16, 32), 512),
    "resnet50": ((256, 512, 1024, 2048), (4, 8, 16, 32), 2048),
    "convnext_tiny": ((96, 192, 384, 768), (4, 8, 16, 32), 768),
    "vit_base_patch16_224": ((768,) * 4, (16,) * 4, 768),  # BenchX's blocks 4/6/8/12 at the patch stride
}


@pytest.mark.parametrize("name", NAMES)
def test_build_backbone_contract(name):
    channels, strides, width = SHAPES[name]
    torch.manual_seed(0)
    net = build_backbone(name).eval()
    assert net.arch == name and net.channels == channels and net.strides == strides and net.pooled_dim == width
    shape = backbone_shape(name)  # the config checks' cheap version agrees with the real one
    assert (shape.channels, shape.strides, shape.pooled_dim, shape.pyramid) == (channels, strides, width, name != NAMES[-1])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        levels, feature = net(x), pooled(net, x)
    assert [tuple(f.shape) for f in levels] == [(2, c, 64 // s, 64 // s) for c, s in zip(channels, strides)]
    assert feature.shape == (2, width)
    again = transferred_encoder(net.state_dict(), net.arch).eval()  # (arch, state) rebuilds it exactly
    with torch.no_grad():
        assert torch.equal(again(x)[-1], levels[-1])


def test_vit_levels_follow_benchx_and_pad_odd_sizes():
    net = build_backbone("vit_base_patch16_224").eval()
    assert net.indices == [3, 5, 7, 11] and net.final_norm  # BenchX's out_indices, final_norm=True
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        tokens = net.model.forward_features(x)  # final-normed [CLS] + 9 patches
        last = net(x)[-1]
        odd = net(torch.randn(1, 3, 42, 42))  # MGCA's upsampled probe size: padded to 48
    assert torch.allclose(last.flatten(2).transpose(1, 2), tokens[:, 1:], atol=1e-6)
    assert torch.allclose(pooled(net, x), tokens[:, 0], atol=1e-6)  # ViT-B/16's pool: the [CLS] token
    assert [tuple(f.shape[-2:]) for f in odd] == [(3, 3)] * 4


def test_a_wrong_architecture_lists_missing_and_unexpected_keys():
    state = build_backbone("resnet18").state_dict()
    with pytest.raises(RuntimeError, match=r"do not match convnext_tiny: \d+ missing \['model\.stem.* \d+ unexpected \['conv1"):
        transferred_encoder(state, "convnext_tiny")
    with pytest.raises(RuntimeError, match=r"do not match resnet50: 198 missing \[.layer1.0.conv3.weight.* 0 unexpected \[\], 23 of another shape"):
        transferred_encoder(state, "resnet50")
    assert transferred_encoder(state).arch == "resnet18"  # no arch (an old cache): read from the keys


def spy_on_necks(monkeypatch) -> list[tuple]:
    """(task, levels' channels, levels' strides, the neck's strides) of every pyramid neck a task builds."""
    import benchmark.tasks.detection
    import benchmark.tasks.segmentation

    seen = []
    for task, module in (("segmentation", benchmark.tasks.segmentation), ("detection", benchmark.tasks.detection)):
        real = module.pyramid_neck

        def spy(channels, strides, real=real, task=task):
            neck = real(channels, strides)
            seen.append((task, tuple(channels), tuple(strides), neck.strides, sum(p.numel() for p in neck.parameters())))
            return neck

        monkeypatch.setattr(module, "pyramid_neck", spy)
    return seen


@pytest.mark.parametrize("name", NAMES)
def test_every_task_kind_runs_on_the_backbone(name, capsys, monkeypatch, isolated_home):
    necks = spy_on_necks(monkeypatch)
    base = ["run", "--method", "random", "--set", f"backbone={name}", "--profile", "smoke", "--json",
            "--set", "task.epochs=1", "--set", "task.phantom_train=8"]
    for task, metric in (("rsna_cls", "auroc"), ("siim_seg", "dice"), ("rsna_det", "map")):
        assert main([*base, "--task", task]) == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["metric"] == metric and 0 <= out["value"] <= 1
    [encoder] = (isolated_home / "home" / "encoders").iterdir()  # one random encoder served all three
    assert json.loads((encoder / "meta.json").read_text())["encoder_arch"] == name
    [features] = (isolated_home / "home" / "features").iterdir()
    widths = {torch.load(f, weights_only=True)["features"].shape[1] for f in features.glob("*.pt")}
    channels, strides, width = SHAPES[name]
    assert widths == {width}
    det = ("detection", channels[-3:], strides[-3:], (8, 16, 32))
    if name.startswith("resnet"):  # smp.Unet("resnetXX") (MGCA's), no neck
        assert [n[:4] for n in necks] == [det] and necks[0][4] == 0
    elif name == "convnext_tiny":  # a pyramid already: empty necks
        assert [n[:4] for n in necks] == [("segmentation", channels, strides, (4, 8, 16, 32)), det]
        assert [n[4] for n in necks] == [0, 0]
    else:  # ViT: BenchX's Feature2Pyramid (x4, x2, x1, x0.5) is trained with the head
        assert [n[:4] for n in necks] == [("segmentation", channels, strides, (4, 8, 16, 32)), det]
        assert all(n[4] > 0 for n in necks)


def test_finetune_trains_a_vit_and_its_neck(capsys):
    argv = ["run", "--method", "random", "--set", "backbone=vit_base_patch16_224", "--profile", "smoke", "--json",
            "--task", "siim_seg", "--protocol", "finetune", "--set", "task.epochs=1", "--set", "task.phantom_train=4"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"] == "finetune" and 0 <= out["value"] <= 1


@pytest.mark.parametrize("name, counts", [("resnet18", [16, 19, 25, 51]), ("convnext_tiny", [24, 28, 38, 76])])
def test_imitate_pretrains_on_a_cnn_with_channel_tokens_from_its_levels(name, counts):
    keep = (0.25, 0.15, 0.10, 0.10)
    channels = SHAPES[name][0]
    assert token_counts(keep, channels) == counts
    model = Imitate(resolve("imitate", None, "smoke", [("backbone", name)]).method_cfg, 16)
    assert model.findings_branch.counts == counts and model.impression_head[0].in_features == channels[-1]
    draw = model.findings_branch.draw(torch.Generator().manual_seed(0))
    assert [len(d) for d in draw] == counts and all(int(d.max()) < c for d, c in zip(draw, channels))
    with torch.no_grad():  # every level's picked channels pooled to 16 x 16, zero-padded to max_tokens
        tokens = model.findings_branch.tokens(model.backbone(torch.randn(2, 3, 32, 32)), draw)
    assert tokens.shape == (2, model.cfg.max_tokens, 256) and not tokens[:, sum(counts):].any()
    pre = get_encoder(resolve("imitate", None, "smoke", [("backbone", name), ("max_steps", 2)]), None)
    assert pre.meta["steps"] == 2 and pre.arch == name and torch.isfinite(torch.tensor(pre.meta["final_loss"]))
    assert transferred_encoder(pre.weights(), pre.arch).channels == channels


def test_methods_that_need_cnn_stages_refuse_a_vit_in_one_line():
    vit = [("backbone", "vit_base_patch16_224")]
    for method in ("imitate", "gloria", "prior", "asg"):
        with pytest.raises(UserError, match=f"method '{method}' needs a backbone with four CNN stages") as err:
            resolve(method, None, "smoke", vit)
        assert "\n" not in str(err.value)
    assert resolve("imitate", None, "smoke", [*vit, ("hierarchical", False)]).method_cfg.backbone == vit[0][1]
    assert resolve("convirt", None, "smoke", vit).method_cfg.backbone == vit[0][1]  # global only: any backbone


def test_a_misspelt_backbone_names_the_close_ones():
    with pytest.raises(UserError, match="unknown backbone 'convnext_tiyn'; valid: convnext_tiny"):
        resolve("random", None, "smoke", [("backbone", "convnext_tiyn")])
