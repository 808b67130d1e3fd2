"""No data set's name appears in the code of any module but its own (its task YAMLs,
docs and tests may name it).

"In the code" means an identifier holding the name as a word (``phantom_rsna``,
``RSNA_POSITIVE_RATE``, ``mimic_report_dirs``) or a string constant equal to it
(``if dataset == "rsna"``, ``{"siim": ...}``, ``label_files(root, "mimic")``): the
ways code picks a data set by name. Prose may name data sets: docstrings, comments,
and the words inside messages, help text and file names (``"mimic-cxr-2.0.0-
chexpert.csv"``, ``"CheXpert publishes no report text"``) are not checked. Read with
``ast``; nothing but the registry is imported.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from benchmark.data import catalog

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "tasks")


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                out.add(id(first.value))
    return out


def _identifiers(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.lineno, node.name
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg
        elif isinstance(node, ast.alias):
            for part in (node.name, node.asname or ""):
                for word in part.split("."):
                    yield getattr(node, "lineno", 0), word
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.lineno, node.arg


def mentions(path: Path, name: str) -> list[str]:
    """``path:line: what`` for every place the code of ``path`` names data set ``name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstrings(tree)
    word = re.compile(rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])", re.IGNORECASE)
    found = [f"{path.relative_to(ROOT)}:{line}: identifier {ident}" for line, ident in _identifiers(tree)
             if word.search(ident)]
    found += [f"{path.relative_to(ROOT)}:{node.lineno}: string {node.value!r}" for node in ast.walk(tree)
              if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
              and node.value.lower() == name.lower()]
    return found


def owner(name: str) -> Path:
    module = sys.modules[type(catalog.dataset(name)).__module__]
    return Path(module.__file__).resolve()


SHIPPED = [n for n in catalog.names() if owner(n).is_relative_to(ROOT / "benchmark" / "data" / "sets")]


def test_every_shipped_data_set_is_checked():
    assert {"rsna", "siim", "chexpert", "chexpert5x200", "covidx", "object_cxr", "nih", "mimic", "mimic5x200"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_data_set_is_named_only_in_its_own_module(name):
    own = owner(name)
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py")) if p.resolve() != own]
    hits = [hit for p in files for hit in mentions(p, name)]
    assert hits == [], "\n".join(hits)


def test_the_check_finds_what_it_should(tmp_path):
    """The check itself: each way of naming a data set in code is found, prose is not."""
    src = tmp_path / "m.py"
    src.write_text('"""About rsna."""\n'
                   'def phantom_rsna(x):  # rsna\n'
                   '    """rsna."""\n'
                   '    return x == "rsna" or RSNA_RATE or "the RSNA download"\n')
    hits = [h.split(": ", 1)[1] for h in mentions_outside_root(src, "rsna")]
    assert hits == ["identifier phantom_rsna", "identifier RSNA_RATE", "string 'rsna'"]


def mentions_outside_root(path: Path, name: str) -> list[str]:
    global ROOT
    old, ROOT = ROOT, path.parent
    try:
        return mentions(path, name)
    finally:
        ROOT = old
