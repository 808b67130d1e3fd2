"""Procedural chest-radiograph renderer (numpy-vectorised).

Why procedural: the benchmark must run end-to-end without credentialed data
(MIMIC-CXR, RSNA).  The phantom draws radiograph-like anatomy with pathology
where a real report says it is, so image-text alignment and opacity detection
are learnable but not trivial: anatomy, pose and exposure vary per image, so a
lesion is not detectable by a pixel count.

Model: an attenuation map A (air ~0, soft tissue ~0.55, bone and fluid add)
is built from analytic shapes in normalised anatomical coordinates, posed by a
random similarity transform, windowed with a random gamma, blurred and given
intensity-dependent ("quantum") noise.  Shapes are defined in normalised
coordinates and textures are fixed-size random grids, so the same seed gives
the same picture at any resolution; only the pixel noise differs.

Speed: sharp structures (lung, heart, rib and bone edges, lesions) are
evaluated per pixel with clipped ramps instead of transcendental functions;
smooth ones (vessel markings, hila, oedema haze, exposure) on a fixed 80x80
grid, brought to the output size by separable linear interpolation; local
lesions and devices only inside their pixel window.  Measured with
``OMP_NUM_THREADS=1 taskset -c 0 python -m benchmark.data.phantom.bench``
(CPU time per image, mean of 300 renders with mixed lesions, one core of a
shared 2-vCPU VM at load average ~2.5; best of several runs):
64 px 4.0 ms, 128 px 6.2 ms, 224 px 13.8 ms, 256 px 17 ms.  About half of
the 128 px figure is per-call numpy overhead that does not shrink with size.
Phantom v2 (its nuisance layer, 2026-11-24, load average 2.2, one run):
64 px 4.8 ms, 128 px 7.0 ms, 224 px 12.2 ms, 256 px 18.3 ms: about 200
images/s per core at 64 px; ``benchmark.data.phantom.stack`` renders a cold
split on every core.

Phantom v2 (``PHANTOM_VERSION`` "v2") makes findings need learned features:
consolidation is a mottled, partial refill of the air; a pneumothorax a faint
pleural line over a region without vessel markings; and ``Nuisance`` adds
what no label or report describes (exposure, scatter, noise gain, soft-tissue
shadows, opacity look-alikes outside the lungs, skin folds).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from benchmark.data.phantom.anatomy import FOREIGN_KINDS, MID_X, Anatomy, Lesion

__all__ = ["Lesion", "Rendered", "render"]

_F = np.float32
#: Resolution of the grid for smooth fields (fixed: keeps renders size-independent).
_SMOOTH = 80


@dataclass
class Rendered:
    """A rendered radiograph.

    image: uint8 (size, size).  mask: uint8 (size, size), 1 inside the boxes
    of opacity lesions (RSNA masks are filled boxes).  boxes: float32 (k, 4)
    x, y, w, h in pixels, one per drawn opacity.  ctr: the cardiothoracic
    ratio that was drawn (> 0.5 means cardiomegaly).
    """

    image: np.ndarray
    mask: np.ndarray
    boxes: np.ndarray
    ctr: float
    #: (size, size) uint8, 1 inside drawn pneumothorax air (the collapsed-lung region).
    ptx_mask: np.ndarray | None = None
    #: (size, size) uint8, 1 inside the lungs.
    lungs: np.ndarray | None = None
    #: float32 (k, 4) x, y, w, h of drawn foreign objects (coins, buttons, wires).
    object_boxes: np.ndarray | None = None


# ----------------------------------------------------------------- primitives


def _step(z: np.ndarray) -> np.ndarray:
    """Soft step 0 -> 1 around z = 0 (4 units wide): a clipped ramp, ~10x cheaper than tanh.

    Works in place on ``z`` (callers pass temporaries).
    """
    z *= _F(0.25)
    z += _F(0.5)
    np.maximum(z, _F(0), out=z)
    return np.minimum(z, _F(1), out=z)


def _unit(g: np.ndarray) -> np.ndarray:
    return ((g - g.mean()) / (g.std() + 1e-6)).astype(_F)


@lru_cache(maxsize=64)
def _interp_index(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lo, hi, 1 - frac, frac) for linear resampling between pixel-centre grids (edges clamped)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = (pos - lo).astype(np.float32)
    return lo, hi, 1 - frac, frac


def _resize(grid: np.ndarray, size: int) -> np.ndarray:
    """Separable bilinear resize of a square grid to (size, size) (two gathers, no BLAS)."""
    lo, hi, w0, w1 = _interp_index(size, grid.shape[0])
    rows = grid[lo] * w0[:, None] + grid[hi] * w1[:, None]
    return rows[:, lo] * w0[None, :] + rows[:, hi] * w1[None, :]


def _bilinear_wrap(grid: np.ndarray, gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Bilinear lookup of ``grid`` at fractional (row, col) coordinates, wrapping around.

    Hand-rolled because scipy's map_coordinates has ~0.5 ms of overhead per call.
    """
    h, w = grid.shape
    fy, fx = np.floor(gy), np.floor(gx)
    ty, tx = gy - fy, gx - fx
    iy0 = fy.astype(np.intp) % h
    ix0 = fx.astype(np.intp) % w
    iy1, ix1 = (iy0 + 1) % h, (ix0 + 1) % w
    flat = grid.ravel()
    r0, r1 = iy0 * w, iy1 * w
    top = flat[r0 + ix0] * (1 - tx) + flat[r0 + ix1] * tx
    bottom = flat[r1 + ix0] * (1 - tx) + flat[r1 + ix1] * tx
    return top * (1 - ty) + bottom * ty


