"""What a grid is: method entries (a method, or an ablation variant = a method plus
``--set`` overrides under a name) x tasks x fractions x seeds, from the command
line or from ``configs/experiments/<name>.yaml``.

A grid is data, so the paper's full grid and its ablations are files that can be
read, diffed and re-run, not scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.config import available, check_seed, find_config, load_yaml
from benchmark.errors import UserError
from benchmark.registry import unknown_name

KEYS = {"description", "methods", "tasks", "fractions", "seeds", "protocol", "profile", "set", "blocks", "cpus_per_encoder"}
BLOCK_KEYS = {"methods", "tasks", "fractions", "seeds"}


@dataclass(frozen=True)
class MethodEntry:
    """One row of the comparison: a method, or a named variant of it."""

    method: str
    variant: str = ""  # "" = the method as configured
    sets: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        return self.variant or self.method


@dataclass(frozen=True)
class Block:
    """A further part of a grid: other tasks, fractions or seeds, for all of its entries or
    some of them (by label). Lets one file say "1 % with five seeds, 100 % with two"."""

    tasks: tuple[str, ...]
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    labels: tuple[str, ...] = ()  # entry labels; () = every entry


@dataclass
class GridSpec:
    methods: list[MethodEntry]
    tasks: list[str]
    fractions: list[float]
    seeds: list[int]
    protocol: str | None = None
    profile: str | None = None
    sets: list[tuple[str, Any]] = field(default_factory=list)  # for every trial
    description: str = ""
    blocks: list[Block] = field(default_factory=list)
    cpus_per_encoder: float | None = None  # the pre-training phase's CPUs per encoder (None: as a trial)

    def parts(self) -> list[tuple[list[MethodEntry], list[str], list[float], list[int]]]:
        """(entries, tasks, fractions, seeds) of the main grid, then of each block."""
        out = [(self.methods, self.tasks, self.fractions, self.seeds)]
        for b in self.blocks:
            entries = [e for e in self.methods if not b.labels or e.label in b.labels]
            out.append((entries, list(b.tasks), list(b.fractions), list(b.seeds)))
        return out


def split_list(text: str, what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UserError(f"--{what} is empty: give a comma-separated list")
    return items


def parse_fractions(items: list[Any]) -> list[float]:
    out = []
    for item in items:
        try:
            if isinstance(item, bool):  # YAML's yes/no
                raise TypeError
            value = float(item)
        except (TypeError, ValueError):
            raise UserError(f"bad fraction {item!r}: expected numbers in (0, 1], e.g. 0.01,0.1,1") from None
        if not 0 < value <= 1:
            raise UserError(f"fraction must be in (0, 1], got {item!r}")
        out.append(value)
    return out


def parse_seeds(items: list[Any]) -> list[int]:
    """Integers in [0, 2**63 - 1] (the store's and torch's 64 bits), as ``--seed`` takes."""
    out = []
    for item in items:
        try:
            value = int(str(item))
        except ValueError:
            raise UserError(f"bad seed {item!r}: expected integers, e.g. 42,0,1") from None
        out.append(check_seed(value))
    return out


def check_names(methods: list[MethodEntry], tasks: list[str]) -> None:
    """Unknown methods or tasks fail before anything starts."""
    known = set(available("methods"))
    for entry in methods:
        if entry.method not in known:
            raise unknown_name("method", entry.method, sorted(known))
    known_tasks = set(available("tasks"))
    for task in tasks:
        if task not in known_tasks:
            raise unknown_name("task", task, sorted(known_tasks))


def from_cli(methods: str, tasks: str, fractions: str, seeds: str) -> GridSpec:
    entries = [MethodEntry(m) for m in split_list(methods, "methods")]
    spec = GridSpec(entries, split_list(tasks, "tasks"), parse_fractions(split_list(fractions, "fractions")),
                    parse_seeds(split_list(seeds, "seeds")))
    check_names(spec.methods, spec.tasks)
    return spec


def _entry(item: Any, where: str) -> MethodEntry:
    if isinstance(item, str):
        return MethodEntry(item)
    if not isinstance(item, dict) or "method" not in item:
        raise UserError(f"{where}: each methods entry is a name or {{method: NAME, variant: NAME, set: {{key: value}}}}")
    extra = set(item) - {"method", "variant", "set"}
    if extra:
        raise UserError(f"{where}: unknown key(s) {sorted(extra, key=str)} in the entry for {item['method']!r}")
    sets = item.get("set") or {}
    if not isinstance(sets, dict) or not all(isinstance(k, str) for k in sets):
        raise UserError(f"{where}: 'set' of {item['method']!r} must map keys to values")
    if not isinstance(item["method"], str) or not isinstance(item.get("variant", ""), (str, type(None))):
        raise UserError(f"{where}: method and variant are names, got {item['method']!r} / {item.get('variant')!r}")
    variant = str(item.get("variant") or "")
    if sets and not variant:
        raise UserError(f"{where}: the entry for {item['method']!r} overrides {sorted(sets)}: give it a variant name")
    return MethodEntry(str(item["method"]), variant, tuple(sets.items()))


def _block(item: Any, spec: GridSpec, where: str) -> Block:
    """One ``blocks`` entry; what it leaves out comes from the main grid."""
    if not isinstance(item, dict) or not item:
        raise UserError(f"{where}: each blocks entry maps some of {sorted(BLOCK_KEYS)} to lists")
    extra = set(item) - BLOCK_KEYS
    if extra:
        raise UserError(f"{where}: unknown key(s) {sorted(extra, key=str)} in a block; allowed: {sorted(BLOCK_KEYS)}")
    for key, value in item.items():
        if not isinstance(value, list) or not value:
            raise UserError(f"{where}: a block's '{key}' must be a non-empty list")
    labels = [str(x) for x in item.get("methods", [])]
    known = [e.label for e in spec.methods]
    for label in labels:
        if label not in known:
            raise unknown_name(f"method entry in a block of {where}:", label, known)
    tasks = item.get("tasks", spec.tasks)
    if not all(isinstance(t, str) for t in tasks):
        raise UserError(f"{where}: a block's 'tasks' must list task names, got {tasks!r}")
    fractions = parse_fractions(item["fractions"]) if "fractions" in item else spec.fractions
    seeds = parse_seeds(item["seeds"]) if "seeds" in item else spec.seeds
    return Block(tuple(tasks), tuple(fractions), tuple(seeds), tuple(labels))


def experiment_path(name: str) -> Path:
    """A file path, or the name of ``experiments/<name>.yaml`` in a config folder (a name is a
    name: ``../x`` never resolves outside that folder)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    named = find_config("experiments", name)
    if named is not None:
        return named
    choices = ", ".join(available("experiments")) or "none"
    raise UserError(f"experiment file {name} not found (named experiments: {choices})")


