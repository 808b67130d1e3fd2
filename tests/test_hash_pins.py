"""Every shipped method and task config keeps the store-key hash it was pinned at (issue 26):
a refactor that changes a hash would orphan every stored result under it. The pins are
written by tools/pin_hashes.py; a deliberate change is listed in CHANGED with its reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINNED = json.loads((ROOT / "tests" / "data" / "pinned_hashes.json").read_text())
# "<profile>/<task>": why its hash changed (the store finds its old trials through an alias)
CHANGED: dict[str, str] = {}


def _current() -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import pin_hashes
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return pin_hashes.current()


def test_every_shipped_config_keeps_its_hash(monkeypatch):
    monkeypatch.chdir(ROOT)
    now = _current()
    assert set(now["methods"]) == set(PINNED["methods"]) and len(now["methods"]) >= 36
    assert set(now["tasks"]) == set(PINNED["tasks"]) and len(now["tasks"]) >= 56
    assert {k: v for k, v in now["methods"].items() if v != PINNED["methods"][k]} == {}
    moved = {k for k, v in now["tasks"].items() if v != PINNED["tasks"][k]}
    assert moved == set(CHANGED)
