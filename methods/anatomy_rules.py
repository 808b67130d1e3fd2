"""ASG's report parsing, written from scratch: the authors never released their
anatomical boxes, sentence-to-region rules or tag labels.

- ``REGIONS``: 23 template anatomical boxes of a frontal chest radiograph in
  normalised image coordinates (x0, y0, x1, y1), after Chest ImaGenome's region
  names. Radiological convention: the patient's right is on the image's LEFT.
- ``sentence_regions``: keyword rules (data below) sending a sentence to the
  regions it talks about, whether the finding is present or negated ("No right
  effusion." still describes the right costophrenic angle). A location without a
  side goes to both sides.
- ``sentence_tags``: CheXpert-like tags by term matching with NegEx-style
  negation and uncertainty cues scoped to the clause; negated and uncertain
  mentions give no tag (the reference maps uncertain labels to 0).
"""

from __future__ import annotations

import re

import torch

SIDES = ("right", "left")

# name -> (x0, y0, x1, y1) for the patient's right (image left); left sides are mirrored.
_SIDED_BOXES = {
    "lung": (0.08, 0.10, 0.48, 0.84),
    "upper lung zone": (0.10, 0.14, 0.48, 0.38),
    "mid lung zone": (0.10, 0.38, 0.48, 0.58),
    "lower lung zone": (0.10, 0.58, 0.48, 0.80),
    "apical zone": (0.14, 0.08, 0.44, 0.22),
    "hilar structures": (0.32, 0.34, 0.46, 0.54),
    "costophrenic angle": (0.06, 0.70, 0.22, 0.86),
    "hemidiaphragm": (0.08, 0.72, 0.46, 0.88),
}
_MIDLINE_BOXES = {
    "trachea": (0.45, 0.04, 0.55, 0.34),
    "upper mediastinum": (0.40, 0.10, 0.60, 0.38),
    "mediastinum": (0.38, 0.10, 0.64, 0.76),
    "aortic arch": (0.50, 0.24, 0.62, 0.36),
    "cardiac silhouette": (0.36, 0.44, 0.72, 0.80),
    "spine": (0.44, 0.00, 0.56, 1.00),
    "abdomen": (0.10, 0.84, 0.90, 1.00),
}


def _mirror(box: tuple[float, ...]) -> tuple[float, ...]:
    x0, y0, x1, y1 = box
    return (1 - x1, y0, 1 - x0, y1)


REGIONS: dict[str, tuple[float, ...]] = {
    **{f"right {k}": v for k, v in _SIDED_BOXES.items()},
    **{f"left {k}": _mirror(v) for k, v in _SIDED_BOXES.items()},
    **_MIDLINE_BOXES,
}
REGION_NAMES = tuple(REGIONS)

# (pattern, sided region stem, forced side or None); matched on lower-case text.
SIDED_RULES = [
    (r"upper (lobes?|lungs?|zones?)", "upper lung zone", None),
    (r"apex|apices|apical", "apical zone", None),
    (r"middle lobe|mid[- ]?lungs?|mid[- ]lung zones?", "mid lung zone", None),
    (r"lingula", "mid lung zone", "left"),
    (r"lower (lobes?|lungs?|zones?)|\bbases?\b|basilar|basal", "lower lung zone", None),
    (r"retrocardiac", "lower lung zone", "left"),
    (r"\bhila\b|hilum|hilar", "hilar structures", None),
    (r"costophrenic|effusion", "costophrenic angle", None),
    (r"pneumothora", "apical zone", None),
    (r"diaphragm", "hemidiaphragm", None),
    ((r"\blungs?\b|pulmonary|air ?space|parenchym|opacit|consolidat|atelecta|pneumonia|edema|nodul|granulom|infiltrat"
      r"|emphysema|scarring|interstitial|hyperinfla|hyperexpan"), "lung", None),
]
MIDLINE_RULES = [
    (r"cardiomegaly|\b(heart|cardiac)|cardiomediastinal|cardiophrenic|pericardi", "cardiac silhouette"),
    (r"mediastin|sternotomy", "mediastinum"),
    (r"upper mediastin|paratracheal|superior vena cava|\bsvc\b", "upper mediastinum"),
    (r"aort", "aortic arch"),
    (r"trachea|endotracheal|\bett\b|carina", "trachea"),
    (r"spine|spinal|vertebra|spondylo|osseous|bony|\bbones?\b|degenerative|scoliosis|kyphosis|osteophyte", "spine"),
    (r"abdom|bowel|stomach|free air|subdiaphragm|pneumoperitoneum|cholecystectomy|upper quadrant", "abdomen"),
]
_SIDE = re.compile(r"\b(right|left|bilateral(?:ly)?|both|bi(?=basilar|basal|apical|lateral))")

