import json

import pytest
import torch

from benchmark.cli import main
from benchmark.data.pairs import PairViews
from benchmark.data.sources import pretrain_corpus
from benchmark.factory import resolve
from benchmark.speed_naive import NaiveImitate, naive_step_fn


@pytest.fixture(autouse=True)
def one_thread():
    """The CI machine is shared: two spinning OpenMP threads on busy cores run ~40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def smoke_model(method: str, **sets):
    resolved = resolve(method, None, "smoke", list(sets.items()))
    cfg = resolved.method_cfg
    corpus = pretrain_corpus(cfg, None)
    torch.manual_seed(0)
    model = resolved.method_cls(cfg)
    model.prepare(corpus)
    views = PairViews(corpus.images, model.train_transform(), cfg.seed, model.views)
    items = [views[i] for i in range(cfg.batch_size)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0] if k.startswith("view")}
    batch["index"] = torch.arange(cfg.batch_size)
    return model.train(), corpus, batch


def test_speed_command_prints_the_three_rates_and_their_ratios(capsys):
    code = main(["speed", "--method", "imitate", "--profile", "smoke", "--batch-size", "2", "--image-size", "32",
                 "--steps", "1", "--warmup", "0", "--device", "cpu", "--json"])
    assert code == 0
    out = (lambda c: c.err + c.out)(capsys.readouterr()).strip().splitlines()
    result = json.loads(out[-1])
    assert result["device"].startswith("cpu") and result["batch_size"] == 2 and result["image_size"] == 32
    assert result["views"] == 2  # IMITATE's ceiling: 2 x batch images
    for key in ("ceiling", "step", "naive", "step_data"):
        assert result[f"{key}_pairs_per_s"] > 0
    assert result["step_over_ceiling"] == pytest.approx(result["step_pairs_per_s"] / result["ceiling_pairs_per_s"], abs=2e-3)
    assert result["step_over_naive"] == pytest.approx(result["step_pairs_per_s"] / result["naive_pairs_per_s"], abs=2e-3)
    assert any(line.startswith("  step / ceiling") for line in out)


def test_speed_times_a_config_whose_image_encoder_has_its_own_rate(capsys):
    """``backbone_lr`` splits the optimiser by the model's image encoder; the bare-backbone
    ceiling must offer one too (the phantom profile sets it: speed crashed there)."""
    code = main(["speed", "--method", "supervised", "--profile", "smoke", "--set", "backbone_lr=1e-3", "--batch-size", "2",
                 "--image-size", "32", "--steps", "1", "--warmup", "0", "--device", "cpu", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ceiling_pairs_per_s"] > 0


def test_speed_of_a_method_that_is_not_pretrained_is_a_user_error(capsys):
    assert main(["speed", "--method", "random", "--profile", "smoke", "--steps", "1"]) == 2
    assert "not pre-trained" in capsys.readouterr().err


def test_naive_imitate_step_gives_the_optimised_loss_with_four_passes_and_two_text_encodes():
    model, corpus, batch = smoke_model("imitate")
    draws = [model.findings_branch.draw(torch.Generator().manual_seed(i)) for i in range(4)]
    naive = naive_step_fn(model, corpus)
    assert isinstance(naive, NaiveImitate)
    encoder = model.text_cache.encoder
    passes = []
    model.backbone.register_forward_hook(lambda *a: passes.append(1))

    calls = encoder.calls
    fast = model.training_step(batch, draws)  # BN in train mode: batch statistics, as in pre-training
    assert (len(passes), encoder.calls - calls) == (2, 0)  # two passes, text from the cache
    fast["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    passes.clear()
    slow = naive(batch, draws)
    assert (len(passes), encoder.calls - calls) == (4, 2)  # views x draws, findings + impression encoded
    slow["loss"].backward()
    for key in ("loss", "impression_text", "findings_text", "view_impression", "view_findings"):
        assert slow[key].item() == pytest.approx(fast[key].item(), rel=1e-4, abs=1e-5), key
    assert fast["view_findings"].item() > 0 and fast["findings_text"].item() > 0
    for name, g in grads.items():
        assert (model.get_parameter(name).grad - g).norm() <= 1e-3 * g.norm() + 1e-5, name  # fp32 summation order

    other = [model.findings_branch.draw(torch.Generator().manual_seed(10 + i)) for i in range(4)]
    assert naive(batch, other)["view_findings"].item() != pytest.approx(fast["view_findings"].item(), rel=1e-4)


@pytest.mark.parametrize("method", ["convirt", "prior"])
def test_naive_text_tower_steps_tokenise_per_step_and_match_the_step(method):
    model, corpus, batch = smoke_model(method)
    naive = naive_step_fn(model, corpus)
    state = model.rng_state()
    model.eval()  # no dropout, so the two steps are comparable
    fast = model.training_step(batch)
    model.load_rng_state(state)  # the same text-unit draws
    if hasattr(model, "steps_done"):
        model.steps_done.zero_()
    slow = naive(batch)
    assert slow["loss"].item() == pytest.approx(fast["loss"].item(), rel=1e-4)
    assert "drawn_tokens" not in vars(model)  # the per-corpus token source is back after the naive step
    assert type(getattr(model, "reports", None)).__name__ in ("ReportTokens", "NoneType")


def test_speed_task_mode_times_the_grid_against_one_trial(capsys):
    code = main(["speed", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--device", "cpu", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["grid_trials"] == 9 and result["single_trial_s"] > 0 and result["grid_s"] > 0
    # the three values are rounded to 3 decimals separately: compare within that rounding
    assert result["grid_over_single"] == pytest.approx(result["grid_s"] / result["single_trial_s"], rel=1e-2)


def test_findings_attention_from_cls_alone_equals_full_self_attention():
    from benchmark.methods.imitate import ChannelTokenBranch

    torch.manual_seed(0)
    branch = ChannelTokenBranch((0.25, 0.15, 0.10, 0.10), 4, 512, 4, 32).eval()
    torch.nn.init.normal_(branch.pos, std=0.1)
    feats = [torch.randn(3, c, s, s) for c, s in zip((256, 512, 1024, 2048), (8, 4, 2, 1))]
    draw = branch.draw(torch.Generator().manual_seed(0))
    x = branch.tokens(feats, draw)
    x = torch.cat([branch.cls.expand(3, -1, -1), x], dim=1) + branch.pos
    full = branch.head((x + branch.attn(x, x, x, need_weights=False)[0])[:, 0])  # every token attends
    assert torch.allclose(branch(feats, draw), full, atol=1e-5)
