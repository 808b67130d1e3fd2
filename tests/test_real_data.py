"""Real data: the mgca split recipes on the real label files shipped in the
torchxrayvision wheel, and loading, checking, splitting and running on tiny
fixture copies of each official layout (tests/test_real_layouts.py)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import logging
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import test_real_layouts as F

from benchmark.cli import main
from benchmark.data.splits import draw_subset
from benchmark.errors import UserError

XRV = F.XRV


def cfg_for(task: str, **changes):
    from benchmark.factory import resolve

    cfg = resolve("random", task, "smoke", []).task_cfg
    return dataclasses.replace(cfg, **changes) if changes else cfg


def one_line_error(capsys, argv: list[str], *fragments: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    return err


@pytest.fixture
def subset(monkeypatch):
    monkeypatch.setenv("BENCHMARK_DATA_SUBSET", "1")


# ---------------------------------------------------------- real label files


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> Path:
    """The real RSNA, SIIM and CheXpert label files (as .zip / .gz variants) in their layouts."""
    root = F.official_labels(tmp_path_factory.mktemp("official"))
    chex = root / "CheXpert-v1.0-small"
    chex.mkdir()
    shutil.copy(XRV / "chexpert_train.csv.gz", chex / "train.csv.gz")
    train = pd.read_csv(chex / "train.csv.gz", nrows=234)
    train["Path"] = train["Path"].str.replace("/train/", "/valid/")
    train.to_csv(chex / "valid.csv", index=False)
    return root


def test_rsna_mgca_split_counts_from_the_official_label_file(official):
    from benchmark.data.sets.rsna import recipe as rsna

    with zipfile.ZipFile(official / "rsna" / "stage_2_train_labels.csv.zip") as z:
        raw = pd.read_csv(z.open("stage_2_train_labels.csv"))
    for variant, counts in (("cls", (18678, 4003, 4003)), ("det", (16010, 5337, 5337))):
        st = rsna(official, variant)
        assert tuple(len(st.rows[s]) for s in ("train", "val", "test")) == counts
        ids = {s: set(st.ids(s)) for s in st.rows}
        assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
        assert ids["train"] | ids["val"] | ids["test"] == set(raw["patientId"])
    st = rsna(official, "cls")
    assert st.table["id"].is_monotonic_increasing  # MGCA's groupby order
    assert int(st.table["Target"].sum()) == raw.loc[raw["Target"] == 1, "patientId"].nunique() == 6012
    # the same call on MGCA's DataFrame picks the same rows
    from sklearn.model_selection import train_test_split

    grouped = raw.groupby("patientId").agg(list).reset_index()
    train_df, rest = train_test_split(grouped, test_size=0.3, random_state=0)
    _test_df, val_df = train_test_split(rest, test_size=0.5, random_state=0)
    assert st.ids("train") == train_df["patientId"].tolist() and st.ids("val") == val_df["patientId"].tolist()
    boxes = dict(zip(st.table["id"], st.table["boxes"]))
    two = raw[raw["Target"] == 1].groupby("patientId").size()
    pid = two[two == 2].index[0]
    assert len(boxes[pid]) == 2


def test_data_split_writes_nested_stratified_lists_with_hashes(official, tmp_path, capsys):
    out = tmp_path / "lists"
    assert main(["data", "split", "rsna", "--data-root", str(official), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "summary.json" in printed
    summary = json.loads((out / "summary.json").read_text())
    lists = summary["lists"]
    assert lists["cls-train"]["count"] == 18678 and lists["det-test"]["count"] == 5337
    assert len(lists) == 2 * (3 + 2 * 3) + 2  # + MGCA's 1 % and 10 % classification lists (cls-train-*pct-mgca)
    for entry in lists.values():
        data = (out / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert len(data.decode().split()) == entry["count"]
    from benchmark.data.sets.rsna import recipe as rsna

    st = rsna(official, "cls")
    train = (out / "cls-train.txt").read_text().split()
    assert train == st.ids("train")
    for seed in (42, 0, 1):
        one = (out / f"cls-train-1pct-seed{seed}.txt").read_text().split()
        ten = (out / f"cls-train-10pct-seed{seed}.txt").read_text().split()
        assert set(one) < set(ten) < set(train)
        assert ten == draw_subset(train, st.labels("train"), 0.1, seed)
        y = dict(zip(st.ids("train"), st.labels("train")))
        pos = int(st.labels("train").sum())
        assert sum(y[i] for i in one) == round(0.01 * pos)  # stratified
    assert (out / "cls-train-1pct-seed42.txt").read_text() != (out / "cls-train-1pct-seed0.txt").read_text()
    assert main(["data", "split", "rsna", "--data-root", str(official), "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text()) == summary  # deterministic


def test_siim_split_groups_rows_by_image_and_balances_train(official):
    from benchmark.data.sets.siim import recipe as siim

    st = siim(official)
    assert len(st.table) == 12047 and int(st.table["Label"].sum()) == 2669
    ids = {s: set(st.ids(s)) for s in st.rows}
    assert not (ids["train"] & ids["val"]) and not (ids["train"] & ids["test"]) and not (ids["val"] & ids["test"])
    assert len(st.rows["val"]) + len(st.rows["test"]) == 3615
    y = st.labels("train")
    assert y.sum() * 2 == len(y) and y.sum() > 1800  # all train positives + as many negatives
    multi = st.table[st.table["rles"].map(len) > 1]
    assert len(multi) > 0 and multi["Label"].eq(1).all()


def test_chexpert_5x200_rule_and_splits(official):
    from benchmark.data.sets.chexpert import recipe as chexpert
    from benchmark.data.sets.chexpert import recipe_5x200 as chexpert5x200

    five = chexpert5x200(official)
    assert len(five.rows["test"]) == 1000 and np.bincount(five.labels("test")).tolist() == [200] * 5
    raw = pd.read_csv(official / "CheXpert-v1.0-small" / "train.csv.gz")
    labels = [c for c in F.CHEXPERT_LABELS if c != "No Finding"]
    raw[labels] = raw[labels].fillna(0)
    rows = raw.set_index("Path").loc[five.table["Path"]]
    assert (rows["Frontal/Lateral"] == "Frontal").all()
    assert ((rows[labels] == 1).sum(axis=1) == 1).all() and ((rows[labels] == 0).sum(axis=1) == 12).all()
    cls = [F.FIVE[k] for k in five.labels("test")]
    assert all(rows[c].iloc[i] == 1 for i, c in enumerate(cls))
    st = chexpert(official)
    train, val, test = (set(st.ids(s)) for s in ("train", "val", "test"))
    assert not train & val and not (train | val) & set(five.ids("test"))
    assert all(i.startswith("valid/") for i in test) and len(test) < 234
    frontal = int((raw["Frontal/Lateral"] == "Frontal").sum())
    assert len(train) + len(val) == frontal - 1000
    assert 4000 < len(val) < 5000  # 5,000 drawn from all views, then frontal only
    assert st.strata is None  # multi-label: fraction subsets are not stratified, as the runner draws them


# -------------------------------------------------------- decoding, geometry


def test_dicom_voi_lut_and_monochrome1(tmp_path):
    from benchmark.data.real.images import decode

    ramp = np.tile(np.linspace(0, 4000, 64).astype(np.uint16), (8, 1))
    F.write_dicom(tmp_path / "m2.dcm", ramp, window=(2000, 1000))
    F.write_dicom(tmp_path / "m1.dcm", ramp, monochrome1=True, window=(2000, 1000))
    m2, m1 = decode(tmp_path / "m2.dcm"), decode(tmp_path / "m1.dcm")
    assert m2.dtype == np.uint8 and m2.shape == (8, 64)
    below, above = ramp[0] < 1400, ramp[0] > 2600
    assert (m2[0, below] == 0).all() and (m2[0, above] == 255).all()  # windowed, not min-max of the raw ramp
    assert np.array_equal(m1, 255 - m2)


def test_jpeg_baseline_dicom_decodes(tmp_path):
    from benchmark.data.real.images import decode

    arr = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (64, 1))
    F.write_dicom_jpeg(tmp_path / "rsna.dcm", arr)
    out = decode(tmp_path / "rsna.dcm")
    assert out.shape == (64, 64) and np.abs(out.astype(int) - arr).mean() < 2


def test_resize_pad_keeps_aspect_and_maps_boxes():
    from benchmark.data.real.images import resize_pad

    img = np.full((40, 80), 200, np.uint8)
    out, geo = resize_pad(img, 32)
    assert out.shape == (32, 32) and geo.scale == pytest.approx(0.4) and (geo.left, geo.top) == (0, 8)
    assert (out[:8] == 0).all() and (out[24:] == 0).all() and (out[8:24] == 200).all()
    assert geo.boxes(np.array([[10, 5, 20, 10]])).tolist() == [[4.0, 10.0, 8.0, 4.0]]


# ----------------------------------------------------------------- fixtures


def test_rsna_fixture_loads_lesion_sets_with_box_masks_and_reuses_the_cache(tmp_path, subset, monkeypatch):
    from benchmark.data.real import images, real_task_splits
    from benchmark.data.sets.rsna import recipe as rsna
    from benchmark.data.types import LabelSet, LesionSet

    truth = F.rsna(tmp_path)
    det = real_task_splits(cfg_for("rsna_det", image_size=32), tmp_path)
    st = rsna(tmp_path, "det")
    assert set(det) == {"train", "val", "test"}
    for split, data in det.items():
        assert isinstance(data, LesionSet) and data.ids == st.ids(split)
        assert data.images.shape == (len(data.ids), 32, 32) and data.images.dtype == np.uint8
        assert data.source.startswith("real: RSNA Pneumonia")
        for i, pid in enumerate(data.ids):
            assert data.labels[i] == int(bool(truth[pid]))
            expect = np.zeros((32, 32), np.uint8)
            for x, y, w, h in np.asarray(truth[pid]) / 2:  # 64 px -> 32 px
                expect[round(y):round(y + h), round(x):round(x + w)] = 1
            assert np.array_equal(data.masks[i], expect)
            assert np.allclose(data.boxes[i], np.asarray(truth[pid], np.float32).reshape(-1, 4) / 2)
    cls = real_task_splits(cfg_for("rsna_cls", image_size=32), tmp_path)
    assert isinstance(cls["train"], LabelSet) and len(cls["train"]) == 28 and cls["train"].labels.ndim == 1
    assert len({d.fingerprint for d in [*det.values(), *cls.values()]}) == 6

    def no_decoding(path):
        raise AssertionError("the cache must be reused")

    monkeypatch.setattr(images, "decode", no_decoding)
    again = real_task_splits(cfg_for("rsna_det", image_size=32), tmp_path)
    assert again["test"].fingerprint == det["test"].fingerprint
    assert np.array_equal(again["test"].images, det["test"].images)


def test_siim_masks_follow_the_column_major_relative_rle(tmp_path, subset):
    from benchmark.data.real import real_task_splits

    labels = F.siim(tmp_path)
    data = real_task_splits(cfg_for("siim_seg", image_size=64), tmp_path)
    seen = 0
    for split in data.values():
        for i, iid in enumerate(split.ids):
            assert split.labels[i] == labels[iid]
            m = np.asarray(split.masks[i])
            if not labels[iid]:
                assert m.sum() == 0 and len(split.boxes[i]) == 0
                continue
            seen += 1
            assert m[36:42, 1:4].all() and m[36:42, 1:4].sum() == m[:, :5].sum()  # "100 6 58 6 58 6"
            two = int(iid.rsplit(".", 1)[1]) % 6 == 0
            assert bool(m[16:20, 31].all()) == two  # the second region "2000 4 60 4" of two-region images
    assert seen >= 5
    assert sum(len(s) for s in data.values()) < 30  # train is balanced: negatives dropped


def test_label_sets_for_each_classification_data_set(tmp_path, subset):
    from benchmark.data.real import real_task_splits
    from benchmark.data.sets.chexpert import targets as chexpert_targets
    from benchmark.data.types import LabelSet, TextLabelSet

    F.chexpert(tmp_path)
    F.covidx(tmp_path)
    F.nih(tmp_path)
    chex = real_task_splits(cfg_for("chexpert_cls"), tmp_path)
    assert isinstance(chex["train"], LabelSet) and chex["train"].labels.shape[1] == 5
    assert chex["test"].ids[0].startswith("valid/") and chex["train"].classes[4] == "Pleural Effusion"
    cov = real_task_splits(cfg_for("covidx_cls"), tmp_path)
    assert [len(cov[s]) for s in ("train", "val", "test")] == [24, 6, 9]
    assert cov["test"].labels.tolist() == [0, 1, 2] * 3 and cov["test"].ids[0] == "test/test-0000.png"
    nih = real_task_splits(cfg_for("nih_cls"), tmp_path)
    assert nih["train"].labels.shape[1] == 14
    patients = {s: {i.split("_")[0] for i in nih[s].ids} for s in nih}
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    row = nih["test"].ids.index("00000012_000.png")  # "Atelectasis" (i = 24 -> 24 % 5 = 4: Cardiomegaly|Edema)
    assert nih["test"].labels[row].tolist() == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    five = real_task_splits(cfg_for("chexpert5x200_zs"), tmp_path, ("test",))["test"]
    assert isinstance(five, TextLabelSet) and sorted(five.labels.tolist()) == [0, 0, 1, 2, 2, 3, 3, 4, 4]  # row 6 is lateral
    with pytest.raises(UserError, match="no report text"):
        real_task_splits(cfg_for("chexpert5x200_ret"), tmp_path, ("test",))
    uncertain = pd.DataFrame({c: [-1.0, np.nan] for c in F.FIVE})
    assert chexpert_targets(uncertain).tolist() == [[1, 0, 0, 1, 1], [0, 0, 0, 0, 0]]


def test_object_cxr_boxes_from_rectangles_ellipses_polygons(tmp_path, subset):
    from benchmark.data.real import real_task_splits

    F.object_cxr(tmp_path)
    data = real_task_splits(cfg_for("object_cxr_det", image_size=32), tmp_path)
    test = data["test"]
    assert test.ids[0] == "dev/00000.jpg" and len(test) == 6
    scale = 32 / 80  # 64 x 80 images: width is the long side -> 26 rows, 3 px padding on top
    assert np.allclose(test.boxes[0], [[10 * scale, 12 * scale + 3, 20 * scale, 16 * scale],
                                       [40 * scale, 40 * scale + 3, 10 * scale, 16 * scale]])
    assert np.allclose(test.boxes[2], [[5 * scale, 5 * scale + 3, 15 * scale, 20 * scale]])  # polygon
    assert test.labels.tolist() == [1, 0, 1, 0, 1, 0] and test.masks[1].sum() == 0 and test.masks[0].sum() > 0


def test_unreadable_images_warn_with_ids_or_fail(tmp_path, subset, caplog, capsys):
    from benchmark.data.real import real_task_splits

    truth = F.rsna(tmp_path)
    from benchmark.data.sets.rsna import recipe as rsna

    victim = rsna(tmp_path, "cls").ids("test")[0]
    (tmp_path / "rsna-pneumonia" / "stage_2_train_images" / f"{victim}.dcm").write_bytes(b"not a dicom")
    with caplog.at_level(logging.WARNING):
        data = real_task_splits(cfg_for("rsna_cls"), tmp_path, ("test",))
    assert victim not in data["test"].ids and len(data["test"]) == 5
    assert f"1 unreadable image(s) left out: {victim}" in caplog.text
    for pid in truth:
        (tmp_path / "rsna-pneumonia" / "stage_2_train_images" / f"{pid}.dcm").unlink()
    one_line_error(capsys, ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke",
                            "--data-root", str(tmp_path)], "cannot be read", "file not found", ".dcm")


def test_data_check_reports_found_missing_and_counts(tmp_path, subset, capsys):
    F.covidx(tmp_path)
    for name in ("train-0003.png", "test-0001.png"):
        (tmp_path / "covidx" / name.split("-")[0] / name).unlink()
    assert main(["data", "check", "covidx", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train_COVIDx9A.txt" in out and "splits: train 24, val 6, test 9" in out
    assert "images: 37 of 39 found" in out and "missing " + str(tmp_path / "covidx" / "test" / "test-0001.png") in out
    assert "can run: yes" in out
    assert main(["data", "check", "object_cxr", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "not found" in out and "object-cxr, object_cxr, Object-CXR" in out


# -------------------------------------------------------------------- MIMIC


def test_report_sections_last_of_each_name():
    from benchmark.data.sets.mimic import findings_impression

    text = F.REPORT.format(findings="Old.\n\n FINDINGS:\n Lungs are\n clear.", impression="No acute process.\n")
    assert findings_impression(text) == ("Lungs are clear.", "No acute process.")
    assert findings_impression("IMPRESSION: Small effusion.\nRECOMMENDATION(S): CT.") == ("", "Small effusion.")
    assert findings_impression(" FINDINGS: Seen at 10:30, AP:PA ratio.\n COMPARISON: None.") == (
        "Seen at 10:30, AP:PA ratio.", "")


def test_prepare_mimic_table_cache_and_5x200_lists(tmp_path, subset, capsys):
    from benchmark.data.real import real_corpus
    from benchmark.factory import resolve

    truth = F.mimic(tmp_path)
    F.chexpert(tmp_path)
    assert main(["data", "prepare", "mimic", "--data-root", str(tmp_path), "--size", "32"]) == 0
    out = capsys.readouterr().out
    from benchmark.data.sets.mimic import table_path

    table = pd.read_csv(table_path(), dtype={"dicom_id": str}, keep_default_na=False)
    # 24 frontal images; the 5 single-finding (5x200) studies and the report without sections are left out
    assert len(table) == 18 and set(table["split"]) == {"train", "validate"}
    row = table.set_index("dicom_id").loc["0006-frontal"]
    assert (row["findings"], row["impression"]) == truth["0006-frontal"] == ("Finding number 6. Lungs clear.", "Impression 6.")
    assert "images at 32 px" in out and "mimic5x200 list" in out and "chexpert5x200 list" in out
    lists = {line.split(" list: ")[0]: Path(line.split(" list: ")[1]) for line in out.splitlines() if " list: " in line}
    assert lists["mimic5x200"].read_text().split() == [f"{i:04d}-frontal" for i in range(5)]
    cfg = resolve("imitate", None, "smoke", []).method_cfg
    corpus = real_corpus(cfg, tmp_path)
    assert len(corpus) == 8 and corpus.images.shape == (8, 37, 37) and corpus.source.startswith("real: MIMIC")
    assert corpus.findings[0] == "Finding number 6. Lungs clear." and corpus.impressions[0] == "Impression 6."  # first train row
    assert main(["data", "split", "mimic", "--data-root", str(tmp_path), "--out", str(tmp_path / "lists")]) == 0
    summary = json.loads((tmp_path / "lists" / "summary.json").read_text())
    assert {k: v["count"] for k, v in summary["lists"].items()} == {"train": 17, "val": 1, "test": 0}
    assert (tmp_path / "lists" / "train.txt").read_text().split() == table.loc[table["split"] == "train", "dicom_id"].tolist()


# ------------------------------------------------------------ runs via the CLI


def test_run_on_real_fixture_uses_the_published_fraction_list(tmp_path, subset, capsys):
    F.rsna(tmp_path)
    lists = tmp_path / "lists"
    assert main(["data", "split", "rsna_cls", "--data-root", str(tmp_path), "--out", str(lists)]) == 0
    argv = ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--data-root", str(tmp_path),
            "--fraction", "0.1", "--seed", "0", "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["data_source"] == "real" and 0 <= res["value"] <= 1
    from benchmark.paths import cache_dir

    used = list(cache_dir("splits", "real", "rsna_cls").glob("*-f0.1-mgca.txt"))  # rsna_cls: MGCA's rule
    assert len(used) == 1 and used[0].read_text() == (lists / "cls-train-10pct-mgca.txt").read_text()
    assert res["metrics"]["train_images"] == len(used[0].read_text().split())
    assert main(argv + ["--set", "task.subset=stratified"]) == 0  # the per-seed rule: the seed's published list
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    used = list(cache_dir("splits", "real", "rsna_cls").glob("*-f0.1-seed0.txt"))
    assert len(used) == 1 and used[0].read_text() == (lists / "cls-train-10pct-seed0.txt").read_text()
    assert res["metrics"]["train_images"] == len(used[0].read_text().split())


def test_zero_shot_run_pretrains_on_real_mimic(tmp_path, subset, capsys):
    F.mimic(tmp_path)
    argv = ["run", "--method", "convirt", "--task", "mimic5x200_zs", "--profile", "smoke", "--data-root", str(tmp_path),
            "--set", "max_steps=1", "--set", "max_prompts=5", "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["data_source"] == "real" and res["metrics"]["test_images"] == 5 and 0 <= res["value"] <= 1
    from benchmark.paths import cache_dir

    meta = json.loads(next(cache_dir("encoders").glob("convirt-*/meta.json")).read_text())
    assert meta["corpus"]["source"] == "real: MIMIC-CXR-JPG 2.0.0" and meta["corpus"]["pairs"] == 8


def test_gzip_and_zip_label_variants_are_found(tmp_path):
    from benchmark.data.real.layout import find_file

    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(b"x\n"))
    assert find_file(tmp_path, "a.csv").name == "a.csv.gz"
    with pytest.raises(UserError, match="missing label file .*b.csv"):
        find_file(tmp_path, "b.csv")


def test_layout_table_matches_the_docs_and_the_package_docstring():
    from benchmark.data import real
    from benchmark.data.catalog import LAYOUTS
    from benchmark.paths import REPO_ROOT

    docs = (REPO_ROOT / "docs" / "DATA.md").read_text()
    table = " ".join(real.__doc__.split())
    for lay in LAYOUTS.values():
        assert f"| `{lay.key}` |" in docs
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{lay.key}` |"))
        for folder in lay.folders:
            assert f"`{folder}`" in row and folder in table, folder
        for name in lay.labels:
            assert name in row, name


@pytest.mark.parametrize("task, dataset", [("siim_seg", F.siim), ("chexpert_cls", F.chexpert), ("covidx_cls", F.covidx),
                                           ("object_cxr_det", F.object_cxr), ("nih_cls", F.nih)])
def test_every_data_set_runs_through_the_runner(task, dataset, tmp_path, subset, capsys, monkeypatch):
    """run -> real loaders -> fraction subset -> the task's Fit, for each data set. The heads
    themselves are exercised on the same dataclasses by the phantom tests and by the RSNA and
    MIMIC runs above; here the fit is replaced by checks, to keep the suite within a minute."""
    from benchmark.factory import resolve

    dataset(tmp_path)
    seen = {}

    def checked_fit(self, fit):
        sub = fit.train_subset()
        for split in (sub, fit.val, fit.test):
            assert split.images.shape[1:] == (32, 32) and len(split.labels) == len(split.ids) == len(split.images)
            assert split.source.startswith("real: ")
        seen.update(n=len(sub.ids), strata=self.strata(fit.train))
        return {self.cfg.metric: 0.5}

    monkeypatch.setattr(resolve("random", task, "smoke", []).task_cls, "fit_evaluate", checked_fit)
    assert main(["run", "--method", "random", "--task", task, "--profile", "smoke", "--data-root", str(tmp_path),
                 "--fraction", "0.5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["data_source"] == "real" and res["value"] == 0.5
    out = tmp_path / "lists"
    assert main(["data", "split", task, "--data-root", str(tmp_path), "--out", str(out)]) == 0
    train = (out / "train.txt").read_text().split()
    from benchmark.data.catalog import split_table

    st = split_table(dataset.__name__, tmp_path)
    assert st.ids("train") == train
    assert seen["n"] == len(draw_subset(train, st.labels("train"), 0.5, 42))
    assert (seen["strata"] is None) == (st.labels("train") is None)


def test_an_image_listed_twice_is_an_error(tmp_path, subset, capsys):
    F.covidx(tmp_path)
    lst = tmp_path / "covidx" / "train_COVIDx9A.txt"
    lst.write_text(lst.read_text() + "P9 train-0001.png normal fixture\n")
    one_line_error(capsys, ["data", "split", "covidx", "--data-root", str(tmp_path)], "'train/train-0001.png' is listed 2 times")


# ------------------------------------------- issue 14: caches heal, keyed on content


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(b"\x93NUMPY garbage" * 9)
    else:  # zeroed pixels, header intact
        arr = np.load(path, mmap_mode="r+")
        arr[:] = 0
        arr.flush()
        del arr


@pytest.mark.parametrize("part, how", [("images.npy", "truncated"), ("images.npy", "zeroed"), ("masks.npy", "garbage"),
                                       ("json", "truncated")])
def test_damaged_real_image_cache_is_decoded_again_with_one_warning(part, how, tmp_path, subset, caplog):
    from benchmark.data.real import real_task_splits
    from benchmark.paths import cache_dir

    F.rsna(tmp_path / "root")
    cfg = cfg_for("rsna_det", image_size=32)
    first = real_task_splits(cfg, tmp_path / "root", ("test",))["test"]
    images, masks = np.array(first.images), np.array(first.masks)
    (path,) = cache_dir("real", "rsna-det-test").glob(f"*.{part}")
    _damage(path, how)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = real_task_splits(cfg, tmp_path / "root", ("test",))["test"]
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name != "benchmark.data.real.labels"]  # not the subset notes
    assert len(warnings) == 1 and "rsna-det-test image cache" in warnings[0] and "is damaged" in warnings[0], warnings
    assert np.array_equal(again.images, images) and np.array_equal(again.masks, masks) and images.any()
    assert again.fingerprint == first.fingerprint


def test_results_and_mask_caches_follow_the_label_content_not_the_root(tmp_path, subset, monkeypatch):
    """Another root with the same downloads reuses the result and the caches; a changed label
    file is a new trial with masks drawn again."""
    from benchmark.data.real import images
    from benchmark.factory import resolve
    from benchmark.paths import cache_dir
    from benchmark.runner import run_trial

    F.rsna(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    seen = []

    def fit(self, fit):
        seen.append(np.array(fit.test.masks))
        return {self.cfg.metric: 0.5}

    monkeypatch.setattr(resolve("random", "rsna_seg", "smoke", []).task_cls, "fit_evaluate", fit)
    first = run_trial("random", "rsna_seg", 1.0, profile="smoke", data_root_arg=str(tmp_path / "a"))
    assert not first.reused and len(seen) == 1
    decode = images.decode
    monkeypatch.setattr(images, "decode", lambda path: pytest.fail(f"decoded {path} again"))
    same = run_trial("random", "rsna_seg", 1.0, profile="smoke", data_root_arg=str(tmp_path / "b"))
    assert same.reused and same.trial.task_hash == first.trial.task_hash and len(seen) == 1
    (tmp_path / "a").rename(tmp_path / "gone")  # the caches do not point into the first root
    from benchmark.data.real import real_task_splits

    cfg = resolve("random", "rsna_seg", "smoke", []).task_cfg
    assert np.array_equal(real_task_splits(cfg, tmp_path / "b", ("test",))["test"].masks, seen[0])

    monkeypatch.setattr(images, "decode", decode)
    labels = tmp_path / "b" / "rsna-pneumonia" / "stage_2_train_labels.csv"
    labels.write_text(labels.read_text().replace(",8.0,10.0,20.0,16.0,", ",30.0,30.0,20.0,16.0,"))
    changed = run_trial("random", "rsna_seg", 1.0, profile="smoke", data_root_arg=str(tmp_path / "b"))
    assert not changed.reused and changed.trial.task_hash != first.trial.task_hash and len(seen) == 2
    assert not np.array_equal(seen[1], seen[0])  # the moved boxes' masks
    assert len(list(cache_dir("real", "rsna-det-test").glob("*.masks.npy"))) == 2
    unchanged_cls = run_trial("random", "rsna_cls", 1.0, profile="smoke", data_root_arg=str(tmp_path / "b"))
    assert not unchanged_cls.reused  # another task: its own trial


def test_invalid_boxes_are_listed_by_data_check_and_clipped_by_the_loaders(tmp_path, subset, capsys, caplog):
    from benchmark.data.real import real_task_splits
    from benchmark.data.sets.rsna import recipe as rsna

    truth = F.rsna(tmp_path)
    labels = tmp_path / "rsna-pneumonia" / "stage_2_train_labels.csv"
    lines = labels.read_text().splitlines()
    pid = next(line.split(",")[0] for line in lines[1:] if line.endswith(",1"))
    lines += [f"{pid},50.0,40.0,30.0,10.0,1", f"{pid},5.0,5.0,-4.0,10.0,1"]  # reaches past 64 px; negative width
    labels.write_text("\n".join(lines) + "\n")
    assert main(["data", "check", "rsna", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "boxes: 2 of 23 invalid" in out, out
    assert f"{pid}: x 50 y 40 w 30 h 10: reaches outside the 64 x 64 image" in out
    assert f"{pid}: x 5 y 5 w -4 h 10: zero or negative width or height" in out
    split = next(s for s in ("train", "val", "test") if pid in rsna(tmp_path, "det").ids(s))
    with caplog.at_level(logging.WARNING):
        data = real_task_splits(cfg_for("rsna_det", image_size=32), tmp_path, (split,))[split]
    assert (f"1 box(es) reaching outside their image clipped, 1 box(es) without area dropped in the {split} split(s) "
            f"(first: {pid})") in caplog.text and str(labels) in caplog.text
    k = data.ids.index(pid)
    assert [25.0, 20.0, 7.0, 5.0] in data.boxes[k].tolist()  # (50, 40, 14, 10) in 64 px, halved
    assert len(data.boxes[k]) == len(truth[pid]) + 1  # the fixture's boxes and the clipped one; not the negative one
    expect = np.zeros((32, 32), np.uint8)
    for x, y, w, h in data.boxes[k]:
        expect[round(y):round(y + h), round(x):round(x + w)] = 1
    assert np.array_equal(data.masks[k], expect)  # masks and boxes from the same clipped boxes


def test_data_split_never_overwrites_published_lists_silently(tmp_path, subset, capsys):
    F.covidx(tmp_path)
    argv = ["data", "split", "covidx", "--data-root", str(tmp_path), "--out", str(tmp_path / "lists")]
    assert main(argv) == 0
    assert main(argv) == 0  # the same lists again: fine
    train = tmp_path / "lists" / "train.txt"
    text = train.read_text()
    train.write_text(text[: len(text) // 2])
    one_line_error(capsys, argv, f"split list {train} no longer matches the SHA-256 in", "summary.json")
    train.write_text(text)
    lst = tmp_path / "covidx" / "train_COVIDx9A.txt"
    lst.write_text(lst.read_text().replace("P3 train-0003.png normal", "P3 train-0003.png pneumonia"))
    one_line_error(capsys, argv, "differs from what the label files under the data root draw now", "new --out")


def test_damaged_mimic_table_is_rebuilt_with_one_warning(tmp_path, subset, caplog, capsys):
    from benchmark.data.sets.mimic import prepare_table, table_path

    F.mimic(tmp_path)
    _, table = prepare_table(tmp_path)
    path = table_path()
    path.write_text(path.read_text()[:300])
    with caplog.at_level(logging.WARNING):
        _, again = prepare_table(tmp_path)
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and r.name != "benchmark.data.real.labels"]  # not the subset notes
    assert len(warnings) == 1 and f"pre-training table cache {path} is damaged" in warnings[0], warnings
    pd.testing.assert_frame_equal(again, table)


def test_box_repairs_are_one_warning_per_label_file_and_an_in_place_fix_gives_fresh_masks(tmp_path, subset, caplog,
                                                                                          capsys):
    """A run loads three splits: one warning line for the label file, counted over them; the file
    corrected in place and the run forced: new masks from the corrected boxes, no warning."""
    F.rsna(tmp_path)
    labels = tmp_path / "rsna-pneumonia" / "stage_2_train_labels.csv"
    good = labels.read_text()
    lines = good.splitlines()
    pids = [line.split(",")[0] for line in lines[1:] if line.endswith(",1")]
    bad = lines + [f"{pids[0]},50.0,40.0,30.0,10.0,1", f"{pids[1]},5.0,5.0,-4.0,10.0,1", f"{pids[2]},70,70,5,5,1"]
    labels.write_text("\n".join(bad) + "\n")
    argv = ["run", "--method", "random", "--task", "rsna_seg", "--profile", "smoke", "--data-root", str(tmp_path),
            "--fraction", "1", "--set", "task.epochs=1", "--json"]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    warned = [r.getMessage() for r in caplog.records if "box(es) reaching outside" in r.getMessage()]
    assert len(warned) == 1 and "1 box(es) reaching outside their image clipped, 2 box(es) without area dropped" \
        in warned[0], warned
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    from benchmark.paths import cache_dir

    before = {p.name for p in cache_dir("real").rglob("*.masks.npy")}
    labels.write_text(good)  # corrected in place, same data root
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(argv + ["--force"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not [r for r in caplog.records if "box(es) reaching outside" in r.getMessage()]
    assert again["task_config_hash"] != first["task_config_hash"]  # keyed on the label file's content
    after = {p.name for p in cache_dir("real").rglob("*.masks.npy")}
    assert after - before  # masks drawn again from the corrected file, not the cached ones reused
