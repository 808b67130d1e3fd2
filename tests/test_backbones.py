"""The ``backbone`` field (issue 15): every method pre-trains on ResNet-18/34/50/101,
the transferred weights say their architecture (``backbone_of``) and every task
rebuilds it; ``random`` and ``checkpoint`` honour it; caches never mix depths."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from benchmark.cli import main
from benchmark.config import build, config_hash
from benchmark.errors import UserError
from benchmark.factory import plan_trial, resolve
from benchmark.methods.baselines import load_encoder_state, read_checkpoint
from benchmark.methods.imitate import Imitate, ImitateConfig, token_counts
from benchmark.models.encoders import BACKBONES, ResNetStages, backbone_of
from benchmark.runner import get_encoder

SMALL = {"resnet18": (64, 128, 256, 512), "resnet34": (64, 128, 256, 512)}
LARGE = {"resnet50": (256, 512, 1024, 2048), "resnet101": (256, 512, 1024, 2048)}


def meta_state(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's state dict of ``arch`` without allocating its weights."""
    with torch.device("meta"):
        return getattr(torchvision.models, arch)().state_dict()


@pytest.mark.parametrize("arch", BACKBONES)
def test_backbone_of_reads_each_architecture(arch):
    assert backbone_of(meta_state(arch)) == arch  # torchvision's own, fc included
    net = ResNetStages("none", arch)
    assert backbone_of(net.state_dict()) == arch
    assert net.channels == {**SMALL, **LARGE}[arch]
    maps = net(torch.randn(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == list(net.channels)
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]  # strides 4, 8, 16, 32


def test_backbone_of_refuses_what_it_does_not_build():
    with pytest.raises(ValueError, match=r"bottleneck blocks \[3, 8, 36, 3\]"):
        backbone_of(meta_state("resnet152"))
    with pytest.raises(ValueError, match="no layer1..layer4"):
        backbone_of({"conv1.weight": torch.zeros(1)})


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(UserError, match="unknown backbone 'resnet152'"):
        ResNetStages("none", "resnet152")
    with pytest.raises(UserError, match="'resnet18' | 'resnet34' | 'resnet50' | 'resnet101'"):
        resolve("imitate", None, "smoke", [("backbone", "resnet152")])


def test_resnet50_stays_the_default_and_the_hash_names_the_backbone():
    for method in ("imitate", "convirt", "gloria", "prior", "asg", "random"):
        assert resolve(method, None, "cpu").method_cfg.backbone == "resnet50"
    default = resolve("random", None, "smoke").method_cfg
    small = resolve("random", None, "smoke", [("backbone", "resnet18")]).method_cfg
    assert config_hash(default) != config_hash(small)
    trial, _, _ = plan_trial("random", "rsna_cls", 1.0, 42, "smoke", [("backbone", "resnet18")])
    assert trial.method_config["backbone"] == "resnet18"  # stored with every result


def test_imitate_channel_tokens_follow_the_backbone():
    assert token_counts((0.25, 0.15, 0.10, 0.10), SMALL["resnet18"]) == [16, 19, 25, 51]
    cfg = build(ImitateConfig, {"backbone": "resnet18", "backbone_weights": "none", "image_size": 32}, "test")
    model = Imitate(cfg, 16)
    assert model.findings_branch.counts == [16, 19, 25, 51]
    assert model.impression_head[0].in_features == 512
    draw = model.findings_branch.draw(torch.Generator().manual_seed(0))
    assert [int(d.max()) < c for d, c in zip(draw, SMALL["resnet18"])] == [True] * 4
    # a keep that fits ResNet-18's 111 tokens but not ResNet-50's 446 tokens
    sets = {"backbone_weights": "none", "channel_keep": [0.25, 0.15, 0.10, 0.10], "max_tokens": 200}
    build(ImitateConfig, {**sets, "backbone": "resnet18"}, "test")
    with pytest.raises(UserError, match="446 tokens"):
        build(ImitateConfig, sets, "test")


@pytest.mark.parametrize("method", ["imitate", "convirt", "gloria", "prior", "asg"])
def test_each_method_pretrains_a_resnet18(method):
    pre = get_encoder(resolve(method, None, "smoke", [("backbone", "resnet18"), ("max_steps", 1)]), None)
    state = pre.weights()
    assert backbone_of(state) == "resnet18"
    assert state["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert pre.meta["steps"] == 1 and pre.meta["config"]["backbone"] == "resnet18"
    assert torch.isfinite(torch.tensor(pre.meta["final_loss"]))


def test_random_honours_the_backbone():
    pre = get_encoder(resolve("random", None, "smoke", [("backbone", "resnet34")]), None)
    assert backbone_of(pre.weights()) == "resnet34"


def test_checkpoint_loads_its_depth_and_names_the_one_it_fits(tmp_path):
    path = tmp_path / "r18.pth"
    torch.manual_seed(0)
    torch.save({f"img_encoder_q.model.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}, path)
    state = read_checkpoint(path)
    small = ResNetStages("none", "resnet18")
    assert load_encoder_state(small, state) == "mgca"  # format detected against the chosen ResNet-18
    assert torch.equal(small.layer4[1].conv2.weight, state["img_encoder_q.model.layer4.1.conv2.weight"])
    for arch in ("resnet50", "resnet34"):
        with pytest.raises(UserError, match="they fit a ResNet-18; add --set backbone=resnet18$"):
            load_encoder_state(ResNetStages("none", arch), state)
    deep = {k: torch.zeros(1) for k in meta_state("resnet101")}
    with pytest.raises(UserError, match="do not match a ResNet-50 .* fit a ResNet-101; add --set backbone=resnet101"):
        load_encoder_state(ResNetStages(), deep, "torchvision")
    other = {k: torch.zeros(1) for k in meta_state("resnet152")}
    with pytest.raises(UserError, match=r"it holds a ResNet with bottleneck blocks \[3, 8, 36, 3\]"):
        load_encoder_state(ResNetStages(), other, "torchvision")
    pre = get_encoder(resolve("checkpoint", None, "smoke", [("backbone", "resnet18"), ("checkpoint_path", str(path))]),
                      None)
    assert torch.equal(pre.weights()["conv1.weight"], state["img_encoder_q.model.conv1.weight"])


def spy_on_built_encoders(monkeypatch) -> list[str]:
    """The architectures of every encoder built from here on (ResNetStages and smp's U-Net)."""
    import segmentation_models_pytorch as smp

    built: list[str] = []
    real, unet = ResNetStages.__init__, smp.Unet

    def stages(self, weights="none", arch="resnet50"):
        built.append(arch)
        real(self, weights, arch)

    monkeypatch.setattr(ResNetStages, "__init__", stages)
    monkeypatch.setattr(smp, "Unet", lambda name, **kw: built.append(name) or unet(name, **kw))
    return built


def run_json(argv: list[str], capsys) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("task, metric", [("siim_seg", "dice"), ("rsna_det", "map")])
def test_segmentation_and_detection_run_on_a_resnet18_encoder(task, metric, capsys, monkeypatch):
    built = spy_on_built_encoders(monkeypatch)
    argv = ["run", "--method", "random", "--task", task, "--profile", "smoke", "--set", "backbone=resnet18", "--json"]
    out = run_json(argv, capsys)
    assert out["metric"] == metric and 0 <= out["value"] <= 1
    assert built == ["resnet18", "resnet18"]  # the random encoder, then the task's from its weights


def test_linear_probe_on_resnet18_and_feature_caches_differ_between_backbones(capsys, monkeypatch, isolated_home):
    base = ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--json"]
    run_json(base, capsys)
    built = spy_on_built_encoders(monkeypatch)
    out = run_json([*base, "--set", "backbone=resnet18"], capsys)
    assert out["metric"] == "auroc" and 0 <= out["value"] <= 1
    assert built == ["resnet18", "resnet18"]
    folders = sorted((isolated_home / "home" / "features").iterdir())
    assert len(folders) == 2  # keyed by the encoder: one per backbone
    widths = {torch.load(f, weights_only=True)["features"].shape[1] for d in folders for f in d.glob("*.pt")}
    assert widths == {512, 2048}


def test_backbone_lr_puts_the_image_encoder_in_its_own_group():
    """backbone_lr: the ResNet at its rate, the text tower and heads at the method's lr; 0: one group."""
    from benchmark.factory import resolve
    from benchmark.pretraining import make_optimizer

    r = resolve("convirt", None, "smoke", [("backbone", "resnet18"), ("backbone_lr", 1e-3)])
    model = r.method_cls(r.method_cfg)
    params, opt = make_optimizer(model, r.method_cfg, torch.device("cpu"))
    encoder = {id(p) for p in model.image_encoder().parameters()}
    fast, rest = opt.param_groups
    assert fast["lr"] == 1e-3 and rest["lr"] == r.method_cfg.lr != 1e-3
    assert {id(p) for p in fast["params"]} == encoder and not encoder & {id(p) for p in rest["params"]}
    assert len(fast["params"]) + len(rest["params"]) == len(params) and rest["params"]
    r = resolve("convirt", None, "smoke", [("backbone", "resnet18")])
    _, opt = make_optimizer(r.method_cls(r.method_cfg), r.method_cfg, torch.device("cpu"))
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == r.method_cfg.lr
    assert resolve("prior", None, "phantom").method_cfg.backbone_lr == 1e-3  # every method's ResNet alike
    assert resolve("prior", None, "phantom").method_cfg.lr == resolve("prior", None, "cpu").method_cfg.lr
