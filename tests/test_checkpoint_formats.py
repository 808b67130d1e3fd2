"""The released-checkpoint formats beyond the first four (BioViL, MedCLIP ResNet-50 and
Swin-T, CheXzero, MGCA ViT-B/16, MRM).

Each synthetic file is written in its authors' layout by renames written HERE, from
the authors' code (cited in benchmark/models/checkpoint_formats.py), independently of the
importer's: the target architecture's own keys renamed into the authors' names, plus
the extra keys their files carry (text towers, projection heads, decoders, Lightning
or ``{"model": ...}`` wrappers). The import must put every tensor back on its target
key bit for bit, load strictly into the target module, and refuse a wrong layout
with its missing and unexpected keys listed. Swin's rename is also checked by
function: transformers' own SwinModel and the imported timm model compute the same.
"""

import argparse
from typing import get_args

import pytest
import torch

from benchmark.errors import UserError
from benchmark.methods.baselines import (
    FormatName,
    import_encoder,
    load_encoder_state,
    read_checkpoint,
)
from benchmark.models.checkpoint_formats import ALIASES, FORMATS, target_state
from benchmark.models.encoders import ResNetStages

SWIN, VIT = "swin_tiny_patch4_window7_224", "vit_base_patch16_224"
CLIP = {"family": "open_clip", "name": "ViT-B-32-quickgelu"}
SWIN_DEPTHS = (2, 2, 6, 2)


