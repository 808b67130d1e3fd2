"""Downstream metrics on hand-computed cases; the linear probe's feature cache."""

import math

import numpy as np
import pytest
import torch

from tasks.metrics import accuracy, auroc, macro_f1, per_image_dice
from tasks.segmentation import focal_loss, soft_dice


def test_dice_per_image_with_empty_masks():
    truth = torch.zeros(4, 2, 2)
    pred = torch.zeros(4, 2, 2)
    truth[1, 0, 0] = 1  # missed lesion -> 0
    pred[2, 1, 1] = 1  # false positive on an empty image -> 0
    truth[3, 0] = 1  # 2 true pixels, 1 predicted of them plus 1 wrong: 2*1 / (2 + 2)
    pred[3, 0, 0] = pred[3, 1, 1] = 1
    assert per_image_dice(pred, truth).tolist() == [1.0, 0.0, 0.0, 0.5]  # empty/empty counts 1


def test_auroc_hand_computed():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 3 of 4
    assert auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    truth = np.array([[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])  # label 2 has no positive: skipped
    scores = np.array([[0.2, 0.9, 0.1], [0.8, 0.6, 0.2], [0.3, 0.7, 0.3], [0.1, 0.1, 0.4]])
    # label 0: positives 0.8, 0.3 vs 0.2, 0.1 -> 1.0; label 1: positives 0.9, 0.6 vs 0.7, 0.1 -> 3/4
    assert auroc(truth, scores) == pytest.approx((1.0 + 0.75) / 2)
    assert math.isnan(auroc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_accuracy_and_macro_f1():
    truth, pred = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])
    assert accuracy(truth, pred) == 0.75
    # F1: class 0 = 1, class 1 = 0, class 2 = 2*2/(2*2+1) = 0.8
    assert macro_f1(truth, pred, 3) == pytest.approx((1 + 0 + 0.8) / 3)


def test_segmentation_loss_parts():
    logits, target = torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])
    # p = 0.5 everywhere: BCE = log 2, (1 - p_t)^2 = 0.25
    assert focal_loss(logits, target, 2.0).item() == pytest.approx(0.25 * math.log(2))
    # soft Dice: (2 * 0.5 + 1) / (1 + 1 + 1)
    assert soft_dice(logits, target, 1.0).item() == pytest.approx(2 / 3)


def test_linear_probe_reuses_cached_features(capsys, monkeypatch):
    from benchmark.cli import main
    from tasks.classification import PooledEncoder

    calls = []
    real = PooledEncoder.forward
    monkeypatch.setattr(PooledEncoder, "forward", lambda self, x: calls.append(len(x)) or real(self, x))
    base = ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--json"]
    assert main([*base, "--fraction", "1"]) == 0
    assert sum(calls) == 20 + 8 + 8  # train, val and test encoded once
    for fraction, seed in (("0.5", "42"), ("0.5", "0"), ("1", "1")):
        assert main([*base, "--fraction", fraction, "--seed", seed]) == 0
    assert sum(calls) == 36  # the other trials trained only linear heads
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"metric": "auroc"' in out


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other images", "NaN features"])
def test_damaged_feature_cache_is_rebuilt_with_one_warning(damage, capsys, monkeypatch, caplog, isolated_home):
    import logging

    from benchmark.cli import main
    from tasks.classification import PooledEncoder

    calls = []
    real = PooledEncoder.forward
    monkeypatch.setattr(PooledEncoder, "forward", lambda self, x: calls.append(len(x)) or real(self, x))
    base = ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--json"]
    assert main([*base, "--fraction", "1"]) == 0
    files = sorted((isolated_home / "home" / "features").rglob("*.pt"), key=lambda p: p.stat().st_size)
    assert len(files) == 3 and sum(calls) == 36
    path = files[0]  # val or test: 8 images
    saved = torch.load(path, weights_only=True)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x04 not a torch file" * 10)
    elif damage == "other images":
        torch.save({"ids": saved["ids"][::-1], "features": saved["features"]}, path)
    else:
        torch.save({"ids": saved["ids"], "features": saved["features"] * float("nan")}, path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main([*base, "--fraction", "1", "--seed", "1"]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"feature cache {path} is damaged" in warnings[0], warnings
    assert sum(calls) == 36 + 8  # only the damaged split encoded again
    again = torch.load(path, weights_only=True)
    assert again["ids"] == saved["ids"] and torch.allclose(again["features"], saved["features"])
    assert "Traceback" not in capsys.readouterr().err


def test_precision_at_k_hand_computed():
    from tasks.retrieval import precision_at_k

    scores = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7]])
    query, items = np.array([0, 1]), np.array([0, 1, 1])
    # query 0 ranks items 0 (hit), 1 (miss), 2 (miss); query 1 ranks 2 (hit), 1 (hit), 0 (miss)
    assert precision_at_k(scores, query, items, 1) == 1.0
    assert precision_at_k(scores, query, items, 2) == pytest.approx((0.5 + 1.0) / 2)
    assert precision_at_k(scores, query, items, 10) == pytest.approx((1 / 3 + 2 / 3) / 2)  # k capped


