"""Config files (issue 16): ``include:``, the shipped configs that use it, and user config folders
(``--config-path``, ``BENCHMARK_CONFIG_PATH``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.config import available, load_yaml, named_yaml
from benchmark.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_merges_mappings_key_by_key_and_own_keys_win(tmp_path):
    _write(tmp_path / "parts" / "base.yaml", "a: 1\nkeep: base\nreal: {folder: f, split: s0}\nlst: [1, 2]\n")
    _write(tmp_path / "parts" / "mid.yaml", "include: base.yaml\na: 2\nreal: {labels: l}\n")  # nested, relative to itself
    _write(tmp_path / "parts" / "later.yaml", "a: 3\nlater: yes\n")
    top = _write(tmp_path / "top.yaml", "include: [parts/mid.yaml, parts/later.yaml]\nreal: {split: s1}\nlst: [3]\nown: 1\n")
    assert load_yaml(top) == {
        "a": 3,  # the later include wins over the earlier one (mid's 2 over base's 1 before that)
        "keep": "base",
        "real": {"folder": "f", "split": "s1", "labels": "l"},  # mappings merged key by key, own split wins
        "lst": [3],  # a list is replaced whole
        "later": True,
        "own": 1,
    }
    assert list(load_yaml(top)["real"]) == ["folder", "split", "labels"]  # a key keeps its included place
    assert load_yaml(tmp_path / "parts" / "later.yaml") == {"a": 3, "later": True}  # no include: the file as it is


def test_include_mistakes_are_one_line_user_errors(tmp_path):
    _write(tmp_path / "a.yaml", "include: b.yaml\nx: 1\n")
    _write(tmp_path / "b.yaml", "include: sub/../a.yaml\n")
    with pytest.raises(UserError, match=r"includes itself: .*a\.yaml -> .*b\.yaml -> .*a\.yaml$"):
        load_yaml(tmp_path / "a.yaml")
    _write(tmp_path / "self.yaml", "include: self.yaml\n")
    with pytest.raises(UserError, match="includes itself"):
        load_yaml(tmp_path / "self.yaml")
    _write(tmp_path / "missing.yaml", "include: nowhere.yaml\n")
    with pytest.raises(UserError, match=r"missing\.yaml includes .*nowhere\.yaml, which is not a file"):
        load_yaml(tmp_path / "missing.yaml")
    _write(tmp_path / "list.yaml", "- 1\n- 2\n")
    _write(tmp_path / "of_list.yaml", "include: list.yaml\n")
    with pytest.raises(UserError, match=r"list\.yaml must hold a mapping"):
        load_yaml(tmp_path / "of_list.yaml")
    _write(tmp_path / "number.yaml", "include: 5\n")
    with pytest.raises(UserError, match=r"'include:' must name a file or a list of files, got 5"):
        load_yaml(tmp_path / "number.yaml")
    _write(tmp_path / "bomb.yaml", "".join(f"{k}: &{k} [{','.join([f'*{j}'] * 9) if j else ','.join(['lol'] * 9)}]\n"
                                          for j, k in zip(["", *"abcdefgh"], "abcdefghi")))
    _write(tmp_path / "of_bomb.yaml", "include: bomb.yaml\n")
    with pytest.raises(UserError, match=r"bomb\.yaml expands to more than 100,000 values"):  # included files are bounded too
        load_yaml(tmp_path / "of_bomb.yaml")
    _write(tmp_path / "big.yaml", "# " + "x" * (1 << 20) + "\n")
    _write(tmp_path / "of_big.yaml", "include: [self_free.yaml, big.yaml]\n")
    _write(tmp_path / "self_free.yaml", "x: 1\n")
    with pytest.raises(UserError, match="larger than 1 MiB"):
        load_yaml(tmp_path / "of_big.yaml")
    for k in range(12):  # a diamond: 2**12 reads of d0.yaml if nothing bounded them
        _write(tmp_path / f"d{k + 1}.yaml", f"include: [d{k}.yaml, d{k}.yaml]\n")
    _write(tmp_path / "d0.yaml", "x: 1\n")
    with pytest.raises(UserError, match="reads more than 100 files through its includes"):
        load_yaml(tmp_path / "d12.yaml")


#: task config hashes (factory.plan_trial's task_hash, phantom data) of shipped tasks built with include:,
#: taken before the includes were written: a changed value means an include changed what a task is.
#: Issue 26 removed the prose real: field from every task: these are now the old keys the store finds
#: their trials under (Trial.task_aliases; tests/test_hash_pins.py pins the new ones)
PINNED = {
    ("chexpert5x200_zs", "cpu"): "85f6787dd0f3", ("chexpert5x200_zs", "paper"): "203db3be3193",
    ("mimic5x200_zs", "cpu"): "11e12737134d", ("mimic5x200_zs", "paper"): "2cdfb2b263a3",
    # issue 25: rsna_cls draws MGCA's subset (subset: mgca), a new task config (was aee988f91847 / 61b9e8b22a08);
    # under the phantom profile it keeps the stratified draw and the hash its stored trials carry
    ("rsna_cls", "cpu"): "b44a6069749a", ("rsna_cls", "paper"): "71231e0c635d", ("rsna_cls", "phantom"): "5d487da63cfc",
    ("rsna_seg", "cpu"): "78ec7ce92554", ("rsna_seg", "paper"): "26b82925c1e7",
    ("rsna_det", "cpu"): "1dd77b05c557", ("rsna_det", "paper"): "729ae3d177ea",
    # the segmentation tasks keep their hashes now that test_subset exists (hashed only when set);
    # the positives-only tasks are new (issue 23)
    ("siim_seg", "cpu"): "1aa51b6f61d9", ("siim_seg", "paper"): "159abe1cbbe1",
    ("rsna_seg_pos", "cpu"): "1b3b564ff4ae", ("rsna_seg_pos", "paper"): "6891d8a7994e",
    ("siim_seg_pos", "cpu"): "69a4936b2d85", ("siim_seg_pos", "paper"): "00f247145c9c",
}


def test_test_subset_is_hashed_only_when_set():
    from benchmark.factory import plan_trial

    default = plan_trial("imitate", "siim_seg", 0.01, 42, "cpu")[0]
    explicit = plan_trial("imitate", "siim_seg", 0.01, 42, "cpu", [("task.test_subset", "all")])[0]
    positive = plan_trial("imitate", "siim_seg", 0.01, 42, "cpu", [("task.test_subset", "positive")])[0]
    assert default.task_hash == explicit.task_hash != positive.task_hash
    assert PINNED["siim_seg", "cpu"] in default.task_aliases and PINNED["siim_seg", "cpu"] not in positive.task_aliases
    assert positive.task_config["test_subset"] == "positive"


@pytest.mark.parametrize("task, profile", sorted(PINNED))
def test_shipped_task_hashes_are_pinned(task, profile, monkeypatch):
    from benchmark.factory import plan_trial

    monkeypatch.delenv("BENCHMARK_DATA", raising=False)
    monkeypatch.delenv("BENCHMARK_CONFIG_PATH", raising=False)
    trial, _, _ = plan_trial("imitate", task, 0.01, 42, profile)
    assert PINNED[task, profile] in trial.task_aliases


def test_shipped_includes_are_not_configs_of_their_own():
    assert "include" not in named_yaml("tasks", "rsna_cls")
    assert "real" not in named_yaml("tasks", "rsna_seg")  # issue 26: the data set modules hold the layout
    zs = named_yaml("tasks", "mimic5x200_zs")
    assert (zs["dataset"], zs["kind"], len(zs["prompts"]), zs["max_prompts"]) == ("mimic5x200", "zeroshot", 5, 50)
    assert named_yaml("sweeps", "random") == named_yaml("sweeps", "checkpoint") == {
        "description": "downstream head only (learning rate, weight decay)",
        "space": {"task.lr": {"loguniform": [1e-4, 1e-2]}, "task.weight_decay": {"loguniform": [1e-7, 1e-2]}}}
    shared = {p.stem for p in (ROOT / "configs" / "includes").glob("*.yaml")}
    assert shared and not shared & {n for kind in ("tasks", "sweeps", "methods") for n in available(kind)}
    assert len(available("tasks")) == 14  # issue 23 added siim_seg_pos, rsna_seg_pos


@pytest.fixture
def user_dir(tmp_path):
    """A user's config folder: a task that starts from the shipped rsna_cls, a grid that names it,
    and a profile with a shipped name."""
    folder = tmp_path / "mine"
    _write(folder / "tasks" / "rsna_short.yaml",
           f"include: {ROOT / 'configs' / 'tasks' / 'rsna_cls.yaml'}\ndescription: RSNA, ten times the weight decay\nweight_decay: 1.0e-5\n")
    _write(folder / "experiments" / "my_grid.yaml",
           "methods: [random]\ntasks: [rsna_short, rsna_cls]\nfractions: [0.5]\nseeds: [7]\n")
    _write(folder / "profiles" / "smoke.yaml", "task: {epochs: 4}\n")
    return folder


def _cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    full.pop("BENCHMARK_DATA", None)
    return subprocess.run([sys.executable, "-m", "benchmark", *argv], capture_output=True, text=True, env=full, check=False,
                          cwd=ROOT, timeout=120)


def test_user_configs_are_found_by_name_through_the_cli(user_dir, tmp_path):
    store = str(tmp_path / "store.sqlite")
    by_option = _cli("--config-path", str(user_dir), "list", "tasks")
    assert by_option.returncode == 0, by_option.stderr
    line = next(x for x in by_option.stdout.splitlines() if x.startswith("rsna_short"))
    assert line.split()[1:4] == ["classification", "rsna", "auroc"] and line.endswith("RSNA, ten times the weight decay")
    by_env = _cli("list", "tasks", env={"BENCHMARK_CONFIG_PATH": str(user_dir)})
    assert by_env.stdout == by_option.stdout
    assert "rsna_short" not in _cli("list", "tasks").stdout
    # the option after the command, with another (empty) folder beside it, os.pathsep-separated
    (tmp_path / "empty").mkdir()
    grid = _cli("grid", "--experiment", "my_grid", "--dry-run", "--config-path", f"{tmp_path / 'empty'}{os.pathsep}{user_dir}",
                env={"BENCHMARK_STORE": store})
    assert grid.returncode == 0, grid.stderr
    assert "to run: random rsna_short fraction 0.5 seed 7" in grid.stdout
    assert "2 to run, 0 already finished" in grid.stdout


def test_a_user_config_with_a_shipped_name_wins(user_dir, monkeypatch):
    from benchmark.factory import resolve

    shipped = resolve("random", "rsna_cls", "smoke").task_cfg.epochs
    monkeypatch.setenv("BENCHMARK_CONFIG_PATH", str(user_dir))
    assert resolve("random", "rsna_cls", "smoke").task_cfg.epochs == 4 != shipped  # the user's smoke profile
    short = resolve("random", "rsna_short", "cpu").task_cfg
    assert (short.weight_decay, short.dataset, short.lr) == (1e-5, "rsna", 5e-4)
    assert {"rsna_short", "rsna_cls"} <= set(available("tasks")) and "my_grid" in available("experiments")


def test_the_config_path_option_is_undone_after_the_command(user_dir, monkeypatch, capsys):
    from benchmark.cli import main

    monkeypatch.delenv("BENCHMARK_CONFIG_PATH", raising=False)
    assert main(["list", "tasks", "--config-path", str(user_dir)]) == 0
    assert "rsna_short" in capsys.readouterr().out
    assert "BENCHMARK_CONFIG_PATH" not in os.environ and "rsna_short" not in available("tasks")

