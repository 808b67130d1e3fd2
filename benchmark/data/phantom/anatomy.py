"""Pathology specs from report tags, and the per-image anatomy they act on.

Why: the phantom must draw pathology *where the report says it is*, so a
vision-language model can learn image-text alignment from it.  The Open-i
reports carry MeSH "major" tags like ``Opacity/lung/upper lobe/right``; this
module maps the frequent lesion-bearing tags to :class:`Lesion` specs and
holds the normalised chest geometry (lungs, heart, diaphragm) that both the
renderer and lesion placement use.

All geometry is in *anatomical* normalised coordinates: x in [0, 1] from the
image's left to its right, y in [0, 1] from top to bottom.  Radiological
convention: the patient's RIGHT lung is on the image's LEFT (x < 0.5).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from benchmark.data.phantom.reports import Report

#: Focal kinds are drawn at a (side, zone); the others change the whole chest.
FOCAL_KINDS = ("opacity", "nodule", "effusion", "atelectasis", "pneumothorax", "interstitial")
GLOBAL_KINDS = ("cardiomegaly", "edema", "hyperinflation", "hypoinflation", "elevated_diaphragm")
#: Radiopaque devices: frequent in the reports ("right IJ catheter", "pacemaker").
DEVICE_KINDS = ("catheter", "pacemaker", "sternotomy")
#: Kinds used only by the phantom downstream sets (never produced from report tags):
#: COVID-19-like ground glass and foreign objects (Object-CXR).
COVID_KINDS = ("covid",)
FOREIGN_KINDS = ("coin", "button", "wire")
KINDS = FOCAL_KINDS + GLOBAL_KINDS + DEVICE_KINDS + COVID_KINDS + FOREIGN_KINDS
SIDES = ("right", "left", "bilateral", "center")
ZONES = ("upper", "middle", "lower", "diffuse")


@dataclass(frozen=True)
class Lesion:
    """One finding to draw.

    side: patient side ("right" is drawn on the image's left), "bilateral" or
    "center" (cardiomegaly).  zone: "upper"/"middle"/"lower" third of the lung,
    "diffuse" for whole-chest findings.  severity in (0, 1]: size / extent.
    """

    kind: str
    side: str
    zone: str
    severity: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown lesion kind {self.kind!r}; expected one of {KINDS}")
        if self.side not in SIDES:
            raise ValueError(f"unknown side {self.side!r}; expected one of {SIDES}")
        if self.zone not in ZONES:
            raise ValueError(f"unknown zone {self.zone!r}; expected one of {ZONES}")


# --------------------------------------------------------------------------- tags

#: MeSH major-tag head (before the first "/") -> lesion kind.  Frequencies are
#: counts over the 3,955 Open-i reports (heads; a report can have several).
_HEAD_KIND: dict[str, str] = {
    "Opacity": "opacity",  # 536
    "Airspace Disease": "opacity",  # 132
    "Density": "opacity",  # 131 (lung/retrocardiac sites only)
    "Infiltrate": "opacity",  # 68
    "Pneumonia": "opacity",  # 43
    "Consolidation": "opacity",  # 33
    "Nodule": "nodule",  # 121
    "Calcified Granuloma": "nodule",  # 284
    "Granuloma": "nodule",  # 53
    "Mass": "nodule",  # 18 (lung/thorax sites only)
    "Calcinosis": "nodule",  # 347 (lung sites only: calcified hilar nodes)
    "Pleural Effusion": "effusion",  # 172
    "Costophrenic Angle": "effusion",  # 81 (blunted / obscured)
    "Cardiomegaly": "cardiomegaly",  # 375
    "Cardiac Shadow": "cardiomegaly",  # 58 (enlarged only)
    "Pulmonary Atelectasis": "atelectasis",  # 347
    "Atelectasis": "atelectasis",
    "Cicatrix": "atelectasis",  # 210 (lung scarring: linear band; lung sites only)
    "Pulmonary Edema": "edema",  # 47
    "Lung Diseases, Interstitial": "interstitial",  # 14
    "Pulmonary Fibrosis": "interstitial",  # 19
    "Pulmonary Congestion": "edema",  # 76
    "Heart Failure": "edema",  # 11 (+ cardiomegaly)
    "Pneumothorax": "pneumothorax",  # 23
    "Emphysema": "hyperinflation",  # 62
    "Pulmonary Emphysema": "hyperinflation",  # 36
    "Pulmonary Disease, Chronic Obstructive": "hyperinflation",  # 50
    "Lung, Hyperlucent": "hyperinflation",  # 18
    "Diaphragmatic Eventration": "elevated_diaphragm",  # 34
    "Granulomatous Disease": "nodule",  # 112 (calcified granulomas)
    "Catheters, Indwelling": "catheter",  # 129
    "Tube, Inserted": "catheter",  # 33 (mostly endotracheal: drawn in the trachea)
    "Implanted Medical Device": "pacemaker",  # 112
    "Surgical Instruments": "sternotomy",  # 112 (mediastinal / thoracic sites only)
}

_SEVERITY_WORDS = {
    "borderline": 0.15,
    "minimal": 0.2,
    "small": 0.3,
    "mild": 0.3,
    "moderate": 0.6,
    "large": 0.9,
    "severe": 0.9,
}
_DEFAULT_SEVERITY = {"nodule": 0.45, "edema": 0.5, "cardiomegaly": 0.45, "interstitial": 0.35}
_HEAD_SEVERITY = {"Calcified Granuloma": 0.25, "Granuloma": 0.25, "Granulomatous Disease": 0.25, "Calcinosis": 0.2, "Mass": 0.9,
                  "Costophrenic Angle": 0.15, "Pulmonary Congestion": 0.3, "Cicatrix": 0.3}


def _rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash (Python's hash() is salted per process)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _zone_of(parts: list[str]) -> str | None:
    for p in parts:
        if p in ("upper lobe", "apex"):
            return "upper"
        if p in ("middle lobe", "lingula", "hilum"):
            return "middle"
        if p in ("base", "lower lobe", "retrocardiac", "costophrenic angle"):
            return "lower"
    return None


def _side_of(parts: list[str]) -> str | None:
    if "bilateral" in parts:
        return "bilateral"
    if "right" in parts:
        return "right"
    if "left" in parts:
        return "left"
    if "lingula" in parts or "retrocardiac" in parts:
        return "left"
    if "middle lobe" in parts:
        return "right"
    return None


def _severity_of(parts: list[str], kind: str, head: str) -> float:
    found = [_SEVERITY_WORDS[p] for p in parts if p in _SEVERITY_WORDS]
    if found:
        return max(found)
    return _HEAD_SEVERITY.get(head, _DEFAULT_SEVERITY.get(kind, 0.5))


def lesions_from_tag(tag: str, rng: np.random.Generator) -> list[Lesion]:
    """One MeSH major tag -> 0..n lesions; ``rng`` decides unspecified sides/zones."""
    parts = [p.strip() for p in tag.split("/")]
    head, rest = parts[0], [p.lower() for p in parts[1:]]
    kind = _HEAD_KIND.get(head)
    if head == "Lung":
        if "hypoinflation" in rest:
            kind = "hypoinflation"
        elif "hyperdistention" in rest:
            kind = "hyperinflation"
    elif head == "Markings" and "interstitial" in rest:
        kind = "interstitial"  # 45 "Markings/lung/interstitial/..."
    elif head == "Diaphragm":
        if "elevated" in rest:
            kind = "elevated_diaphragm"
        elif "flattened" in rest:
            kind = "hyperinflation"
    if kind is None:
        return []
    # Sites that are not lung parenchyma (aorta, mediastinum, breast, ...).
    if head in ("Density", "Mass", "Calcinosis", "Cicatrix") and not (
        {"lung", "retrocardiac", "thorax"} & set(rest)
    ):
        return []
    if head in ("Cardiac Shadow",) and "enlarged" not in rest:
        return []
    if head == "Surgical Instruments" and set(rest) - {"mediastinum", "thorax"}:
        return []  # abdominal clips, hilar clips, breast: not drawn
    if head == "Implanted Medical Device" and set(rest) - {"left", "right", "thorax", "heart"}:
        return []  # valve prostheses, humeral implants: not drawn
    if head == "Costophrenic Angle" and not ({"blunted", "obscured"} & set(rest)):
        return []
    if head == "Opacity" and "streaky" in rest:
        kind = "atelectasis"  # streaky basal opacity: linear, band-like
    elif kind == "opacity" and "interstitial" in rest:
        kind = "interstitial"  # reticular, not airspace: no box

    severity = _severity_of(rest, kind, head)
    side = _side_of(rest)
    zone = _zone_of(rest)

    if kind in ("hyperinflation", "hypoinflation"):
        return [Lesion(kind, "bilateral", "diffuse", severity)]
    if kind == "cardiomegaly":
        return [Lesion(kind, "center", "middle", severity)]
    if kind == "interstitial":
        return [Lesion(kind, side or "bilateral", zone or "diffuse", severity)]
    if kind == "edema":
        out = [Lesion("edema", "bilateral", "middle", severity)]
        if head == "Heart Failure":
            out.append(Lesion("cardiomegaly", "center", "middle", 0.5))
        return out
    if kind == "sternotomy":
        return [Lesion(kind, "center", "middle", 0.5)]
    if kind == "catheter" and head == "Tube, Inserted":
        return [Lesion(kind, "center", "upper", 0.5)]  # endotracheal tube
    if kind in ("catheter", "pacemaker"):
        default = "left" if kind == "pacemaker" else str(rng.choice(["right", "left"]))
        return [Lesion(kind, side if side in ("right", "left") else default, "upper", 0.5)]
    if kind == "elevated_diaphragm":
        return [Lesion(kind, side if side in ("right", "left") else str(rng.choice(["right", "left"])),
                       "lower", severity)]

    # Focal kinds.
    if kind == "effusion":
        zone = "lower"
    elif kind == "pneumothorax":
        zone = "upper" if zone in (None, "upper") else zone
    count = 1
    if {"multiple", "scattered", "multilobar"} & set(rest) and kind in ("nodule", "opacity"):
        count = 3 if kind == "nodule" else 2
    out: list[Lesion] = []
    zones = ["upper", "middle", "lower"]
    for i in range(count):
        s = side or str(rng.choice(["right", "left"]))
        if count > 1 and s == "bilateral":
            s = ("right", "left")[i % 2]
        z = zone or str(rng.choice(zones, p=[0.25, 0.3, 0.45]))
        if count > 1 and zone is None:
            z = zones[(i + int(rng.integers(3))) % 3]
        out.append(Lesion(kind, s, z, severity))
    return out


def lesions_from_report(report: Report) -> list[Lesion]:
    """All lesions a report's MeSH major tags describe; [] for a normal report.

    Deterministic: unspecified sides/zones are drawn from a generator seeded by
    (uid, tag index, tag).  Duplicates (the same kind/side/zone from two tags,
    e.g. "Opacity" and "Airspace Disease") are merged keeping the larger
    severity; whole-chest kinds appear at most once.
    """
    merged: dict[tuple[str, str, str], Lesion] = {}
    for i, tag in enumerate(report.tags):
        if tag.lower() == "normal":
            continue
        for les in lesions_from_tag(tag, _rng_for(report.uid, i, tag)):
            key = (les.kind, les.side, les.zone) if les.kind not in GLOBAL_KINDS else (les.kind, "", "")
            if les.kind == "elevated_diaphragm":
                key = (les.kind, les.side, "")
            old = merged.get(key)
            if old is None or les.severity > old.severity:
                merged[key] = les
    # A one-sided lesion is redundant next to the bilateral one of the same kind and zone.
    bilateral = {(les.kind, les.zone): les for les in merged.values() if les.side == "bilateral"}
    lesions = []
    for les in merged.values():
        both = bilateral.get((les.kind, les.zone))
        if both is not None and les.side in ("right", "left"):
            if les.severity > both.severity:
                bilateral[(les.kind, les.zone)] = replace(both, severity=les.severity)
            continue
        lesions.append(les)
    lesions = [bilateral.get((les.kind, les.zone), les) if les.side == "bilateral" else les for les in lesions]
    kinds = {les.kind for les in lesions}
    if "hyperinflation" in kinds and "hypoinflation" in kinds:
        lesions = [les for les in lesions if les.kind != "hypoinflation"]
    return lesions


# ----------------------------------------------------------------------- anatomy


def _unit_chord(dy: float) -> float:
    """dx where the lung radius (mean of L2 and L4 norms) reaches 1 at height dy."""
    lo, hi = 0.0, 1.0
    for _ in range(30):
        mid = (lo + hi) / 2
        r = 0.5 * math.hypot(mid, dy) + 0.5 * (mid**4 + dy**4) ** 0.25
        lo, hi = (mid, hi) if r < 1 else (lo, mid)
    return lo

MID_X = 0.5


@dataclass(frozen=True)
class Anatomy:
    """Per-image chest geometry and exposure, sampled so no two images are alike.

    Lung shape per side: a tapered superellipse (centre cx, cy; half-width hw
    growing downwards, half-height ay) cut from below by a parabolic
    hemidiaphragm dome (top at ``dome``, dropping ``dome_k`` at the lung's
    lateral edge) and medially by the mediastinum.
    """

    # pose (image = rotate(scale * (anatomy - .5)) + .5 + shift)
    shift_x: float
    shift_y: float
    angle: float  # radians
    scale: float
    # lungs
    lung_top: float
    lung_width: float  # half-width of each lung's superellipse at its centre row
    lung_gap: float  # distance of each lung centre from the midline
    lung_height: float  # apex to dome top
    dome_r: float
    dome_l: float
    dome_k: float
    taper: float
    mediastinum: float  # half-width of the upper mediastinum
    # heart
    ctr: float  # cardiothoracic ratio
    heart_y: float
    heart_h: float
    heart_shear: float
    # body and exposure
    body_half: float
    tissue: float
    gamma: float
    window_lo: float
    window_hi: float
    noise: float
    blur: float  # gaussian sigma as a fraction of the image size
    rib_spacing: float
    rib_phase: float
    rib_contrast: float
    marking_contrast: float
    gastric: float  # gastric bubble air (0: none)

    @staticmethod
    def sample(rng: np.random.Generator) -> Anatomy:
        """Normal-range anatomy; the number and order of draws is fixed."""
        u = rng.uniform
        lung_height = u(0.54, 0.62)
        lung_top = u(0.11, 0.15)
        dome_r = lung_top + lung_height
        return Anatomy(
            shift_x=u(-0.03, 0.03),
            shift_y=u(-0.025, 0.025),
            angle=math.radians(u(-3.5, 3.5)),
            scale=u(0.93, 1.04),
            lung_top=lung_top,
            lung_width=u(0.16, 0.185),
            lung_gap=u(0.2, 0.225),
            lung_height=lung_height,
            dome_r=dome_r,
            dome_l=dome_r + u(0.0, 0.035),
            dome_k=u(0.08, 0.12),
            taper=u(0.15, 0.3),
            mediastinum=u(0.045, 0.06),
            ctr=u(0.38, 0.48),
            heart_y=dome_r - u(0.1, 0.13),
            heart_h=u(0.14, 0.17),
            heart_shear=u(0.2, 0.35),
            body_half=u(0.43, 0.47),
            tissue=u(0.5, 0.6),
            gamma=u(0.8, 1.25),
            window_lo=u(-0.04, 0.06),
            window_hi=u(0.78, 0.95),
            noise=u(0.012, 0.035),
            blur=u(0.002, 0.0045),
            rib_spacing=u(0.056, 0.066),
            rib_phase=u(-0.2, 0.2),
            rib_contrast=u(0.05, 0.11),
            marking_contrast=u(0.08, 0.16),
            gastric=max(0.0, u(-0.1, 0.2)),
        )

    def with_lesions(self, lesions: list[Lesion]) -> Anatomy:
        """Apply whole-chest findings (heart size, inflation, diaphragm) to the geometry."""
        a = self
        for les in lesions:
            s = les.severity
            if les.kind == "cardiomegaly":
                a = replace(a, ctr=max(a.ctr, 0.53 + 0.15 * s), heart_h=a.heart_h * (1.05 + 0.1 * s))
            elif les.kind == "hyperinflation":
                extra = 0.03 + 0.06 * s
                a = replace(a, lung_height=a.lung_height + extra, dome_r=a.dome_r + extra,
                            dome_l=a.dome_l + extra, dome_k=a.dome_k * 0.55, heart_y=a.heart_y + extra,
                            ctr=min(a.ctr, 0.44), taper=a.taper * 0.8)
            elif les.kind == "hypoinflation":
                less = 0.04 + 0.06 * s
                a = replace(a, lung_height=a.lung_height - less, dome_r=a.dome_r - less,
                            dome_l=a.dome_l - less, heart_y=a.heart_y - less,
                            ctr=a.ctr if a.ctr > 0.5 else min(0.49, a.ctr + 0.03))
            elif les.kind == "elevated_diaphragm":
                up = 0.04 + 0.08 * s
                if les.side == "right":
                    a = replace(a, dome_r=a.dome_r - up)
                else:
                    a = replace(a, dome_l=a.dome_l - up)
        return a

    # -- lung geometry (vectorised over coordinate arrays) --------------------

    def lung_center_x(self, side: str) -> float:
        return MID_X - self.lung_gap if side == "right" else MID_X + self.lung_gap

    def lung_half_height(self, side: str) -> float:
        # Superellipse extends 0.12 below the dome top so the dome cuts it and
        # forms a sharp lateral costophrenic angle.
        return (self.dome(side) + self.dome_k + 0.03 - self.lung_top) / 2

    def dome(self, side: str) -> float:
        return self.dome_r if side == "right" else self.dome_l

    def lung_half_width(self, side: str, y: np.ndarray | float) -> np.ndarray | float:
        ay = self.lung_half_height(side)
        cy = self.lung_top + ay
        return self.lung_width * (1 + self.taper * (np.asarray(y) - cy) / ay)

    def lung_radius(self, side: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised radius: < 1 inside the lung outline, 1 on it.

        The mean of the L2 and L4 norms: a rounded-square superellipse (apex
        and lateral wall) that needs only square roots (fast).
        """
        ay = self.lung_half_height(side)
        cy = self.lung_top + ay
        hw = self.lung_half_width(side, y)
        dx = (x - self.lung_center_x(side)) / hw
        dy = (y - cy) / ay
        dx2, dy2 = dx * dx, dy * dy
        return 0.5 * np.sqrt(dx2 + dy2) + 0.5 * np.sqrt(np.sqrt(dx2 * dx2 + dy2 * dy2))

    def dome_y(self, side: str, x: np.ndarray | float) -> np.ndarray | float:
        """y of the hemidiaphragm under x (larger y = lower)."""
        cx = self.lung_center_x(side)
        return self.dome(side) + self.dome_k * ((np.asarray(x) - cx) / self.lung_width) ** 2

    def thoracic_width(self) -> float:
        """Inner width of the chest at the dome level (for the cardiothoracic ratio)."""
        y = (self.dome_r + self.dome_l) / 2 + 0.5 * self.dome_k
        right = self.lung_center_x("right") - float(self.lung_half_width("right", y))
        left = self.lung_center_x("left") + float(self.lung_half_width("left", y))
        return left - right

    def heart_geometry(self) -> tuple[float, float, float, float, float]:
        """(cx, cy, half-width, half-height, shear) of the sheared heart ellipse.

        The total horizontal extent is exactly ``ctr * thoracic_width``; a third
        of it lies right of the midline (image left), two thirds left of it.
        """
        width = self.ctr * self.thoracic_width()
        half = width / 2
        ax = math.sqrt(max(half**2 - (self.heart_shear * self.heart_h) ** 2, (0.5 * half) ** 2))
        ext = math.sqrt(ax**2 + (self.heart_shear * self.heart_h) ** 2)
        cx = MID_X - 0.35 * width + ext
        return cx, self.heart_y, ax, self.heart_h, self.heart_shear

    def lung_extent(self, side: str, y: float) -> tuple[float, float]:
        """(lateral, medial) x of the visible lung on row y (heart and mediastinum removed)."""
        cx = self.lung_center_x(side)
        hw = float(self.lung_half_width(side, y))
        ay = self.lung_half_height(side)
        dy = min(abs(y - (self.lung_top + ay)) / ay, 0.999)
        chord = hw * _unit_chord(dy)
        hcx, hcy, hax, hay, shear = self.heart_geometry()
        hdy = (y - hcy) / hay
        if side == "right":
            lateral, medial = cx - chord, min(cx + chord, MID_X - self.mediastinum)
            if abs(hdy) < 1:
                medial = min(medial, hcx + shear * (y - hcy) - hax * math.sqrt(1 - hdy**2))
        else:
            lateral, medial = cx + chord, max(cx - chord, MID_X + self.mediastinum)
            if abs(hdy) < 1:
                medial = max(medial, hcx + shear * (y - hcy) + hax * math.sqrt(1 - hdy**2))
        return lateral, medial

    def zone_rows(self, side: str, zone: str) -> tuple[float, float]:
        """y-range of a lung zone (upper/middle/lower third of apex..dome)."""
        top, bottom = self.lung_top, self.dome(side)
        h = bottom - top
        frac = {"upper": (0.1, 0.36), "middle": (0.38, 0.62), "lower": (0.64, 0.9)}.get(zone, (0.1, 0.9))
        return top + frac[0] * h, top + frac[1] * h

    def point_in(self, side: str, zone: str, rng: np.random.Generator,
                 lateral_frac: tuple[float, float] = (0.2, 0.75)) -> tuple[float, float]:
        """A random point inside the given lung zone (for placing a focal lesion)."""
        y0, y1 = self.zone_rows(side, zone)
        y = float(rng.uniform(y0, y1))
        lat, med = self.lung_extent(side, y)
        f = float(rng.uniform(*lateral_frac))
        return lat + f * (med - lat), y
