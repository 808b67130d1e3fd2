"""Trivial references and segmentation scores taken apart: hand-computed cases, a decoder that
predicts nothing, the real RSNA and SIIM label files' test splits counted by hand, the run's
lines and the table's reference rows."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_real_layouts import official_labels

from benchmark.cli import main
from benchmark.report.trivial import comparison_line, trivial_best
from benchmark.tasks.metrics import mask_counts, segmentation_scores
from benchmark.tasks.references import (
    classification_references,
    detection_references,
    label_chance,
    retrieval_chance,
    segmentation_references,
)


def masks(*rows: str) -> torch.Tensor:
    """One 1 x len image per string: '#' a lesion pixel."""
    return torch.tensor([[[c == "#" for c in r]] for r in rows])


def test_segmentation_scores_on_crafted_masks_by_hand():
    truth = masks("##......", "........", "####....", "........")
    pred = masks("#.......", "........", "..####..", "#.......")
    s = segmentation_scores(mask_counts(pred, truth), n_resamples=200)
    # per image: 2*1/(1+2) = 2/3; empty/empty = 1; 2*2/(4+4) = 1/2; pred on empty = 0
    assert s["dice"] == pytest.approx((2 / 3 + 1 + 0.5 + 0) / 4)
    assert s["dice_pos"] == pytest.approx((2 / 3 + 0.5) / 2)  # images 1 and 3 have a lesion
    assert s["empty_acc"] == pytest.approx(1 / 2)  # image 2 left empty, image 4 not
    # pooled: intersection 1 + 2, predicted 1 + 4 + 1, truth 2 + 4
    assert s["dice_pooled"] == pytest.approx(2 * 3 / (6 + 6))
    for name in ("dice_pos", "empty_acc", "dice_pooled"):
        assert s[f"{name}_ci_low"] <= s[name] <= s[f"{name}_ci_high"]
    assert s["ci_low"] <= s["dice"] <= s["ci_high"]


def test_segmentation_scores_without_lesion_free_images_say_nan():
    truth, pred = masks("##..", "#..."), masks("##..", "....")
    s = segmentation_scores(mask_counts(pred, truth), n_resamples=50)
    assert math.isnan(s["empty_acc"]) and math.isnan(s["empty_acc_ci_low"])
    assert s["dice_pos"] == pytest.approx(0.5)


def test_segmentation_references_by_hand_and_a_silent_decoder_scores_predict_nothing():
    truth = masks("##......", "........", "####....", "........", "........")
    share = truth.flatten(1).double().mean(1).numpy()
    refs = segmentation_references(share)
    assert refs["n"] == 5 and refs["lesion_free"] == 3
    nothing, whole = refs["rows"]["predict-nothing"], refs["rows"]["predict-everything"]
    assert nothing == {"dice": 3 / 5, "dice_pos": 0.0, "empty_acc": 1.0, "dice_pooled": 0.0}
    # whole image: 2*2/(2+8) and 2*4/(4+8) on the two lesion images, 0 on the three others
    assert whole["dice"] == pytest.approx((0.4 + 2 / 3) / 5)
    assert whole["dice_pos"] == pytest.approx((0.4 + 2 / 3) / 2)
    assert whole["empty_acc"] == 0.0
    assert whole["dice_pooled"] == pytest.approx(2 * 6 / (6 + 40))
    silent = segmentation_scores(mask_counts(torch.zeros_like(truth), truth), n_resamples=50)
    everything = segmentation_scores(mask_counts(torch.ones_like(truth), truth), n_resamples=50)
    for name, value in nothing.items():
        assert silent[name] == value, name  # exactly: the same counts
    for name, value in whole.items():
        assert everything[name] == pytest.approx(value), name


def test_other_kinds_references_by_hand():
    det = detection_references(np.array([1, 0, 0, 1, 0]))
    assert det["lesion_free"] == 3 and det["rows"]["no-boxes"] == {"map": 0.0, "map_50": 0.0, "empty_acc": 1.0}
    cls = classification_references(np.array([0, 1, 1, 2, 1]), 5, 3)
    assert cls["rows"]["constant-score"] == {"auroc": 0.5}
    assert cls["rows"]["majority-class"]["accuracy"] == pytest.approx(3 / 5)
    assert cls["rows"]["majority-class"]["balanced_accuracy"] == pytest.approx(1 / 3)
    assert "majority-class" not in classification_references(None, 5)["rows"]  # multi-label: AUROC only
    zs = label_chance(np.array([0, 0, 0, 1]), 2)
    assert zs["rows"]["chance"]["accuracy"] == 0.5
    # uniform guess: class 0 (share 3/4) F1 = 2*(3/4)*(1/2)/(3/4+1/2) = 0.6; class 1: 2*(1/4)(1/2)/(3/4) = 1/3
    assert zs["rows"]["chance"]["f1"] == pytest.approx((0.6 + 1 / 3) / 2)
    assert zs["rows"]["majority-class"]["accuracy"] == 0.75
    # retrieval: each query's class share of the reports: (3 * 3/4 + 1/4) / 4
    assert retrieval_chance(np.array([0, 0, 0, 1]), (1, 5))["rows"]["chance"] == {"p@1": 0.625, "p@5": 0.625}


def test_comparison_lines_only_compare_above_the_trivial_reference():
    refs = segmentation_references(np.array([0.0, 0.0, 0.1]))  # predict-nothing dice 2/3
    assert trivial_best(refs, "dice") == ("predict-nothing", pytest.approx(2 / 3))
    line = comparison_line("dice", ("imitate", 0.66), ("random", 0.09), refs)
    assert "not compared" in line and "decided by empty predictions" in line and "+0.57" not in line
    line = comparison_line("dice", ("imitate", 0.80), ("random", 0.70), refs)
    assert "imitate - random = +0.1000" in line


def test_a_trial_stores_references_and_a_decoder_that_predicts_nothing_scores_them(tmp_path, monkeypatch, capsys):
    """threshold 1: sigmoid(x) > 1 never holds, so the decoder predicts nothing on every image."""
    argv = ["run", "--method", "random", "--task", "siim_seg", "--fraction", "1", "--profile", "smoke",
            "--set", "task.threshold=1.0", "--set", "task.phantom_test=40", "--json"]
    assert main(argv) == 0
    out = (lambda c: c.err + c.out)(capsys.readouterr())
    result = json.loads(out.strip().splitlines()[-1])
    refs = result["references"]
    assert refs["n"] == 40 and 0 < refs["lesion_free"] < 40
    nothing = refs["rows"]["predict-nothing"]
    assert result["value"] == nothing["dice"] == refs["lesion_free"] / 40
    assert result["metrics"]["dice_pos"] == 0.0 and result["metrics"]["empty_acc"] == 1.0
    assert "predict-nothing" in out and "trivial references on this test split (40 test images" in out


def test_table_shows_the_reference_row_and_never_bolds_a_best_that_predict_nothing_matches(tmp_path, capsys):
    from benchmark.report.tables import build_tables, render
    from benchmark.store import Trial

    refs = segmentation_references(np.array([0.0, 0.0, 0.0, 0.2]))  # predict nothing: 75 %
    trials = [Trial(m, h, "siim_seg", "t1", "mgca", 0.01, seed, "phantom-v2", "finished", "dice", v,
                    {"dice": v, "dice_pos": v / 4}, refs=refs)
              for m, h, values in (("random", "r", (0.10, 0.12)), ("imitate", "i", (0.74, 0.75)))
              for seed, v in zip((0, 1), values)]
    table = build_tables(trials, {}, vs="random")[0]
    text = render(table)
    assert "| predict-nothing (trivial)" in text and "75.0" in text
    assert "**" not in text.split("\n", 1)[1]  # imitate's 74.5 is the column's best but does not beat predict-nothing
    assert "◦" in text  # its difference against random is marked as explained by the reference
    data = json.loads(render(table, "json"))
    assert [r["name"] for r in data["trivial"]] == ["predict-everything", "predict-nothing"]
    assert data["rows"][1]["cells"][0]["vs"]["explained_by_trivial"] is True
    from benchmark.report.tables import load_reference

    published = render(build_tables(trials, {}, reference=load_reference())[0])
    real = [line for line in published.splitlines() if line.startswith("| predict-nothing (trivial, real test split) †")]
    assert len(real) == 1 and "76.9" in real[0]  # the real SIIM split's predict-nothing Dice
    assert "| MGCA † (G2D" in published and "explained by a trivial predictor" in published
    parts = build_tables(trials, {}, metric="dice_pos")[0]
    assert parts.metric == "dice_pos" and "dice_pos (%)" in parts.title
    assert [r.cells[("siim_seg", 0.01)] for r in parts.trivial] == [pytest.approx(100 * 2 * 0.2 / 1.2), 0.0]


# ---------------------------------------------------------------- the real label files


@pytest.fixture(scope="module")
def labels_only(tmp_path_factory) -> Path:
    return official_labels(tmp_path_factory.mktemp("labels_only"))


def _tool(name: str):
    """A script of tools/ (not part of the package) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "tools" / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _mgca_test(frame: pd.DataFrame, test_size) -> pd.DataFrame:
    """MGCA's two calls, written out: the second call's first part is the test split."""
    from sklearn.model_selection import train_test_split

    _train, rest = train_test_split(frame, test_size=test_size, random_state=0)
    test, _val = train_test_split(rest, test_size=0.5, random_state=0)
    return test


