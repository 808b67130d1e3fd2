"""PRIOR: each loss term on hand-checkable cases, the sentence helpers, the
prototype bank, spatial patches, stage switching, stage 3 (Hungarian matching the
right way round, reconstruction terms and their gradients) and smoke runs
through the loop."""

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.config import build
from benchmark.data.types import PairCorpus
from benchmark.errors import UserError
from benchmark.methods.losses import clip_loss, simsiam_loss, within_report_infonce
from benchmark.methods.prior import (
    ImageDecoder,
    Prior,
    PriorConfig,
    SentencePrototypeBank,
    SigmoidCrossAttention,
    gather_rows,
    hungarian_match,
    spg_loss,
)
from benchmark.methods.sentences import ReportTokens, pool_sentences
from benchmark.models.encoders import spatial_patches

ROW_CE = math.log(1 + math.e) - 1  # CE of logits (1, 0) against class 0


def tiny_corpus(n: int = 4) -> PairCorpus:
    findings = ["Small left pleural effusion. Heart size is normal.", "", "No pneumothorax.", "Lungs are clear."]
    impressions = ["Effusion.", "Normal chest.", "No acute disease. Stable.", "Normal."]
    images = np.zeros((n, 36, 36), dtype=np.uint8)
    return PairCorpus([str(i) for i in range(n)], images, findings[:n], impressions[:n])


@pytest.fixture(scope="module")
def model():
    cfg = build(PriorConfig, {"backbone_weights": "none", "image_size": 32, "batch_size": 4, "text_encoder": "tiny-random",
                              "embed_dim": 64, "prototypes": 16, "stage1_fraction": 0.5, "epochs": 2}, "test")
    torch.manual_seed(0)
    m = Prior(cfg)
    m.prepare(tiny_corpus())
    return m


