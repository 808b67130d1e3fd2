"""Reading a config file: bounded YAML, and ``include:``.

A config file is bounded in size and in what its aliases expand to, so a YAML
"billion laughs" fails in one line; every included file is read the same way.

``include:`` (as in lm-evaluation-harness's task files) names one file or a list
of files, relative to the including file, whose keys the file starts from:
later includes win over earlier ones, the file's own keys win over all, and a
key whose value is a mapping on both sides is merged key by key (a list or a
scalar is replaced whole). Includes nest; a cycle, a missing file or one that
does not hold a mapping is a :class:`UserError`. Near-duplicate configs (the two
5x200 zero-shot tasks, the RSNA tasks' real-data block) so state only their
differences, and the merged mapping is exactly what the long file said.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import UserError

#: what one config file may hold: its size, and the nodes its aliases expand to
MAX_CONFIG_BYTES = 1 << 20
MAX_NODES = 100_000
#: the key that names the files a config starts from
INCLUDE = "include"
#: files one config may read through its includes (a diamond of includes could otherwise
#: read the same files exponentially often)
MAX_INCLUDED_FILES = 100


def _expanded_nodes(root: yaml.Node, what: str) -> int:
    """Nodes of ``root`` with every alias expanded (counted once per node, so
    this is linear in the file), refusing more than MAX_NODES or a cycle."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = node.value if isinstance(node, yaml.SequenceNode) else (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        if done:
            open_.discard(key)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            if sizes[key] > MAX_NODES:
                raise UserError(f"{what} expands to more than {MAX_NODES:,} values through its aliases (&/*): "
                                "write the values out")
            continue
        if key in sizes:
            continue
        if key in open_:
            raise UserError(f"{what} has an alias (*) inside its own anchor (&): a config cannot contain itself")
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def safe_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` with the expansion bounded: a 500-byte "billion laughs"
    of nested aliases is refused in one line instead of hanging whatever walks it."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_nodes(node, what)
        return loader.construct_document(node)
    except RecursionError:
        raise UserError(f"{what} is nested too deeply") from None
    finally:
        loader.dispose()


def read_mapping(path: Path) -> dict[str, Any]:
    """One YAML file's mapping, includes not followed; a missing, unreadable, oversized or
    malformed file, or one that holds no mapping, is a UserError."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a config")
    try:
        data = safe_yaml(raw.decode("utf-8"), f"config file {path}")
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of key: value")
    return data




def merged(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """``own`` over ``base``: own keys win; a mapping on both sides is merged key by key,
    anything else is replaced whole. A key keeps the place it has in ``base``."""
    out = dict(base)
    for key, value in own.items():
        old = out.get(key)
        out[key] = merged(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return out


def _included(path: Path, data: dict[str, Any]) -> list[Path]:
    """The files ``path``'s ``include:`` names (one path or a list), relative to its folder."""
    names = data.pop(INCLUDE)
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise UserError(f"config file {path}: '{INCLUDE}:' must name a file or a list of files, got {names!r}")
    return [path.parent / Path(n).expanduser() for n in names]


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with its ``include:`` files (see the module's docstring) resolved.

    Every file is read by :func:`read_mapping` (size and alias bounds), so an
    include cannot bring in what a config itself could not hold."""
    reads = [0]

    def load(file: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
        reads[0] += 1
        if reads[0] > MAX_INCLUDED_FILES:
            raise UserError(f"config file {path} reads more than {MAX_INCLUDED_FILES} files through its includes")
        data = read_mapping(file)
        if INCLUDE not in data:
            return data
        base: dict[str, Any] = {}
        for inc in _included(file, data):
            key = inc.resolve()
            if key in chain:
                loop = " -> ".join(str(p) for p in (*chain[chain.index(key):], key))
                raise UserError(f"config file {file} includes itself: {loop}")
            if not inc.is_file():
                raise UserError(f"config file {file} includes {inc}, which is not a file")
            base = merged(base, load(inc, (*chain, key)))
        return merged(base, data)

    return load(Path(path), (Path(path).resolve(),))
