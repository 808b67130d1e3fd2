"""A new data set is one module plus its task YAMLs: the toy data set of
tests/userdata (``datasets/toy_cxr.py``, ``tasks/toy_cxr_cls.yaml``) is found through
``--config-path`` and runs ``data check``, ``data split`` and ``run`` with no file of the
package touched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main

USERDATA = Path(__file__).parent / "userdata"
PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"
N_TRAIN, N_TEST = 24, 8


def write_toy(root: Path) -> list[str]:
    """The toy download: labels.csv and one PNG per row (abnormal images carry a bright
    blob); returns the train rows' ids in file order."""
    folder = root / "toy-cxr"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows, train = ["image,finding,split"], []
    for k in range(N_TRAIN + N_TEST):
        image, abnormal, split = f"t{k:03d}", k % 3 == 0, "train" if k < N_TRAIN else "test"
        arr = rng.integers(0, 90, (40, 48), dtype=np.uint8)
        if abnormal:
            arr[10:25, 12:30] = 230
        Image.fromarray(arr).save(folder / "images" / f"{image}.png")
        rows.append(f"{image},{'abnormal' if abnormal else 'normal'},{split}")
        if split == "train":
            train.append(image)
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return train


def test_a_data_set_from_a_config_folder_runs_check_split_and_run(tmp_path, capsys):
    from sklearn.model_selection import train_test_split

    train_ids = write_toy(tmp_path / "data")
    root = ["--data-root", str(tmp_path / "data")]
    user = ["--config-path", str(USERDATA)]

    # without the config folder the data set does not exist
    assert main(["data", "check", "toy_cxr", *root]) == 2
    assert "no split recipe for 'toy_cxr'" in capsys.readouterr().err

    assert main([*user, "list", "datasets"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "Toy CXR 1.0" in listed["toy_cxr"] and "RSNA Pneumonia" in listed["rsna"]

    (tmp_path / "data" / "toy-cxr" / "images" / "t005.png").unlink()
    assert main([*user, "data", "check", "toy_cxr", *root]) == 0
    out = capsys.readouterr().out
    assert f"Toy CXR 1.0: {tmp_path / 'data' / 'toy-cxr'}" in out
    assert "splits: train 18, val 6, test 8" in out
    assert "images: 31 of 32 found" in out and "missing " + str(tmp_path / "data/toy-cxr/images/t005.png") in out
    assert "can run: yes" in out

    lists = tmp_path / "lists"
    assert main([*user, "data", "split", "toy_cxr_cls", *root, "--out", str(lists)]) == 0
    capsys.readouterr()
    train, val = train_test_split(np.arange(N_TRAIN), test_size=0.25, random_state=0)
    assert (lists / "train.txt").read_text().split() == [train_ids[i] for i in sorted(train)]
    assert (lists / "val.txt").read_text().split() == [train_ids[i] for i in sorted(val)]
    assert (lists / "test.txt").read_text().split() == [f"t{k:03d}" for k in range(N_TRAIN, N_TRAIN + N_TEST)]
    summary = json.loads((lists / "summary.json").read_text())
    assert summary["dataset"] == "toy_cxr" and summary["source"] == ["Toy CXR 1.0"]
    assert summary["lists"]["train-10pct-seed42"]["count"] == 2  # one normal, one abnormal (stratified)

    assert main([*user, "run", "--method", "random", "--task", "toy_cxr_cls", "--profile", "smoke", *root,
                 "--fraction", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["task"] == "toy_cxr_cls" and res["data_source"] == "real" and 0 <= res["value"] <= 1


def test_the_package_never_names_the_user_data_set():
    hits = [p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml") and "toy_cxr" in p.read_text()]
    assert hits == []


@pytest.mark.parametrize("name", ["rsna", "siim", "chexpert", "chexpert5x200", "covidx", "object_cxr", "nih", "mimic",
                                  "mimic5x200"])
def test_every_shipped_data_set_is_registered(name):
    from benchmark.data import catalog

    assert catalog.dataset(name).name == name
