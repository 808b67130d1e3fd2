"""The ``open_clip`` method (issue 17): any open_clip model on every task kind, offline.

Budget: the three Done-when runs share one ViT-B/16 (random, 32 px); the rest builds
small towers or a tiny model from a local folder.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.cli import main
from benchmark.store import Store

OFFLINE_VIT = ["--method", "open_clip", "--set", "model=ViT-B-16", "--set", "weights=none", "--profile", "smoke", "--json"]

#: a tiny CLIP for a local model folder (open_clip's config layout: model_cfg + preprocess_cfg)
TINY = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    },
    "preprocess_cfg": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
}


@pytest.fixture
def tiny_folder(tmp_path):
    """A local open_clip model folder: config + random weights (returned as the source model)."""
    import open_clip

    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(TINY))
    source = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    torch.save(source.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder, source


def test_vit_b16_runs_offline_on_zero_shot_probe_and_segmentation(capsys):
    """Issue 17's Done-when: ViT-B-16, weights=none, on chexpert5x200_zs, rsna_cls and siim_seg
    (two prompts a class: the text tower embeds 77 tokens a prompt, 250 prompts take 30 s on a core;
    the probe and the U-Net through the API that ``run`` calls, without its random baseline beside)."""
    from benchmark import api

    assert main(["run", "--task", "chexpert5x200_zs", *OFFLINE_VIT, "--set", "max_prompts=2"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["method"] == "open_clip" and out["metrics"]["prompts"] == 10 and 0.0 <= out["value"] <= 1.0, out
    for task in ("rsna_cls", "siim_seg"):
        trial = api.run("open_clip", task, 1.0, profile="smoke", overrides=[("model", "ViT-B-16"), ("weights", "none")]).trial
        assert trial.status == "finished" and 0.0 <= trial.value <= 1.0 and trial.metrics["train_images"] == 20
    trials = {t.task: t for t in Store().all()}
    assert set(trials) == {"chexpert5x200_zs", "rsna_cls", "siim_seg"}
    assert len({t.method_hash for t in trials.values()}) == 1  # one encoder, exported once
    assert trials["siim_seg"].method_config["model"] == "ViT-B-16"


def test_the_family_follows_benchx_levels_and_round_trips():
    from benchmark.errors import UserError
    from benchmark.models.backbones import (
        backbone_shape,
        build_backbone,
        check_backbone_name,
        family_of,
        pooled,
        pyramid_neck,
    )
    from benchmark.models.openclip_backbone import OpenClipFamily, vit_block_indices
    from benchmark.registry import BACKBONE_FAMILIES

    assert vit_block_indices(12) == (3, 5, 7, 11)  # BenchX's out_indices for ViT-B/16
    assert vit_block_indices(24) == (7, 11, 15, 23)
    assert BACKBONE_FAMILIES.get("open_clip") is OpenClipFamily
    assert family_of("convnext_tiny") == "timm"  # no plain name is open_clip's (timm also has "vit_base_patch16_224")
    check_backbone_name({"family": "open_clip", "name": "ViT-B-16"})
    with pytest.raises(UserError, match="unknown open_clip model 'ViT-B-61'"):
        check_backbone_name({"family": "open_clip", "name": "ViT-B-61"})
    with pytest.raises(UserError, match="built with weights none"):
        build_backbone({"family": "open_clip", "name": "RN50"}, "imagenet")
    arch = {"family": "open_clip", "name": "ViT-S-16", "image_size": 32}  # 12 blocks like ViT-B/16, a quarter the size
    tower = build_backbone(arch).eval()
    assert tower.channels == (384,) * 4 and tower.strides == (16,) * 4 and tower.pooled_dim == 384
    shape = backbone_shape(arch)  # on the meta device
    assert (shape.channels, shape.strides, shape.pooled_dim, shape.pyramid) == ((384,) * 4, (16,) * 4, 384, False)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        levels = tower(x)
        assert [tuple(t.shape) for t in levels] == [(2, 384, 2, 2)] * 4  # raw token maps at the patch stride
        # blocks 3/5/7/11 of the tower, the last after ln_post: no rescaling inside the encoder
        mean, std = (torch.tensor(tower.visual.preprocess_cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
        own = (x * 0.5 + 0.5 - mean) / std
        blocks = tower.visual.forward_intermediates(own, indices=[3, 5, 7, 11], intermediates_only=True)["image_intermediates"]
        assert all(torch.allclose(levels[i], blocks[i], atol=1e-5) for i in range(3))
        last = tower.visual.ln_post(blocks[3].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        assert torch.allclose(levels[3], last, atol=1e-5) and not torch.allclose(levels[3], blocks[3], atol=1e-3)
        # the head's neck (BenchX's Feature2Pyramid) puts them at strides 4..32
        neck = pyramid_neck(tower.channels, tower.strides)
        assert [tuple(t.shape[-2:]) for t in neck(levels)] == [(8, 8), (4, 4), (2, 2), (1, 1)]
        # pooled: the joint-space embedding, unit length, what methods.backbones.pooled reads
        feat = pooled(tower, x)
        assert feat.shape == (2, 384) and torch.allclose(feat.norm(dim=1), torch.ones(2), atol=1e-5)
        assert torch.allclose(feat, F.normalize(tower.visual(own), dim=-1), atol=1e-5)
        # another input size: the tower runs at its own size, the levels follow the input's grid
        assert [tuple(t.shape[-2:]) for t in tower(torch.randn(1, 3, 64, 64))] == [(4, 4)] * 4
        # state dict round trip through the spec (what a task's transferred_encoder does)
        from benchmark.tasks.base import transferred_encoder

        again = transferred_encoder(tower.state_dict(), json.loads(json.dumps(arch)))
        assert all(torch.equal(a, b) for a, b in zip(again.eval()(x), levels))
        assert all(k.startswith("visual.") for k in tower.state_dict())


def test_chexzero_target_is_the_tower_under_its_released_prefix():
    """methods.checkpoint_formats' chexzero target (open_clip's CLIP(**cfg).visual names) loads onto
    build_backbone's module under released_prefix, key for key and shape for shape."""
    from benchmark.models.backbones import build_backbone, released_prefix
    from benchmark.models.checkpoint_formats import FORMATS, target_state

    spec = FORMATS["chexzero"].target
    assert released_prefix(spec) == "visual." and released_prefix("resnet50") == "" and released_prefix("convnext_tiny") == "model."
    with torch.device("meta"):
        state = build_backbone(spec).state_dict()
    assert all(k.startswith("visual.") for k in state)
    mine = {k.removeprefix("visual."): tuple(v.shape) for k, v in state.items()}
    assert mine == {k: tuple(v.shape) for k, v in target_state(spec).items()}
    assert mine["conv1.weight"] == (768, 3, 32, 32) and mine["proj"] == (768, 512)  # ViT-B/32, OpenAI's 512-d joint space


