"""SQLite results store: one row per trial, with its provenance.

The trial key (method, method-config hash, task, task-config hash, protocol,
fraction, seed, data source) is unique, so recording is idempotent and a
finished trial is found instead of re-run. WAL mode and one transaction per
write keep the file whole if a process dies mid-write.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmark.errors import UserError
from benchmark.paths import store_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL, method_hash TEXT NOT NULL,
    task TEXT NOT NULL, task_hash TEXT NOT NULL,
    protocol TEXT NOT NULL, fraction REAL NOT NULL, seed INTEGER NOT NULL,
    data_source TEXT NOT NULL,
    status TEXT NOT NULL,
    metric TEXT, value REAL, metrics TEXT,
    method_config TEXT, task_config TEXT,
    device TEXT, seconds REAL, pretrain_seconds REAL,
    error TEXT, version TEXT, git_rev TEXT, finished_at TEXT,
    UNIQUE (method, method_hash, task, task_hash, protocol, fraction, seed, data_source)
)
"""
VARIANTS = """
CREATE TABLE IF NOT EXISTS variants (
    method TEXT NOT NULL, method_hash TEXT NOT NULL, variant TEXT NOT NULL,
    PRIMARY KEY (method, method_hash)
)
"""
KEY = ("method", "method_hash", "task", "task_hash", "protocol", "fraction", "seed", "data_source")


@dataclass
class Trial:
    method: str
    method_hash: str
    task: str
    task_hash: str
    protocol: str
    fraction: float
    seed: int
    data_source: str
    status: str = "pending"
    metric: str | None = None
    value: float | None = None
    metrics: dict = field(default_factory=dict)
    method_config: dict = field(default_factory=dict)
    task_config: dict = field(default_factory=dict)
    device: str | None = None
    seconds: float | None = None
    pretrain_seconds: float | None = None
    error: str | None = None
    version: str | None = None
    git_rev: str | None = None
    finished_at: str | None = None

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY)


JSON_FIELDS = ("metrics", "method_config", "task_config")


class Store:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else store_path()
        if self.path.is_dir():  # sqlite's own message ("unable to open database file") does not say why
            raise UserError(f"results store {self.path} is a folder: give a file, e.g. {self.path / 'benchmark.sqlite'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(SCHEMA)
            self.db.execute(VARIANTS)
            self.db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open the results store {self.path}: {exc} (set BENCHMARK_STORE to a writable file)") from None

    def find(self, trial: Trial) -> Trial | None:
        where = " AND ".join(f"{k} = ?" for k in KEY)
        cur = self.db.execute(f"SELECT * FROM trials WHERE {where}", trial.key())
        row = cur.fetchone()
        if row is None:
            return None
        data = dict(zip([d[0] for d in cur.description], row))
        data.pop("id")
        for name in JSON_FIELDS:
            data[name] = json.loads(data[name]) if data[name] else {}
        return Trial(**data)

    def finished(self, trial: Trial) -> Trial | None:
        found = self.find(trial)
        return found if found is not None and found.status == "finished" else None

    def record(self, trial: Trial) -> None:
        """Insert or replace the row for this trial's key, in one transaction."""
        trial.finished_at = trial.finished_at or time.strftime("%Y-%m-%dT%H:%M:%S")
        data = asdict(trial)
        for name in JSON_FIELDS:
            data[name] = json.dumps(data[name], sort_keys=True, default=str)
        cols = ", ".join(data)
        marks = ", ".join("?" for _ in data)
        updates = ", ".join(f"{k} = excluded.{k}" for k in data if k not in KEY)
        with self.db:
            self.db.execute(
                f"INSERT INTO trials ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}",
                list(data.values()),
            )

    def all(self) -> list[Trial]:
        cur = self.db.execute(f"SELECT {', '.join(KEY)} FROM trials ORDER BY id")
        return [t for row in cur.fetchall() if (t := self.find(Trial(*row)))]

    def label_variant(self, method: str, method_hash: str, variant: str) -> None:
        """Name a method config (an ablation variant of a grid); a table row shows the name.
        Kept in its own table so the trials table keeps its columns."""
        with self.db:
            self.db.execute(
                "INSERT INTO variants (method, method_hash, variant) VALUES (?, ?, ?) "
                "ON CONFLICT (method, method_hash) DO UPDATE SET variant = excluded.variant",
                (method, method_hash, variant),
            )

    def variants(self) -> dict[tuple[str, str], str]:
        """(method, method_hash) -> variant name, for the configs a grid named."""
        return {(m, h): v for m, h, v in self.db.execute("SELECT method, method_hash, variant FROM variants")}

    def close(self) -> None:
        self.db.close()
