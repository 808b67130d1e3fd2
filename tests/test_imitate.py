import pytest
import torch

from benchmark.config import build
from benchmark.errors import UserError
from benchmark.methods.imitate import ChannelTokenBranch, Imitate, ImitateConfig, token_counts

TEXT_DIM = 16


def make(batch=4, **over):
    cfg = build(ImitateConfig, {"backbone_weights": "none", "image_size": 32, "batch_size": batch, **over}, "test")
    torch.manual_seed(0)
    model = Imitate(cfg, TEXT_DIM)
    n = 6
    g = torch.Generator().manual_seed(1)
    bank = {f: torch.randn(n, TEXT_DIM, generator=g) for f in ("findings", "impression", "report")}
    bank["has_findings"] = torch.tensor([True, True, False, True, True, True])
    model.attach_text(bank)
    batch_ = {"view1": torch.randn(batch, 3, 32, 32, generator=g), "view2": torch.randn(batch, 3, 32, 32, generator=g),
              "index": torch.arange(batch)}
    return model, batch_


def test_token_counts_and_findings_branch_shapes():
    assert token_counts((0.25, 0.15, 0.10, 0.10)) == [64, 76, 102, 204]
    branch = ChannelTokenBranch((0.25, 0.15, 0.10, 0.10), pool=16, max_tokens=512, heads=4, out_dim=512)
    feats = [torch.randn(3, c, s, s) for c, s in zip((256, 512, 1024, 2048), (8, 4, 2, 1))]
    draw = branch.draw(torch.Generator().manual_seed(0))
    assert [len(d) for d in draw] == [64, 76, 102, 204]
    tokens = branch.tokens(feats, draw)
    assert tokens.shape == (3, 512, 256)
    assert tokens[:, 446:].abs().sum() == 0  # zero padding after the 446 channel tokens
    assert tokens[:, :446].abs().sum() > 0
    assert branch.pos.shape == (1, 513, 256)
    assert branch(feats, draw).shape == (3, 512)


def test_backbone_runs_once_per_view_per_step():
    model, batch = make()
    calls = []
    model.backbone.register_forward_hook(lambda *a: calls.append(1))
    out = model.training_step(batch)
    assert len(calls) == 2
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.findings_branch.attn.in_proj_weight.grad is not None
    assert set(out) == {"loss", "impression_text", "findings_text", "view_impression", "view_findings"}


def test_loss_is_the_weighted_sum_of_its_terms():
    model, batch = make()
    out = model.training_step(batch)
    expected = out["impression_text"] + out["findings_text"] + 2 * out["view_impression"] + 2 * out["view_findings"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_findings_terms_masked_for_reports_without_findings():
    model, batch = make()
    batch["index"] = torch.tensor([0, 1, 2, 3])  # sample 2 has no findings
    draws = [model.findings_branch.draw(torch.Generator().manual_seed(i)) for i in range(4)]
    model.eval()  # BN in eval mode: the comparison must not depend on batch statistics
    first = model.training_step(batch, draws)["findings_text"]
    model.text_findings[2] = torch.randn(TEXT_DIM) * 100  # garbage for the masked sample
    second = model.training_step(batch, draws)["findings_text"]
    assert first.item() == pytest.approx(second.item(), rel=1e-6)
    model.text_findings[1] = torch.randn(TEXT_DIM) * 100  # a sample that has findings does count
    assert model.training_step(batch, draws)["findings_text"].item() != pytest.approx(first.item(), rel=1e-3)


def test_flat_and_infonce_ablations():
    model, batch = make(hierarchical=False)
    assert model.findings_branch is None and model.text_fields == ("report",)
    out = model.training_step(batch)
    assert set(out) == {"loss", "report_text", "view_impression"} and torch.isfinite(out["loss"])
    model, batch = make(loss="infonce", view_view=False)
    out = model.training_step(batch)
    assert out["view_impression"] == 0 and out["view_findings"] == 0


def test_bad_channel_keep_is_a_user_error():
    with pytest.raises(UserError, match="channel_keep"):
        build(ImitateConfig, {"channel_keep": [0.5, 0.5]}, "test")
    with pytest.raises(UserError, match="max_tokens"):
        build(ImitateConfig, {"channel_keep": [1.0, 1.0, 1.0, 1.0]}, "test")


def test_the_frozen_text_encoder_runs_on_the_trials_device(monkeypatch):
    """Issue 28: the frozen text encoder went to CUDA whenever CUDA was available, whatever --device
    said; now it runs where the loop (or a joint-space task) puts the method (``text_device``)."""
    import torch

    from benchmark.factory import resolve
    from benchmark.registry import METHODS

    cfg = resolve("imitate", None, "smoke", []).method_cfg
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, told --device cpu
    model = METHODS.get("imitate")(cfg)  # IMITATE builds its text cache in __init__
    model.text_device = "cpu"  # what train_loop sets for --device cpu
    assert model.text_cache.device == "cpu"
    model.text_device = "meta"  # another device given later: the cache follows
    assert model.text_cache.device == "meta"