def _side_list(side: str) -> list[str]:
    return ["right", "left"] if side in ("bilateral", "center") else [side]


class _Coords:
    """Anatomical coordinates of a square pixel grid under the image's pose."""

    def __init__(self, anat: Anatomy, size: int) -> None:
        self.size = size
        c = (np.arange(size, dtype=_F) + _F(0.5)) / _F(size)
        cos, sin = math.cos(anat.angle), math.sin(anat.angle)
        du = (c - _F(0.5 + anat.shift_x)) / _F(anat.scale)  # along columns
        dv = (c - _F(0.5 + anat.shift_y)) / _F(anat.scale)  # along rows
        self.x = (_F(cos) * du[None, :] + _F(sin) * dv[:, None] + _F(0.5)).astype(_F)
        self.y = (_F(-sin) * du[None, :] + _F(cos) * dv[:, None] + _F(0.5)).astype(_F)
        self._pose = (cos, sin, anat.scale, anat.shift_x, anat.shift_y)

    def window(self, cx: float, cy: float, rx: float, ry: float | None = None) -> tuple[slice, slice]:
        """Pixel (rows, cols) slices covering the anatomical rectangle cx +- rx, cy +- ry."""
        ry = rx if ry is None else ry
        cos, sin, scale, sx, sy = self._pose
        ax, ay = cx - 0.5, cy - 0.5
        u = scale * (cos * ax - sin * ay) + 0.5 + sx
        v = scale * (sin * ax + cos * ay) + 0.5 + sy
        hu = scale * (abs(cos) * rx + abs(sin) * ry)
        hv = scale * (abs(sin) * rx + abs(cos) * ry)
        n = self.size

        def span(c: float, r: float) -> slice:
            return slice(min(max(math.floor((c - r) * n), 0), n), min(max(math.ceil((c + r) * n) + 1, 0), n))

        return span(v, hv), span(u, hu)


class _Scene(_Coords):
    """Full-resolution grids for one render, with the lung and heart fields every layer uses."""

    def __init__(self, anat: Anatomy, size: int) -> None:
        super().__init__(anat, size)
        self.anat = anat
        # Soft-edge scale: about one pixel, never sharper than 0.0025 of the image.
        self.edge = _F(max(0.0025, 0.5 / size))
        x, y, e = self.x, self.y, self.edge
        self.half = {"right": (x < _F(MID_X)).astype(_F), "left": (x >= _F(MID_X)).astype(_F)}
        self.radius: dict[str, np.ndarray] = {}
        self.lung: dict[str, np.ndarray] = {}
        self.lung_window: dict[str, tuple[slice, slice]] = {}
        for side in ("right", "left"):
            # Everything about a lung is computed inside its bounding window only.
            ay = anat.lung_half_height(side)
            hw = anat.lung_width * (1 + anat.taper) + 0.01
            sl = self.window(anat.lung_center_x(side), anat.lung_top + ay, hw, ay + 0.01)
            xs, ys = x[sl], y[sl]
            r = anat.lung_radius(side, xs, ys).astype(_F)
            sign = _F(-1 if side == "right" else 1)
            inside = _step((1 - r) * _F(anat.lung_width / e))
            inside *= _step((anat.dome_y(side, xs) - ys) / e)
            inside *= _step((sign * (xs - _F(MID_X)) - _F(anat.mediastinum)) / e)
            radius = np.full_like(x, 2.0)
            radius[sl] = r
            lung = np.zeros_like(x)
            lung[sl] = inside
            self.radius[side], self.lung[side], self.lung_window[side] = radius, lung, sl
        self.lungs = self.lung["right"] + self.lung["left"]
        # Heart (sheared ellipse) and aortic knob: in front of the lungs.
        hcx, hcy, hax, hay, shear = anat.heart_geometry()
        self.front = np.zeros_like(x)
        sl = self.window(hcx, hcy, hax + shear * hay + 0.01, hay + 0.01)
        hx = (x[sl] - _F(hcx) - _F(shear) * (y[sl] - _F(hcy))) / _F(hax)
        hy = (y[sl] - _F(hcy)) / _F(hay)
        self.front[sl] = _step((1 - np.sqrt(hx * hx + hy * hy)) * _F(hax / e))
        kcx, kcy = MID_X + anat.mediastinum + 0.004, anat.lung_top + 0.16
        sl = self.window(kcx, kcy, 0.04)
        kx, ky = x[sl] - _F(kcx), y[sl] - _F(kcy)
        np.maximum(self.front[sl], _step((_F(0.03) - np.sqrt(kx * kx + ky * ky)) / e), out=self.front[sl])


# -------------------------------------------------------------------- anatomy


