"""The controls (issue 15): the phantom's finding labels, the ``supervised`` positive
control (its loss, its loop run, its refusal on real data) and ``random`` with two
initialisation seeds as two separate table rows."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.data.phantom.labels import (
    FINDINGS,
    LABEL_NAMES,
    MIRROR,
    REPORT_KINDS,
    finding_labels,
)
from benchmark.data.phantom.reports import Report, load_reports
from benchmark.errors import UserError
from benchmark.factory import resolve
from benchmark.store import Store


def report(*tags: str, uid: str = "t1") -> Report:
    return Report(uid, "", "", tags)


def names(row: np.ndarray) -> set[str]:
    return {LABEL_NAMES[i] for i in np.flatnonzero(row)}


# ------------------------------------------------------------------ finding labels
def test_left_upper_opacity_and_cardiomegaly_are_exactly_those_labels():
    y = finding_labels([report("Opacity/lung/upper lobe/left", "Cardiomegaly/mild"), report("normal")])
    assert y.shape == (2, len(FINDINGS)) and y.dtype == np.float32
    assert names(y[0]) == {"opacity/left", "cardiomegaly"} and y[0].sum() == 2
    assert y[1].sum() == 0


def test_sides_bilateral_and_sideless_kinds():
    y = finding_labels([report("Pleural Effusion/bilateral/small"), report("Pneumothorax/right"),
                        report("Emphysema"), report("Nodule/lung/lower lobe/right/multiple")])
    assert names(y[0]) == {"effusion/right", "effusion/left"}  # bilateral: both sides
    assert names(y[1]) == {"pneumothorax/right"}
    assert names(y[2]) == {"hyperinflation"}  # a whole-chest kind: one label
    assert names(y[3]) == {"nodule/right"}  # three right nodules: one label


def test_labels_cover_what_the_renderer_draws_for_the_whole_corpus():
    from benchmark.data.phantom.anatomy import lesions_from_report

    reports = load_reports()
    y = finding_labels(reports)  # every lesion kind a report produces has a column (else ValueError)
    assert set(np.unique(y)) <= {0.0, 1.0}
    drawn = np.array([bool(lesions_from_report(r)) for r in reports])
    assert np.array_equal(y.any(1), drawn)  # an image has a label exactly when something was drawn
    assert {k for k, _ in FINDINGS} == set(REPORT_KINDS) and "coin" not in REPORT_KINDS  # downstream-only kinds left out


def test_mirror_swaps_right_and_left():
    i, j = FINDINGS.index(("opacity", "right")), FINDINGS.index(("opacity", "left"))
    assert MIRROR[i] == j and MIRROR[j] == i
    assert MIRROR[FINDINGS.index(("cardiomegaly", ""))] == FINDINGS.index(("cardiomegaly", ""))
    assert [MIRROR[m] for m in MIRROR] == list(range(len(FINDINGS)))


# ------------------------------------------------------------------ the positive control
SMALL = [("backbone", "resnet18")]  # the head is sized from the backbone's last stage (512 here, 2048 for ResNet-50)


def smoke_model():
    from benchmark.methods.supervised import Supervised

    return Supervised(resolve("supervised", None, "smoke", SMALL).method_cfg)


def test_loss_is_the_hand_computed_bce_with_flipped_rows_mirrored():
    model = smoke_model()
    left, right = FINDINGS.index(("opacity", "left")), FINDINGS.index(("opacity", "right"))
    model.labels = torch.zeros(3, len(FINDINGS))
    model.labels[1, left] = 1.0  # both batch rows: a left opacity
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[right], model.head.bias[left] = 2.0, -1.0  # logits do not depend on the image
    batch = {"view1": torch.randn(2, 3, 32, 32), "index": torch.tensor([1, 1])}
    loss = model.training_step(batch, flip=torch.tensor([True, False]))["loss"]

    def bce(z, y):
        return math.log1p(math.exp(-z)) if y else math.log1p(math.exp(z))

    flipped = bce(2.0, 1) + bce(-1.0, 0)  # row 0 is mirrored: its left opacity is on the right now
    kept = bce(2.0, 0) + bce(-1.0, 1)
    others = 2 * (len(FINDINGS) - 2) * math.log(2)
    assert loss.item() == pytest.approx((flipped + kept + others) / (2 * len(FINDINGS)), rel=1e-6)


def test_flip_is_moved_out_of_the_transform_and_applied_to_the_image():
    from benchmark.data.transforms import ImitateViews
    from benchmark.methods.supervised import split_flip

    _, p = split_flip(ImitateViews(32))
    assert p == 0.5  # IMITATE's flip probability, now drawn in the step
    model = smoke_model()
    assert model.flip_p == 0.5 and model.views == 1
    assert not any("Flip" in type(t).__name__ for t in model.train_transform().geometric.transforms)
    seen = []
    model.logits = lambda images: seen.append(images) or torch.zeros(len(images), len(FINDINGS), requires_grad=True)
    model.labels = torch.zeros(2, len(FINDINGS))
    x = torch.randn(2, 3, 32, 32)
    model.training_step({"view1": x, "index": torch.tensor([0, 1])}, flip=torch.tensor([True, False]))
    assert torch.equal(seen[0][0], x[0].flip(-1)) and torch.equal(seen[0][1], x[1])


def test_loss_goes_down_on_a_fixed_batch():
    torch.manual_seed(0)
    model = smoke_model()
    model.labels = torch.from_numpy(finding_labels([report("Opacity/lung/upper lobe/left", "Cardiomegaly"),
                                                    report("Pleural Effusion/right"), report("normal"),
                                                    report("Pneumothorax/left")]))
    batch = {"view1": torch.randn(4, 3, 32, 32), "index": torch.arange(4)}
    flip = torch.zeros(4, dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = model.training_step(batch, flip=flip)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_supervised_pretrains_through_the_loop_on_the_corpus_labels(capsys):
    from benchmark.data.sources import pretrain_corpus
    from benchmark.models.encoders import ResNetStages
    from benchmark.pretraining import read_weights

    assert main(["pretrain", "--method", "supervised", "--profile", "smoke", "--set", "backbone=resnet18", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["steps"] > 0 and math.isfinite(meta["final_loss"]) and meta["corpus"]["source"] == "phantom"
    curve = (Path(meta["encoder"]).parent / "losses.csv").read_text().splitlines()
    assert curve[0].split(",")[:4] == ["step", "epoch", "lr", "loss"] and len(curve) == meta["steps"] + 1
    trained = read_weights(meta["encoder"])
    cfg = resolve("supervised", None, "smoke", SMALL).method_cfg
    torch.manual_seed(cfg.seed)  # the loop seeds the same way before building the method
    init = ResNetStages(cfg.backbone_weights, cfg.backbone).state_dict()
    assert not torch.equal(trained["conv1.weight"], init["conv1.weight"])
    model = smoke_model()
    corpus = pretrain_corpus(cfg, None)
    model.prepare(corpus)
    assert torch.equal(model.labels, torch.from_numpy(finding_labels(load_reports()[: len(corpus)])))
    assert "labels" not in model.state_dict()  # derived from the corpus, not saved in model.pt


def test_supervised_is_refused_on_real_data_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    from benchmark import factory, runner

    def read(*args, **kwargs):
        raise AssertionError("data was read")

    monkeypatch.setattr(runner, "pretrain_corpus", read)
    monkeypatch.setattr(factory, "corpus_fingerprints", read)
    monkeypatch.setattr(factory, "task_fingerprints", read)
    for argv in (["run", "--method", "supervised", "--task", "rsna_cls"], ["pretrain", "--method", "supervised"]):
        assert main([*argv, "--profile", "smoke", "--data-root", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: 'supervised' is a phantom-only positive control") and len(err.splitlines()) == 1
        assert "real reports do not carry" in err
    with pytest.raises(UserError, match="phantom-only"):  # the method itself refuses a corpus that is not the phantom
        smoke_model().prepare(SimpleNamespace(source="real: MIMIC-CXR", ids=["a"]))


def test_supervised_has_no_joint_space_and_is_listed(capsys):
    from benchmark.methods.supervised import Supervised

    assert not Supervised.has_joint_space()
    assert main(["list", "methods"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("supervised "))
    assert "positive control" in line and "phantom only" in line


# ------------------------------------------------------------------ the negative control
def test_two_random_inits_are_two_encoders_and_two_table_rows(tmp_path):
    from benchmark.experiments import load_experiment, trial_sets
    from benchmark.orchestrate.grid import expand
    from benchmark.report.tables import build_tables
    from benchmark.runner import get_encoder

    (tmp_path / "controls.yaml").write_text(
        "methods:\n  - random\n  - {method: random, variant: random-init1, set: {seed: 1}}\n"
        "tasks: [rsna_cls]\nfractions: [0.01]\nseeds: [0, 1]\n"
    )
    spec = load_experiment(str(tmp_path / "controls.yaml"))
    store = Store()
    plan = expand(spec, "smoke", [], None, None, store)
    hashes = {it.entry.label: it.trial.method_hash for it in plan.todo}
    assert set(hashes) == {"random", "random-init1"} and hashes["random"] != hashes["random-init1"]
    assert plan.variants == [("random", hashes["random-init1"], "random-init1")]
    seeds = {it.entry.label: it.trial.method_config["seed"] for it in plan.todo}
    assert seeds == {"random": 0, "random-init1": 1}

    a, b = (get_encoder(resolve("random", None, "smoke", trial_sets(spec, e, [], None)), None) for e in spec.methods)
    assert a.path.parent != b.path.parent  # two cached encoders
    assert not torch.equal(a.weights()["conv1.weight"], b.weights()["conv1.weight"])

    for value, it in zip((0.6, 0.62, 0.61, 0.63), plan.todo, strict=True):  # as if the grid had run
        store.record(dataclasses.replace(it.trial, status="finished", metric="auroc", value=value, seconds=1.0))
    for variant in plan.variants:
        store.label_variant(*variant)
    (table,) = build_tables(store.all(), store.variants(), data="phantom")
    assert sorted(r.label for r in table.rows) == ["random", "random-init1"]