def load_experiment(name: str) -> GridSpec:
    path = experiment_path(name)
    data = load_yaml(path)
    extra = set(data) - KEYS
    if extra:
        raise UserError(f"experiment {path}: unknown key(s) {sorted(extra, key=str)}; allowed: {sorted(KEYS)}")
    for key in ("methods", "tasks", "fractions", "seeds"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise UserError(f"experiment {path}: '{key}' must be a non-empty list")
    entries = [_entry(item, f"experiment {path}") for item in data["methods"]]
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise UserError(f"experiment {path}: method/variant names repeat: {sorted({x for x in labels if labels.count(x) > 1})}")
    sets = data.get("set") or {}
    if not isinstance(sets, dict) or not all(isinstance(k, str) for k in sets):
        raise UserError(f"experiment {path}: 'set' must map keys to values")
    for key in ("protocol", "description"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise UserError(f"experiment {path}: '{key}' must be a text, got {data[key]!r}")
    profile = data.get("profile")
    if profile is not None and (not isinstance(profile, str) or profile not in available("profiles")):
        raise unknown_name(f"profile in experiment {path}:", str(profile), available("profiles"))
    cpus = data.get("cpus_per_encoder")
    if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0):
        raise UserError(f"experiment {path}: 'cpus_per_encoder' must be a number > 0, got {cpus!r}")
    if not all(isinstance(t, str) for t in data["tasks"]):
        raise UserError(f"experiment {path}: 'tasks' must list task names, got {data['tasks']!r}")
    spec = GridSpec(
        entries, list(data["tasks"]), parse_fractions(data["fractions"]), parse_seeds(data["seeds"]),
        data.get("protocol"), profile, list(sets.items()), data.get("description") or "",
        cpus_per_encoder=None if cpus is None else float(cpus),
    )
    blocks = data.get("blocks") or []
    if not isinstance(blocks, list):
        raise UserError(f"experiment {path}: 'blocks' must be a list")
    spec.blocks = [_block(item, spec, f"experiment {path}") for item in blocks]
    check_names(spec.methods, sorted({t for _, tasks, _, _ in spec.parts() for t in tasks}))
    return spec


def trial_sets(spec: GridSpec, entry: MethodEntry, cli_sets: list[tuple[str, Any]], protocol: str | None) -> list[tuple[str, Any]]:
    """One trial's overrides, later wins: the file's ``set`` < the variant's < ``--protocol`` < ``--set``."""
    proto = protocol or spec.protocol
    return [*spec.sets, *entry.sets, *([("task.protocol", proto)] if proto else []), *cli_sets]