def test_prompts_and_max_pooling_over_prompts():
    from tasks.zeroshot import class_prompts, max_over_prompts

    spec = {"severity": ["", "mild"], "subtype": ["effusion"], "location": ["", "on the left"]}
    assert class_prompts(spec, 10) == ["effusion", "effusion on the left", "mild effusion", "mild effusion on the left"]
    assert len(class_prompts(spec, 3)) == 3 and class_prompts(spec, 3) == class_prompts(spec, 3)
    scores = torch.tensor([[0.1, 0.7, 0.3, 0.2], [0.5, 0.1, 0.2, 0.4]])
    pooled = max_over_prompts(scores, [0, 0, 1, 1], 2)  # the max, not the mean, of each class's prompts
    assert torch.allclose(pooled, torch.tensor([[0.7, 0.3], [0.5, 0.4]]))


@pytest.mark.parametrize("task, metric", [("chexpert5x200_zs", "accuracy"), ("chexpert5x200_ret", "p@1"), ("rsna_zs", "auroc")])
def test_joint_space_tasks_end_to_end(task, metric, capsys):
    import json

    from benchmark.cli import main

    assert main(["run", "--method", "imitate", "--task", task, "--profile", "smoke", "--set", "task.phantom_test=25", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["metric"] == metric and 0 <= out["value"] <= 1 and out["metrics"]["test_images"] == 25


def test_fivex200_is_single_label_with_report_text():
    from benchmark.data.phantom.anatomy import lesions_from_report
    from benchmark.data.phantom.fivex200 import (
        CLASSES,
        KIND_OF,
        phantom_5x200,
        single_label_reports,
    )

    s = phantom_5x200("test", 25, 32)
    assert np.bincount(s.labels).tolist() == [5] * 5 and len(set(s.ids)) == 25
    pools = single_label_reports()
    for c, reports in pools.items():
        kinds = {l.kind for l in lesions_from_report(reports[0])} & set(KIND_OF.values())
        assert kinds == {KIND_OF[CLASSES[c]]}
    assert all(isinstance(t, str) and t for t in s.texts)


def test_warmup_cosine_schedule():
    from tasks.base import warmup_cosine

    f = warmup_cosine(2, 6)
    assert [round(f(s), 4) for s in range(7)] == [0.5, 1.0, 1.0, 0.8536, 0.5, 0.1464, 0.0]


@pytest.mark.parametrize("task", ["rsna_cls", "rsna_seg", "rsna_det", "covidx_cls"])
def test_finetune_protocol_trains_the_encoder(task, capsys, monkeypatch):
    import json

    from benchmark.cli import main
    from tasks import base

    seen = {}
    real = base.train_head

    def spy(head, cfg, *args, encoder=None, **kwargs):
        before = {k: v.clone() for k, v in encoder.state_dict().items()} if encoder is not None else None
        out = real(head, cfg, *args, encoder=encoder, **kwargs)
        if encoder is not None:
            after = encoder.state_dict()
            seen["changed"] = any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
        seen["encoder"] = encoder is not None
        return out

    for module in ("tasks.classification", "tasks.segmentation", "tasks.detection"):
        monkeypatch.setattr(f"{module}.train_head", spy)
    assert main(["run", "--method", "random", "--task", task, "--profile", "smoke", "--protocol", "finetune", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"] == "finetune" and 0 <= out["value"] <= 1
    assert seen == {"encoder": True, "changed": True}
    assert main(["run", "--method", "random", "--task", task, "--profile", "smoke", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["protocol"] == "mgca"
    assert seen["encoder"] is False  # mgca: frozen


def test_unknown_protocol_is_a_user_error(capsys):
    from benchmark.cli import main

    assert main(["run", "--method", "random", "--task", "rsna_cls", "--protocol", "linear"]) == 2
    assert "expected 'mgca' | 'finetune'" in capsys.readouterr().err
