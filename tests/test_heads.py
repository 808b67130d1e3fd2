"""Heads that train at 1 %: ``min_steps`` in ``tasks.base.train_head``, counted in
optimiser steps, and the selection that cannot restore a head at its initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from benchmark.tasks import base
from benchmark.tasks.base import TaskConfig, head_epochs, train_head


@pytest.fixture
def steps():
    """Every optimiser step taken while the test runs, as the lr of its first group."""
    taken: list[float] = []
    handle = register_optimizer_step_post_hook(lambda opt, args, kwargs: taken.append(opt.param_groups[0]["lr"]))
    yield taken
    handle.remove()


class Scalar(nn.Module):
    """One weight w, starting at 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def pulled_away(head: Scalar):
    """Training pulls w towards 10; the validation loss is lowest at w = 0.1, which
    AdamW at lr 0.1 reaches after its first step: best after epoch 1, worse after."""

    def batch_loss(split: str, idx: np.ndarray) -> torch.Tensor:
        target = 10.0 if split == "train" else 0.1
        return (head.w - target) ** 2

    return batch_loss


def cfg(**overrides) -> TaskConfig:
    values = {"name": "t", "batch_size": 48, "lr": 0.1, "weight_decay": 0.0, "epochs": 5, "patience": 2, **overrides}
    return TaskConfig(**values)


def test_min_steps_counts_optimiser_steps_not_epochs(steps):
    head = Scalar()
    # 10 training rows in batches of 48: one step per epoch, so 5 epochs would be 5 steps
    _, epochs = train_head(head, cfg(min_steps=50), 0, 10, 4, pulled_away(head))
    assert len(steps) >= 50 and epochs == len(steps)
    assert head_epochs(cfg(min_steps=50), 10) == 50
    assert head_epochs(cfg(min_steps=50), 100) == 17  # 3 steps per epoch: 51 steps
    assert head_epochs(cfg(min_steps=50, epochs=80), 100) == 80  # enough epochs already


def test_min_steps_never_restores_the_head_near_its_initialisation(steps):
    seen = []
    head = Scalar()
    best, _ = train_head(head, cfg(min_steps=50), 0, 10, 4, pulled_away(head),
                         on_epoch=lambda epoch, score: seen.append(epoch))
    # AdamW moves w by about lr per step towards 10: after 50 steps w is near 5, far
    # from the first-epoch head (w = 0.1) that the validation loss prefers
    assert head.w.item() > 4.0
    assert best == pytest.approx((head.w.item() - 0.1) ** 2)
    assert seen == [50]  # the passes before step 50 are no candidates and reach no search


def test_min_steps_zero_keeps_the_loop_as_it_was(steps):
    head = Scalar()
    best, epochs = train_head(head, cfg(min_steps=0), 0, 10, 4, pulled_away(head))
    # best after epoch 1, then patience 2: stops after epoch 3 with epoch 1's head
    assert epochs == 3 and len(steps) == 3
    assert head.w.item() == pytest.approx(0.1, abs=1e-3)
    assert best == pytest.approx((head.w.item() - 0.1) ** 2)


def test_patience_counts_only_after_min_steps(steps):
    head = Scalar()
    # 100 rows, batch 48: 3 steps per epoch, 12 steps -> 4 epochs; then patience 2
    train_head(head, cfg(min_steps=12, epochs=30), 0, 100, 4, pulled_away(head))
    assert len(steps) == 3 * (4 + 2)


def test_finetune_schedule_spans_the_raised_budget(steps):
    head, encoder = Scalar(), Scalar()
    c = cfg(min_steps=50, warmup_epochs=1.0, grad_clip=1.0)
    loss = pulled_away(head)
    train_head(head, c, 0, 10, 4, lambda split, idx: loss(split, idx) + encoder.w ** 2, encoder=encoder)
    factor = base.warmup_cosine(1, 50)  # one step of warm-up, cosine over 50 steps (not 5 epochs x 1 step)
    assert len(steps) == 50
    assert steps == pytest.approx([0.1 * factor(k) for k in range(50)])
    assert all(lr > 0 for lr in steps)


def test_a_trial_reports_each_selectable_epoch_to_its_own_callback():
    """``on_epoch`` goes through the runner and the task's fit: every validation pass of the
    trial (minus its loss: higher is better), the best of them the stored val_loss; a second
    trial's callback hears only its own trial, and a trial with none runs as before."""
    from benchmark.runner import run_trial

    first, second = [], []
    out = run_trial("random", "rsna_cls", 0.5, 42, "smoke", on_epoch=lambda epoch, score: first.append((epoch, score)))
    metrics = out.trial.metrics
    assert [e for e, _ in first] == list(range(1, metrics["epochs"] + 1))
    assert max(s for _, s in first) == pytest.approx(-metrics["val_loss"])
    run_trial("random", "rsna_cls", 0.5, 7, "smoke", on_epoch=lambda epoch, score: second.append((epoch, score)))
    assert len(first) == metrics["epochs"] and second and second != first
    assert run_trial("random", "rsna_cls", 0.2, 42, "smoke").trial.status == "finished"
