"""What one data set module provides: :class:`DataSet`, subclassed once per data set.

Why: adding a data set used to touch the layout table, the label readers, the
split recipes, the loaders, ``data check``, the fingerprints and the phantom
table. Now a module under ``benchmark/data/sets/`` (or a user's
``<config folder>/datasets/*.py``) subclasses :class:`DataSet`, fills in what is
specific to its data, and registers an instance in
``benchmark.registry.DATASETS``; everything else finds it by name through
``benchmark.data.catalog``. The generic pieces it calls (decoding, resize-pad and
the image cache, CSV reading and row checks, the split table, the loaders'
builders, the phantom renderer) stay where they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.data.real.fingerprint import files_fingerprint
from benchmark.data.real.layout import Layout, label_files
from benchmark.data.real.splittable import SplitTable, TooFewRows
from benchmark.data.types import TestLabels
from benchmark.errors import UserError


@dataclass
class Report:
    """What ``data check NAME`` found: lines to print, split counts, missing images, can it run."""

    dataset: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


class DataSet:
    """One data set: its official layout, label reading, split recipes, image paths and
    phantom stand-in. Override what applies; the defaults say clearly what is missing."""

    #: the name task configs give as ``dataset:`` and ``data check`` / ``data split`` take
    name: str = ""
    #: the official download's accepted folders and label files (None: phantom only)
    layout: Layout | None = None
    #: the split-recipe variants ``data split`` writes (prefixes of the list files)
    variants: tuple[str, ...] = ("",)
    #: whether ``data split`` also writes the 1 % and 10 % train subsets
    fractions: bool = True
    #: recipe variants whose classification subsets MGCA draws deterministically
    #: (``sample(frac, random_state=42)``): ``data split`` writes those lists too
    mgca_sample_variants: tuple[str, ...] = ()
    #: a test-only set carved out of a download (its id list is written by ``data prepare``)
    held_out: bool = False
    #: image-report pairs for pre-training (``pairs``, ``prepare``)
    corpus: bool = False

    def variant(self, kind: str) -> str:
        """The recipe variant a task of ``kind`` uses."""
        return self.variants[0]

    def label_files(self, root: Path) -> tuple[Path, dict[str, Path]]:
        """(data set folder, {label file: path}); a UserError for what is missing."""
        if self.layout is None:
            raise UserError(f"data set {self.name!r} has no real-data layout: it runs on the phantom data only")
        return label_files(root, self.layout)

    def recipe(self, root: Path, variant: str) -> SplitTable:
        """The split table of ``variant`` from the label files under ``root``."""
        raise UserError(f"no real split recipe for data set {self.name!r}")

    def split_table(self, root: Path, kind: str = "", variant: str | None = None) -> SplitTable:
        """The recipe for a task of ``kind`` (or a named ``variant``); too few rows names the label files."""
        try:
            return self.recipe(root, self.variant(kind) if variant is None else variant)
        except TooFewRows as exc:
            _, files = self.label_files(root)
            raise UserError(f"label file(s) {', '.join(map(str, files.values()))} hold {exc}") from None

    def image_paths(self, st: SplitTable, ids: list[str]) -> list[Path]:
        """Where each id's image file is in the official layout (default: the id is the path)."""
        return [st.folder / i for i in ids]

    def load(self, st: SplitTable, split: str, cfg) -> object:
        """One split as a ``benchmark.data.types`` container for the task config ``cfg``."""
        raise UserError(f"task kind {cfg.kind!r} is not defined on the real {self.name} data")

    def test_labels(self, st: SplitTable, split: str) -> TestLabels:
        """A split's labels from the label files alone (no image read): the split table's label
        column; lesion sets add each image's lesion share (``lesion_share``)."""
        return TestLabels(st.ids(split), st.labels(split))

    def phantom(self, split: str, n: int, size: int) -> object:
        """The phantom stand-in: ``n`` images of ``split`` at ``size`` px."""
        raise UserError(f"no phantom stand-in for data set {self.name!r}: it runs on real data only; "
                        "pass --data-root DIR (or set BENCHMARK_DATA) with its download")

    def fingerprint(self, root: Path) -> str:
        """The content fingerprint of the label files (store keys, mask caches)."""
        return files_fingerprint(self.label_files(root)[1].values())

    def pairs(self, cfg, root: Path):
        """The image-report pairs (``benchmark.data.types.PairCorpus``) a method config pre-trains on."""
        raise UserError(f"data set {self.name!r} holds no image-report pairs to pre-train on")

    def phantom_pairs(self, n: int, size: int):
        """The phantom stand-in of :meth:`pairs`: ``n`` pairs at ``size`` px."""
        raise UserError(f"no phantom image-report pairs for data set {self.name!r}")

    def prepare(self, root: Path, size: int, split: str = "train", limit: int = 0) -> dict:
        """``data prepare``: the corpus's tables and image cache made before a long run."""
        raise UserError(f"data set {self.name!r} has nothing to prepare")

    def check_lines(self, st: SplitTable) -> list[str]:
        """Extra ``data check`` lines about this data set's downloads."""
        return []

    def check(self, root: Path) -> Report | None:
        """A whole ``data check`` of its own (None: the generic one over the split recipes)."""
        return None
