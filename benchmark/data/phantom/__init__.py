"""Phantom chest X-ray data: procedural radiographs paired with real Open-i report text.

Pre-training pairs (``datasets.phantom_corpus``) and the renderer with its
caching helpers, from which each data set module (``benchmark.data.sets``)
draws its stand-in, so the benchmark runs end-to-end before users have
credentialed data.  See ``datasets`` for the public entry points; the
renderer is ``benchmark.data.phantom.render.render`` (not re-exported here, so
the name ``render`` keeps meaning the submodule).
"""

from benchmark.data.phantom.anatomy import Lesion, lesions_from_report
from benchmark.data.phantom.datasets import PHANTOM_VERSION, phantom_corpus
from benchmark.data.phantom.render import Rendered
from benchmark.data.phantom.reports import Report, load_reports
from benchmark.data.types import LesionSet, PairCorpus

__all__ = [
    "PHANTOM_VERSION",
    "Lesion",
    "LesionSet",
    "PairCorpus",
    "Rendered",
    "Report",
    "lesions_from_report",
    "load_reports",
    "phantom_corpus",
]
