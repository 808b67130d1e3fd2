"""Real label files damaged the way downloads and hand edits damage them: copies of the
official files shipped in the torchxrayvision wheel, each broken one way, give one line
naming the file, the row and the column, and exit status 2; nothing is lost silently."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from test_real_layouts import XRV

from benchmark.cli import main


def one_line(capsys, argv: list[str], code: int = 2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def rsna_raw() -> pd.DataFrame:
    with zipfile.ZipFile(XRV / "kaggle_stage_2_train_labels.csv.zip") as z:
        return pd.read_csv(z.open("stage_2_train_labels.csv"), dtype=str, keep_default_na=False)


def write_rsna(root: Path, frame: pd.DataFrame) -> Path:
    (root / "rsna").mkdir(parents=True, exist_ok=True)
    path = root / "rsna" / "stage_2_train_labels.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_target_typed_as_text_is_one_line_naming_row_and_column(tmp_path, rsna_raw, capsys):
    damaged = rsna_raw.copy()
    row = int((damaged["Target"] == "1").to_numpy().nonzero()[0][10])  # a positive patient's row
    damaged.loc[row, "Target"] = "no"  # a spreadsheet export / hand edit
    path = write_rsna(tmp_path, damaged)
    err = one_line(capsys, ["data", "split", "rsna", "--data-root", str(tmp_path), "--out", str(tmp_path / "lists")])
    assert str(path) in err and f"data row {row + 1}," in err and "column 'Target'" in err and "'no'" in err
    assert "expected 0 or 1" in err
    assert not list((tmp_path / "lists").glob("*"))  # no list was written from the damaged file
    assert main(["data", "check", "rsna", "--data-root", str(tmp_path)]) == 1  # the check reports it in its table
    out = capsys.readouterr().out
    assert "label files:" in out and f"data row {row + 1}" in out and "can run" not in out


def test_a_box_cell_that_is_not_a_number_is_named(tmp_path, rsna_raw, capsys):
    damaged = rsna_raw.copy()
    row = int((damaged["Target"] == "1").to_numpy().nonzero()[0][0])
    damaged.loc[row, "width"] = "12O"  # letter O for zero
    write_rsna(tmp_path, damaged)
    err = one_line(capsys, ["data", "split", "rsna", "--data-root", str(tmp_path), "--out", str(tmp_path / "l")])
    assert f"data row {row + 1}, column 'width' holds '12O', expected a number" in err


def test_the_unchanged_real_file_reads_as_before(tmp_path, rsna_raw):
    from benchmark.data.sets.rsna import patients

    table = patients(write_rsna(tmp_path, rsna_raw))  # through the typed reader: the same patients and boxes
    assert len(table) == 26684 and int(table["Target"].sum()) == 6012
    assert sum(len(b) for b in table["boxes"]) == int((rsna_raw["Target"] == "1").sum()) == 9555


@pytest.mark.parametrize("name, cut", [("rsna", "zip"), ("siim", "gz")])
def test_a_compressed_label_file_cut_off_in_transfer_is_one_line(tmp_path, capsys, name, cut):
    source = XRV / ("kaggle_stage_2_train_labels.csv.zip" if name == "rsna" else "siim-pneumothorax-train-rle.csv.gz")
    target = tmp_path / name / ("stage_2_train_labels.csv.zip" if name == "rsna" else "train-rle.csv.gz")
    target.parent.mkdir()
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    for command in (["split", name, "--out", str(tmp_path / "lists")], ["check", name]):
        argv = ["data", command[0], *command[1:], "--data-root", str(tmp_path)]
        if command[0] == "split":
            err = one_line(capsys, argv)
        else:
            assert main(argv) == 1
            err = capsys.readouterr().out
        assert "cannot read label file" in err and str(target) in err and "cut off" in err, err


def test_a_corrupt_gzip_stream_is_one_line(tmp_path, capsys):
    raw = gzip.decompress((XRV / "siim-pneumothorax-train-rle.csv.gz").read_bytes())
    packed = bytearray(gzip.compress(raw))
    packed[len(packed) // 2: len(packed) // 2 + 64] = bytes(64)  # zeros in the middle of the deflate stream
    (tmp_path / "siim").mkdir()
    (tmp_path / "siim" / "train-rle.csv.gz").write_bytes(bytes(packed))
    err = one_line(capsys, ["data", "split", "siim", "--data-root", str(tmp_path), "--out", str(tmp_path / "l")])
    assert "cannot read label file" in err


def test_a_chexpert_row_with_an_empty_path_is_named(tmp_path, capsys):
    chex = tmp_path / "CheXpert-v1.0-small"
    chex.mkdir()
    train = pd.read_csv(XRV / "chexpert_train.csv.gz")
    train.loc[7, "Path"] = ""
    buf = io.BytesIO()
    train.to_csv(buf, index=False)
    (chex / "train.csv.gz").write_bytes(gzip.compress(buf.getvalue()))
    valid = train.iloc[:234].copy()
    valid["Path"] = [f"CheXpert-v1.0-small/valid/p{i}/view1_frontal.jpg" for i in range(234)]
    valid.to_csv(chex / "valid.csv", index=False)
    err = one_line(capsys, ["data", "split", "chexpert", "--data-root", str(tmp_path), "--out", str(tmp_path / "l")])
    assert "train.csv.gz: data row 8, column 'Path' holds an empty cell, expected a non-empty id" in err


def test_a_chexpert_label_outside_the_labelers_values_is_named(tmp_path, capsys):
    chex = tmp_path / "CheXpert-v1.0-small"
    chex.mkdir()
    train = pd.read_csv(XRV / "chexpert_train.csv.gz", nrows=300)
    train.loc[3, "Edema"] = 2.0
    train.to_csv(chex / "train.csv", index=False)
    train.iloc[:234].to_csv(chex / "valid.csv", index=False)
    err = one_line(capsys, ["data", "split", "chexpert", "--data-root", str(tmp_path), "--out", str(tmp_path / "l")])
    assert "data row 4, column 'Edema' holds '2.0', expected 1, 0, -1 or empty" in err


# ---------------------------------------------------------------- MGCA's own subsets


def test_mgca_rule_gives_mgcas_own_rsna_classification_lists(tmp_path, rsna_raw, capsys):
    """MGCA's RSNA classification dataset: its train.csv (the first call of its split, one row per
    patient in groupby order), then ``df.sample(frac=data_pct, random_state=42)``, the same for every
    seed. Computed here the way MGCA's code does it, and compared with `data split` and the runner's rule."""
    import hashlib
    import json

    from sklearn.model_selection import train_test_split

    from benchmark.data.splits import fraction_subset

    frame = rsna_raw.assign(Target=rsna_raw["Target"].astype(int))
    grouped = frame.groupby("patientId").agg(list).reset_index()  # MGCA's preprocessing
    train_df, _rest = train_test_split(grouped, test_size=0.3, random_state=0)
    write_rsna(tmp_path, rsna_raw)
    out = tmp_path / "lists"
    assert main(["data", "split", "rsna", "--data-root", str(tmp_path), "--out", str(out)]) == 0
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())["lists"]
    train = (out / "cls-train.txt").read_text().split()
    assert train == train_df["patientId"].tolist()
    for fraction, pct, count in ((0.01, "1", 187), (0.1, "10", 1868)):
        mgca = train_df.sample(frac=fraction, random_state=42)["patientId"].tolist()  # MGCA's call
        written = (out / f"cls-train-{pct}pct-mgca.txt").read_text().split()
        assert written == mgca and len(written) == count == summary[f"cls-train-{pct}pct-mgca"]["count"]
        for seed in (42, 0):  # the runner's rule: the same list whatever the seed
            assert fraction_subset("rsna_cls", "real", train, None, fraction, seed, "mgca")[0] == mgca
        stratified = set((out / f"cls-train-{pct}pct-seed42.txt").read_text().split())
        assert len(stratified & set(mgca)) < count // 2  # the per-seed draw is another list
    digest = hashlib.sha256((out / "cls-train-1pct-mgca.txt").read_bytes()).hexdigest()
    assert digest == summary["cls-train-1pct-mgca"]["sha256"]
    assert "det-train-1pct-mgca" not in summary  # MGCA's detection/segmentation draws are not reproducible


def test_rsna_cls_uses_the_mgca_rule_and_says_so(capsys):
    from benchmark.factory import resolve

    assert resolve("random", "rsna_cls", "cpu").task_cfg.subset == "mgca"
    assert resolve("random", "rsna_cls", "phantom").task_cfg.subset == "stratified"  # the calibration's seeds
    assert resolve("random", "siim_seg", "cpu").task_cfg.subset == "stratified"
    assert main(["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5",
                 "--set", "task.epochs=1"]) == 0
    assert "protocol mgca, subset mgca)" in capsys.readouterr().out