def _smooth_lung_field(anat: Anatomy, lesions: list[Lesion], tex: dict[str, np.ndarray]) -> np.ndarray:
    """Vessel markings, hila and oedema haze on the fixed smooth grid.

    Returned in units of "fraction of the local lung air put back"; the caller
    resizes it and multiplies by the full-resolution air map.
    """
    g = _Coords(anat, _SMOOTH)
    x, y = g.x, g.y
    hil_y = _F(anat.lung_top + 0.28)
    hil_x = np.where(x < _F(MID_X), _F(MID_X - anat.mediastinum - 0.03), _F(MID_X + anat.mediastinum + 0.03))
    dx, dy = x - hil_x, y - hil_y
    r = np.sqrt(dx * dx + dy * dy)
    theta = np.arctan2(dy, dx)
    # Vessels: a polar texture, long along the radius, narrow across it.
    m = tex["markings"]
    mk = _bilinear_wrap(m, r * _F(30.0), (theta + _F(math.pi)) * _F(m.shape[1] / (2 * math.pi)))
    field = _F(anat.marking_contrast / 0.33) * _step((mk - _F(0.5)) / _F(0.15)) * np.exp(-r / _F(0.22))
    # Hila: vascular density at the lung roots.
    field += _F(0.25) * np.exp(-0.5 * ((dx / _F(0.025)) ** 2 + (dy / _F(0.05)) ** 2))
    for les in lesions:
        if les.kind == "edema":  # bilateral perihilar ("bat-wing") haze
            hx = np.where(x < _F(MID_X), _F(MID_X - anat.mediastinum - 0.05), _F(MID_X + anat.mediastinum + 0.05))
            haze = np.exp(-0.5 * (((x - hx) / _F(0.09)) ** 2 + ((y - _F(anat.lung_top + 0.32)) / _F(0.13)) ** 2))
            t = _resize(tex["lesion"], _SMOOTH)
            field += _F(0.45 + 0.4 * les.severity) * haze * (_F(0.7) + _F(0.3) * t)
    return field


