"""The README guides (issue 26): at most 300 lines, exactly the two set-up commands (the test one is
what CI runs), and every link into the repository points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_has_exactly_two_set_up_commands():
    assert len(README.splitlines()) <= 300
    setups = [line.strip() for line in README.splitlines() if line.strip().startswith("python3 -m venv")]
    assert len(setups) == 2 and sum("pip install" in line for line in README.splitlines()) == 2
    ci = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv"))
    assert ci in setups and "ruff check" in ci and "pytest" in ci


def test_every_link_in_the_readme_and_docs_points_at_a_file():
    missing = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert missing == []
