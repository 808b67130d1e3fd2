"""Downstream metrics on hand-computed cases; the linear probe's feature cache."""

import math

import numpy as np
import pytest
import torch

from benchmark.tasks.metrics import accuracy, auroc, macro_f1, per_image_dice
from benchmark.tasks.segmentation import focal_loss, soft_dice


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
    from benchmark.tasks.classification import PooledEncoder

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
    from benchmark.tasks.classification import PooledEncoder

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
    from benchmark.tasks.retrieval import precision_at_k

    scores = torch.tensor([[0.9, 0.8, 0.1], [0.2, 0.3, 0.7]])
    query, items = np.array([0, 1]), np.array([0, 1, 1])
    # query 0 ranks items 0 (hit), 1 (miss), 2 (miss); query 1 ranks 2 (hit), 1 (hit), 0 (miss)
    assert precision_at_k(scores, query, items, 1) == 1.0
    assert precision_at_k(scores, query, items, 2) == pytest.approx((0.5 + 1.0) / 2)
    assert precision_at_k(scores, query, items, 10) == pytest.approx((1 / 3 + 2 / 3) / 2)  # k capped


def test_prompts_and_max_pooling_over_prompts():
    from benchmark.tasks.zeroshot import class_prompts, max_over_prompts

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
        kinds = {les.kind for les in lesions_from_report(reports[0])} & set(KIND_OF.values())
        assert kinds == {KIND_OF[CLASSES[c]]}
    assert all(isinstance(t, str) and t for t in s.texts)


def test_warmup_cosine_schedule():
    from benchmark.tasks.base import warmup_cosine

    f = warmup_cosine(2, 6)
    assert [round(f(s), 4) for s in range(7)] == [0.5, 1.0, 1.0, 0.8536, 0.5, 0.1464, 0.0]


