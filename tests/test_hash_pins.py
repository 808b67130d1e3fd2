"""Every shipped method and task config keeps the store-key hash it was pinned at (issue 26):
a refactor that changes a hash would orphan every stored result under it. The pins were
written by tools/pin_hashes.py before the change; a task hash that changed deliberately is
listed in CHANGED, and its old hash must be one the store still finds it under (its aliases),
which is then checked on a store written before the change."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PINNED = json.loads((ROOT / "tests" / "data" / "pinned_hashes.json").read_text())
REAL_REMOVED = "TaskConfig.real removed: prose about the real files and split that no code read, yet hashed"
# "<profile>/<task>": why its hash changed (the store finds its old trials through an alias)
CHANGED: dict[str, str] = {f"{profile}/{task}": REAL_REMOVED
                           for profile in ("cpu", "paper", "phantom", "smoke")
                           for task in ("chexpert5x200_ret", "chexpert5x200_zs", "chexpert_cls", "covidx_cls",
                                        "mimic5x200_zs", "nih_cls", "object_cxr_det", "rsna_cls", "rsna_det",
                                        "rsna_seg", "rsna_seg_pos", "rsna_zs", "siim_seg", "siim_seg_pos")}


def _current() -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import pin_hashes
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return pin_hashes.current()


def test_every_shipped_config_keeps_its_hash_or_says_why(monkeypatch):
    from benchmark.factory import resolve_task
    from benchmark.legacy_hashes import legacy_task_hashes

    monkeypatch.chdir(ROOT)
    now = _current()
    assert set(now["methods"]) == set(PINNED["methods"]) and len(now["methods"]) >= 36
    assert set(now["tasks"]) == set(PINNED["tasks"]) and len(now["tasks"]) >= 56
    assert {k: v for k, v in now["methods"].items() if v != PINNED["methods"][k]} == {}
    moved = {k for k, v in now["tasks"].items() if v != PINNED["tasks"][k]}
    assert moved == set(CHANGED)
    for key in moved:  # the old key is one the store looks under
        profile, task = key.split("/")
        assert PINNED["tasks"][key] in legacy_task_hashes(resolve_task(task, profile)[1]), key


def _old_store(tmp_path: Path) -> Path:
    """A copy of results/phantom_power.sqlite, a store written before the change (its WAL included)."""
    copy = tmp_path / "old.sqlite"
    with sqlite3.connect(f"file:{ROOT / 'results' / 'phantom_power.sqlite'}?mode=ro", uri=True) as src, \
            sqlite3.connect(copy) as dst:
        src.backup(dst)
    return copy


def test_an_old_stores_finished_trials_are_found_and_moved_to_the_new_key(tmp_path):
    from benchmark.factory import plan_trial
    from benchmark.store import Store

    path = _old_store(tmp_path)
    trial, _, _ = plan_trial("random", "rsna_cls", 0.01, 0, "phantom", [])
    with sqlite3.connect(path) as db:
        before = db.execute("SELECT task_hash, value FROM trials WHERE method = 'random' AND method_hash = ? AND "
                            "task = 'rsna_cls' AND fraction = 0.01 AND seed = 0 AND status = 'finished'",
                            (trial.method_hash,)).fetchall()
        rows = db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    # one row per task config it was run under: today's config (an alias) and an older one (stratified subset)
    ours = [(h, v) for h, v in before if h in trial.task_aliases]
    assert len(ours) == 1 and trial.task_hash not in {h for h, _ in before}
    old_hash, value = ours[0]

    read = Store(path, readonly=True).finished(trial)  # a read-only store: found, not moved
    assert read is not None and read.value == value and read.task_hash == trial.task_hash
    found = Store(path).finished(trial)
    assert found is not None and found.value == value and found.task_hash == trial.task_hash
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == rows
        assert db.execute("SELECT COUNT(*) FROM trials WHERE task_hash = ? AND method_hash = ? AND fraction = 0.01 "
                          "AND seed = 0", (old_hash, trial.method_hash)).fetchone()[0] == 0
        moved = db.execute("SELECT value, task_config FROM trials WHERE task_hash = ? AND method_hash = ? AND "
                           "fraction = 0.01 AND seed = 0", (trial.task_hash, trial.method_hash)).fetchall()
    assert [v for v, _ in moved] == [value] and "real" not in json.loads(moved[0][1])
    assert Store(path).finished(trial).value == value  # found under its own key now


@pytest.mark.parametrize("kind", ["no alias", "other seed"])
def test_an_alias_finds_only_the_same_trial(tmp_path, kind):
    from benchmark.factory import plan_trial
    from benchmark.store import Store

    trial, _, _ = plan_trial("random", "rsna_cls", 0.01, 0 if kind == "no alias" else 7, "phantom", [])
    if kind == "no alias":
        trial.task_aliases = []
    assert Store(_old_store(tmp_path)).finished(trial) is None