# Tag -> pattern (CheXpert's 14 observations; "no finding" when no other tag is positive).
TAGS: dict[str, str] = {
    "atelectasis": r"atelecta|collapse",
    "cardiomegaly": r"cardiomegaly|(heart|cardiac silhouette) (size )?is enlarged|enlarged (heart|cardiac)|cardiac enlargement",
    "consolidation": r"consolidat",
    "edema": r"edema|vascular congestion|pulmonary congestion",
    "enlarged cardiomediastinum": r"(widened|enlarged) (cardio)?mediastin|mediastinal widening",
    "fracture": r"fracture",
    "lung lesion": r"nodul|\bmass(es)?\b|lesion|granulom",
    "lung opacity": r"opacit|infiltrat|densit(y|ies)|air ?space disease",
    "pleural effusion": r"effusion",
    "pleural other": r"pleural thickening|pleural plaque|fibrothorax",
    "pneumonia": r"pneumonia|infection",
    "pneumothorax": r"pneumothora",
    "support devices": r"\b(tubes?|catheters?|lines?|pacemaker|pacer|wires?|clips?|stents?|devices?|ports?|hardware)\b",
    "no finding": r"(?!)",  # never matched: set from the other tags
}
TAG_NAMES = tuple(TAGS)
# NegEx-style cues. Pre-cues act on terms after them, post-cues on terms before them,
# both within the clause (ended by ";" or a termination word; commas keep lists in scope).
PRE_CUES = r"\b(no|not|without|negative for|free of|clear of|absence of|rather than)\b"
UNCERTAIN_CUES = r"\b(possible|possibly|probable|may|might|could|questionable|cannot (be )?excluded?|suspicious for|concerning for|versus|vs)\b"
POST_CUES = r"\b(not seen|not identified|not present|not visualized|absent|resolved|removed|excluded)\b"
_CLAUSE = re.compile(r";|\b(?:but|however|although|though|except|whereas|aside from|apart from)\b")


def region_boxes() -> torch.Tensor:
    """The template boxes (R x 4, normalised x0, y0, x1, y1) in ``REGION_NAMES`` order."""
    return torch.tensor([REGIONS[n] for n in REGION_NAMES], dtype=torch.float32)


def _sides_near(clause: str, start: int, end: int, implied: tuple[str, ...]) -> tuple[str, ...]:
    """The side word closest before a location (else after it) in its clause; with
    none, the side a forced-side location of the clause implies, else both."""
    before = [m for m in _SIDE.finditer(clause) if m.end() <= start]
    after = [m for m in _SIDE.finditer(clause) if m.start() >= end]
    match = before[-1] if before else after[0] if after else None
    if match is None:
        return implied or SIDES
    return (match.group(1),) if match.group(1) in SIDES else SIDES


def sentence_regions(sentence: str) -> set[str]:
    """Region names a sentence talks about (present or negated)."""
    found: set[str] = set()
    for clause in _CLAUSE.split(sentence.lower()):
        implied = tuple(sorted({f for p, _, f in SIDED_RULES if f and re.search(p, clause)}))
        for pattern, stem, forced in SIDED_RULES:
            for m in re.finditer(pattern, clause):
                sides = (forced,) if forced else _sides_near(clause, m.start(), m.end(), implied)
                found.update(f"{side} {stem}" for side in sides)
        found.update(region for pattern, region in MIDLINE_RULES if re.search(pattern, clause))
    return found


def assign_regions(sentences: list[str], max_sentences: int) -> torch.Tensor:
    """(R x max_sentences) bool: region r is described by sentence s (0-based)."""
    out = torch.zeros(len(REGION_NAMES), max_sentences, dtype=torch.bool)
    for s, sentence in enumerate(sentences[:max_sentences]):
        for name in sentence_regions(sentence):
            out[REGION_NAMES.index(name), s] = True
    return out


def _affirmed(clause: str, start: int, end: int) -> bool:
    pre = [m.start() for m in re.finditer(f"{PRE_CUES}|{UNCERTAIN_CUES}", clause)]
    post = [m.start() for m in re.finditer(POST_CUES, clause)]
    return not any(p < start for p in pre) and not any(p >= end for p in post)


def sentence_tags(sentence: str) -> set[str]:
    """Tags mentioned positively (not negated, not uncertain) in a sentence."""
    tags: set[str] = set()
    for clause in _CLAUSE.split(sentence.lower()):
        for tag, pattern in TAGS.items():
            if any(_affirmed(clause, m.start(), m.end()) for m in re.finditer(pattern, clause)):
                tags.add(tag)
    return tags


def report_tags(sentences: list[str]) -> torch.Tensor:
    """Multi-hot tag vector (T) of a report; "no finding" when nothing else is positive."""
    tags = set().union(*(sentence_tags(s) for s in sentences)) if sentences else set()
    if not tags:
        tags = {"no finding"}
    return torch.tensor([float(t in tags) for t in TAG_NAMES])
