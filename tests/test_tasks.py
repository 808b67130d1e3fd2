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