def test_patches_are_spatial_positions_in_row_major_order(model):
    c, h, w = 3, 2, 4
    ch, row, col = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
    fmap = (100 * ch + 10 * row + col).float().unsqueeze(0)  # value encodes (channel, row, col)
    patches = spatial_patches(fmap)
    assert patches.shape == (1, h * w, c)
    for k in range(h * w):
        assert patches[0, k].tolist() == [100 * i + 10 * (k // w) + k % w for i in range(c)]

    class Fixed(nn.Module):
        def forward(self, x):
            return [fmap]

    original, model.backbone = model.backbone, Fixed()
    try:
        assert torch.equal(model.patch_tokens(torch.zeros(1, 3, 32, 32)), patches)  # the model uses spatial patches
    finally:
        model.backbone = original


def test_report_tokens_number_sentences_and_pool_them():
    from benchmark.models.encoders import load_text_model

    tok, _ = load_text_model("tiny-random")
    a, b = (tok(s, add_special_tokens=False)["input_ids"] for s in ("Heart is normal.", "No effusion."))
    reports = [["Heart is normal.", "No effusion.", "Extra."], [""], ["Heart is normal."]]
    assert len(b) > 2
    bank = ReportTokens(tok, reports, max_length=len(a) + 4, max_sentences=2)
    ids, mask, index = bank(torch.arange(3))
    # report 0: [CLS] a b[:2] [SEP] -- the 2nd sentence is truncated, the 3rd dropped
    assert ids[0].tolist() == [tok.cls_token_id, *a, *b[:2], tok.sep_token_id]
    assert index[0].tolist() == [0] + [1] * len(a) + [2, 2] + [0]
    assert bank.kept == [["Heart is normal.", "No effusion."], [""], ["Heart is normal."]]
    assert index[1].tolist()[:2] == [1, 0] and mask[1].sum() == 2  # empty report: [CLS] is sentence 1
    assert mask[2].sum() == len(a) + 2 and index[2, len(a) + 1] == 0
    feats = torch.arange(ids.shape[1], dtype=torch.float32).view(1, -1, 1).expand(3, -1, 1)
    pooled, present = pool_sentences(feats, index, 2)
    assert pooled[0, 0, 0] == pytest.approx(sum(range(1, len(a) + 1)) / len(a))
    assert pooled[0, 1, 0] == pytest.approx(len(a) + 1.5)  # positions len(a)+1, len(a)+2
    assert present.tolist() == [[True, True], [True, False], [True, False]]


def test_global_clip_loss_and_clamped_scale():
    a = torch.eye(2)
    assert clip_loss(a, a, torch.tensor(1.0)).item() == pytest.approx(ROW_CE, rel=1e-5)  # mean of two directions
    assert Prior.clamped(torch.tensor(math.log(1000.0))).item() == pytest.approx(100.0)
    assert Prior.clamped(torch.tensor(math.log(100.0))).item() == pytest.approx(100.0)


def test_simsiam_value_and_stop_gradient():
    x = torch.tensor([[1.0, 0.0]], requires_grad=True)
    y = torch.tensor([[1.0, 1.0]], requires_grad=True)
    loss = simsiam_loss(x, y, nn.Identity())
    assert loss.item() == pytest.approx(-1 / math.sqrt(2), rel=1e-6)
    loss.backward()
    # d cos(x, y) / dx at x=(1,0), y=(1,1) is (0, 1/sqrt 2); only the predicted side gets it, halved
    assert x.grad[0].tolist() == pytest.approx([0.0, -0.5 / math.sqrt(2)], abs=1e-6)
    # d cos(y, x) / dy = x / (|x||y|) - (x.y) y / (|x||y|^3) = (1, -1) / (2 sqrt 2), halved and negated
    assert y.grad[0].tolist() == pytest.approx([-0.25 / math.sqrt(2), 0.25 / math.sqrt(2)], abs=1e-6)


def test_within_report_infonce_masks_padding():
    sents = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [[1.0, 0.0], [7.0, 7.0], [3.0, -1.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    value = within_report_infonce(sents, sents, mask, torch.tensor(1.0))
    # report 0: two real sentences, logits I -> ROW_CE both ways; report 1: one sentence -> 0
    assert value.item() == pytest.approx(ROW_CE / 2, rel=1e-5)
    sents[0, 2] = torch.tensor([-9.0, 2.0])  # padding does not count
    sents[1, 1:] = 3.0
    assert within_report_infonce(sents, sents, mask, torch.tensor(1.0)).item() == pytest.approx(ROW_CE / 2, rel=1e-5)


def test_cross_attention_is_sigmoid_and_masks_padded_sentences():
    att = SigmoidCrossAttention(2)
    with torch.no_grad():
        for lin in (att.q_img, att.k_img, att.v_img, att.q_txt, att.k_txt, att.v_txt):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    patches = torch.zeros(1, 1, 2)
    sents = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, True, False]])
    patch_ctx, sent_ctx = att(patches, sents, mask)
    # scores are 0 -> sigmoid weights 1/2 each (softmax would give 1/3): 0.5 * (2, 2)
    assert patch_ctx[0, 0].tolist() == pytest.approx([1.0, 1.0])
    assert sent_ctx.shape == (1, 4, 2) and torch.allclose(sent_ctx, torch.zeros(1, 4, 2))  # patch values are 0


def test_prototype_bank_maps_a_prototype_to_itself():
    bank = SentencePrototypeBank(4, 4, tau=1e-3)
    with torch.no_grad():
        bank.embed.weight.copy_(10 * torch.eye(4))
    for mode in (bank.train, bank.eval):  # Gumbel noise on / off
        mode()
        mixed, index = bank(10 * torch.eye(4))
        assert index.tolist() == [0, 1, 2, 3]
        assert torch.allclose(mixed, 10 * torch.eye(4), atol=1e-3)


def test_prototype_l1_gap_over_real_sentences(model):
    bank = SentencePrototypeBank(4, 4, tau=1e-3).eval()
    with torch.no_grad():
        bank.embed.weight.copy_(10 * torch.eye(4))
    original = model.bank
    model.bank = bank
    try:
        sents = torch.tensor([[[0.5, 10.0, 0.0, 0.0], [0.0, 0.0, 10.0, 0.0], [3.0, 1.0, 4.0, 1.0]]])
        mixed, gap = model.prototypes(sents, torch.tensor([[True, True, False]]))
    finally:
        model.bank = original
    assert torch.allclose(mixed[0, 0], torch.tensor([0.0, 10.0, 0.0, 0.0]), atol=1e-3)
    assert gap.item() == pytest.approx((0.5 / 4 + 0) / 2, abs=1e-4)  # mean |SPB(S) - S| over the 2 real sentences


def test_stage_one_then_two_and_the_weighted_sum(model):
    assert model.stage1_steps == 1  # 0.5 of min(4 // 4 * 2 epochs) = 2 steps
    model.train()
    model.steps_done.zero_()
    batch = {"view1": torch.randn(4, 3, 32, 32), "index": torch.arange(4)}
    first = model.training_step(batch)
    assert first["stage"] == 1 and first["prototype"] == 0
    second = model.training_step(batch)
    assert second["stage"] == 2 and second["prototype"] > 0 and int(model.stage_now) == 2
    expected = second["global"] + second["local_image"] + second["local_text"] + 10 * second["prototype"]
    assert second["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    second["loss"].backward()
    assert model.bank.embed.weight.grad is not None and model.cross.q_img.weight.grad is not None
    assert model.text_tower.model.embeddings.word_embeddings.weight.grad is not None
    model.eval()
    img, txt = model.embed_images(torch.randn(2, 3, 32, 32)), model.embed_texts(["No effusion. Heart normal.", "x"])
    assert img.shape == (2, 64) and txt.shape == (2, 64)
    assert torch.allclose(txt.norm(dim=-1), torch.ones(2)) and torch.equal(txt, model.embed_texts(["No effusion. Heart normal.", "x"]))


def test_config_switches():
    assert build(PriorConfig, {"reconstruction": True}, "test").reconstruction  # stage 3 is implemented
    with pytest.raises(UserError, match="prototype bank"):
        build(PriorConfig, {"reconstruction": True, "stage": 1}, "test")
    with pytest.raises(UserError, match="stage2_fraction"):
        build(PriorConfig, {"reconstruction": True, "stage1_fraction": 0.8, "stage2_fraction": 0.3}, "test")
    with pytest.raises(UserError, match="stage"):
        build(PriorConfig, {"stage": 3}, "test")
    with pytest.raises(UserError, match="pool_heads"):
        build(PriorConfig, {"embed_dim": 60}, "test")


def test_smoke_pretraining_through_the_loop():
    import torchvision

    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    pre = get_encoder(resolve("prior", None, "smoke", [("max_steps", 2)]), None)
    assert pre.meta["steps"] == 2
    with open(pre.path.parent / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"loss", "global", "local_image", "local_text", "prototype", "stage"} <= set(rows[0])
    assert [r["stage"] for r in rows] == ["1.0", "2.0"]  # stage1_fraction 0.4 of 2 steps
    net = torchvision.models.resnet50()
    net.fc = nn.Identity()
    net.load_state_dict(torch.load(pre.path, weights_only=True), strict=True)


# -- stage 3 -------------------------------------------------------------------
def test_hungarian_matching_is_applied_the_right_way_round():
    # generated i is cheapest at real sentence (i + 1) % 3: a 3-cycle, whose inverse differs from itself
    cost = torch.tensor([[[9.0, 0.0, 9.0], [9.0, 9.0, 0.0], [0.0, 9.0, 9.0]]])
    targets = torch.tensor([[[10.0], [20.0], [30.0]]])
    query_sentence, sentence_query = hungarian_match(cost, torch.ones(1, 3, dtype=torch.bool))
    assert query_sentence.tolist() == [[1, 2, 0]] and sentence_query.tolist() == [[2, 0, 1]]
    assert gather_rows(targets, query_sentence)[0, :, 0].tolist() == [20.0, 30.0, 10.0]  # reversed: [30, 10, 20]
    # the loss end to end: generated = the 3-cycle of the targets is a perfect match
    generated = targets[:, [1, 2, 0]]
    loss, query_sentence, _ = spg_loss(generated, targets, torch.ones(1, 3, dtype=torch.bool))
    assert query_sentence.tolist() == [[1, 2, 0]] and loss.item() == 0
    wrong = generated - targets[:, [2, 0, 1]]  # the code's logit[col] pairing
    assert wrong.abs().mean() > 0


def test_hungarian_leaves_padding_out_and_regresses_unmatched_queries_to_zero():
    targets = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]])  # the 3rd slot is padding
    present = torch.tensor([[True, True, False]])
    generated = torch.tensor([[[0.0, 0.1], [0.0, 2.0], [1.0, 0.0]]])  # query 0 is closest to the padding slot
    loss, query_sentence, sentence_query = spg_loss(generated, targets, present)
    assert query_sentence.tolist() == [[-1, 1, 0]] and sentence_query.tolist() == [[2, 1, -1]]
    assert loss.item() == pytest.approx(0.1 / 6)  # |query 0 - 0| over 3 queries x 2 dims
    # more real sentences than queries: every query is matched, the worst sentence left out
    loss, query_sentence, sentence_query = spg_loss(generated[:, 1:], targets[:, :2], present[:, :2])
    assert query_sentence.tolist() == [[1, 0]] and loss.item() == 0


