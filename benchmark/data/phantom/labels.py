"""The renderer's own ground truth per corpus image, as multi-label finding vectors.

Why: the positive control (``methods/supervised.py``) pre-trains an encoder on
what the phantom really drew, so it must read the same lesions the renderer
draws: :func:`lesions_from_report` of each report, not a parse of the text.

Labels are (kind, side) pairs. The kinds are every lesion kind a report's tags
can produce (``anatomy.KINDS`` minus the kinds only the downstream stand-ins
draw), read from the renderer's constants so new kinds are picked up. A kind
the renderer draws at a side (``anatomy.FOCAL_KINDS``) gets a right and a left
label, a bilateral lesion setting both; every other kind (cardiomegaly,
hyperinflation, devices, ...) gets one label, side ``""``. Sides are the
patient's: "right" is drawn on the image's left.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from benchmark.data.phantom.anatomy import (
    COVID_KINDS,
    FOCAL_KINDS,
    FOREIGN_KINDS,
    KINDS,
    lesions_from_report,
)
from benchmark.data.phantom.reports import Report, load_reports

SIDES = ("right", "left")
#: kinds a report's tags can produce: the downstream-only kinds are never in a corpus image
REPORT_KINDS: tuple[str, ...] = tuple(k for k in KINDS if k not in COVID_KINDS + FOREIGN_KINDS)
#: the label columns, in order: (kind, side), side "" for a kind drawn without one
FINDINGS: tuple[tuple[str, str], ...] = tuple(
    (kind, side) for kind in REPORT_KINDS for side in (SIDES if kind in FOCAL_KINDS else ("",))
)
#: printable names of the columns ("opacity/left", "cardiomegaly")
LABEL_NAMES: tuple[str, ...] = tuple(f"{k}/{s}" if s else k for k, s in FINDINGS)
_COLUMN = {label: i for i, label in enumerate(FINDINGS)}
#: column -> the column of the same finding seen in a horizontally flipped image (right <-> left)
MIRROR: tuple[int, ...] = tuple(
    _COLUMN[(k, {"right": "left", "left": "right"}.get(s, s))] for k, s in FINDINGS
)


def _columns(kind: str, side: str) -> list[int]:
    if kind not in REPORT_KINDS:
        raise ValueError(f"lesion kind {kind!r} from a report is not a finding label; REPORT_KINDS is {REPORT_KINDS}")
    if kind not in FOCAL_KINDS:
        return [_COLUMN[(kind, "")]]
    # bilateral: both sides; a focal kind drawn at the midline ("center") touches both too
    sides = (side,) if side in SIDES else SIDES
    return [_COLUMN[(kind, s)] for s in sides]


def finding_labels(reports: Iterable[Report]) -> np.ndarray:
    """(N, len(FINDINGS)) float32 0/1: the findings the renderer draws for each report."""
    rows = []
    for report in reports:
        row = np.zeros(len(FINDINGS), np.float32)
        for lesion in lesions_from_report(report):
            row[_columns(lesion.kind, lesion.side)] = 1.0
        rows.append(row)
    return np.stack(rows) if rows else np.zeros((0, len(FINDINGS)), np.float32)


def corpus_reports(ids: Sequence[str]) -> list[Report]:
    """The Open-i report behind each phantom corpus id (``phantom-<uid>``, as
    ``datasets.phantom_corpus`` names them). KeyError naming an id that is none."""
    by_id = {f"phantom-{r.uid}": r for r in load_reports()}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise KeyError(f"{len(missing)} corpus id(s) are no phantom report ({missing[:3]})")
    return [by_id[i] for i in ids]
