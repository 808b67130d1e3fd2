"""Write tests/data/pinned_hashes.json: the store-key hash of every shipped method config
and task config under every shipped profile (phantom data), so that a refactor can be
checked to keep every stored result findable (tests/test_hash_pins.py).

    .venv/bin/python tools/pin_hashes.py   # only after a deliberate change, said in the commit
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "pinned_hashes.json"
ROOT = Path(__file__).resolve().parents[1]
# the checkpoint method needs a file to resolve: the licence stands in (its bytes and the path as
# given are hashed; relative, read from the checkout's root, so any clone gives the same hash)
NEEDS = {"checkpoint": [("checkpoint_path", "LICENSE")]}


def current() -> dict[str, dict[str, str]]:
    """{"methods": {"<profile>/<method>": hash}, "tasks": {"<profile>/<task>": hash}}."""
    import os

    from benchmark.config import config_hash
    from benchmark.factory import plan_trial, resolve_task
    from benchmark.paths import config_dir

    os.chdir(ROOT)
    names = {kind: sorted(p.stem for p in (config_dir() / kind).glob("*.yaml")) for kind in ("methods", "tasks", "profiles")}
    out: dict[str, dict[str, str]] = {"methods": {}, "tasks": {}}
    for profile in names["profiles"]:
        for method in names["methods"]:
            trial, _, _ = plan_trial(method, "rsna_cls", 1.0, 42, profile, NEEDS.get(method, []))
            out["methods"][f"{profile}/{method}"] = trial.method_hash
        for task in names["tasks"]:
            out["tasks"][f"{profile}/{task}"] = config_hash(resolve_task(task, profile)[1])
    return out


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(current(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
