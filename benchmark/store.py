"""SQLite results store: one row per trial, with its provenance.

The trial key (method, method-config hash, task, task-config hash, protocol,
fraction, seed, data source) is unique, so recording is idempotent and a
finished trial is found instead of re-run. WAL mode and one transaction per
write keep the file whole if a process dies mid-write.

A store is marked as this project's (``PRAGMA application_id``) with its schema
version (``PRAGMA user_version``), so that:

- readers (``results``, ``table``, ``plot``, a grid's dry run) open the file
  read-only and never write to it, not even the journal mode;
- a file that is another application's database is refused by name and left
  byte-identical, by readers and writers alike;
- a store from before the version was recorded (version 0) is migrated in place
  by a writer, in one transaction; one from a newer medvlp-bench is read, never
  written;
- a writer proves it can take a result (write lock, writable file) when it
  opens the store and again before a trial trains (:meth:`Store.ensure_writable`),
  so a result is never lost to a store discovered unwritable after training.

A failed result never replaces a finished one: a forced re-run that fails keeps
the finished row (:meth:`Store.record` says whether it wrote).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
from benchmark.paths import store_path

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4D564C42  # "MVLB" in the file header: a medvlp-bench results store
#: PRAGMA user_version; 0: a store made before the version was recorded; 2 added ``refs`` (trivial references),
#: 3 ``profile`` (the profile a trial was configured under; empty before)
SCHEMA_VERSION = 3
BUSY_TIMEOUT = 60.0  # seconds to wait for another process's write lock before saying so
HINT = "set BENCHMARK_STORE (or --store) to another file"

KEY = ("method", "method_hash", "task", "task_hash", "protocol", "fraction", "seed", "data_source")
#: the trials table, column -> declaration; KEY and status are what make a table ours
COLUMNS = {
    "method": "TEXT NOT NULL", "method_hash": "TEXT NOT NULL", "task": "TEXT NOT NULL", "task_hash": "TEXT NOT NULL",
    "protocol": "TEXT NOT NULL", "fraction": "REAL NOT NULL", "seed": "INTEGER NOT NULL", "data_source": "TEXT NOT NULL",
    "status": "TEXT NOT NULL", "metric": "TEXT", "value": "REAL", "metrics": "TEXT", "method_config": "TEXT",
    "task_config": "TEXT", "device": "TEXT", "seconds": "REAL", "pretrain_seconds": "REAL", "error": "TEXT",
    "version": "TEXT", "git_rev": "TEXT", "finished_at": "TEXT", "refs": "TEXT",
    "profile": "TEXT",
}
REQUIRED = (*KEY, "status")
TRIALS = ("CREATE TABLE IF NOT EXISTS trials (id INTEGER PRIMARY KEY, "
          + ", ".join(f"{k} {v}" for k, v in COLUMNS.items()) + f", UNIQUE ({', '.join(KEY)}))")
VARIANTS = """
CREATE TABLE IF NOT EXISTS variants (
    method TEXT NOT NULL, method_hash TEXT NOT NULL, variant TEXT NOT NULL,
    PRIMARY KEY (method, method_hash)
)
"""
VARIANT_COLUMNS = ("method", "method_hash", "variant")
JSON_FIELDS = ("metrics", "method_config", "task_config", "refs")


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
    #: what trivial predictors score on the trial's test split (``tasks.references``); {} before schema 2
    refs: dict = field(default_factory=dict)
    #: the profile the trial's configs were resolved under (not in its key: the configs are); None before schema 3
    profile: str | None = None
    #: not stored: the task hashes this trial's config had under older versions (found and moved
    #: to ``task_hash`` by :meth:`Store.find`); the factory fills it
    task_aliases: list = field(default_factory=list, repr=False, compare=False)

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY)

    @property
    def valid(self) -> bool:
        """Finished with a finite value: a result that counts (and is reused)."""
        return self.status == "finished" and self.value is not None and math.isfinite(self.value)


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float as None: JSON has no NaN (``null`` is what it has)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def to_json(obj: Any, **kwargs: Any) -> str:
    """Valid JSON always: NaN and infinities become null (never a bare ``NaN``)."""
    return json.dumps(json_safe(obj), allow_nan=False, default=str, **kwargs)


@dataclass
class Shape:
    """What a database file holds, read without writing to it."""

    tables: dict[str, dict[str, tuple[bool, bool]]]  # table -> column -> (NOT NULL, has a default)
    application_id: int
    version: int

    @property
    def empty(self) -> bool:
        return not self.tables

    def problem(self) -> str | None:
        """Why this is not a medvlp-bench store (None: it is one, or an empty database)."""
        if self.empty:
            return None
        if self.application_id not in (0, APPLICATION_ID):
            return f"another application's database (application id {self.application_id:#x})"
        ours = {"trials": REQUIRED, "variants": VARIANT_COLUMNS}
        if "trials" not in self.tables:
            return f"it has tables {', '.join(sorted(self.tables))} and no trials table"
        for table, needed in ours.items():
            lacking = [c for c in needed if table in self.tables and c not in self.tables[table]]
            if lacking:
                return f"its {table} table lacks the column(s) {', '.join(lacking)}"
        return None

    def write_problem(self) -> str | None:
        """Why a writer must not write here though a reader may read (a newer schema, columns it cannot fill)."""
        if self.version > SCHEMA_VERSION:
            return (f"was written by a newer medvlp-bench (store schema {self.version}, this one knows up to "
                    f"{SCHEMA_VERSION}): upgrade medvlp-bench to add results to it")
        trials = self.tables.get("trials", {})
        unfillable = [c for c, (notnull, default) in trials.items()
                      if c not in COLUMNS and c != "id" and notnull and not default]
        if unfillable:
            return f"has column(s) {', '.join(unfillable)} this medvlp-bench cannot fill (NOT NULL, no default)"
        return None

    def missing(self) -> list[str]:
        """Columns of today's trials table an older store lacks (added by a writer's migration)."""
        trials = self.tables.get("trials", {})
        return [c for c in COLUMNS if c not in trials]


def _shape(db: sqlite3.Connection) -> Shape:
    names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    tables = {}
    for name in names:
        quoted = name.replace('"', '""')
        tables[name] = {r[1]: (bool(r[3]), r[4] is not None) for r in db.execute(f'PRAGMA table_info("{quoted}")')}
    return Shape(tables, db.execute("PRAGMA application_id").fetchone()[0], db.execute("PRAGMA user_version").fetchone()[0])


class Store:
    """The results store at ``path`` (default ``$BENCHMARK_STORE``). ``readonly``: open it without
    writing anything (a missing file reads as an empty store); else make or migrate it and
    check that it can take a result."""

    def __init__(self, path: str | Path | None = None, readonly: bool = False) -> None:
        self.path = Path(path) if path else store_path()
        self.readonly = readonly
        self.exists = self.path.exists()
        if self.path.is_dir():  # sqlite's own message ("unable to open database file") does not say why
            raise UserError(f"results store {self.path} is a folder: give a file, e.g. {self.path / 'benchmark.sqlite'}")
        if self.exists and not self.path.is_file():
            raise UserError(f"results store {self.path} is not a regular file (a device, pipe or socket): give a file path")
        shape = Shape({}, 0, SCHEMA_VERSION)
        if self.exists:
            db = self._readonly_connection()
            shape = self._inspect(db)
            if readonly:
                self.db = db
            else:
                db.close()
        elif readonly:  # nothing stored yet, and nothing is created
            self.db = sqlite3.connect(":memory:")
        if not readonly:
            self._open_for_writing(shape)
            shape = Shape(_shape(self.db).tables, APPLICATION_ID, max(shape.version, SCHEMA_VERSION))
        self.columns = [c for c in COLUMNS if c in shape.tables.get("trials", {})]
        self.has_variants = "variants" in shape.tables

    # ------------------------------------------------------------ opening

    def _fail(self, exc: sqlite3.Error, doing: str) -> UserError:
        text = " ".join(str(exc).split())  # one line, and not a page of it
        text = text if len(text) <= 120 else text[:117] + "..."
        if "malformed" in text or "decode" in text:
            return UserError(f"results store {self.path} is damaged ({text}): restore it from a backup, or {HINT}")
        if "not a database" in text:
            return UserError(f"results store {self.path} is not an SQLite database ({text}): give a medvlp-bench "
                             f"results store, or {HINT}")
        if "locked" in text or "busy" in text:
            return UserError(f"results store {self.path} is locked by another process ({text}) after waiting "
                             f"{BUSY_TIMEOUT:g}s: try again when it has finished, or {HINT}")
        return UserError(f"cannot {doing} the results store {self.path}: {text} ({HINT})")

    def _readonly_connection(self) -> sqlite3.Connection:
        """A connection that cannot write (``mode=ro``): a reader never changes the file, not even its journal mode."""
        uri = self.path.resolve().as_uri()
        try:
            db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.OperationalError as exc:
                db.close()
                cannot_share = "unable to open" in str(exc) or "readonly" in str(exc)
                if not cannot_share or self.path.with_name(self.path.name + "-wal").exists():
                    raise
                # a WAL store in a folder this user cannot write (no -shm can be made): with no -wal
                # file the main file holds every committed row, so it is read as immutable
                db = sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True)
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from None

    def _inspect(self, db: sqlite3.Connection) -> Shape:
        """The file's shape; another application's file is refused (and was never written)."""
        try:
            shape = _shape(db)
        except sqlite3.Error as exc:
            db.close()
            raise self._fail(exc, "read") from None
        if (why := shape.problem()) is not None:
            db.close()
            raise UserError(f"{self.path} is not a medvlp-bench results store ({why}): it was left as it is; "
                            f"give a results store, or {HINT}")
        return shape

    def _open_for_writing(self, shape: Shape) -> None:
        if (why := shape.write_problem()) is not None:
            raise UserError(f"results store {self.path} {why}; or {HINT}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot open the results store {self.path}: {exc.strerror or exc} ({HINT})") from None
        try:
            self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            with self._write() as db:
                now = _shape(db)  # again under the write lock: another process may have made it meanwhile
                if not now.empty and (check := db.execute("PRAGMA quick_check(1)").fetchone()[0]) != "ok":
                    # found now, not when a trained result is written
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
                if (why := now.problem()) is not None:
                    raise UserError(f"{self.path} is not a medvlp-bench results store ({why}); {HINT}")
                if now.empty:
                    db.execute(TRIALS)
                else:
                    for name in now.missing():
                        db.execute(f"ALTER TABLE trials ADD COLUMN {name} {COLUMNS[name].replace(' NOT NULL', '')}")
                    if now.version < SCHEMA_VERSION and now.missing():
                        log.warning("results store %s: migrated from an older schema (added %s)", self.path,
                                    ", ".join(now.missing()))
                db.execute(VARIANTS)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {max(now.version, SCHEMA_VERSION)}")
            if self.db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self.db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise self._fail(exc, "write to") from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so a lock shows before any work."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def ensure_writable(self) -> None:
        """Prove the store can take a result now (write lock, writable file) by writing and rolling back."""
        if self.readonly:
            raise RuntimeError("a read-only Store cannot take results")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(f"PRAGMA user_version = {self.db.execute('PRAGMA user_version').fetchone()[0]}")
            finally:
                self.db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise self._fail(exc, "write to") from None

    # ------------------------------------------------------------ reading

    def _select(self, where: str = "", args: tuple = ()) -> list[Trial]:
        cols = ", ".join(c if c in self.columns else f"NULL AS {c}" for c in COLUMNS)
        try:
            cur = self.db.execute(f"SELECT {cols} FROM trials {where} ORDER BY id", args)
            rows = cur.fetchall()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):  # an empty database: nothing stored yet
                return []
            raise self._fail(exc, "read") from None
        return [self._trial(dict(zip(COLUMNS, row))) for row in rows]

    def _trial(self, data: dict) -> Trial:
        for name in JSON_FIELDS:
            try:
                data[name] = json.loads(data[name]) if data[name] else {}
            except ValueError:
                log.warning("results store %s: unreadable %s of a %s trial (shown empty)", self.path, name, data["method"])
                data[name] = {}
        return Trial(**data)

    def find(self, trial: Trial) -> Trial | None:
        """The stored row of this trial's key; else one stored under an older task hash of the same
        config (``trial.task_aliases``), which is moved to the current key (in a read-only store it
        is only returned under it)."""
        where = "WHERE " + " AND ".join(f"{k} = ?" for k in KEY)
        found = self._select(where, trial.key())
        if found or not trial.task_aliases:
            return found[0] if found else None
        at = KEY.index("task_hash")
        for alias in trial.task_aliases:
            key = (*trial.key()[:at], alias, *trial.key()[at + 1:])
            if old := self._select(where, key):
                if not self.readonly:
                    self._move(key, trial.task_hash, trial.task_config)
                old[0].task_hash, old[0].task_config = trial.task_hash, trial.task_config
                return old[0]
        return None

    def _move(self, key: tuple, task_hash: str, task_config: dict) -> None:
        """Re-key one row to the task hash its config has now (its task config as it reads now)."""
        try:
            with self._write() as db:
                db.execute("UPDATE trials SET task_hash = ?, task_config = ? WHERE "
                           + " AND ".join(f"{k} = ?" for k in KEY), (task_hash, to_json(task_config, sort_keys=True), *key))
        except sqlite3.Error as exc:
            raise self._fail(exc, "write to") from None

    def finished(self, trial: Trial) -> Trial | None:
        """The stored result of this trial if it counts; a finished row without a finite value
        (a NaN metric stored by an older version) does not, and the trial runs again."""
        found = self.find(trial)
        return found if found is not None and found.valid else None

    def all(self) -> list[Trial]:
        return self._select()

    def variants(self) -> dict[tuple[str, str], str]:
        """(method, method_hash) -> variant name, for the configs a grid named."""
        if not self.has_variants:
            return {}
        try:
            return {(m, h): v for m, h, v in self.db.execute("SELECT method, method_hash, variant FROM variants")}
        except sqlite3.Error as exc:
            raise self._fail(exc, "read") from None

    # ------------------------------------------------------------ writing

    def record(self, trial: Trial) -> bool:
        """Insert or replace the row for this trial's key, in one transaction; returns whether it wrote.
        A result that is not finished never replaces a finished one with a value (a failed forced re-run
        keeps the row)."""
        if self.readonly:
            raise RuntimeError("a read-only Store cannot take results")
        trial.finished_at = trial.finished_at or time.strftime("%Y-%m-%dT%H:%M:%S")
        data = asdict(trial)
        data.pop("task_aliases")
        for name in JSON_FIELDS:
            data[name] = to_json(data[name], sort_keys=True)
        if data["value"] is not None and not math.isfinite(data["value"]):
            data["value"] = None
        cols = ", ".join(data)
        marks = ", ".join("?" for _ in data)
        updates = ", ".join(f"{k} = excluded.{k}" for k in data if k not in KEY)
        try:
            with self._write() as db:
                cur = db.execute(
                    f"INSERT INTO trials ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates} "
                    "WHERE excluded.status = 'finished' OR trials.status != 'finished' OR trials.value IS NULL",
                    list(data.values()),
                )
                return cur.rowcount > 0
        except sqlite3.Error as exc:
            raise self._fail(exc, "write to") from None

    def label_variant(self, method: str, method_hash: str, variant: str) -> None:
        """Name a method config (an ablation variant of a grid); a table row shows the name.
        Kept in its own table so the trials table keeps its columns."""
        if self.readonly:
            raise RuntimeError("a read-only Store cannot take results")
        try:
            with self._write() as db:
                db.execute(
                    "INSERT INTO variants (method, method_hash, variant) VALUES (?, ?, ?) "
                    "ON CONFLICT (method, method_hash) DO UPDATE SET variant = excluded.variant",
                    (method, method_hash, variant),
                )
        except sqlite3.Error as exc:
            raise self._fail(exc, "write to") from None

    def close(self) -> None:
        self.db.close()
