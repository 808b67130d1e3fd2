"""The "mgca" split protocol's shared steps: MGCA's ``train_test_split`` calls on row positions.

Why: published numbers depend on exactly which rows land in train, val and
test. Each data set's recipe (its module under ``benchmark.data.sets``, whose
docstring lists the calls and every fix of a defect) makes the same sklearn
``train_test_split`` calls with the same seeds on the same rows in the same
order as MGCA's ``preprocess`` scripts. The split is a function of the row count
and the seed only, so splitting row positions equals splitting MGCA's
DataFrames. Defects are fixed only where they corrupt data.

Fraction subsets are not part of a recipe: ``benchmark.data.splits.draw_subset``
draws them from a split's train ids, the same call the runner makes.
"""

from __future__ import annotations

import numpy as np

from benchmark.data.real.splittable import TooFewRows


def tts(n_or_rows, test_size=None, random_state: int = 0, train_size=None) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's ``train_test_split`` on row positions (the sizes passed exactly as MGCA
    passes them: ``train_size=0.8`` and ``test_size=0.2`` can round differently)."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(n_or_rows) if np.isscalar(n_or_rows) else np.asarray(n_or_rows)
    try:
        a, b = train_test_split(rows, test_size=test_size, train_size=train_size, random_state=random_state)
    except ValueError as exc:  # too few rows for the recipe's split sizes
        raise TooFewRows(f"too few rows for the split recipe (a step had {len(rows)} to split: {exc})"
                         .splitlines()[0]) from None
    return np.asarray(a), np.asarray(b)


def three_way(n: int, test_size) -> dict[str, np.ndarray]:
    """MGCA's two calls: ``test_size`` off the train split, then halved; the second call's
    first part is test, its second val."""
    train, rest = tts(n, test_size)
    test, val = tts(rest, 0.5)
    return {"train": train, "val": val, "test": test}
