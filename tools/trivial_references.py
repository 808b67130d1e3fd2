"""Write the real test splits' trivial references as a reference CSV, so that
``table --reference`` shows them beside the published rows.

    python tools/trivial_references.py --data-root DIR [--out results/reference/trivial_real_splits.csv]

DIR holds the official label files (the copies in the torchxrayvision wheel will do: RSNA's
``stage_2_train_labels.csv`` under ``rsna/``, SIIM's ``train-rle.csv`` under ``siim/``); no image
is read. tests/test_references.py recomputes the shipped file from those copies.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from benchmark import api

#: (task, metric): the published tables' columns that a trivial predictor explains
COLUMNS = (("rsna_seg", "dice"), ("siim_seg", "dice"), ("rsna_cls", "auroc"))
FRACTIONS = (0.01, 0.1, 1.0)
SOURCE = "computed here from the MGCA test split's label files: baselines TASK --data-root DIR"


def rows(data_root: str) -> list[dict]:
    out = []
    for task, metric in COLUMNS:
        refs = api.baselines(task, data_root=data_root)
        for name, values in sorted(refs["rows"].items()):
            if metric in values:
                out += [{"method": f"{name} (trivial)", "task": task, "protocol": "mgca", "metric": metric,
                         "fraction": f, "value": f"{100 * values[metric]:.1f}", "source": SOURCE} for f in FRACTIONS]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--out", default="results/reference/trivial_real_splits.csv")
    args = parser.parse_args()
    table = rows(args.data_root)
    with Path(args.out).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    print(f"wrote {len(table)} rows to {args.out}")


if __name__ == "__main__":
    main()
