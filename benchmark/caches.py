"""``benchmark cache list`` / ``cache prune``: what ``$BENCHMARK_HOME`` holds, how large it is, and
which stored trials use each encoder; prune removes the encoders (and their cached features) that
no stored trial refers to.

An encoder's folder is named as its trials' method config (``<method>-<method_hash>``), so a trial
refers to ``encoders/<method>-<method_hash>`` and ``features/<method>-<method_hash>``. The stores
looked at: the results store (``$BENCHMARK_STORE`` or ``--store``, repeatable) and every search's
own store under ``$BENCHMARK_HOME/tune/*/trials.sqlite``. An unfinished encoder (no ``meta.json``:
a run killed mid-way, resumable from its checkpoint) is listed and kept unless ``--unfinished``.
Other caches (rendered phantom data, text embeddings, split manifests) are listed by size; they are
rebuilt on demand and shared by every encoder, so prune leaves them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.paths import META, home_path
from benchmark.store import Store


@dataclass
class Entry:
    """One encoder folder (with its features folder) and the stored trials that use it."""

    name: str
    bytes: int
    finished: bool
    trials: int = 0
    stores: list[str] = field(default_factory=list)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def stores(paths: list[str | Path]) -> list[Path]:
    """The stores that refer to encoders: the given ones (that exist) and every search's own."""
    found = [Path(p) for p in paths if Path(p).is_file()]
    tune = home_path() / "tune"
    if tune.is_dir():
        found += sorted(tune.glob("*/trials.sqlite"))
    return list(dict.fromkeys(found))


def references(store_paths: list[Path]) -> dict[str, list[str]]:
    """Encoder name -> the stores (by path) whose trials refer to it, one entry per trial."""
    out: dict[str, list[str]] = {}
    for path in store_paths:
        for t in Store(path, readonly=True).all():
            out.setdefault(f"{t.method}-{t.method_hash}", []).append(str(path))
    return out


def inventory(store_paths: list[str | Path]) -> tuple[list[Entry], dict[str, int], list[Path]]:
    """(encoders, other caches' sizes by folder, the stores read)."""
    home = home_path()
    read = stores(store_paths)
    refs = references(read)
    encoders = []
    for folder in sorted((home / "encoders").glob("*")) if (home / "encoders").is_dir() else []:
        if not folder.is_dir():
            continue
        users = refs.get(folder.name, [])
        encoders.append(Entry(folder.name, size_of(folder) + size_of(home / "features" / folder.name),
                              (folder / META).is_file(), len(users), sorted(set(users))))
    others = {p.name: size_of(p) for p in sorted(home.glob("*")) if p.is_dir() and p.name not in ("encoders", "features")}
    orphans = [p for p in sorted((home / "features").glob("*")) if not (home / "encoders" / p.name).is_dir()] \
        if (home / "features").is_dir() else []
    others["features (no encoder)"] = sum(size_of(p) for p in orphans)
    return encoders, others, read


def prune(store_paths: list[str | Path], dry_run: bool = True, unfinished: bool = False) -> tuple[list[str], int]:
    """Remove (or, ``dry_run``, only name) every encoder no stored trial refers to, with its features,
    and feature folders whose encoder is gone; ``unfinished``: resumable unfinished encoders too.
    Returns (what went, bytes freed)."""
    home = home_path()
    encoders, _, _ = inventory(store_paths)
    gone, freed = [], 0
    for e in encoders:
        if e.trials or (not e.finished and not unfinished):
            continue
        gone.append(f"encoders/{e.name}")
        freed += e.bytes
        if not dry_run:
            shutil.rmtree(home / "encoders" / e.name, ignore_errors=True)
            shutil.rmtree(home / "features" / e.name, ignore_errors=True)
    for p in sorted((home / "features").glob("*")) if (home / "features").is_dir() else []:
        if not (home / "encoders" / p.name).is_dir() and f"encoders/{p.name}" not in gone:
            gone.append(f"features/{p.name}")
            freed += size_of(p)
            if not dry_run:
                shutil.rmtree(p, ignore_errors=True)
    return gone, freed


def mib(n: int) -> str:
    return f"{n / 2**20:9.1f} MiB"


def list_lines(encoders: list[Entry], others: dict[str, int], read: list[Path]) -> list[str]:
    lines = [f"{home_path()}: encoders (with their cached features) and the stored trials that use them",
             f"  stores read: {', '.join(map(str, read)) or 'none'}"]
    for e in encoders:
        state = "" if e.finished else "  (unfinished: resumable)"
        lines.append(f"  {e.name:28s} {mib(e.bytes)}  {e.trials:4d} trial(s){state}")
    if not encoders:
        lines.append("  (no encoders cached)")
    lines.append(f"  encoders in all {mib(sum(e.bytes for e in encoders))}; "
                 f"{sum(1 for e in encoders if not e.trials)} used by no stored trial (cache prune --dry-run)")
    lines += [f"  {name + '/':28s} {mib(size)}" for name, size in others.items() if size]
    return lines
