import hashlib

import numpy as np
import pytest

from benchmark.data.splits import draw_subset, fraction_subset, record_path
from benchmark.errors import UserError
from benchmark.store import Store, Trial

IDS = [f"img-{i:04d}" for i in range(1000)]
LABELS = np.array([1 if i % 4 == 0 else 0 for i in range(1000)])  # 250 positives


def test_fraction_manifest_is_stored_and_stable(isolated_home, monkeypatch):
    first, path = fraction_subset("rsna_seg", "phantom", IDS, LABELS, 0.01, 42)
    assert path.read_text().split() == first
    # a fresh cache (another machine) draws the same list
    monkeypatch.setenv("BENCHMARK_HOME", str(isolated_home / "other"))
    again, path2 = fraction_subset("rsna_seg", "phantom", IDS, LABELS, 0.01, 42)
    assert again == first and path2 != path
    # its SHA-256 is recorded beside it, in the sha256sum format
    record = record_path(path2)
    assert record.read_text() == f"{hashlib.sha256(path2.read_bytes()).hexdigest()}  {path2.name}\n"
    # a stored file without a record (from before records) is used as it is and recorded on first read
    record.unlink()
    path2.write_text("\n".join(first[:3]) + "\n")
    assert fraction_subset("rsna_seg", "phantom", IDS, LABELS, 0.01, 42)[0] == first[:3]
    assert record.read_text().startswith(hashlib.sha256(path2.read_bytes()).hexdigest())


@pytest.mark.parametrize("edit", ["truncated", "one id changed", "emptied"])
def test_a_manifest_that_no_longer_matches_its_record_is_an_error(edit):
    subset, path = fraction_subset("rsna_cls", "phantom", IDS, LABELS, 0.1, 0)
    text = path.read_text()
    path.write_text({"truncated": text[: len(text) // 2], "one id changed": text.replace(subset[3], IDS[-1] + "x"),
                     "emptied": ""}[edit])
    with pytest.raises(UserError, match=rf"split manifest {path} no longer matches its recorded SHA-256 "
                                        rf"\({path.name}.sha256\): it was edited or truncated; restore it"):
        fraction_subset("rsna_cls", "phantom", IDS, LABELS, 0.1, 0)
    path.write_text(text)  # restored: used again
    assert fraction_subset("rsna_cls", "phantom", IDS, LABELS, 0.1, 0)[0] == subset


def test_other_strata_draw_another_manifest():
    """Same ids, labels changed (another label file): not the old list."""
    a, pa = fraction_subset("rsna_cls", "real", IDS, LABELS, 0.1, 0)
    b, pb = fraction_subset("rsna_cls", "real", IDS, 1 - LABELS, 0.1, 0)
    assert pa != pb and b == draw_subset(IDS, 1 - LABELS, 0.1, 0)
    assert fraction_subset("rsna_cls", "real", IDS, None, 0.1, 0)[1] not in (pa, pb)


def test_subsets_are_stratified_nested_and_seeded():
    one, ten = draw_subset(IDS, LABELS, 0.01, 42), draw_subset(IDS, LABELS, 0.1, 42)
    pos = {IDS[i] for i in np.flatnonzero(LABELS)}
    assert len(one) == 10 and sum(i in pos for i in one) == 2  # round(0.01 * 250), round(0.01 * 750) = 8
    assert len(ten) == 100 and sum(i in pos for i in ten) == 25
    assert set(one) <= set(ten)
    assert draw_subset(IDS, LABELS, 0.01, 0) != one
    assert draw_subset(IDS, None, 1.0, 42) == IDS
    assert len(draw_subset(IDS[:10], None, 0.01, 42)) == 1  # never empty


@pytest.mark.parametrize("bad", [0, -0.1, 1.5])
def test_bad_fraction(bad):
    with pytest.raises(UserError, match=r"fraction must be in \(0, 1\]"):
        draw_subset(IDS, None, bad, 42)


def test_store_is_idempotent_and_finds_finished(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    t = Trial("imitate", "abc", "rsna_seg", "def", "mgca", 0.01, 42, "phantom-v1")
    assert store.finished(t) is None
    t.status = "failed"
    store.record(t)
    assert store.finished(t) is None and store.find(t).status == "failed"
    t.status, t.metric, t.value, t.metrics = "finished", "dice", 0.5, {"dice": 0.5}
    store.record(t)
    store.record(t)
    assert len(store.all()) == 1
    got = Store(tmp_path / "s.sqlite").finished(Trial("imitate", "abc", "rsna_seg", "def", "mgca", 0.01, 42, "phantom-v1"))
    assert got.value == 0.5 and got.metrics == {"dice": 0.5}
    other_seed = Trial("imitate", "abc", "rsna_seg", "def", "mgca", 0.01, 0, "phantom-v1")
    assert store.finished(other_seed) is None


def test_unwritable_store_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot open the results store"):
        Store(blocker / "sub" / "s.sqlite")
