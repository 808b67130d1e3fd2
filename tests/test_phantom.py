"""Phantom data set: report parsing, tag -> lesion mapping, rendering, cached corpora."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from benchmark.data.phantom import reports as reports_mod
from benchmark.data.phantom.anatomy import Lesion, lesions_from_report
from benchmark.data.phantom.datasets import PHANTOM_VERSION, phantom_corpus, seeded_rng
from benchmark.data.phantom.render import render
from benchmark.data.phantom.reports import Report, load_reports
from benchmark.data.sets.rsna import phantom_rsna, rsna_lesions
from benchmark.errors import UserError


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path / "home"


def _report(*tags: str, uid: str = "CXR42") -> Report:
    return Report(uid=uid, findings="", impression="x", tags=tuple(tags))


# ------------------------------------------------------------------ reports


def test_reports_parse_counts_and_normalisation(_home):
    reps = load_reports()
    assert len(reps) > 3000
    assert all(r.impression for r in reps)
    empty_findings = sum(1 for r in reps if not r.findings)
    assert 100 < empty_findings < len(reps) // 2
    nums = [int(r.uid[3:]) for r in reps]
    assert nums == sorted(nums) and reps[0].uid == "CXR1"
    assert reps[0].tags == ("normal",)
    assert all("  " not in r.findings and r.findings == r.findings.strip() for r in reps)
    assert any(t.startswith("Opacity/lung/") for r in reps for t in r.tags)
    # The parse is cached as JSON under $BENCHMARK_HOME, never in the repo.
    assert list((_home / "phantom").glob("iu_reports*.json"))


def test_reports_missing_torchxrayvision(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torchxrayvision" else real(name, *a))
    with pytest.raises(UserError, match="pip install torchxrayvision"):
        reports_mod.reports_tarball()


# ---------------------------------------------------------- tags -> lesions


def test_lesions_from_tags():
    (les,) = lesions_from_report(_report("Opacity/lung/upper lobe/right"))
    assert (les.kind, les.side, les.zone) == ("opacity", "right", "upper")

    (les,) = lesions_from_report(_report("Pleural Effusion/left/large"))
    assert (les.kind, les.side, les.zone) == ("effusion", "left", "lower") and les.severity > 0.7

    (les,) = lesions_from_report(_report("Cardiomegaly/mild"))
    assert les.kind == "cardiomegaly" and les.severity < 0.5

    (les,) = lesions_from_report(_report("Nodule/lung/base/left"))
    assert (les.kind, les.side, les.zone) == ("nodule", "left", "lower")

    (les,) = lesions_from_report(_report("Pulmonary Atelectasis/base/bilateral"))
    assert (les.kind, les.side, les.zone) == ("atelectasis", "bilateral", "lower")

    (les,) = lesions_from_report(_report("Airspace Disease/lung/middle lobe/right"))
    assert (les.kind, les.side, les.zone) == ("opacity", "right", "middle")

    (les,) = lesions_from_report(_report("Opacity/lung/lingula"))
    assert (les.side, les.zone) == ("left", "middle")

    (les,) = lesions_from_report(_report("Pulmonary Edema"))
    assert (les.kind, les.side) == ("edema", "bilateral")

    (les,) = lesions_from_report(_report("Pneumothorax/apex/right/small"))
    assert (les.kind, les.side, les.zone) == ("pneumothorax", "right", "upper") and les.severity < 0.5

    assert lesions_from_report(_report("normal")) == []
    assert lesions_from_report(_report("Aorta/tortuous", "Spine/degenerative")) == []
    # Two tags describing the same finding merge into one lesion.
    merged = lesions_from_report(_report("Consolidation/lung/lower lobe/left", "Pneumonia/lower lobe/left"))
    assert [(m.kind, m.side, m.zone) for m in merged] == [("opacity", "left", "lower")]
    merged = lesions_from_report(_report("Opacity/lung/base/bilateral", "Opacity/lung/base/left/moderate"))
    assert [(m.kind, m.side, m.zone, m.severity) for m in merged] == [("opacity", "bilateral", "lower", 0.6)]

    (les,) = lesions_from_report(_report("Opacity/lung/bilateral/interstitial/diffuse"))
    assert (les.kind, les.side) == ("interstitial", "bilateral")
    (les,) = lesions_from_report(_report("Catheters, Indwelling/right"))
    assert (les.kind, les.side) == ("catheter", "right")
    (les,) = lesions_from_report(_report("Implanted Medical Device/left"))
    assert (les.kind, les.side) == ("pacemaker", "left")
    assert lesions_from_report(_report("Surgical Instruments/abdomen/right")) == []


def test_unspecified_side_is_deterministic_and_varies():
    sides = {lesions_from_report(_report("Pneumonia", uid=f"CXR{i}"))[0].side for i in range(40)}
    assert sides == {"right", "left"}
    a = lesions_from_report(_report("Pneumonia", "Nodule", uid="CXR7"))
    assert a == lesions_from_report(_report("Pneumonia", "Nodule", uid="CXR7"))


def test_lesion_validates_fields():
    with pytest.raises(ValueError):
        Lesion("tumour", "right", "upper", 0.5)
    with pytest.raises(ValueError):
        Lesion("opacity", "up", "upper", 0.5)


# ----------------------------------------------------------------- render


def test_render_shapes_and_determinism():
    les = [Lesion("opacity", "left", "lower", 0.7)]
    a = render(les, np.random.default_rng(3), 64)
    b = render(les, np.random.default_rng(3), 64)
    assert a.image.dtype == np.uint8 and a.image.shape == (64, 64)
    assert a.mask.dtype == np.uint8 and a.mask.shape == (64, 64)
    assert a.boxes.dtype == np.float32 and a.boxes.shape == (1, 4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    c = render(les, np.random.default_rng(4), 64)
    assert not np.array_equal(a.image, c.image)


def test_radiograph_convention():
    """Air dark, lungs darker than the mediastinum, the image not flat."""
    img = render([], np.random.default_rng(0), 128).image.astype(float)
    corner = img[:8, :8].mean()
    mediastinum = img[64:90, 58:70].mean()
    lung_r, lung_l = img[35:70, 22:42].mean(), img[35:70, 86:106].mean()
    assert corner < 40 and mediastinum > lung_r + 40 and mediastinum > lung_l + 40


def test_same_seed_same_picture_at_two_resolutions():
    les = [Lesion("opacity", "right", "middle", 0.8), Lesion("effusion", "left", "lower", 0.6)]
    big = render(les, np.random.default_rng(11), 256)
    small = render(les, np.random.default_rng(11), 64)
    pooled = big.image.reshape(64, 4, 64, 4).astype(float).mean(axis=(1, 3))
    corr = np.corrcoef(pooled.ravel(), small.image.ravel().astype(float))[0, 1]
    assert corr > 0.95
    np.testing.assert_allclose(big.boxes / 4, small.boxes, atol=2.0)


@pytest.mark.parametrize("seed", range(4))
def test_right_opacity_drawn_on_image_left(seed):
    size = 64
    sick = render([Lesion("opacity", "right", "upper", 0.8)], np.random.default_rng(seed), size)
    well = render([], np.random.default_rng(seed), size)
    (x, y, w, h), = sick.boxes.astype(int)
    assert x + w / 2 < size / 2, "patient's right lung is on the image's left"
    assert y + h / 2 < size * 0.55, "upper zone"
    inside = (slice(y, y + h), slice(x, x + w))
    assert sick.image[inside].mean() > well.image[inside].mean() + 8
    # Nothing changes far from the lesion (same seed: same anatomy and noise).
    far = (slice(None), slice(size * 3 // 4, None))
    assert np.abs(sick.image[far].astype(int) - well.image[far]).max() <= 1


def test_only_opacities_get_boxes():
    others = [Lesion(k, "bilateral", "lower", 0.7) for k in ("interstitial", "atelectasis", "effusion", "nodule")]
    others += [Lesion("cardiomegaly", "center", "middle", 0.7), Lesion("pacemaker", "left", "upper", 0.5)]
    out = render(others, np.random.default_rng(1), 64)
    assert out.boxes.shape == (0, 4) and out.mask.sum() == 0
    assert not np.array_equal(out.image, render([], np.random.default_rng(1), 64).image)


def test_masks_are_filled_boxes():
    for seed in range(6):
        les = [Lesion("opacity", "bilateral", "lower", 0.6), Lesion("nodule", "left", "upper", 0.5)]
        out = render(les, np.random.default_rng(seed), 64)
        assert len(out.boxes) == 2  # one per lung; the nodule gets no box
        expect = np.zeros_like(out.mask)
        for x, y, w, h in out.boxes.astype(int):
            assert w > 0 and h > 0
            expect[y:y + h, x:x + w] = 1
        assert np.array_equal(out.mask, expect)
    assert render([Lesion("nodule", "right", "lower", 0.5)], np.random.default_rng(0), 64).mask.sum() == 0


def test_cardiomegaly_widens_heart():
    for seed in range(3):
        normal = render([], np.random.default_rng(seed), 128)
        big = render([Lesion("cardiomegaly", "center", "middle", 0.6)], np.random.default_rng(seed), 128)
        assert normal.ctr < 0.5 < big.ctr
        diff = big.image.astype(int) - normal.image.astype(int)
        cols = np.flatnonzero((diff > 25).any(axis=0))
        # The heart grows on both sides of the midline.
        assert cols.size and cols.min() < 60 and cols.max() > 68
        assert diff[:40].max() <= 2  # upper chest unchanged


def test_effusion_and_pneumothorax_sides():
    size = 64
    for seed in range(3):
        base = render([], np.random.default_rng(seed), size).image.astype(int)
        eff = render([Lesion("effusion", "left", "lower", 0.7)], np.random.default_rng(seed), size).image
        d = eff.astype(int) - base
        assert d[size // 2:, size // 2:].sum() > 20 * np.abs(d[:, : size // 2]).sum() + 500
        ptx = render([Lesion("pneumothorax", "right", "upper", 0.7)], np.random.default_rng(seed), size).image
        d = ptx.astype(int) - base
        assert d[: size // 2, : size // 2].sum() < -200  # darker apex on the image's left
        assert np.abs(d[:, size * 5 // 8:]).max() <= 1


def test_render_speed():
    les = [Lesion("opacity", "right", "lower", 0.6)]
    render(les, np.random.default_rng(0), 128)
    t0 = time.perf_counter()
    for i in range(20):
        render(les, np.random.default_rng(i), 128)
    per_image = (time.perf_counter() - t0) / 20
    assert per_image < 0.05  # budget ~5 ms; generous for loaded CI machines


# ---------------------------------------------------------------- datasets


def test_corpus_cached_deterministic_and_prefix(tmp_path, monkeypatch):
    corpus = phantom_corpus(24, 32)
    assert len(corpus) == 24 and corpus.images.shape == (24, 32, 32) and corpus.images.dtype == np.uint8
    assert isinstance(corpus.images, np.memmap)
    reps = load_reports()[:24]
    assert corpus.impressions == [r.impression for r in reps]
    assert corpus.findings == [r.findings for r in reps]
    assert corpus.ids[0] == "phantom-CXR1" and len(set(corpus.ids)) == 24
    assert corpus.source == "phantom" and len(corpus.fingerprint) == 12

    t0 = time.perf_counter()
    again = phantom_corpus(24, 32)
    assert time.perf_counter() - t0 < 0.5
    assert np.array_equal(np.asarray(again.images), np.asarray(corpus.images))
    assert again.fingerprint == corpus.fingerprint

    # Served from the larger cache, and equal to a fresh render of the prefix.
    prefix = phantom_corpus(10, 32)
    assert np.array_equal(np.asarray(prefix.images), np.asarray(corpus.images[:10]))
    assert prefix.fingerprint != corpus.fingerprint
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "fresh"))
    fresh = phantom_corpus(10, 32)
    assert np.array_equal(np.asarray(fresh.images), np.asarray(corpus.images[:10]))
    assert fresh.fingerprint == prefix.fingerprint
    assert phantom_corpus(10, 48).fingerprint != prefix.fingerprint

    # Image i is drawn from report i's tags with seed (version, "corpus", i).
    i = 3
    expect = render(lesions_from_report(reps[i]), seeded_rng(PHANTOM_VERSION, "corpus", i), 32).image
    assert np.array_equal(corpus.images[i], expect)


def test_corpus_all_when_n_nonpositive(monkeypatch):
    from benchmark.data.phantom import datasets

    monkeypatch.setattr(datasets, "load_reports", lambda: load_reports()[:7])
    assert len(phantom_corpus(0, 16)) == 7
    assert len(phantom_corpus(100, 16)) == 7


def test_rsna_like_set(tmp_path, monkeypatch):
    data = phantom_rsna("train", 120, 32)
    assert len(data) == 120 and data.ids[123 % 120] == "rsna-train-000003"
    assert data.images.shape == data.masks.shape == (120, 32, 32)
    assert data.labels.dtype == np.int64 and set(np.unique(data.labels)) <= {0, 1}
    assert 0.15 <= data.labels.mean() <= 0.45
    for i in range(len(data)):
        boxes = data.boxes[i]
        assert boxes.dtype == np.float32 and boxes.shape[1] == 4
        assert data.labels[i] == (len(boxes) > 0) == bool(data.masks[i].any())
        assert len(boxes) <= 3

    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "fresh"))
    again = phantom_rsna("train", 40, 32)
    assert np.array_equal(np.asarray(again.images), np.asarray(data.images[:40]))
    assert np.array_equal(np.asarray(again.masks), np.asarray(data.masks[:40]))
    val = phantom_rsna("val", 40, 32)
    assert not any(np.array_equal(val.images[i], again.images[i]) for i in range(40))
    with pytest.raises(UserError):
        phantom_rsna("dev", 10, 32)
    with pytest.raises(UserError):
        phantom_rsna("train", 0, 32)


def test_rsna_label_rate_and_distractors():
    specs = [rsna_lesions(seeded_rng("t", i)) for i in range(3000)]
    positive = [any(les.kind == "opacity" for les in s) for s in specs]
    assert 0.27 < np.mean(positive) < 0.33
    negative_kinds = {les.kind for s, p in zip(specs, positive) if not p for les in s}
    assert {"cardiomegaly", "effusion", "nodule"} <= negative_kinds
    assert "opacity" not in negative_kinds
    assert sum(1 for s, p in zip(specs, positive) if not p and not s) > 500  # plenty of normals
    counts = {len([les for les in s if les.kind == "opacity"]) for s, p in zip(specs, positive) if p}
    assert counts == {1, 2, 3}


def test_rsna_not_separable_by_brightness():
    data = phantom_rsna("test", 150, 32)
    means = np.asarray(data.images, float).reshape(len(data), -1).mean(1)
    pos, neg = means[data.labels == 1], means[data.labels == 0]
    # Probability that a positive is brighter than a negative (AUC of the mean).
    auc = (pos[:, None] > neg[None, :]).mean()
    assert 0.25 < auc < 0.75
