import math

import pytest
import torch
import torch.nn.functional as F

from methods.losses import cicl_loss, clinical_prior_targets


def test_cicl_matches_hand_computed_value():
    # s = I / 0.5; the two prior rows correlate with r = 9 / sqrt(84) (worked by hand):
    # Y_01 = 0.5 * (1 - exp(-0.2 r)); row CE = (lse - 2) + Y_01 * lse with lse = log(e^2 + 1).
    a = torch.eye(2)
    prior = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 4.0]])
    r = 9 / math.sqrt(84)
    y = 0.5 * (1 - math.exp(-0.2 * r))
    lse = math.log(math.exp(2) + 1)
    expected = 2 * ((lse - 2) + y * lse)
    assert expected == pytest.approx(0.633116, abs=1e-6)
    assert cicl_loss(a, a, prior, temperature=0.5, ratio=0.2).item() == pytest.approx(expected, rel=1e-5)


def test_prior_targets_clip_negative_correlation_and_zero_diagonal():
    prior = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 2.0, 3.5]])
    y = clinical_prior_targets(prior, temperature=0.07, ratio=0.2)
    assert torch.allclose(torch.diagonal(y), torch.ones(3))
    assert y[0, 1] == 0 and y[1, 0] == 0  # r = -1 clipped
    assert 0 < y[0, 2] < 0.07 * (1 - math.exp(-0.2))  # 0 < r < 1
    assert torch.allclose(y, y.T)


def test_cicl_without_prior_is_symmetric_infonce():
    torch.manual_seed(0)
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    logits = F.normalize(a) @ F.normalize(b).T / 0.07
    labels = torch.arange(6)
    expected = F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    assert cicl_loss(a, b, None, 0.07).item() == pytest.approx(expected.item(), rel=1e-6)


def test_cicl_without_prior_matches_open_clip():
    from open_clip.loss import ClipLoss

    torch.manual_seed(1)
    a, b = F.normalize(torch.randn(5, 4)), F.normalize(torch.randn(5, 4))
    clip = ClipLoss()(a, b, torch.tensor(1 / 0.1))  # mean of the two directions
    assert cicl_loss(a, b, None, 0.1).item() == pytest.approx(2 * clip.item(), rel=1e-5)


def test_uncorrelated_prior_reduces_to_infonce_and_correlated_prior_changes_loss():
    torch.manual_seed(2)
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    anti = torch.tensor([[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # r = -1 / undefined
    base = cicl_loss(a, b, None, 0.07)
    assert cicl_loss(a, b, anti, 0.07).item() == pytest.approx(base.item(), rel=1e-6)
    same = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.1], [3.0, 1.0, 2.0]])
    assert cicl_loss(a, b, same, 0.07).item() > base.item()  # extra positive mass adds CE