def test_modified_resnet_towers_give_their_stage_maps():
    from benchmark.models.backbones import backbone_shape, build_backbone

    arch = {"family": "open_clip", "name": "RN50", "image_size": 64}
    tower = build_backbone(arch).eval()
    assert tower.channels == (256, 512, 1024, 2048) and tower.strides == (4, 8, 16, 32) and tower.pooled_dim == 1024
    assert backbone_shape(arch).pyramid
    with torch.no_grad():
        levels = tower(torch.randn(1, 3, 64, 64))
    assert [tuple(t.shape) for t in levels] == [(1, c, 64 // s, 64 // s) for c, s in zip(tower.channels, tower.strides)]


def test_timm_towers_give_levels_too():
    """BiomedCLIP's tower is a timm ViT inside open_clip's TimmModel; ConvNeXt CLIPs are timm CNNs."""
    from benchmark.models.backbones import build_backbone

    vit = build_backbone({"family": "open_clip", "name": "vit_medium_patch16_gap_256", "image_size": 32}).eval()
    assert vit.kind == "timm_vit" and vit.blocks == (3, 5, 7, 11) and vit.channels == (512,) * 4 and vit.strides == (16,) * 4
    cnn = build_backbone({"family": "open_clip", "name": "convnext_tiny", "image_size": 64}).eval()
    assert cnn.kind == "timm_cnn" and cnn.channels == (96, 192, 384, 768) and cnn.strides == (4, 8, 16, 32)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for tower in (vit, cnn):
            levels = tower(x)
            assert [tuple(t.shape) for t in levels] == [(1, c, 64 // s, 64 // s) for c, s in zip(tower.channels, tower.strides)]
            assert tower.pool(x).shape == (1, tower.pooled_dim)
        blocks = vit.visual.trunk.forward_intermediates(vit.own_input(x), indices=[3, 5, 7, 11], intermediates_only=True)
        assert torch.allclose(vit(x)[2], F.interpolate(blocks[2], size=(4, 4), mode="bilinear"), atol=1e-5)


def _zero_shot_case(method):
    """Two classes; bright images are class 0, dark ones class 1. Text embeddings are unnormalised
    on purpose: class 1's prompts embed 5x longer, so a score without L2 normalisation picks
    class 1 for every image (accuracy 0.5); cosine in the joint space is right for all."""
    from benchmark.tasks.base import Fit
    from benchmark.tasks.zeroshot import ZeroShot, ZeroShotConfig

    cfg = ZeroShotConfig(name="toy_zs", kind="zeroshot", dataset="toy", metric="accuracy", image_size=64,
                         classes=("bright", "dark"), prompts={"bright": {"severity": ["b1", "b2"]}, "dark": {"severity": ["d1"]}})
    images = np.stack([np.full((40, 40), v, np.uint8) for v in (220, 200, 30, 50)])
    split = SimpleNamespace(ids=["a", "b", "c", "d"], images=images, labels=[0, 0, 1, 1])
    seen = {}

    def encode_image(x):
        seen["size"] = tuple(x.shape[-2:])
        bright = x.mean(dim=(1, 2, 3)) > 0  # with the model's own mean/std: bright > 0 > dark
        return torch.where(bright[:, None], torch.tensor([1.0, 0.3]), torch.tensor([0.3, 1.0])) * 3

    table = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    method.model.encode_image = encode_image
    method.model.encode_text = lambda tokens: table[tokens[:, 0]]
    method.tokenizer = lambda texts: torch.tensor([[0 if t.startswith("b") else 1] for t in texts])
    fit = Fit({}, "toy", None, [], None, split, 0, torch.device("cpu"), load_method=lambda: method)
    return ZeroShot(cfg).fit_evaluate(fit), seen


def test_zero_shot_scores_cosines_in_the_joint_space(tiny_folder):
    from benchmark.config import build
    from benchmark.methods.openclip import OpenClip, OpenClipConfig

    method = OpenClip(build(OpenClipConfig, {"model": str(tiny_folder[0])}, "test"))
    assert method.image_stats == ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))  # the folder's preprocess_cfg
    metrics, seen = _zero_shot_case(method)
    assert metrics["accuracy"] == 1.0 and metrics["auroc"] == 1.0 and metrics["prompts"] == 3
    assert seen["size"] == (32, 32)  # resized to the model's input size, not the task's 64 px
    emb = method.embed_texts(["b1", "d1"])
    assert torch.allclose(emb.norm(dim=1), torch.ones(2))


def test_a_local_model_folder_loads_its_weights(tiny_folder):
    from benchmark.config import build
    from benchmark.methods.openclip import OpenClip, OpenClipConfig

    folder, source = tiny_folder
    cfg = build(OpenClipConfig, {"model": str(folder), "weights": "default"}, "test")
    method = OpenClip(cfg)
    assert all(torch.equal(method.model.state_dict()[k], v) for k, v in source.state_dict().items())
    tower = method.image_encoder()
    assert tower.arch["name"] == f"local-dir:{folder.resolve()}" and tower.blocks == (0, 1, 2, 3)
    before = OpenClip.fingerprint(cfg)
    torch.save({k: v + 1 for k, v in source.state_dict().items()}, folder / "open_clip_pytorch_model.bin")
    assert OpenClip.fingerprint(cfg) != before  # new weights in the same folder: another encoder
    random = build(OpenClipConfig, {"model": str(folder), "weights": "none"}, "test")
    assert OpenClip.fingerprint(random) not in ("", before)  # the folder's config still names the architecture
    assert OpenClip.fingerprint(build(OpenClipConfig, {"model": "RN50", "weights": "none"}, "test")) == ""


@pytest.mark.parametrize("model, weights, says", [
    ("ViT-B-61", "none", "unknown open_clip model 'ViT-B-61'; valid: ViT-B-16"),
    ("microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "default", "is named hf-hub:microsoft/BiomedCLIP"),
    ("ViT-B-16", "default", "open_clip model ViT-B-16 needs weights: one of its tags (openai, "),
    ("ViT-B-16", "opena", "unknown weights tag for ViT-B-16 (or a checkpoint file) 'opena'; valid: openai"),
    ("hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "openai", "a hub or folder model loads its own"),
])
def test_bad_names_and_weights_say_what_would_work(model, weights, says):
    from benchmark.errors import UserError
    from benchmark.models.openclip_models import check_weights, resolve_name

    with pytest.raises(UserError) as err:
        check_weights(resolve_name(model), weights)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_an_open_clip_tower_exports_and_loads_back_bit_identical(tiny_folder, tmp_path):
    """Export -> import for a backbone that is not a name (an open_clip spec in config.json):
    ``--method checkpoint`` rebuilds the tower from it and gives the same features."""
    import benchmark
    from benchmark.cli import main

    folder, _ = tiny_folder
    pre = benchmark.pretrain("open_clip", profile="smoke", overrides={"model": str(folder), "weights": "default"})
    assert pre.arch["family"] == "open_clip"
    out = tmp_path / "exported"
    assert main(["export", pre.path.parent.name, "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["backbone"] == pre.arch
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    named = benchmark.load_encoder("open_clip", profile="smoke", device="cpu", overrides={"model": str(folder), "weights": "default"})
    back = benchmark.load_encoder(out, profile="smoke", device="cpu")
    with torch.no_grad():
        assert torch.equal(back(x), named(x))
