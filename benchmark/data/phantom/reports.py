"""Real chest X-ray report text (Indiana University / Open-i) for the phantom data set.

The phantom images are procedural, but the text a VLP method learns from should be
real radiology language.  The Open-i reports ship inside the torchxrayvision wheel
(``data/NLMCXR_reports.tgz``, 3,955 XML files), so no download is needed.  They are
licensed CC BY-NC-ND 4.0: we parse them into a JSON cache under ``$BENCHMARK_HOME``
and never write derived files into the repository.

Counts (torchxrayvision 1.x tarball): 3,955 reports, 3,921 with a non-empty
IMPRESSION (what :func:`load_reports` returns), 3,419 with both FINDINGS and
IMPRESSION non-empty.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.paths import atomic_json, cache_dir

log = logging.getLogger(__name__)

#: Bump when the parsing below changes: it is part of the JSON cache name.
PARSER_VERSION = "1"
_TARBALL = "NLMCXR_reports.tgz"


@dataclass(frozen=True)
class Report:
    """One report: de-identified text ("XXXX") plus its MeSH major tags."""

    uid: str
    findings: str
    impression: str
    tags: tuple[str, ...]


def reports_tarball() -> Path:
    """Path of the Open-i report tarball inside the installed torchxrayvision.

    Found via ``find_spec`` instead of an import because importing torchxrayvision
    takes seconds (it pulls in torchvision, skimage, ...).
    """
    hint = "the phantom data set needs the Open-i reports from torchxrayvision: pip install torchxrayvision"
    try:
        spec = importlib.util.find_spec("torchxrayvision")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(hint)
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / _TARBALL
    if not path.is_file():
        raise UserError(f"{path} is missing; {hint}")
    return path


def _norm(text: str | None) -> str:
    return " ".join((text or "").split())


def _uid_key(uid: str) -> tuple[int, str]:
    digits = "".join(ch for ch in uid if ch.isdigit())
    return (int(digits) if digits else 0, uid)


def parse_report_xml(data: bytes) -> Report | None:
    """One ecgen-radiology XML file -> Report (None when it has no uId)."""
    root = ET.fromstring(data)
    uid_el = root.find("uId")
    if uid_el is None or not uid_el.get("id"):
        return None
    sections = {el.get("Label", "").upper(): _norm(el.text) for el in root.iter("AbstractText")}
    tags = tuple(t for t in (_norm(el.text) for el in root.iter("major")) if t)
    return Report(
        uid=uid_el.get("id", ""),
        findings=sections.get("FINDINGS", ""),
        impression=sections.get("IMPRESSION", ""),
        tags=tags,
    )


def parse_tarball(path: Path) -> list[Report]:
    """Every report in the tarball (including those without impression), by numeric uid."""
    out: list[Report] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".xml")):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            rep = parse_report_xml(fh.read())
            if rep is not None:
                out.append(rep)
    out.sort(key=lambda r: _uid_key(r.uid))
    return out


#: In-process memo of the parsed reports, keyed by the tarball's identity.
_MEMO: dict[tuple[str, int, int], tuple[Report, ...]] = {}


def _cache_path(tarball: Path) -> Path:
    return cache_dir("phantom") / f"iu_reports-p{PARSER_VERSION}-{tarball.stat().st_size}.json"


def _read_cache(path: Path) -> tuple[Report, ...] | None:
    """The parsed reports, or None (after one warning, the file removed) when the cache is damaged."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        reports = tuple(Report(r["uid"], r["findings"], r["impression"], tuple(r["tags"])) for r in rows)
        if reports:
            return reports
        reason = "no reports in it"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"unreadable: {type(exc).__name__}"
    log.warning("phantom report cache %s is damaged (%s); rebuilding it", path, reason)
    path.unlink(missing_ok=True)
    return None


def load_reports() -> list[Report]:
    """All Open-i reports with a non-empty IMPRESSION, sorted by numeric uid.

    FINDINGS may be empty (about 500 reports): downstream code that trains on
    findings must cope.  Parsed once, then served from a JSON cache.
    """
    tarball = reports_tarball()
    stat = tarball.stat()
    key = (str(tarball), stat.st_size, stat.st_mtime_ns)
    cache = _cache_path(tarball)
    reports = _MEMO.get(key)
    if reports is None:
        reports = _read_cache(cache) if cache.is_file() else None
        if reports is None:
            reports = tuple(r for r in parse_tarball(tarball) if r.impression)
        _MEMO[key] = reports
    if not cache.is_file():  # also when $BENCHMARK_HOME changed within the process
        atomic_json(cache, [asdict(r) for r in reports])
    return list(reports)
