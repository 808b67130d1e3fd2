"""ASG: the loss terms on hand-checkable cases, the keyword region rules, the
negation-aware tagger, the template boxes under RoIAlign, and a smoke run."""

import csv
import math

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.config import build
from benchmark.data.types import PairCorpus
from benchmark.methods.anatomy_rules import (
    REGION_NAMES,
    REGIONS,
    TAG_NAMES,
    report_tags,
    sentence_regions,
    sentence_tags,
)
from benchmark.methods.asg import Asg, AsgConfig
from benchmark.methods.losses import region_alignment_loss, symmetric_kl_loss, tag_soft_targets

ROW_CE = math.log(1 + math.e) - 1  # CE of logits (1, 0) against class 0


@pytest.fixture(scope="module")
def model():
    cfg = build(AsgConfig, {"backbone_weights": "none", "image_size": 32, "batch_size": 4, "text_encoder": "tiny-random",
                            "hidden_dim": 32, "embed_dim": 16, "tag_decoder": True, "decoder_layers": 1}, "test")
    torch.manual_seed(0)
    m = Asg(cfg)
    findings = ["Small left pleural effusion. Heart size is normal.", "", "No pneumothorax.", "Right upper lobe opacity."]
    impressions = ["Effusion.", "Normal chest.", "No acute disease.", "Pneumonia."]
    m.prepare(PairCorpus(list("abcd"), np.zeros((4, 36, 36), np.uint8), findings, impressions))
    return m


def test_soft_targets_for_two_tag_vectors():
    y = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # cosine of the two tag vectors: 1 / sqrt 2; row = (0.8 + 0.2 + 1e-6, 0.2 / sqrt 2 + 1e-6), normalised
    off = 0.2 / math.sqrt(2) + 1e-6
    p = tag_soft_targets(y)
    assert p[0].tolist() == pytest.approx([(1 + 1e-6) / (1 + 1e-6 + off), off / (1 + 1e-6 + off)], rel=1e-6)
    assert p[1].tolist() == pytest.approx(p[0].tolist()[::-1], rel=1e-6)
    none = tag_soft_targets(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))  # no tags: row (0.8 + 1e-6, 1e-6)
    assert none[0, 1].item() == pytest.approx(1e-6 / (0.8 + 2e-6), rel=1e-4)


def test_symmetric_kl_is_a_quarter_of_four_kl_terms():
    p = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    s = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]])  # softmax rows (1/4, 3/4), (1/2, 1/2); of S^T: (1/2, 1/2), (3/4, 1/4)
    kl_swapped = 0.5 * math.log(3)  # KL((3/4, 1/4) || (1/4, 3/4)), either direction
    kl_p_u = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # KL((3/4, 1/4) || uniform)
    kl_u_p = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(uniform || (3/4, 1/4))
    one_orientation = (kl_swapped + kl_p_u) / 2 + (kl_swapped + kl_u_p) / 2  # batchmean over 2 rows, both ways
    assert symmetric_kl_loss(s, p).item() == pytest.approx(2 * one_orientation / 4, rel=1e-5)


def test_region_alignment_negatives_only_within_the_image_and_masked():
    regions = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [3.0, 3.0]]])
    texts = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-2.0, 5.0]]])
    mask = torch.tensor([[True, True, False]])
    assert region_alignment_loss(regions, texts, mask, temperature=1.0).item() == pytest.approx(2 * ROW_CE, rel=1e-5)
    # a second image's regions are not negatives: stacking the same image twice keeps the value
    two = region_alignment_loss(regions.repeat(2, 1, 1), texts.repeat(2, 1, 1), mask.repeat(2, 1), temperature=1.0)
    assert two.item() == pytest.approx(2 * ROW_CE, rel=1e-5)
    assert region_alignment_loss(regions, texts, torch.zeros_like(mask), 1.0).item() == 0


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("Opacity in the right upper lobe.", {"right upper lung zone", "right lung"}),
        ("Mild cardiomegaly.", {"cardiac silhouette"}),
        ("Heart size is normal.", {"cardiac silhouette"}),
        ("Small left pleural effusion.", {"left costophrenic angle"}),
        ("Effusion on the right.", {"right costophrenic angle"}),
        ("No pneumothorax.", {"right apical zone", "left apical zone"}),
        ("Right pneumothorax.", {"right apical zone"}),
        ("No pleural effusion or pneumothorax.",
         {"right costophrenic angle", "left costophrenic angle", "right apical zone", "left apical zone"}),
        ("Bibasilar atelectasis.", {"right lower lung zone", "left lower lung zone", "right lung", "left lung"}),
        ("Retrocardiac opacity.", {"left lower lung zone", "left lung"}),
        ("The cardiomediastinal silhouette is normal.", {"cardiac silhouette", "mediastinum"}),
        ("Lungs are clear.", {"right lung", "left lung"}),
        ("Thoracic spondylosis.", {"spine"}),
        ("Normal chest x-XXXX.", set()),
    ],
)
def test_sentence_to_region_rules(sentence, expected):
    assert sentence_regions(sentence) == expected
    assert expected <= set(REGION_NAMES)


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("No pleural effusion.", set()),
        ("Small left pleural effusion.", {"pleural effusion"}),
        ("There is no pneumothorax, but there is a right lower lobe consolidation.", {"consolidation"}),
        ("The lungs are clear of consolidation.", set()),
        ("Pneumothorax is not seen.", set()),
        ("Stable cardiomegaly without pleural effusion.", {"cardiomegaly"}),
        ("No focal airspace consolidation, pneumothorax or large pleural effusion.", set()),
        ("Negative for pneumonia; atelectasis at the left base.", {"atelectasis"}),
        ("Possible right lower lobe pneumonia.", set()),  # uncertain -> 0, as the reference maps -1 to 0
        ("Endotracheal tube in good position.", {"support devices"}),
        ("Midline sternotomy.", set()),
    ],
)
def test_negation_aware_tagger(sentence, expected):
    assert sentence_tags(sentence) == expected