def test_baselines_rsna_seg_from_the_real_label_file_equals_a_hand_count(labels_only, capsys):
    assert main(["baselines", "rsna_seg", "--data-root", str(labels_only), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    with zipfile.ZipFile(labels_only / "rsna" / "stage_2_train_labels.csv.zip") as z:
        raw = pd.read_csv(z.open("stage_2_train_labels.csv"))
    per_patient = raw.groupby("patientId")["Target"].max().reset_index()  # sorted by id, as MGCA's groupby
    test = _mgca_test(per_patient, 5337 * 2)
    assert len(test) == 5337 and int(test["Target"].sum()) == 1251
    assert result["task"] == "rsna_seg" and result["data_source"] == "real" and result["n"] == 5337
    assert result["lesion_free"] == 5337 - 1251
    assert result["rows"]["predict-nothing"]["dice"] == pytest.approx(4086 / 5337)  # 76.6 %
    whole = result["rows"]["predict-everything"]
    assert 0 < whole["dice"] < whole["dice_pos"] < 1 and whole["empty_acc"] == 0


def test_baselines_siim_seg_from_the_real_label_file_equals_a_hand_count(labels_only, capsys):
    assert main(["baselines", "siim_seg", "--data-root", str(labels_only)]) == 0
    printed = capsys.readouterr().out
    raw = pd.read_csv(labels_only / "siim" / "train-rle.csv.gz", dtype=str, keep_default_na=False)
    raw.columns = [c.strip() for c in raw.columns]
    raw["positive"] = raw["EncodedPixels"].str.strip() != "-1"
    per_image = raw.groupby("ImageId", sort=False)["positive"].max().reset_index()  # first-appearance order
    test = _mgca_test(per_image, 0.3)
    n, pos = len(test), int(test["positive"].sum())
    assert (n, pos) == (1807, 417)
    assert f"{n} test images, {n - pos} lesion-free" in printed
    assert f"predict-nothing      dice {(n - pos) / n:.4f}" in printed  # 76.9 %
    assert main(["baselines", "siim_seg", "--data-root", str(labels_only), "--json", "--set", "test_subset=positive"]) == 0
    positive = json.loads(capsys.readouterr().out)
    assert positive["n"] == pos and positive["lesion_free"] == 0 and positive["rows"]["predict-nothing"]["dice"] == 0.0


def test_baselines_on_the_phantom_and_bad_names(capsys):
    assert main(["baselines", "rsna_cls", "--profile", "smoke", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 8 and result["rows"]["constant-score"] == {"auroc": 0.5}
    assert main(["baselines", "no_such_task"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_task" in err


def test_shipped_trivial_reference_rows_are_what_the_label_files_give(labels_only):
    """results/reference/trivial_real_splits.csv (what `table --reference` shows beside the
    published rows) is tools/trivial_references.py's output on the real label files."""
    from benchmark.report.tables import load_reference

    tool = _tool("trivial_references")
    shipped = [r for r in load_reference() if r["method"].endswith("(trivial)")]
    again = tool.rows(str(labels_only))
    assert [(r["method"], r["task"], r["metric"], r["fraction"], r["value"]) for r in shipped] == \
        [(r["method"], r["task"], r["metric"], r["fraction"], r["value"]) for r in again]
    nothing = {r["task"]: r["value"] for r in shipped if r["method"] == "predict-nothing (trivial)"}
    assert nothing == {"rsna_seg": f"{100 * 4086 / 5337:.1f}", "siim_seg": f"{100 * 1390 / 1807:.1f}"}


def test_backfill_gives_an_older_phantom_trial_the_references_a_new_one_stores(tmp_path, capsys):
    import sqlite3

    from benchmark.store import Store

    assert main(["run", "--method", "random", "--task", "rsna_seg", "--fraction", "1", "--profile", "smoke",
                 "--set", "task.epochs=1"]) == 0
    capsys.readouterr()
    path = Store().path
    stored = Store(path, readonly=True).all()[0].refs
    assert stored["rows"]["predict-nothing"]["dice"] == stored["lesion_free"] / stored["n"]
    with sqlite3.connect(path) as db:  # as a trial recorded before references were stored
        db.execute("UPDATE trials SET refs = NULL")
    assert Store(path, readonly=True).all()[0].refs == {}
    tool = _tool("backfill_references")
    assert tool.backfill(Store(path)) == 1
    assert Store(path, readonly=True).all()[0].refs == stored
    assert tool.backfill(Store(path)) == 0  # nothing left to do