def views(spec, seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct random values for every key of ``spec``'s state dict, all slices of one
    16 MB pool (so a ViT-B file is small): a tensor put on the wrong key would show."""
    pool = torch.randn(1 << 22, generator=torch.Generator().manual_seed(seed)) * 0.1
    out, starts = {}, set()
    for i, (key, meta) in enumerate(target_state(spec).items()):
        if not meta.is_floating_point():
            out[key] = torch.tensor(i + 7)  # BN num_batches_tracked
            continue
        start = (i * 104_729) % (pool.numel() - meta.numel())
        assert (start, meta.shape) not in starts
        starts.add((start, meta.shape))
        out[key] = pool[start:start + meta.numel()].view(meta.shape)
    return out


# ---------------------------------------------------------------- the authors' layouts, written from their code
def biovil(enc):
    """hi-ml ImageModel: encoder.encoder = ResNetHIML (torchvision ResNet, its fc kept), projector.model = MLP."""
    out = {"encoder.encoder." + k: v for k, v in enc.items()}
    out |= {"encoder.encoder.fc.weight": torch.zeros(1000, 2048), "encoder.encoder.fc.bias": torch.zeros(1000),
            "projector.model.0.weight": torch.ones(128, 2048, 1, 1), "projector.model.1.weight": torch.ones(128),
            "projector.model.1.bias": torch.ones(128), "projector.model.1.running_mean": torch.ones(128),
            "projector.model.1.running_var": torch.ones(128), "projector.model.1.num_batches_tracked": torch.tensor(5),
            "projector.model.3.weight": torch.ones(128, 128, 1, 1), "projector.model.3.bias": torch.ones(128)}
    return out


def medclip_text(out):
    return out | {"text_model.model.embeddings.word_embeddings.weight": torch.ones(10, 768),
                  "text_model.model.encoder.layer.0.attention.self.query.weight": torch.ones(768, 768),
                  "text_model.projection_head.weight": torch.ones(512, 768), "logit_scale": torch.tensor(2.6)}


def medclip_resnet(enc):
    """MedCLIPModel: vision_model.model = torchvision resnet50 whose fc is a 2048->512 projection."""
    out = {"vision_model.model." + k: v for k, v in enc.items()}
    return medclip_text(out | {"vision_model.model.fc.weight": torch.ones(512, 2048)})


def hf_swin(enc):
    """timm Swin-T keys -> transformers 4.x SwinModel keys (as MedCLIP's AutoModel saved them)."""
    out = {"embeddings.patch_embeddings.projection.weight": enc["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": enc["patch_embed.proj.bias"],
           "layernorm.weight": enc["norm.weight"], "layernorm.bias": enc["norm.bias"]}
    for p in ("weight", "bias"):
        out[f"embeddings.norm.{p}"] = enc[f"patch_embed.norm.{p}"]
    index = torch.arange(49).view(7, 7)  # any int buffer: transformers 4.x saved relative_position_index
    for s, depth in enumerate(SWIN_DEPTHS):
        for b in range(depth):
            t, h = f"layers.{s}.blocks.{b}.", f"encoder.layers.{s}.blocks.{b}."
            for p in ("weight", "bias"):
                q, k, v = enc[f"{t}attn.qkv.{p}"].chunk(3)
                out |= {f"{h}attention.self.query.{p}": q, f"{h}attention.self.key.{p}": k,
                        f"{h}attention.self.value.{p}": v,
                        f"{h}layernorm_before.{p}": enc[f"{t}norm1.{p}"], f"{h}layernorm_after.{p}": enc[f"{t}norm2.{p}"],
                        f"{h}attention.output.dense.{p}": enc[f"{t}attn.proj.{p}"],
                        f"{h}intermediate.dense.{p}": enc[f"{t}mlp.fc1.{p}"], f"{h}output.dense.{p}": enc[f"{t}mlp.fc2.{p}"]}
            out[f"{h}attention.self.relative_position_bias_table"] = enc[f"{t}attn.relative_position_bias_table"]
            out[f"{h}attention.self.relative_position_index"] = index
        if s > 0:  # timm merges at a stage's start, transformers at the previous stage's end
            for name in ("reduction.weight", "norm.weight", "norm.bias"):
                out[f"encoder.layers.{s - 1}.downsample.{name}"] = enc[f"layers.{s}.downsample.{name}"]
    return out


def medclip_swin(enc):
    """MedCLIPModel with MedCLIPVisionModelViT: vision_model.model = SwinModel, vision_model.projection_head."""
    out = {"vision_model.model." + k: v for k, v in hf_swin(enc).items()}
    return medclip_text(out | {"vision_model.projection_head.weight": torch.ones(512, 768)})


def chexzero(enc):
    """OpenAI CLIP's state dict (CheXzero saves model.state_dict()): visual.* beside the text tower."""
    out = {"visual." + k: v for k, v in enc.items()}
    return out | {"positional_embedding": torch.ones(77, 512), "text_projection": torch.ones(512, 512),
                  "logit_scale": torch.tensor(4.6), "token_embedding.weight": torch.ones(10, 512),
                  "transformer.resblocks.0.attn.in_proj_weight": torch.ones(1536, 512),
                  "ln_final.weight": torch.ones(512), "ln_final.bias": torch.ones(512)}


def mgca_vit(enc):
    """MGCA's Lightning checkpoint: img_encoder_q.model = its VisionTransformer, heads, the text tower."""
    out = {"img_encoder_q.model." + k: v for k, v in enc.items()}
    assert "img_encoder_q.model.blocks.11.attn.qkv.weight" in out  # MGCA's vits.py names (Block.attn.qkv, L43, L90)
    out |= {"img_encoder_q.global_embed.head.0.weight": torch.ones(2048, 768),
            "img_encoder_q.local_embed.head.0.weight": torch.ones(2048, 768, 1),
            "text_encoder_q.model.embeddings.word_embeddings.weight": torch.ones(10, 768),
            "prototype_layer.weight": torch.ones(500, 128), "patch_local_atten_layer.in_proj_weight": torch.ones(384, 128)}
    return {"state_dict": out, "epoch": 49, "hyper_parameters": {"img_encoder": "vit_base"}}


def mrm(enc):
    """MRM's save_model: {"model": MRM.state_dict(), ...}: the encoder at the top level, the MAE decoder, BERT."""
    out = dict(enc) | {"decoder_embed.weight": torch.ones(512, 768), "mask_token": torch.ones(1, 1, 512),
                       "decoder_pos_embed": torch.ones(1, 197, 512), "decoder_blocks.0.norm1.weight": torch.ones(512),
                       "decoder_norm.weight": torch.ones(512), "decoder_pred.weight": torch.ones(768, 512),
                       "bert_encoder.model.embeddings.word_embeddings.weight": torch.ones(10, 768),
                       "bert_mlp.weight": torch.ones(384, 768)}
    return {"model": out, "epoch": 199, "args": argparse.Namespace(model="mrm_vit_base_patch16")}


# name: (the authors' layout, the architecture, an encoder key to drop in the authors' name, its target name)
CASES = {
    "biovil": (biovil, "resnet50", "encoder.encoder.layer2.1.bn2.bias", "layer2.1.bn2.bias"),
    "medclip_resnet": (medclip_resnet, "resnet50", "vision_model.model.conv1.weight", "conv1.weight"),
    "medclip_swin": (medclip_swin, SWIN, "vision_model.model.encoder.layers.2.blocks.3.layernorm_after.weight",
                     "layers.2.blocks.3.norm2.weight"),
    "chexzero": (chexzero, CLIP, "visual.ln_post.weight", "ln_post.weight"),
    "mgca_vit": (mgca_vit, VIT, "img_encoder_q.model.blocks.4.mlp.fc1.bias", "blocks.4.mlp.fc1.bias"),
    "mrm": (mrm, VIT, "pos_embed", "pos_embed"),
}


def flat(obj):
    return obj.get("state_dict") or obj.get("model") or obj


def module_of(spec):
    """The target architecture on the meta device (strict key and shape check without the memory)."""
    with torch.device("meta"):
        if isinstance(spec, dict):
            import open_clip

            return open_clip.model.CLIP(**open_clip.get_model_config(spec["name"])).visual
        if spec == "resnet50":
            return ResNetStages()
        import timm

        return timm.create_model(spec, pretrained=False, num_classes=0)


@pytest.mark.parametrize("fmt", list(CASES))
def test_each_release_imports_bit_for_bit_and_is_auto_detected(fmt, tmp_path):
    layout, spec, _, _ = CASES[fmt]
    enc = views(spec, seed=len(fmt))
    path = tmp_path / f"{fmt}.pt"
    torch.save(layout(enc), path)
    state = read_checkpoint(path)
    for asked in ("auto", fmt, *FORMATS[fmt].aliases):
        got_spec, got, used = import_encoder(state, asked)
        assert used == fmt and got_spec == spec
        assert set(got) == set(enc)
        for key, value in enc.items():
            assert torch.equal(got[key], value), key
    module_of(spec).load_state_dict(got, strict=True, assign=True)  # the architecture takes it as it is
    if spec == "resnet50":  # the ResNet releases load into the method's backbone as before
        backbone = ResNetStages()
        assert load_encoder_state(backbone, state) == fmt
        assert torch.equal(backbone.layer3[1].bn2.running_var, enc["layer3.1.bn2.running_var"])
    else:  # a given ResNet refuses them in one line (--method checkpoint builds their own architecture)
        with pytest.raises(UserError, match=f"is a .* encoder \\(format '{fmt}'\\), not a ResNet-50"):
            load_encoder_state(ResNetStages(), state, source=str(path))


@pytest.mark.parametrize("fmt", list(CASES))
def test_a_wrong_layout_lists_missing_and_unexpected_keys(fmt):
    layout, spec, drop, target_key = CASES[fmt]
    state = flat(layout(views(spec)))
    prefix = FORMATS[fmt].prefixes[0]
    del state[drop]
    state[prefix + "extra_layer.weight"] = torch.zeros(3)
    with pytest.raises(UserError) as err:
        import_encoder(state, fmt)
    message = str(err.value)
    assert f"1 missing ['{target_key}']" in message, message
    assert "1 unexpected ['extra_layer.weight']" in message, message
    assert f"in format '{fmt}'" in message and "\n" not in message


def test_swin_attention_with_a_missing_projection_is_listed_not_fused():
    state = medclip_swin(views(SWIN))
    del state["vision_model.model.encoder.layers.1.blocks.0.attention.self.key.weight"]
    with pytest.raises(UserError) as err:
        import_encoder(state, "medclip_swin")
    message = str(err.value)
    assert "1 missing ['layers.1.blocks.0.attn.qkv.weight']" in message
    assert "encoder.layers.1.blocks.0.attention.self.query.weight" in message  # left under the authors' names


def test_chexzero_saved_in_half_precision_widens_exactly():
    enc = views(CLIP)
    half = {k: v.half() if v.ndim >= 2 and k != "positional_embedding" else v for k, v in enc.items()}
    spec, got, fmt = import_encoder(chexzero(half))
    assert fmt == "chexzero" and spec == CLIP
    for key, value in half.items():
        assert got[key].dtype == torch.float32 and torch.equal(got[key], value.float()), key


def test_a_resnet_release_is_not_taken_for_a_vit_one_nor_the_reverse():
    """MGCA keeps both under img_encoder_q.model.: auto picks the architecture the keys fit."""
    resnet = {"state_dict": {"img_encoder_q.model." + k: v for k, v in views("resnet50").items()}}
    assert import_encoder(flat(resnet))[2] == "mgca"
    assert import_encoder(flat(mgca_vit(views(VIT))))[2] == "mgca_vit"
    with pytest.raises(UserError, match="do not match a ResNet-50 encoder in format 'mgca'.*missing"):
        import_encoder(flat(mgca_vit(views(VIT))), "mgca")


def test_every_format_is_a_config_choice():
    assert set(get_args(FormatName)) == {"auto", *FORMATS, *ALIASES}


def test_medclip_swin_computes_what_transformers_swin_computes(tmp_path):
    """The rename (q/k/v fused, merging moved to the next stage, index buffers dropped)
    is the same function: transformers' SwinModel, given the authors' layout, and the
    timm model, given the import, give the same features."""
    import timm
    from safetensors.torch import save_file
    from transformers import SwinConfig, SwinModel

    enc = views(SWIN, seed=5)
    authors = hf_swin(enc)
    save_file({k: v.clone() for k, v in authors.items() if not k.endswith("relative_position_index")},
              tmp_path / "model.safetensors")
    SwinConfig(embed_dim=96, depths=list(SWIN_DEPTHS), num_heads=[3, 6, 12, 24], window_size=7).save_pretrained(tmp_path)
    hf, info = SwinModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info  # transformers reads the layout as its own
    spec, state, _ = import_encoder(medclip_swin(enc))
    model = timm.create_model(spec, pretrained=False, num_classes=0)
    model.load_state_dict(state)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.eval().forward_features(x).flatten(1, 2)
        theirs = hf.eval()(pixel_values=x).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()


@pytest.mark.parametrize("fmt", ["medclip_resnet", "medclip_swin"])
def test_a_medclip_vision_model_saved_alone_has_model_prefix(fmt):
    """MedCLIPVisionModel(ViT).state_dict(): the same encoder under ``model.`` only."""
    layout, spec, _, _ = CASES[fmt]
    enc = views(spec, seed=2)
    alone = {k.removeprefix("vision_model."): v for k, v in layout(enc).items() if k.startswith("vision_model.model.")}
    got_spec, got, used = import_encoder(alone)
    assert used == fmt and got_spec == spec and all(torch.equal(got[k], v) for k, v in enc.items())


@pytest.mark.parametrize("fmt", ["medclip_swin", "chexzero", "mgca_vit", "mrm"])
def test_the_checkpoint_method_evaluates_a_release_as_its_own_architecture(fmt, tmp_path):
    """A ViT / Swin / CLIP release is not refused any more: ``--method checkpoint`` builds the
    release's architecture, puts every imported tensor on the backbone's key bit for bit and
    records the architecture, which the tasks rebuild (the pooled feature runs)."""
    from benchmark.factory import resolve
    from benchmark.models.backbones import build_backbone, pooled, released_prefix
    from benchmark.tasks.base import transferred_encoder

    layout, spec, _, _ = CASES[fmt]
    enc = views(spec, seed=len(fmt))
    path = tmp_path / f"{fmt}.pt"
    torch.save(layout(enc), path)
    r = resolve("checkpoint", "rsna_cls", "smoke", [("checkpoint_path", str(path))])
    assert r.method_cfg.backbone == (spec if isinstance(spec, str) else "resnet50")  # a timm name: the config says it
    method = r.method_cls(r.method_cfg)
    encoder = method.image_encoder()
    assert encoder.arch == spec
    prefix = released_prefix(spec)
    own = encoder.state_dict()
    assert own and all(k.startswith(prefix) for k in own)
    for key, value in own.items():
        assert torch.equal(value, enc[key[len(prefix):]]), key
    rebuilt = transferred_encoder(own, encoder.arch)  # what every task does with (state, arch)
    x = torch.rand(2, 3, 86, 86)  # a size no patch divides: ViTs and Swin pad it
    with torch.no_grad():
        assert torch.equal(pooled(rebuilt.eval(), x), pooled(encoder.eval(), x))
    assert pooled(rebuilt, x).shape[0] == 2 and set(build_backbone(spec).state_dict()) == set(own)
