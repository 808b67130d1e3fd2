"""What the real-data split recipes share: the split table a recipe returns, the
recipe version every real-data key carries, and the 5x200 rule (the zero-shot
sets carved out of two downloads). Below the data set modules (the recipes) and
``manifests`` (the published lists), so that each imports it and none of them
needs another's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.data.real import labels as L
from benchmark.data.types import COMPETITION_FINDINGS, LABELER_OBSERVATIONS
from benchmark.errors import UserError

#: Bump when a recipe changes: part of every real-data cache key and store key.
RECIPE_VERSION = "mgca-1"
FIVE_PER_CLASS = 200


@dataclass
class SplitTable:
    """A data set's table (one row per id) and each split's row positions, in recipe order."""

    dataset: str
    variant: str
    folder: Path
    table: pd.DataFrame  # column "id" plus what the loader needs
    rows: dict[str, np.ndarray]
    strata: str | None  # column that stratifies fraction subsets (None: multi-label)
    source: str
    files: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        dup = self.table["id"].duplicated()
        if dup.any():
            first = self.table["id"][dup].iloc[0]
            raise UserError(f"{self.source}: image {first!r} is listed {int((self.table['id'] == first).sum())} times "
                            "in the label files; expected one row per image")

    def ids(self, split: str) -> list[str]:
        return self.table["id"].iloc[self.rows[split]].astype(str).tolist()

    def labels(self, split: str) -> np.ndarray | None:
        return None if self.strata is None else self.table[self.strata].iloc[self.rows[split]].to_numpy(np.int64)

    def part(self, split: str) -> pd.DataFrame:
        return self.table.iloc[self.rows[split]].reset_index(drop=True)


class TooFewRows(UserError):
    """A label table too short for a recipe's split sizes (``split_table`` names the files)."""


def five_by_200(df: pd.DataFrame, what: str) -> pd.DataFrame:
    """The 5x200 rule on a table of labeler observations: rows positive (1) for exactly one
    competition finding and 0 (NaN counts as 0) for the other 12 non-"No Finding"
    observations, ``sample(n=200, random_state=0)`` per class, classes in competition order;
    adds column ``y``."""
    df = df.copy()
    df[list(LABELER_OBSERVATIONS)] = df[list(LABELER_OBSERVATIONS)].fillna(0)
    others = [c for c in LABELER_OBSERVATIONS if c != "No Finding"]
    parts = []
    for k, name in enumerate(COMPETITION_FINDINGS):
        keep = df[name] == 1
        for other in others:
            if other != name:
                keep &= df[other] == 0
        pool = df[keep]
        n = FIVE_PER_CLASS
        if len(pool) < n:
            if not L.subset_allowed():
                raise UserError(f"{what}: only {len(pool)} images qualify for the 5x200 class {name} (200 needed); "
                                "not the official file?")
            n = len(pool)
        parts.append(pool.sample(n=n, random_state=0).assign(y=k))
    return pd.concat(parts)