def test_report_tags_and_no_finding():
    normal = report_tags(["No acute cardiopulmonary abnormality.", "No pleural effusion."])
    assert normal[TAG_NAMES.index("no finding")] == 1 and normal.sum() == 1
    sick = report_tags(["Small left pleural effusion.", "No pneumothorax."])
    assert sick[TAG_NAMES.index("pleural effusion")] == 1 and sick.sum() == 1


def test_template_boxes_follow_the_radiological_convention(model):
    assert len(REGIONS) == 23
    for name, (x0, y0, x1, y1) in REGIONS.items():
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, name
        if name.startswith("right "):
            assert x1 <= 0.5, name  # the patient's right is on the image's left
        if name.startswith("left "):
            assert x0 >= 0.5, name
    # RoIAlign through the model: channel 0 lights the image's left half, channel 1 its right half
    fmap = torch.zeros(1, 2, 8, 8)
    fmap[0, 0, :, :4] = 1
    fmap[0, 1, :, 4:] = 1
    original, model.image_local = model.image_local, nn.Identity()
    try:
        feats = model.region_features(fmap)[0]
    finally:
        model.image_local = original
    at = {n: feats[REGION_NAMES.index(n)] for n in REGION_NAMES}
    assert at["right upper lung zone"].tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert at["left upper lung zone"].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)
    assert at["right costophrenic angle"][0] == pytest.approx(1.0) and at["cardiac silhouette"][1] > at["cardiac silhouette"][0]


def test_prepare_assigns_regions_and_tags(model):
    assert model.reports.kept[0] == ["Small left pleural effusion.", "Heart size is normal.", "Effusion."]
    regions = model.regions[0]  # R x S
    assert regions[REGION_NAMES.index("left costophrenic angle"), 0]
    assert regions[REGION_NAMES.index("cardiac silhouette"), 1]
    assert not regions[REGION_NAMES.index("cardiac silhouette"), 0]
    assert regions[REGION_NAMES.index("right costophrenic angle"), 2]  # "Effusion." has no side: both
    assert model.tags[0, TAG_NAMES.index("pleural effusion")] == 1
    assert model.tags[1, TAG_NAMES.index("no finding")] == 1


def test_step_terms_and_weighted_sum(model):
    model.train()
    out = model.training_step({"view1": torch.randn(4, 3, 32, 32), "index": torch.arange(4)})
    assert set(out) == {"loss", "ira", "arsa", "erl", "irl"}
    expected = out["ira"] + out["arsa"] + out["erl"] + 5 * out["irl"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.tag_queries.abs().sum() > 0  # tag names embedded by the frozen encoder
    out["loss"].backward()
    assert model.image_local[0].weight.grad is not None and model.text_local[0].weight.grad is not None
    assert len(model.text_tower.model.encoder.layer) == 2  # tiny-random has 2 <= keep_layers
    model.eval()
    img, txt = model.embed_images(torch.randn(2, 3, 32, 32)), model.embed_texts(["pleural effusion", "normal"])
    assert img.shape == txt.shape == (2, 16) and torch.allclose(txt.norm(dim=-1), torch.ones(2))


def test_no_flip_in_the_augmentation(model):
    transform = model.train_transform()
    image = np.zeros((36, 36), np.uint8)
    image[:, :18] = 255  # bright image-left half must stay on the left
    for _ in range(10):
        x = transform(image)
        assert x[0, :, :8].mean() > x[0, :, -8:].mean()


def test_smoke_pretraining_through_the_loop():
    import torchvision

    from benchmark.factory import resolve
    from benchmark.runner import get_encoder

    pre = get_encoder(resolve("asg", None, "smoke", [("max_steps", 2)]), None)
    assert pre.meta["steps"] == 2
    with open(pre.path.parent / "losses.csv") as fh:
        header = next(csv.reader(fh))
    assert {"loss", "ira", "arsa", "erl"} <= set(header) and "irl" not in header
    net = torchvision.models.resnet50()
    net.fc = nn.Identity()
    net.load_state_dict(torch.load(pre.path, weights_only=True), strict=True)
