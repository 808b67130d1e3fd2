"""Damaged phantom caches (renders, their JSON sidecars, the parsed-report cache) are
reported in one warning line and rebuilt; never used, never a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.integrity import KEY
from benchmark.data.phantom import reports as reports_mod
from benchmark.data.phantom.datasets import PHANTOM_VERSION, phantom_corpus
from benchmark.data.phantom.fivex200 import phantom_5x200
from benchmark.data.sets.chexpert import phantom_chexpert
from benchmark.data.sets.rsna import phantom_rsna
from benchmark.data.sets.siim import phantom_siim
from benchmark.paths import cache_dir


def truncate(path: Path) -> str:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "unreadable"


def garbage(path: Path) -> str:
    path.write_bytes(b"\x00\xffnot what was written" * 7)
    return "unreadable"


def zero_pixels(path: Path) -> str:
    """Zero every image in place: the .npy header stays valid, only the pixels are gone."""
    arr = np.load(path, mmap_mode="r+")
    arr[:] = 0
    arr.flush()
    del arr
    return "no longer matches its recorded checksum"


def invert_one_sampled_row(path: Path) -> str:
    """Change one row (an empty mask too): the last row is always in the sample."""
    arr = np.load(path, mmap_mode="r+")
    arr[len(arr) - 1] = 255 - arr[len(arr) - 1]
    arr.flush()
    del arr
    return "no longer matches its recorded checksum"


# (what, make(), the cache file to damage (glob under the phantom folder), the files of that entry)
KINDS = {
    "corpus": (lambda: phantom_corpus(10, 32), "corpus-32px-10-*.npy"),
    "rsna images": (lambda: phantom_rsna("train", 8, 32), "rsna-train-32px-8.images.npy"),
    "rsna masks": (lambda: phantom_rsna("train", 8, 32), "rsna-train-32px-8.masks.npy"),
    "chexpert": (lambda: phantom_chexpert("val", 8, 32), "chexpert-val-32px-8.images.npy"),
    "siim masks": (lambda: phantom_siim("test", 8, 32), "siim-test-32px-8.masks.npy"),
    "5x200": (lambda: phantom_5x200("test", 10, 32), "5x200-32px-2.npy"),
}


def images_of(data) -> tuple[np.ndarray, ...]:
    return tuple(np.array(a) for a in (data.images, getattr(data, "masks", None)) if a is not None)


def one_warning(caplog, path: Path, reason: str) -> None:
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    msg = warnings[0].getMessage()
    assert "\n" not in msg and str(path.with_suffix("").with_suffix("")) in msg and reason in msg, msg
    assert "rebuilding it" in msg


@pytest.mark.parametrize("damage", [truncate, garbage, zero_pixels, invert_one_sampled_row])
@pytest.mark.parametrize("kind", list(KINDS))
def test_damaged_render_is_rebuilt_with_one_warning(kind, damage, caplog):
    make, pattern = KINDS[kind]
    first = images_of(make())
    folder = cache_dir("phantom", PHANTOM_VERSION)
    (path,) = folder.glob(pattern)
    if damage is zero_pixels:
        assert np.load(path).any()  # else zeroing would change nothing
    reason = damage(path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = images_of(make())
    one_warning(caplog, path, reason)
    assert all(np.array_equal(a, b) for a, b in zip(first, again)) and len(first) == len(again)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        images_of(make())  # rebuilt: intact now
    assert not caplog.records


@pytest.mark.parametrize("kind", ["corpus", "rsna images", "chexpert"])
def test_damaged_sidecar_is_rebuilt_with_one_warning(kind, caplog):
    make, pattern = KINDS[kind]
    first = make()
    first.images = np.array(first.images)
    folder = cache_dir("phantom", PHANTOM_VERSION)
    (npy,) = folder.glob(pattern)
    meta = Path(str(npy).replace(".images.npy", ".json").replace(".npy", ".json"))
    meta.write_text(meta.read_text()[:40])  # truncated JSON
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = make()
    one_warning(caplog, meta, "unreadable JSON")
    assert np.array_equal(np.array(first.images), np.array(again.images))
    if hasattr(first, "labels"):
        assert np.array_equal(first.labels, again.labels)
    if hasattr(first, "boxes"):
        assert all(np.array_equal(a, b) for a, b in zip(first.boxes, again.boxes))


def test_entries_from_before_the_record_get_one_and_zeroed_ones_are_caught(caplog):
    """A cache written before integrity records existed is recorded on first read, unless its
    images are all zero: those are re-rendered."""
    first = np.array(phantom_chexpert("train", 6, 32).images)  # a copy: the file is zeroed below
    folder = cache_dir("phantom", PHANTOM_VERSION)
    meta = folder / "chexpert-train-32px-6.json"
    legacy = json.loads(meta.read_text())
    recorded = legacy.pop(KEY)
    meta.write_text(json.dumps(legacy))
    phantom_chexpert("train", 6, 32)
    assert json.loads(meta.read_text())[KEY] == recorded  # the same record, written on first read
    meta.write_text(json.dumps(legacy))
    zero_pixels(folder / "chexpert-train-32px-6.images.npy")
    with caplog.at_level(logging.WARNING):
        again = phantom_chexpert("train", 6, 32)
    one_warning(caplog, meta, "is all zeros")
    assert np.array_equal(first, np.array(again.images)) and first.any()


def test_damaged_report_cache_is_rebuilt_with_one_warning(caplog, monkeypatch):
    first = reports_mod.load_reports()
    (cache,) = cache_dir("phantom").glob("iu_reports-*.json")
    cache.write_text('[{"uid": "CXR1", "findi')
    monkeypatch.setattr(reports_mod, "_MEMO", {})
    with caplog.at_level(logging.WARNING):
        again = reports_mod.load_reports()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and str(cache) in warnings[0] and "damaged" in warnings[0], warnings
    assert again == first
    assert len(json.loads(cache.read_text())) == len(first)  # rewritten whole


def test_parallel_render_equals_serial(tmp_path, monkeypatch):
    """Forked render workers write the same bytes and metadata as one process (and do fork)."""
    from benchmark.data.phantom import stack

    n = stack.PARALLEL_MIN + 37  # a partial last chunk
    out = {}
    for workers in ("1", "2"):
        monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / f"home{workers}"))
        monkeypatch.setenv("BENCHMARK_RENDER_WORKERS", workers)
        rsna, siim = phantom_rsna("val", n, 32), phantom_siim("val", n, 32)
        out[workers] = (np.asarray(rsna.images), np.asarray(rsna.masks), [b.tolist() for b in rsna.boxes],
                        np.asarray(siim.images), siim.labels.tolist())
    assert stack.render_workers() == 2
    for a, b in zip(out["1"], out["2"]):
        assert (np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b)
    assert out["1"][1].any() and sum(out["1"][4]) > 0  # masks and positives exist: the comparison has content
