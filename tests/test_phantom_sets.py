"""Phantom downstream sets: CheXpert, COVIDx, SIIM, NIH, Object-CXR stand-ins."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from benchmark.data.catalog import PHANTOMS as PHANTOM_SETS
from benchmark.data.phantom.anatomy import Lesion
from benchmark.data.phantom.datasets import PHANTOM_VERSION, seeded_rng
from benchmark.data.phantom.render import render
from benchmark.data.sets import chexpert, covidx, nih, object_cxr, siim
from benchmark.data.sources import task_splits
from benchmark.errors import UserError

SIZE = 32


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path / "home"


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def _specs(fn, n: int, tag: str = "t"):
    return [fn(seeded_rng(tag, i)) for i in range(n)]


# ------------------------------------------------------- label spaces / rates


def test_chexpert_label_rates_and_cooccurrence():
    y = np.asarray([lab for _, lab in _specs(chexpert.chexpert_lesions, 3000)])
    assert y.shape == (3000, 5)
    rates = y.mean(0)
    assert ((rates > 0.08) & (rates < 0.32)).all(), rates
    assert 0.25 < (y.sum(1) == 0).mean() < 0.6  # plenty of images with none
    assert (y.sum(1) >= 2).mean() > 0.08  # and of images with several
    # Realistic co-occurrence: oedema goes with cardiomegaly and effusion.
    card, edema, eff = y[:, 1], y[:, 3], y[:, 4]
    assert card[edema == 1].mean() > 2 * card[edema == 0].mean()
    assert eff[edema == 1].mean() > 2 * eff[edema == 0].mean()


def test_chexpert_labels_match_drawn_kinds():
    kind_of = ("atelectasis", "cardiomegaly", "opacity", "edema", "effusion")
    for lesions, lab in _specs(chexpert.chexpert_lesions, 400):
        kinds = {les.kind for les in lesions}
        assert [int(k in kinds) for k in kind_of] == lab


def test_covidx_classes_and_kinds():
    specs = _specs(covidx.covidx_lesions, 3000)
    cls = np.asarray([c for _, c in specs])
    rates = np.bincount(cls, minlength=3) / len(cls)
    assert 0.38 < rates[0] < 0.52 and 0.24 < rates[1] < 0.36 and 0.19 < rates[2] < 0.31
    for lesions, c in specs[:500]:
        opac = [les for les in lesions if les.kind == "opacity"]
        covid = [les for les in lesions if les.kind == "covid"]
        if c == 0:
            assert not opac and not covid
        elif c == 1:
            assert 1 <= len(opac) <= 2 and not covid and all(les.side != "bilateral" for les in opac)
        else:
            assert not opac and any(les.side == "bilateral" and les.zone == "lower" for les in covid)


def test_siim_and_object_rates():
    ptx = np.asarray([lab for _, lab in _specs(siim.siim_lesions, 3000)])
    assert 0.22 < ptx.mean() < 0.28
    specs = _specs(object_cxr.object_cxr_lesions, 2000)
    obj = np.asarray([lab for _, lab in specs])
    assert 0.45 < obj.mean() < 0.55
    for lesions, lab in specs[:300]:
        assert lab == any(les.kind in ("coin", "button", "wire") for les in lesions)


def test_nih_labels_and_mapping():
    specs = _specs(nih.nih_lesions, 3000)
    y = np.asarray([lab for _, lab in specs])
    assert y.shape == (3000, 14) and len(nih.NIH_CLASSES) == 14
    rates = y.mean(0)
    assert (rates > 0.02).all() and (rates < 0.25).all(), rates
    assert 0.35 < (y.sum(1) == 0).mean() < 0.7
    need = {"Cardiomegaly": "cardiomegaly", "Pneumothorax": "pneumothorax", "Edema": "edema",
            "Emphysema": "hyperinflation", "Fibrosis": "interstitial", "Mass": "nodule"}
    for lesions, lab in specs[:500]:
        kinds = {les.kind for les in lesions}
        for name, kind in need.items():
            if lab[nih.NIH_CLASSES.index(name)]:
                assert kind in kinds, name
        if lab[nih.NIH_CLASSES.index("Mass")]:
            assert max(les.severity for les in lesions if les.kind == "nodule") >= 0.85
        if not any(lab):
            assert kinds <= {"catheter", "pacemaker"}


# ------------------------------------------------------------ the renderer


def test_covid_is_bilateral_peripheral_ground_glass_unlike_pneumonia():
    size = 64
    rows = slice(int(0.55 * size), int(0.8 * size))
    right_lat, left_lat = slice(int(0.1 * size), int(0.3 * size)), slice(int(0.7 * size), int(0.9 * size))
    inner = slice(int(0.3 * size), int(0.45 * size))
    for seed in range(4):
        well = render([], np.random.default_rng(seed), size).image.astype(int)
        cov = render([Lesion("covid", "bilateral", "lower", 0.6)], np.random.default_rng(seed), size)
        pna = render([Lesion("opacity", "right", "lower", 0.6)], np.random.default_rng(seed), size)
        dc, dp = cov.image.astype(int) - well, pna.image.astype(int) - well
        # COVID: both lower lateral zones raised (v2: faint ground glass), the medial lung much less.
        assert dc[rows, right_lat].mean() > 1.5 and dc[rows, left_lat].mean() > 1.5
        assert dc[rows, inner].mean() < 0.5 * min(dc[rows, right_lat].mean(), dc[rows, left_lat].mean())
        # Pneumonia: one focal zone, the other lung untouched.
        assert dp[rows, right_lat].mean() + dp[rows, inner].mean() > 3
        assert np.abs(dp[:, size // 2 + 4:]).max() <= 1
        # Ground glass is fainter than consolidation, and gets no box.
        assert dc.max() < dp.max() and cov.boxes.shape == (0, 4) and cov.mask.sum() == 0


def test_render_fields_without_those_findings_are_empty():
    out = render([Lesion("opacity", "left", "lower", 0.7)], np.random.default_rng(5), 32)
    assert out.ptx_mask.sum() == 0 and out.object_boxes.shape == (0, 4)
    assert out.lungs.any() and not out.lungs[:, :1].any()


def test_foreign_objects_bright_with_boxes():
    size = 64
    for seed in range(3):
        well = render([], np.random.default_rng(seed), size).image.astype(int)
        les = [Lesion("coin", "right", "middle", 0.5), Lesion("wire", "left", "lower", 0.5)]
        out = render(les, np.random.default_rng(seed), size)
        assert out.object_boxes.shape == (2, 4) and out.boxes.shape == (0, 4)
        x, y, w, h = out.object_boxes[0].astype(int)
        assert x + w / 2 < size / 2
        assert (out.image.astype(int) - well)[y:y + h, x:x + w].max() > 40


# ------------------------------------------------------------ cached sets


def test_chexpert_set_cached_deterministic_prefix(tmp_path, monkeypatch):
    data = chexpert.phantom_chexpert("train", 40, SIZE)
    assert len(data) == 40 and data.images.shape == (40, SIZE, SIZE) and data.images.dtype == np.uint8
    assert isinstance(data.images, np.memmap)
    assert data.labels.shape == (40, 5) and data.labels.dtype == np.int64
    assert set(np.unique(data.labels)) <= {0, 1} and data.classes == chexpert.CHEXPERT_CLASSES
    assert data.ids[3] == "chexpert-train-000003" and len(data.fingerprint) == 12
    # Image i is drawn from seed (version, "chexpert", split, i).
    rng = seeded_rng(PHANTOM_VERSION, "chexpert", "train", 7)
    lesions, lab = chexpert.chexpert_lesions(rng)
    assert np.array_equal(data.images[7], render(lesions, rng, SIZE).image) and list(data.labels[7]) == lab
    t0 = time.perf_counter()
    again = chexpert.phantom_chexpert("train", 40, SIZE)
    assert time.perf_counter() - t0 < 0.5
    assert np.array_equal(np.asarray(again.images), np.asarray(data.images))
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "fresh"))
    prefix = chexpert.phantom_chexpert("train", 15, SIZE)
    assert np.array_equal(np.asarray(prefix.images), np.asarray(data.images[:15]))
    assert np.array_equal(prefix.labels, data.labels[:15]) and prefix.fingerprint != data.fingerprint
    val = chexpert.phantom_chexpert("val", 15, SIZE)
    assert not any(np.array_equal(val.images[i], prefix.images[i]) for i in range(15))
    with pytest.raises(UserError):
        chexpert.phantom_chexpert("dev", 10, SIZE)
    with pytest.raises(UserError):
        nih.phantom_nih("train", 0, SIZE)


def test_siim_masks_are_pneumothorax_regions_inside_lungs():
    size = 64  # at <= 32 px the (>= 1 px wide) pleural line outweighs the darker air
    data = siim.phantom_siim("train", 48, size)
    assert data.masks.shape == data.images.shape == (48, size, size) and data.masks.dtype == np.uint8
    assert data.labels.dtype == np.int64 and 5 <= data.labels.sum() <= 25
    for i in range(len(data)):
        m = np.asarray(data.masks[i])
        assert set(np.unique(m)) <= {0, 1}
        assert bool(m.any()) == bool(data.labels[i]) == (len(data.boxes[i]) > 0)
        rng = seeded_rng(PHANTOM_VERSION, "siim", "train", i)
        lesions, _ = siim.siim_lesions(rng)
        out = render(lesions, rng, size)
        assert np.array_equal(out.image, data.images[i])
        assert not (m & (1 - out.lungs)).any(), "pneumothorax mask outside the lungs"
        if m.any():
            # Not a filled box: the region is thin along the chest wall.
            x, y, w, h = data.boxes[i][0].astype(int)
            assert m[y:y + h, x:x + w].mean() < 0.9
            # The drawn air is darker than the same image without the pneumothorax.
            rng = seeded_rng(PHANTOM_VERSION, "siim", "train", i)
            lesions, _ = siim.siim_lesions(rng)
            well = render([les for les in lesions if les.kind != "pneumothorax"], rng, size).image
            assert data.images[i][m == 1].astype(float).mean() < well[m == 1].astype(float).mean()


def test_covidx_images_differ_by_class():
    """Per image, against the same seed with no label lesions: COVID raises both lower lateral zones."""
    size = 48
    rows = slice(int(0.55 * size), int(0.8 * size))
    lat = (slice(int(0.1 * size), int(0.3 * size)), slice(int(0.7 * size), int(0.9 * size)))
    inner = slice(int(0.3 * size), int(0.45 * size)), slice(int(0.55 * size), int(0.7 * size))
    both, peripheral, peak = {1: [], 2: []}, {1: [], 2: []}, {1: [], 2: []}
    for i in range(80):
        rng = seeded_rng(PHANTOM_VERSION, "covidx", "test", i)
        lesions, c = covidx.covidx_lesions(rng)
        if c == 0:
            continue
        state = rng.bit_generator.state
        sick = render(lesions, rng, size).image.astype(int)
        rng.bit_generator.state = state
        well = render([les for les in lesions if les.kind not in ("opacity", "covid")], rng, size).image.astype(int)
        d = sick - well
        both[c].append(min(d[rows, lat[0]].mean(), d[rows, lat[1]].mean()) > 2)
        outer = d[rows, lat[0]].mean() + d[rows, lat[1]].mean()
        peripheral[c].append(outer > 2 * (d[rows, inner[0]].mean() + d[rows, inner[1]].mean()))
        peak[c].append(d.max())
    assert len(both[1]) >= 10 and len(both[2]) >= 10
    assert np.mean(both[2]) > 0.85 and np.mean(both[1]) < 0.3
    # Peripheral (lateral >> medial lung) and faint (ground glass, not consolidation).
    assert np.mean(peripheral[2]) > 0.8
    assert np.median(peak[2]) < 0.75 * np.median(peak[1])


@pytest.mark.parametrize("name", ["chexpert", "covidx", "nih"])
def test_not_separable_by_brightness(name):
    lesions_fn = {"chexpert": chexpert.chexpert_lesions, "covidx": covidx.covidx_lesions, "nih": nih.nih_lesions}[name]
    n = 240
    means, labels = [], []
    for i in range(n):
        rng = seeded_rng("bright", name, i)
        lesions, lab = lesions_fn(rng)
        means.append(render(lesions, rng, 24).image.mean())
        labels.append(lab)
    means, y = np.asarray(means), np.asarray(labels)
    if y.ndim == 1:
        y = np.eye(3, dtype=int)[y]
    for k in range(y.shape[1]):
        if y[:, k].sum() >= 15:  # enough positives for a stable estimate
            auc = _auc(means[y[:, k] == 1], means[y[:, k] == 0])
            assert 0.25 < auc < 0.75, (k, auc)


def test_siim_and_object_not_separable_by_brightness():
    for fn in (siim.siim_lesions, object_cxr.object_cxr_lesions):
        means, labels = [], []
        for i in range(200):
            rng = seeded_rng("bright2", fn.__name__, i)
            lesions, lab = fn(rng)
            means.append(render(lesions, rng, 24).image.mean())
            labels.append(lab)
        means, y = np.asarray(means), np.asarray(labels)
        assert 0.3 < _auc(means[y == 1], means[y == 0]) < 0.7


def test_object_cxr_set_boxes_and_masks():
    data = object_cxr.phantom_object_cxr("val", 30, SIZE)
    assert data.labels.dtype == np.int64 and 0 < data.labels.sum() < 30
    for i in range(len(data)):
        assert data.labels[i] == (len(data.boxes[i]) > 0) == bool(data.masks[i].any())


# --------------------------------------------------------- served to tasks


@pytest.mark.parametrize("dataset,kind", [("chexpert", "multilabel5"), ("covidx", "multiclass"),
                                          ("siim", "seg"), ("nih", "multilabel14"), ("object_cxr", "det")])
def test_served_through_task_splits(dataset, kind):
    assert dataset in PHANTOM_SETS
    cfg = SimpleNamespace(dataset=dataset, image_size=SIZE, phantom_train=12, phantom_val=6, phantom_test=6)
    splits, source = task_splits(cfg, None)
    assert source == "phantom" and set(splits) == {"train", "val", "test"}
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        s = splits[split]
        assert len(s.ids) == n and s.images.shape == (n, SIZE, SIZE) and s.images.dtype == np.uint8
        assert s.labels.dtype == np.int64 and s.fingerprint
        if kind == "multilabel5":
            assert s.labels.shape == (n, 5)
        elif kind == "multilabel14":
            assert s.labels.shape == (n, 14)
        elif kind == "multiclass":
            assert s.labels.shape == (n,) and set(np.unique(s.labels)) <= {0, 1, 2}
        else:
            assert s.labels.shape == (n,) and s.masks.shape == s.images.shape
    assert not np.array_equal(np.asarray(splits["val"].images), np.asarray(splits["test"].images))