@pytest.mark.parametrize("task", ["rsna_cls", "rsna_seg", "rsna_det", "covidx_cls"])
def test_finetune_protocol_trains_the_encoder(task, capsys, monkeypatch):
    import json

    from benchmark.cli import main
    from benchmark.tasks import base

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

    for module in ("benchmark.tasks.classification", "benchmark.tasks.segmentation", "benchmark.tasks.detection"):
        monkeypatch.setattr(f"{module}.train_head", spy)
    assert main(["run", "--method", "random", "--task", task, "--profile", "smoke", "--protocol", "finetune", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"] == "finetune" and 0 <= out["value"] <= 1
    assert seen == {"encoder": True, "changed": True}
    assert main(["run", "--method", "random", "--task", task, "--profile", "smoke", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["protocol"] == "mgca"
    assert seen["encoder"] is False  # mgca: frozen
    # the bootstrap interval over the test images (8 at smoke size), stored with the metrics
    low, high = out["metrics"]["ci_low"], out["metrics"]["ci_high"]
    if low is not None:  # rsna_det: an untrained head's mAP can be undefined (NaN, stored as null) on every resample
        assert 0 <= low <= high <= 1


def test_unknown_protocol_is_a_user_error(capsys):
    from benchmark.cli import main

    assert main(["run", "--method", "random", "--task", "rsna_cls", "--protocol", "linear"]) == 2
    assert "expected 'mgca' | 'finetune'" in capsys.readouterr().err


def _resample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    idx = rng.integers(0, n, n)
    return idx, np.bincount(idx, minlength=n)


def test_auroc_of_counts_equals_auroc_on_the_resampled_images():
    from benchmark.tasks.metrics import auroc_of_counts

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # rounded: many tied scores across the classes
    truth = np.stack([y, rng.integers(0, 2, 300), (np.arange(300) == 7).astype(int)], 1)  # label 2: one positive
    scores = np.round(rng.normal(size=(300, 3)) + truth, 1)
    binary, labels = auroc_of_counts(y, s), auroc_of_counts(truth, scores)
    assert binary(np.ones(300)) == pytest.approx(auroc(y, s), abs=1e-12)
    assert labels(np.ones(300)) == pytest.approx(auroc(truth, scores), abs=1e-12)
    lost = 0
    for _ in range(30):
        idx, counts = _resample(rng, 300)
        assert binary(counts) == pytest.approx(auroc(y[idx], s[idx]), abs=1e-12)
        assert labels(counts) == pytest.approx(auroc(truth[idx], scores[idx]), abs=1e-12)
        lost += counts[7] == 0  # label 2 drops out of the macro mean on these resamples, as in auroc
    assert lost > 0
    assert math.isnan(auroc_of_counts(np.array([1, 1]), np.array([0.2, 0.3]))(np.ones(2)))


def test_detection_map_of_counts_equals_the_map_of_the_resampled_images():
    from benchmark.tasks.detection import MAP_IOU_THRESHOLDS
    from benchmark.tasks.metrics import DetectionAP, detection_map

    rng = np.random.default_rng(2)

    def boxes(k: int) -> np.ndarray:
        xy = rng.uniform(0, 50, (k, 2))
        return np.concatenate([xy, xy + rng.uniform(5, 20, (k, 2))], 1)

    truths = [boxes(int(k)) for k in rng.integers(0, 3, 60)]
    preds = [np.concatenate([t + rng.normal(0, 2, t.shape), boxes(int(rng.integers(0, 3)))]) for t in truths]
    scores = [rng.random(len(p)) for p in preds]
    for negatives in (True, False):
        ap = DetectionAP(preds, scores, truths, MAP_IOU_THRESHOLDS, negatives)
        assert ap() == detection_map(preds, scores, truths, MAP_IOU_THRESHOLDS, negatives)
        for _ in range(10):
            idx, counts = _resample(rng, 60)
            picked = [[xs[i] for i in idx] for xs in (preds, scores, truths)]
            expected = detection_map(*picked, MAP_IOU_THRESHOLDS, negatives)
            assert ap(counts) == pytest.approx(expected, abs=1e-12)


def test_image_interval_is_scipys_percentile_bootstrap():
    from scipy import stats
    from sklearn.metrics import roc_auc_score

    from benchmark.tasks.metrics import auroc_of_counts, image_interval, mean_of_counts

    y = np.tile([0, 1], 40)
    s = np.linspace(0, 1, 80) + 0.3 * y  # AUROC 0.83: an interval well inside (0, 1)
    ci = image_interval(auroc_of_counts(y, s), 80)
    direct = stats.bootstrap((y, s), lambda a, b: roc_auc_score(a, b), paired=True, vectorized=False,
                             n_resamples=1000, method="percentile", rng=np.random.default_rng(0)).confidence_interval
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((direct.low, direct.high), abs=1e-12)
    assert ci["ci_low"] < auroc(y, s) < ci["ci_high"] and ci["ci_high"] - ci["ci_low"] > 0.05
    dice = np.concatenate([np.ones(20), np.linspace(0, 0.9, 40)])  # per-image Dice, empty/empty images at 1
    ci = image_interval(mean_of_counts(dice), 60)
    direct = stats.bootstrap((dice,), np.mean, n_resamples=1000, method="percentile",
                             rng=np.random.default_rng(0)).confidence_interval
    assert (ci["ci_low"], ci["ci_high"]) == pytest.approx((direct.low, direct.high), abs=1e-12)
    assert ci["ci_low"] < dice.mean() < ci["ci_high"]


def test_image_interval_costs_little_on_1000_images():
    import time

    from benchmark.tasks.metrics import auroc_of_counts, image_interval

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    s = rng.normal(size=1000) + y
    start = time.perf_counter()
    image_interval(auroc_of_counts(y, s), 1000)
    assert time.perf_counter() - start < 1.0  # about 0.1 s on the 2-core machine


def test_standardized_uses_the_training_subset_statistics_only():
    from benchmark.tasks.classification import standardized

    train = torch.tensor([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 9.0]])
    test = torch.tensor([[3.0, 6.0, 5.0]])
    out = standardized({"train": train, "test": test})
    assert torch.allclose(out["train"].mean(0), torch.zeros(3), atol=1e-6)
    assert torch.allclose(out["train"][:, [0, 2]].std(0), torch.ones(2))
    # test row by hand: (3 - 3) / 2 = 0; constant feature only shifted: 6 - 5 = 1; (5 - 5) / std([2, 4, 9]) = 0
    assert torch.allclose(out["test"], torch.tensor([[0.0, 1.0, 0.0]]))