def _pneumothorax(sc: _Scene, les: Lesion, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(collapsed-lung air region, visceral pleural line) of one pneumothorax.

    The pleural line is a contour of the lung's normalised radius, inset from
    the apical/lateral chest wall by an amount growing with severity; it does
    not extend medially or behind the heart.
    """
    a = sc.anat
    depth = 0.12 + 0.2 * les.severity  # inset, in radius units
    reach = {"upper": 0.45, "middle": 0.7, "lower": 0.95}.get(les.zone, 0.45) + 0.25 * les.severity
    y_low = a.lung_top + reach * (a.dome(side) - a.lung_top)
    outward = (sc.x - _F(a.lung_center_x(side))) * _F(-1 if side == "right" else 1)
    where = _step((_F(y_low) - sc.y) / _F(0.02)) * _step((outward + _F(0.3 * a.lung_width)) / _F(0.01))
    where *= sc.lung[side] * (1 - sc.front)
    dist = (sc.radius[side] - _F(1 - depth)) * _F(a.lung_width)
    region = _step(dist / sc.edge) * where
    line = np.clip(1 - np.abs(dist) / _F(max(0.004, 1.2 / sc.size)), 0, 1) * where
    return region, line


def _anatomy(sc: _Scene, tex: dict[str, np.ndarray], smooth: np.ndarray, ptx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Body, mediastinum, lungs, heart and bones.  Returns (A, air).

    ``air`` is the attenuation the lungs removed: fluid-like lesions put it back.
    """
    a, x, y = sc.anat, sc.x, sc.y
    ax = np.abs(x - _F(MID_X))

    # Body silhouette: neck, sloping shoulders, soft tissue thicker centrally.
    t = np.clip((y - _F(0.0)) / _F(0.16), _F(0), _F(1))
    half = _F(0.11) + _F(a.body_half - 0.11) * (1 - (1 - t) ** 3)  # rounded shoulders
    body = _step((half - ax) / _F(0.004)) * _step((y + _F(0.02)) / _F(0.005))
    A = body * (_F(a.tissue) * (_F(0.8) + _F(0.2) * (1 - (ax / half) ** 2).clip(0, 1)))
    # Humeral heads at the upper corners.
    for sx in (MID_X - a.body_half + 0.02, MID_X + a.body_half - 0.02):
        sl = sc.window(sx, 0.13, 0.06)
        hx, hy = x[sl] - _F(sx), y[sl] - _F(0.13)
        A[sl] += _F(0.10) * _step((_F(0.05) - np.sqrt(hx * hx + hy * hy)) / _F(0.003))

    # Air in the lungs, mostly hidden behind the heart; more lucent laterally.
    air = sc.lungs * (_F(0.30) + _F(0.06) * (ax / _F(0.4)).clip(0, 1)) * (1 - _F(0.88) * sc.front)
    # Gastric air bubble under the left hemidiaphragm (image right).
    if a.gastric > 0:
        bx, by = a.lung_center_x("left") + 0.02, a.dome_l + 0.055
        sl = sc.window(bx, by, 0.08)
        gx, gy = (x[sl] - _F(bx)) / _F(0.05), (y[sl] - _F(by)) / _F(0.03)
        bub = _step((1 - np.sqrt(gx * gx + gy * gy)) / _F(0.08)) * _step((y[sl] - _F(by)) / _F(0.005))
        A[sl] -= _F(a.gastric) * bub
    # Mediastinal soft tissue column above the heart, and the heart itself.
    hcy = a.heart_geometry()[1]
    A += _F(0.05) * sc.front - air
    sl = sc.window(MID_X, hcy / 2, a.mediastinum + 0.03, hcy / 2 + 0.03)
    medi = _step((_F(a.mediastinum + 0.01) - ax[sl]) / _F(0.005)) * _step((_F(hcy) - y[sl]) / _F(0.025))
    A[sl] += _F(0.05) * np.maximum(medi - sc.front[sl], 0)

    # Markings, hila, oedema (smooth grid), put over the lung air.
    marks = _resize(smooth, sc.size)
    if ptx is not None:
        marks *= 1 - ptx
    A += marks * air

    # Spine (faint through the mediastinum) and trachea.
    sl = sc.window(MID_X, 0.5, 0.045, 0.6)
    verts = _F(0.7) + _F(0.3) * np.cos(y[sl] * _F(2 * math.pi / 0.045))
    A[sl] += _F(0.05) * _step((_F(0.036) - ax[sl]) / _F(0.003)) * body[sl] * verts
    sl = sc.window(MID_X, (a.lung_top + 0.2) / 2, 0.03, (a.lung_top + 0.2) / 2 + 0.03)
    trachea = _step((_F(0.018) - ax[sl]) / _F(0.002)) * _step((_F(a.lung_top + 0.2) - y[sl]) / _F(0.005))
    A[sl] -= _F(0.14) * trachea * body[sl]

    # Ribs.  Posterior: arch out from the spine, turning down at the lateral wall.
    # Anterior: fainter, running down and in from the lateral wall.
    lat = a.lung_gap + a.lung_width * 1.2
    y0, y1 = a.lung_top - 0.05, max(a.dome_r, a.dome_l) + 0.09
    sl = sc.window(MID_X, (y0 + y1) / 2, lat + 0.02, (y1 - y0) / 2)
    ys, axs = y[sl], ax[sl]
    zone = _step((_F(lat) - axs) / _F(0.006)) * _step((axs - _F(0.035)) / _F(0.004))
    zone *= _step((_F(y1 - 0.02) - ys) / _F(0.01)) * _step((ys - _F(y0 + 0.01)) / _F(0.005))
    zone *= 1 - _F(0.6) * sc.front[sl]
    yr = ys - _F(a.lung_top - 0.03) + _F(0.15) * axs - _F(0.9) * axs * axs - _F(3.0) * np.maximum(axs - _F(0.25), _F(0)) ** 2
    s = yr / (_F(a.rib_spacing) * (1 + _F(0.5) * np.maximum(yr, _F(0)))) + _F(a.rib_phase)
    cs = np.cos(s * _F(2 * math.pi))
    cs -= _F(0.45)
    post = _step(cs / _F(0.035)) + _F(0.6) * np.maximum(1 - np.abs(cs) / _F(0.12), _F(0))
    ya = ys - _F(a.lung_top + 0.1) + _F(0.5) * np.maximum(axs - _F(0.08), _F(0))
    ca = np.cos(ya * _F(2 * math.pi / (a.rib_spacing * 1.35)))
    ant = _step((ca - _F(0.55)) / _F(0.05)) * _step((axs - _F(0.12)) / _F(0.015))
    ribs = (post + _F(0.45) * ant) * zone * _F(a.rib_contrast)
    if ptx is not None:
        ribs *= 1 - _F(0.5) * ptx[sl]
    A[sl] += ribs

    # Clavicles: S-shaped bands from the manubrium out and up to the shoulders.
    sl = sc.window(MID_X, a.lung_top + 0.02, 0.4, 0.08)
    t = ax[sl] - _F(0.04)
    yc = _F(a.lung_top + 0.07) - _F(0.25) * t + _F(0.35) * t * t
    clav = _step((_F(0.016) - np.abs(y[sl] - yc)) / _F(0.002)) * _step(t / _F(0.005)) * _step((_F(0.33) - t) / _F(0.008))
    A[sl] += _F(0.16) * clav
    return A, air


# ------------------------------------------------------------------- lesions


def _opacity(sc: _Scene, les: Lesion, side: str, rng: np.random.Generator, tex: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """A consolidation-like blob (lobar or patchy), textured; (window, field) before lung clipping."""
    cx, cy = sc.anat.point_in(side, les.zone, rng, (0.25, 0.7))
    return _blob(sc, cx, cy, 0.7 + 0.6 * les.severity, rng, tex)


def _blob(sc: _Scene, cx: float, cy: float, size: float, rng: np.random.Generator,
          tex: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """The opacity shape at (cx, cy): lobar or patchy, mottled by ``tex`` (v2: strongly, so the
    finding reads as a texture more than as a brightness step)."""
    sl = sc.window(cx, cy, 0.3 * size + 0.03)
    x, y = sc.x[sl], sc.y[sl]

    def blob(bx: float, by: float, sx: float, sy: float, ang: float) -> np.ndarray:
        c, s = _F(math.cos(ang)), _F(math.sin(ang))
        dx, dy = x - _F(bx), y - _F(by)
        u, v = (c * dx + s * dy) / _F(sx), (-s * dx + c * dy) / _F(sy)
        return np.exp(_F(-0.5) * (u * u + v * v))

    if rng.random() < 0.4:  # lobar: one large, flat-topped, homogeneous region
        sx, sy = rng.uniform(0.06, 0.095) * size, rng.uniform(0.06, 0.1) * size
        field = np.clip((blob(cx, cy, sx, sy, rng.uniform(-0.5, 0.5)) - _F(0.3)) / _F(0.4), 0, 1)
        if rng.random() < 0.4:  # sharp fissure edge on top
            field *= _step((y - _F(cy - 0.4 * sy)) / _F(0.002))
    else:  # patchy: several overlapping blobs
        field = np.zeros_like(x)
        for _ in range(int(rng.integers(3, 7))):
            ox, oy = rng.normal(0, 0.04 * size, 2)
            sx, sy = rng.uniform(0.022, 0.05, 2) * size
            field = np.maximum(field, blob(cx + ox, cy + oy, sx, sy, rng.uniform(0, math.pi)))
    field *= np.clip(_F(0.5) + _F(0.6) * tex[sl], _F(0), _F(1))
    return sl, field


def _box_of(field: np.ndarray, sl: tuple[slice, slice], frac: float = 0.3) -> tuple[int, int, int, int] | None:
    peak = float(field.max()) if field.size else 0.0
    if peak <= 0.05:
        return None
    on = field > frac * peak
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    r0, c0 = sl[0].start, sl[1].start
    return c0 + int(cols[0]), r0 + int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def _lesions(sc: _Scene, A: np.ndarray, air: np.ndarray, lesions: list[Lesion], rng: np.random.Generator,
             tex: np.ndarray, reticular: np.ndarray | None) -> list[tuple[int, int, int, int]]:
    """Add focal lesions to A in place; return the pixel boxes (x, y, w, h) of the opacities."""
    a = sc.anat
    boxes: list[tuple[int, int, int, int]] = []
    for les in lesions:
        sev = les.severity
        for side in _side_list(les.side):
            if les.kind == "opacity":
                sl, f = _opacity(sc, les, side, rng, tex)
                f *= sc.lung[side][sl]
                # Consolidation puts fluid back into part of the air (v2: a third to two thirds,
                # so it is a low-contrast change next to the exposure and overlap variation).
                A[sl] += _F(0.3 + 0.35 * sev) * f * (air[sl] + _F(0.05))
                box = _box_of(f, sl)
                if box is not None:
                    boxes.append(box)
            elif les.kind == "nodule":
                cx, cy = a.point_in(side, les.zone, rng, (0.15, 0.85))
                rad = 0.008 + 0.022 * sev
                sl = sc.window(cx, cy, rad + 0.01)
                dx, dy = (sc.x[sl] - _F(cx)) / _F(rad), (sc.y[sl] - _F(cy)) / _F(rad)
                d2 = dx * dx + dy * dy
                ball = np.sqrt((1 - d2).clip(0, None)) + _F(0.3) * _step((1 - d2) * _F(rad) / sc.edge)
                A[sl] += _F(0.22) * ball
            elif les.kind == "effusion":
                out = -1 if side == "right" else 1
                lat_x = a.lung_center_x(side) + out * a.lung_width * (1 + a.taper)
                med_x = MID_X + out * a.mediastinum
                frac = ((sc.x - _F(med_x)) / _F(lat_x - med_x)).clip(0, 1)
                y_cp = a.dome(side) + a.dome_k
                h = 0.04 + 0.24 * sev
                # Meniscus: the fluid climbs the lateral wall; small effusions only
                # fill the lateral costophrenic angle, large ones the whole base.
                w_med = 0.3 + 0.5 * sev
                top = _F(y_cp) - _F(h * w_med) - _F(h * (1 - w_med) + 0.02) * frac * frac
                # Not multiplied by the lung mask: ``air`` already is, and fluid
                # must cancel it fully (no dark rim along the hidden dome).
                fluid = _step((sc.y - top) / _F(0.008)) * sc.half[side]
                fluid *= _F(0.75) + _F(0.25) * ((sc.y - top) / _F(0.05)).clip(0, 1)  # thin layer on top
                A += fluid * (air + _F(0.03) * sc.lung[side])
            elif les.kind == "atelectasis":
                cx, cy = a.point_in(side, les.zone, rng, (0.2, 0.6))
                ang = rng.normal(0, 0.25) + (0.15 if side == "right" else -0.15)
                length = rng.uniform(0.07, 0.13) * (0.7 + 0.6 * sev)
                thick = rng.uniform(0.005, 0.009) * (0.8 + 0.6 * sev)
                sl = sc.window(cx, cy, length / 2 + 0.03)
                c, s = _F(math.cos(ang)), _F(math.sin(ang))
                dx, dy = sc.x[sl] - _F(cx), sc.y[sl] - _F(cy)
                along, across = c * dx + s * dy, (-s * dx + c * dy) / _F(thick)
                band = _step((_F(length / 2) - np.abs(along)) / _F(0.005)) * np.exp(_F(-0.5) * across * across)
                A[sl] += _F(0.7) * band * (air[sl] + _F(0.04) * sc.lung[side][sl])
            elif les.kind == "pneumothorax":
                A += _F(0.1) * _pneumothorax(sc, les, side)[1]  # v2: a faint visceral pleural line
            elif les.kind == "covid":
                _covid(sc, A, air, les, side, rng, tex)
            elif les.kind == "interstitial":
                # Reticulation: the zero set of smooth noise is a network of thin lines.
                net = np.clip(1 - np.abs(reticular) / _F(0.5), 0, 1) + _F(0.15)
                y0, y1 = a.zone_rows(side, les.zone if les.zone != "diffuse" else "upper")
                if les.zone == "diffuse":
                    y1 = a.dome(side)
                weight = _step((sc.y - _F(y0)) / _F(0.02)) * _step((_F(y1 + 0.05) - sc.y) / _F(0.02))
                A += _F(0.2 + 0.25 * sev) * net * weight * air * sc.half[side]
    return boxes


def _covid(sc: _Scene, A: np.ndarray, air: np.ndarray, les: Lesion, side: str, rng: np.random.Generator,
           tex: np.ndarray) -> None:
    """COVID-19-like ground glass: faint, patchy, peripheral (subpleural) haze, lower zones first.

    Unlike a consolidation it only partly replaces the air (vessels stay
    visible through it), hugs the lateral chest wall and spreads over a tall
    band; callers draw it on both sides.
    """
    a = sc.anat
    zone = les.zone if les.zone in ("middle", "lower") else "lower"
    y0, y1 = a.zone_rows(side, zone)
    cy = float(rng.uniform(y0, y1))
    lat, med = a.lung_extent(side, cy)
    cx = lat + float(rng.uniform(0.08, 0.25)) * (med - lat)
    sx = abs(med - lat) * float(rng.uniform(0.22, 0.32)) * (0.8 + 0.4 * les.severity)
    sy = float(rng.uniform(0.09, 0.14)) * (0.8 + 0.4 * les.severity)
    sl = sc.window(cx, cy, 2.5 * sx + 0.02, 2.5 * sy + 0.02)
    dx, dy = (sc.x[sl] - _F(cx)) / _F(sx), (sc.y[sl] - _F(cy)) / _F(sy)
    field = np.exp(_F(-0.5) * (dx * dx + dy * dy))
    # Patchy: modulated by the lesion texture, with a second, lower-lying patch.
    field *= _F(0.45) + _F(0.55) * (tex[sl] * _F(0.5) + _F(0.5))
    A[sl] += _F(0.12 + 0.16 * les.severity) * field * air[sl]  # v2: stays fainter than the fainter consolidation


def _foreign(sc: _Scene, A: np.ndarray, lesions: list[Lesion], rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """Foreign objects (coins, buttons, wires): bright metal shapes, added to A; their pixel boxes."""
    a = sc.anat
    boxes: list[tuple[int, int, int, int]] = []
    for les in lesions:
        if les.kind not in FOREIGN_KINDS:
            continue
        side = les.side if les.side in ("right", "left") else str(rng.choice(["right", "left"]))
        cx, cy = a.point_in(side, les.zone if les.zone != "diffuse" else "middle", rng, (0.05, 0.95))
        if les.kind == "coin":
            rad = 0.02 + 0.025 * les.severity
            sl = sc.window(cx, cy, rad + 0.01)
            dx, dy = sc.x[sl] - _F(cx), sc.y[sl] - _F(cy)
            field = _step((_F(rad) - np.sqrt(dx * dx + dy * dy)) / sc.edge)
            amp = 0.9
        elif les.kind == "button":
            rad = 0.01 + 0.01 * les.severity
            sl = sc.window(cx, cy, rad + 0.01)
            dx, dy = sc.x[sl] - _F(cx), sc.y[sl] - _F(cy)
            d = np.sqrt(dx * dx + dy * dy)
            field = _step((_F(rad) - d) / sc.edge)
            for hx in (-0.3, 0.3):  # two thread holes
                hd = np.sqrt((dx - _F(hx * rad)) ** 2 + dy * dy)
                field *= 1 - _F(0.8) * _step((_F(0.22 * rad) - hd) / sc.edge)
            amp = 0.6
        else:  # wire: a curved bright line (ECG lead, clip wire)
            length = 0.12 + 0.15 * les.severity
            ang = float(rng.uniform(0, math.pi))
            ex, ey = 0.5 * length * math.cos(ang), 0.5 * length * math.sin(ang)
            bend = (cx + float(rng.normal(0, 0.04)), cy + float(rng.normal(0, 0.04)))
            sl, field = _polyline(sc, _curve((cx - ex, cy - ey), bend, (cx + ex, cy + ey)), 0.003)
            amp = 0.7
        A[sl] += _F(amp) * field
        box = _box_of(field, sl, 0.3)
        if box is not None:
            boxes.append(box)
    return boxes


def _polyline(sc: _Scene, pts: list[tuple[float, float]], width: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """(window, 0..1 intensity) of a thin line through anatomical points (a tube or wire)."""
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    sl = sc.window(cx, cy, (max(xs) - min(xs)) / 2 + 0.02, (max(ys) - min(ys)) / 2 + 0.02)
    x, y = sc.x[sl], sc.y[sl]
    d2 = np.full_like(x, np.inf)
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        vx, vy = x1 - x0, y1 - y0
        px, py = x - _F(x0), y - _F(y0)
        t = np.clip((px * _F(vx) + py * _F(vy)) / _F(vx * vx + vy * vy + 1e-12), _F(0), _F(1))
        ex, ey = px - t * _F(vx), py - t * _F(vy)
        np.minimum(d2, ex * ex + ey * ey, out=d2)
    w = max(width, 0.6 / sc.size)
    return sl, np.clip(_F(1.5) - np.sqrt(d2) / _F(w), _F(0), _F(1))


def _curve(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float], k: int = 10) -> list[tuple[float, float]]:
    """Points on the quadratic Bezier p0 -> p2 pulled towards p1."""
    ts = np.linspace(0, 1, k)
    return [((1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t * t * p2[0],
             (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t * t * p2[1]) for t in ts]


def _devices(sc: _Scene, A: np.ndarray, lesions: list[Lesion], rng: np.random.Generator) -> None:
    """Radiopaque lines, wires and a pacemaker generator, added to A in place."""
    a = sc.anat
    hcx, hcy, hax, hay, _ = a.heart_geometry()
    top = a.lung_top
    svc = (MID_X - 0.03 + rng.normal(0, 0.004), hcy - 0.75 * hay + rng.normal(0, 0.01))
    for les in lesions:
        if les.kind == "catheter":
            if les.side == "center":  # endotracheal tube, tip above the carina
                pts = [(MID_X, -0.02), (MID_X + rng.normal(0, 0.003), top + rng.uniform(0.08, 0.14))]
                sl, line = _polyline(sc, pts, 0.006)
                A[sl] += _F(0.12) * line
                continue
            out = -1 if les.side == "right" else 1
            if rng.random() < 0.5:  # internal jugular: down the neck
                start, bend = (MID_X + out * 0.07, -0.02), (MID_X + out * 0.06, top + 0.04)
            else:  # subclavian: in under the clavicle
                start, bend = (MID_X + out * 0.26, top + 0.03), (MID_X + out * 0.05, top + 0.05)
            sl, line = _polyline(sc, _curve(start, bend, svc), 0.003)
            A[sl] += _F(0.25) * line
        elif les.kind == "pacemaker":
            out = -1 if les.side == "right" else 1
            gx, gy = MID_X + out * rng.uniform(0.2, 0.26), top + rng.uniform(0.04, 0.08)
            sl = sc.window(gx, gy, 0.06)
            dx, dy = np.abs(sc.x[sl] - _F(gx)) - _F(0.03), np.abs(sc.y[sl] - _F(gy)) - _F(0.02)
            box = np.sqrt(np.maximum(dx, _F(0)) ** 2 + np.maximum(dy, _F(0)) ** 2)  # rounded rectangle
            A[sl] += _F(0.6) * _step((_F(0.008) - box) / sc.edge)
            rv = (hcx + 0.25 * hax + rng.normal(0, 0.01), hcy + 0.55 * hay)
            lead = _curve((gx, gy), (MID_X + out * 0.04, top + 0.06), svc) + _curve(svc, (MID_X - 0.04, hcy), rv)[1:]
            sl, line = _polyline(sc, lead, 0.0025)
            A[sl] += _F(0.3) * line
        elif les.kind == "sternotomy":
            n = int(rng.integers(5, 8))
            for y in np.linspace(top + 0.1, hcy + 0.05, n):
                wx, wy = MID_X + rng.normal(0, 0.004), float(y) + rng.normal(0, 0.006)
                sl = sc.window(wx, wy, 0.025)
                dx, dy = (sc.x[sl] - _F(wx)) / _F(0.012), (sc.y[sl] - _F(wy)) / _F(0.007)
                ring = np.abs(np.sqrt(dx * dx + dy * dy) - 1) * _F(0.009)
                A[sl] += _F(0.45) * np.clip(1 - ring / _F(max(0.0025, 0.6 / sc.size)), 0, 1)


# ------------------------------------------------------------------ nuisance


@dataclass(frozen=True)
class Nuisance:
    """Phantom v2's image-level variation that no label or report describes: exposure,
    scatter and noise gain, overlapping soft tissue, and look-alikes of the findings
    placed where they do not count (outside the lungs, a skin fold across the lung edge).
    Findings are then defined by texture and location, not by a brightness change."""

    exposure: float  # amplitude of the low-frequency exposure field
    scatter: float  # share of the image replaced by its blurred copy
    noise_gain: float  # multiplies the anatomy's quantum-noise level
    breast: float  # density of lower-zone soft-tissue shadows (0: none)
    mimics: int  # opacity-textured patches outside the lungs
    skin_fold: bool  # a pleural-line look-alike crossing a lung's lateral edge

    @staticmethod
    def sample(rng: np.random.Generator) -> Nuisance:
        u = rng.uniform
        return Nuisance(
            exposure=u(0.04, 0.18),
            scatter=max(0.0, u(-0.1, 0.35)),
            noise_gain=u(1.0, 1.8),
            breast=max(0.0, u(-0.04, 0.09)),
            mimics=int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15])),
            skin_fold=bool(rng.random() < 0.25),
        )


def _overlap(sc: _Scene, A: np.ndarray, nuis: Nuisance, rng: np.random.Generator, tex: np.ndarray) -> None:
    """Draw the nuisance structures into A in place (the draw order and count are fixed per image)."""
    a = sc.anat
    if nuis.breast > 0:  # smooth bilateral lower-zone shadows, crossing the lung edges
        for side in ("right", "left"):
            out = -1 if side == "right" else 1
            cx = a.lung_center_x(side) + out * float(rng.uniform(0.0, 0.08))
            cy = a.dome(side) - float(rng.uniform(0.0, 0.08))
            sx, sy = float(rng.uniform(0.13, 0.19)), float(rng.uniform(0.08, 0.12))
            sl = sc.window(cx, cy, 2.5 * sx, 2.5 * sy)
            dx, dy = (sc.x[sl] - _F(cx)) / _F(sx), (sc.y[sl] - _F(cy)) / _F(sy)
            # fading upwards, ending at a fold below
            shadow = np.exp(_F(-0.5) * (dx * dx + np.minimum(dy, _F(0)) ** 2)) * _step((_F(1) - dy) / _F(0.1))
            A[sl] += _F(nuis.breast) * shadow
    for _ in range(nuis.mimics):  # the opacity's look, where no pneumonia can be
        side = str(rng.choice(["right", "left"]))
        out = -1 if side == "right" else 1
        where = rng.random()
        if where < 0.4:  # axillary soft tissue, lateral to the lung
            cy = float(rng.uniform(a.lung_top + 0.1, a.dome(side) - 0.1))
            cx = a.lung_extent(side, cy)[0] + out * float(rng.uniform(0.05, 0.09))
        elif where < 0.8:  # under the hemidiaphragm
            cx = a.lung_center_x(side) + float(rng.uniform(-0.08, 0.08))
            cy = a.dome(side) + a.dome_k + float(rng.uniform(0.03, 0.09))
        else:  # supraclavicular soft tissue, above the apex
            cx = a.lung_center_x(side) + out * float(rng.uniform(0.0, 0.06))
            cy = a.lung_top - float(rng.uniform(0.03, 0.07))
        sl, field = _blob(sc, cx, cy, float(rng.uniform(0.7, 1.3)), rng, tex)
        A[sl] += _F(rng.uniform(0.06, 0.16)) * field
    if nuis.skin_fold:  # a thin line along the lateral chest wall, running out of the lung
        side = str(rng.choice(["right", "left"]))
        out = -1 if side == "right" else 1
        y0, y1 = a.lung_top + float(rng.uniform(0.0, 0.1)), a.lung_top + float(rng.uniform(0.3, 0.5))
        lat = a.lung_extent(side, (y0 + y1) / 2)[0]
        pts = _curve((lat + out * 0.05, y0), (lat - out * float(rng.uniform(0.04, 0.1)), (y0 + y1) / 2),
                     (lat + out * 0.06, y1))
        sl, line = _polyline(sc, pts, 0.003)
        A[sl] += _F(rng.uniform(0.06, 0.12)) * line


# -------------------------------------------------------------------- render


def render(lesions: list[Lesion], rng: np.random.Generator, size: int) -> Rendered:
    """Draw one chest radiograph with the given lesions.

    The random stream is split up front (anatomy, textures, lesions, pixel
    noise), so for a seed the anatomy is identical with or without lesions and
    at every ``size``; only the pixel noise depends on the resolution.
    """
    if size < 16:
        raise ValueError("size must be >= 16")
    seeds = rng.integers(0, 2**63 - 1, size=5)
    r_anat, r_tex, r_les, r_noise, r_nuis = (np.random.default_rng(int(s)) for s in seeds)

    anat = Anatomy.sample(r_anat).with_lesions(lesions)
    # Fixed-size random grids (resolution independent).  Markings: correlated
    # along the radius (rows) so they read as vessels; others: bilinear is smooth enough.
    g = r_tex.standard_normal((28, 90), dtype=_F)
    markings = g[:-4] + g[1:-3] + g[2:-2] + g[3:-1] + g[4:]
    tex = {
        "markings": _unit(markings + _F(0.5) * (np.roll(markings, 1, 1) + np.roll(markings, -1, 1))),
        "lesion": np.tanh(r_tex.standard_normal((24, 24), dtype=_F)),
        "low": r_tex.standard_normal((4, 4), dtype=_F),
        "overlap": np.tanh(r_tex.standard_normal((24, 24), dtype=_F)),
    }
    sc = _Scene(anat, size)
    ptx = None
    for les in lesions:
        if les.kind == "pneumothorax":
            for side in _side_list(les.side):
                region = _pneumothorax(sc, les, side)[0]
                ptx = region if ptx is None else np.maximum(ptx, region)
    smooth = _smooth_lung_field(anat, lesions, tex)
    A, air = _anatomy(sc, tex, smooth, ptx)
    if ptx is not None:
        A -= _F(0.04) * ptx  # v2: the collapsed-lung region is barely darker; it lacks vessel markings
    reticular = None
    if any(les.kind == "interstitial" for les in lesions):
        reticular = _resize(_unit(r_les.standard_normal((40, 40), dtype=_F)), size)
    boxes = _lesions(sc, A, air, lesions, r_les, _resize(tex["lesion"], size), reticular)
    if any(les.kind in ("catheter", "pacemaker", "sternotomy") for les in lesions):
        _devices(sc, A, lesions, r_les)
    object_boxes: list[tuple[int, int, int, int]] = []
    if any(les.kind in FOREIGN_KINDS for les in lesions):
        object_boxes = _foreign(sc, A, lesions, r_les)

    nuis = Nuisance.sample(r_nuis)
    _overlap(sc, A, nuis, r_nuis, _resize(tex["overlap"], size))

    # Smooth low-frequency exposure variation (heel effect, body habitus).
    A *= 1 + _F(nuis.exposure) * _resize(tex["low"], size)
    # Window and gamma: background dark, lungs dark grey, soft tissue mid, bone bright.
    img = ((A - _F(anat.window_lo)) * _F(1 / (anat.window_hi - anat.window_lo))).clip(0, 1) ** _F(anat.gamma)
    sigma = anat.blur * size
    if sigma > 0.35:
        img = ndimage.gaussian_filter(img, sigma, mode="nearest", truncate=3.0)
    if nuis.scatter > 0:  # scatter veils the image with a blurred copy of itself: contrast drops
        step = max(1, size // 16)
        veil = _resize(ndimage.gaussian_filter(img[::step, ::step], 2.0, mode="nearest"), size)
        img = (1 - _F(nuis.scatter)) * img + _F(nuis.scatter) * veil
    noise = r_noise.standard_normal((size, size), dtype=_F)
    img += _F(anat.noise * nuis.noise_gain) * np.sqrt(img + _F(0.03)) * noise
    image = (img.clip(0, 1) * 255 + 0.5).astype(np.uint8)

    mask = np.zeros((size, size), np.uint8)
    for x0, y0, w, h in boxes:
        mask[y0:y0 + h, x0:x0 + w] = 1
    box_arr = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Rendered(image=image, mask=mask, boxes=box_arr, ctr=float(anat.ctr),
                    ptx_mask=(ptx > 0.5).astype(np.uint8) if ptx is not None else np.zeros((size, size), np.uint8),
                    lungs=(sc.lungs > 0.5).astype(np.uint8),
                    object_boxes=np.asarray(object_boxes, np.float32).reshape(-1, 4))