def test_image_decoder_shapes_follow_the_feature_map():
    dec = ImageDecoder(16, out_channels=3, dropout=0.5)
    for h, w in ((1, 1), (2, 3)):
        out = dec(torch.randn(2, h * w, 16), torch.randn(2, h * w, 16), (h, w))
        assert out.shape == (2, 3, 32 * h, 32 * w)


@pytest.fixture(scope="module")
def stage3_model():
    cfg = build(PriorConfig, {"backbone_weights": "none", "image_size": 32, "batch_size": 4, "text_encoder": "tiny-random",
                              "embed_dim": 64, "prototypes": 16, "stage1_fraction": 0.25, "stage2_fraction": 0.25,
                              "epochs": 4, "reconstruction": True, "num_queries": 2, "decoder_layers": 1}, "test")
    torch.manual_seed(0)
    m = Prior(cfg)
    m.prepare(tiny_corpus())
    return m


def test_stage_three_terms_and_gradients(stage3_model):
    model = stage3_model
    assert (model.stage1_steps, model.stage3_steps) == (1, 2)  # 0.25 and 0.5 of 4 steps
    model.train()
    model.steps_done.zero_()
    batch = {"view1": torch.randn(4, 3, 32, 32), "index": torch.arange(4)}
    for stage in (1, 2):
        out = model.training_step(batch)
        assert out["stage"] == stage and out["rec_image"] == out["spg"] == out["gpa"] == out["spg_kl"] == 0
    model.zero_grad(set_to_none=True)
    out = model.training_step(batch)
    assert out["stage"] == 3 and int(model.stage_now) == 3
    for key in ("rec_image", "spg", "spg_kl", "gpa"):
        assert torch.isfinite(out[key]) and out[key] > 0, key
    expected = (10 * out["global"] + out["local_image"] + out["local_text"] + 10 * (out["prototype"] + out["spg"])
                + out["spg_kl"] + out["gpa"] + out["rec_image"])
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss"].backward()
    for name, param in (("image decoder", model.image_decoder.blocks[0][0][0].weight), ("decoder head", model.image_decoder.head.weight),
                        ("queries", model.generator.queries), ("generator", model.generator.decoder.layers[0].multihead_attn.in_proj_weight),
                        ("backbone", model.backbone.layer4[-1].conv3.weight)):
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    model.eval()
    txt = model.embed_texts(["No effusion. Heart normal."])
    assert txt.shape == (1, 64) and torch.equal(txt, model.embed_texts(["No effusion. Heart normal."]))  # SPB in eval


def test_smoke_pretraining_with_reconstruction_through_the_loop():
    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    sets = [("max_steps", 2), ("reconstruction", True), ("stage1_fraction", 0.0), ("stage2_fraction", 0.5),
            ("embed_dim", 64), ("decoder_layers", 1)]
    pre = get_encoder(resolve("prior", None, "smoke", sets), None)
    assert pre.meta["steps"] == 2
    with open(pre.path.parent / "losses.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {"rec_image", "spg", "spg_kl", "gpa", "prototype", "stage"} <= set(rows[0])
    assert [r["stage"] for r in rows] == ["2.0", "3.0"]
    assert float(rows[0]["spg"]) == 0 and all(math.isfinite(float(rows[1][k])) and float(rows[1][k]) > 0 for k in ("rec_image", "spg", "gpa"))
