import math

import pytest
import torch
import torch.nn.functional as F

from benchmark.methods.losses import (
    cicl_loss,
    clinical_prior_targets,
    contrastive_from_logits,
    contrastive_loss,
)


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


# -- the contrastive core (issue 16) ------------------------------------------
# cosines S = [[1, 1], [0, 0]] (b rescaled: only directions count), tau 0.1 -> logits 10 S;
# rows (a -> b): [10, 10] label 0 and [0, 0] label 1 -> log 2 each;
# columns (b -> a), rows of 10 S.T = [[10, 0], [10, 0]]: log(1 + e^-10) and log(1 + e^10).
A, B = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[3.0, 0.0], [0.5, 0.0]])
ROWS = math.log(2)
COLS = (math.log(1 + math.exp(-10)) + math.log(1 + math.exp(10))) / 2


def test_core_direction_weights_pick_one_direction():
    rows_only = contrastive_loss(A, B, 0.1, weights=(1.0, 0.0))
    cols_only = contrastive_loss(A, B, 0.1, weights=(0.0, 1.0))
    assert rows_only.loss.item() == pytest.approx(ROWS, rel=1e-6)
    assert cols_only.loss.item() == pytest.approx(COLS, rel=1e-6)  # 5.0000227, far from log 2
    assert rows_only.a_to_b.item() == pytest.approx(ROWS, rel=1e-6)
    assert rows_only.b_to_a.item() == pytest.approx(COLS, rel=1e-6)
    assert contrastive_loss(A, B, 0.1).loss.item() == pytest.approx(ROWS + COLS, rel=1e-6)


def test_core_identity_soft_targets_equal_the_hard_path():
    torch.manual_seed(3)
    a, b = torch.randn(7, 5, requires_grad=True), torch.randn(7, 5)
    hard = contrastive_loss(a, b, 0.07, weights=(0.75, 0.25))
    soft = contrastive_loss(a, b, 0.07, targets=torch.eye(7), weights=(0.75, 0.25))
    for h, s in zip(hard, soft):
        assert s.item() == pytest.approx(h.item(), rel=1e-6)
    (g_hard,), (g_soft,) = torch.autograd.grad(hard.loss, a), torch.autograd.grad(soft.loss, a)
    assert torch.allclose(g_hard, g_soft, rtol=1e-5, atol=1e-7)
    assert hard.a_to_b.item() != pytest.approx(hard.b_to_a.item(), rel=1e-3)  # the two directions differ


def test_core_soft_targets_are_transposed_for_the_columns():
    # logits 10 S as above; targets T = [[1, 0], [0.5, 1]] (not symmetric, not normalised).
    # rows: row 0 -> log 2; row 1 -> (0.5 + 1) log 2. columns use T.T = [[1, 0.5], [0, 1]] on
    # 10 S.T with L = log(e^10 + 1): row 0 -> (L - 10) + 0.5 L; row 1 -> L.
    logits = 10 * torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.5, 1.0]])
    big = math.log(math.exp(10) + 1)
    out = contrastive_from_logits(logits, target)
    assert out.a_to_b.item() == pytest.approx(1.25 * math.log(2), rel=1e-6)
    assert out.b_to_a.item() == pytest.approx((2.5 * big - 10) / 2, rel=1e-6)
    assert out.loss.item() == pytest.approx(out.a_to_b.item() + out.b_to_a.item(), rel=1e-6)


def test_the_loss_core_stays_float32_under_bf16_autocast():
    """Issue 28: under autocast the cosine logits and CICL's targets came back in bfloat16 (a logit
    error of 0.08 at temperature 0.01) although the docstring promised float32."""
    from benchmark.methods.losses import clinical_prior_targets, cosine_logits

    torch.manual_seed(0)
    layer = torch.nn.Linear(16, 16)
    a, b = torch.randn(8, 16), torch.randn(8, 16)
    exact = cosine_logits(layer(a), b, 0.01)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = layer(a)  # bfloat16, as a method's head gives it under autocast
        logits = cosine_logits(x, b, 0.01)
        targets = clinical_prior_targets(x, 0.07, 0.2)
    assert x.dtype == torch.bfloat16 and logits.dtype == torch.float32 and targets.dtype == torch.float32
    # only the head's own bfloat16 rounding is left, not a bfloat16 matmul on top of it
    assert torch.allclose(logits, cosine_logits(x.float(), b, 0.01), atol=1e-4)
    assert (logits - exact).abs().max() < 2.0  # bfloat16 inputs, float32 logits
