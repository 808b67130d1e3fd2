"""Typed configs: dataclasses filled from YAML, profiles and ``--set key=value``.

Every value is checked against its field's type and range, so an unknown key,
a wrong type or an out-of-range number (a NaN learning rate, a negative
gradient clip, a seed beyond 64 bits) is a one-line :class:`UserError` naming
the key, never a silent default, a loss that climbs, or a traceback deep inside
a training loop. Ranges are declared once, on the field's type
(``lr: Positive``), and read by :func:`build`.

Config names are names, never paths; files are read by :mod:`benchmark.yamlfile`
(bounded in size and alias expansion, with ``include:``).

Layers, later wins: class defaults < ``configs/<kind>/<name>.yaml`` (the paper's
values) < ``configs/profiles/<profile>.yaml`` < ``--set``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml

from benchmark.errors import UserError
from benchmark.paths import config_dir
from benchmark.registry import unknown_name
from benchmark.yamlfile import load_yaml, safe_yaml

#: the largest seed: SQLite's INTEGER and torch's generators hold 64-bit signed integers
SEED_MAX = 2**63 - 1
_INT64 = (-(2**63), 2**63 - 1)


def _num(x: float) -> str:
    if isinstance(x, int) and x > 2**31 and (x + 1) & x == 0:  # 2**k - 1
        return f"2**{x.bit_length()} - 1"
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclasses.dataclass(frozen=True)
class Range:
    """A numeric config field's allowed values, declared on its type
    (``lr: Annotated[float, Range(0, lo_open=True)]``, or an alias below) and
    checked by :func:`coerce` when a config is resolved. Floats must be finite
    too; ints must fit in 64 bits (SQLite and torch hold no more)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""  # said after the range, e.g. "for in-batch negatives"

    def _declared(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            return False
        return self._declared(value)

    def describe(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            text = f"in {'(' if self.lo_open else '['}{_num(lo)}, {_num(hi)}{')' if self.hi_open else ']'}"
        elif lo is not None:
            text = f"{'>' if self.lo_open else '>='} {_num(lo)}"
        elif hi is not None:
            text = f"{'<' if self.hi_open else '<='} {_num(hi)}"
        else:
            text = ""
        return f"{text} ({self.why})" if self.why else text

    def check(self, value: Any, key: str) -> Any:
        """``value`` if it is in range, else a UserError naming ``key``, the range and the value."""
        if self.holds(value):
            return value
        what = self.describe()
        if isinstance(value, float) and not math.isfinite(value):
            what = f"a finite number {what}".rstrip()
        elif self._declared(value):  # in the declared range, beyond 64 bits
            what = f"{what} and fit in 64 bits" if what else "an integer that fits in 64 bits"
        raise UserError(f"{key} must be {what}, got {value!r}")


#: the common ranges, as field types: ``epochs: Size = 20``
Size = Annotated[int, Range(1)]  # counts, sizes, epochs
Width = Annotated[int, Range(1, 65536)]  # embedding, hidden and channel widths, token counts
Layers = Annotated[int, Range(1, 64)]  # network depths, attention heads
Count = Annotated[int, Range(0)]  # 0 means none, off or all (the field says which)
Positive = Annotated[float, Range(0, lo_open=True)]  # learning rates, temperatures
NonNegative = Annotated[float, Range(0)]  # weight decays, loss weights, clips (0: off)
Share = Annotated[float, Range(0, 1)]  # ratios, probabilities, IoU thresholds
SEED_RANGE = Range(0, SEED_MAX)
Seed = Annotated[int, SEED_RANGE]

#: a config name: letters, digits, ``_ . -``, never a path (no separators, no leading dot)
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")

def is_name(name: object) -> bool:
    return isinstance(name, str) and NAME.fullmatch(name) is not None


def check_seed(value: Any, what: str = "seed") -> int:
    """A seed from the command line or an experiment file: an int in [0, 2**63 - 1]."""
    return SEED_RANGE.check(value, what)


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Annotated:
        return type_name(get_args(tp)[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (tuple, list):
        return f"list of {type_name(get_args(tp)[0])}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` or raise a UserError naming ``key``."""

    def bad() -> UserError:
        return UserError(f"bad value for {key!r}: expected {type_name(tp)}, got {value!r}")

    origin = get_origin(tp)
    if origin is Annotated:  # a bounded number: its Range is checked after the type
        base, *extra = get_args(tp)
        ranges = [b for b in extra if isinstance(b, Range)] or [Range()]
        value = _number(value, base, key) if base in (int, float) else coerce(value, base, key)
        for bound in ranges:
            value = bound.check(value, key)
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return coerce(value, arg, key)
            except UserError:
                continue
        raise bad()
    if tp is type(None):
        if value is None:
            return None
        raise bad()
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise bad()
    if origin in (tuple, list):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad()
        inner = get_args(tp)[0]
        return tuple(coerce(v, inner, key) for v in value)
    if origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp in (int, float):  # every int fits in 64 bits, every float is finite, bounded or not
        return Range().check(_number(value, tp, key), key)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise TypeError(f"unsupported config field type {tp!r} for {key!r}")


def _number(value: Any, tp: type, key: str) -> int | float:
    """``value`` as an int or float, before any range check."""
    if not isinstance(value, bool):
        if tp is int and isinstance(value, int):
            return value
        if tp is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if tp is float and isinstance(value, (int, float)):
            try:
                return float(value)
            except OverflowError:  # an int beyond any float: out of every range
                return math.inf if value > 0 else -math.inf
        if tp is float and isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
    raise UserError(f"bad value for {key!r}: expected {type_name(tp)}, got {value!r}")


def field_types(cls: type) -> dict[str, Any]:
    """Each field's type, with its ``Annotated`` range kept."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build(cls: type, values: dict[str, Any], where: str):
    """Instantiate dataclass ``cls`` from ``values``, validating every key and type."""
    types_ = field_types(cls)
    for key in values:
        if key not in types_:
            raise unknown_name(f"key in {where}:", key, types_)
    kwargs = {k: coerce(v, types_[k], k) for k, v in values.items()}
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field without a value
        raise UserError(f"{where}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def parse_sets(items: Iterable[str]) -> list[tuple[str, Any]]:
    """``["lr=1e-4", "hierarchical=false"]`` -> ``[("lr", 1e-4), ("hierarchical", False)]``."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects key=value, got {item!r}")
        try:
            value = safe_yaml(raw, f"--set {key}") if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        out.append((key, value))
    return out


def route_sets(
    sets: list[tuple[str, Any]], scopes: dict[str, type]
) -> dict[str, dict[str, Any]]:
    """Send each ``--set`` to the config that owns the key.

    ``scope.key`` names the config explicitly; a bare key must belong to exactly
    one of the configs (``batch_size`` is in both method and task: say which).
    """
    routed: dict[str, dict[str, Any]] = {name: {} for name in scopes}
    fields = {name: field_types(cls) for name, cls in scopes.items()}
    for key, value in sets:
        scope, dot, bare = key.partition(".")
        if dot and scope in scopes:
            if bare not in fields[scope]:
                raise unknown_name(f"{scope} key", bare, fields[scope])
            owner, field = scope, bare
        else:
            owners = [name for name in scopes if key in fields[name]]
            if not owners:
                every = {k for f in fields.values() for k in f}
                raise unknown_name("--set key", key, every)
            if len(owners) > 1:
                options = " or ".join(f"{o}.{key}" for o in owners)
                raise UserError(f"--set key {key!r} is ambiguous: write {options}")
            owner, field = owners[0], key
        if field in getattr(scopes[owner], "IDENTITY_FIELDS", ()):
            raise UserError(f"--set {owner}.{field} is refused: {field} defines the {owner} (its YAML under "
                            f"configs/{owner}s), or the stored config would lie; choose another --{owner} or add a YAML there")
        routed[owner][field] = value
    return routed


#: user config folders, os.pathsep-separated, searched before the shipped configs
CONFIG_PATH_ENV = "BENCHMARK_CONFIG_PATH"
#: the kinds of named config a folder may hold, one sub-folder each
KINDS = ("methods", "tasks", "profiles", "sweeps", "experiments")


def user_config_dirs() -> list[Path]:
    """The folders in ``$BENCHMARK_CONFIG_PATH`` (``--config-path`` puts its folders
    there, first), each laid out like the shipped configs: ``DIR/tasks/<name>.yaml``,
    ``DIR/experiments/<name>.yaml``, ... A folder that does not exist is a UserError:
    a typo would otherwise quietly run the shipped config of the same name."""
    dirs = []
    for entry in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep):
        if not entry.strip():
            continue
        folder = Path(entry).expanduser()
        if not folder.is_dir():
            raise UserError(f"config folder {entry} ({CONFIG_PATH_ENV} or --config-path) is not a folder: "
                            "give folders holding tasks/, methods/, experiments/, ... sub-folders")
        dirs.append(folder)
    return dirs


@contextmanager
def config_path(dirs: Iterable[str]) -> Iterator[None]:
    """``--config-path``: ``dirs`` (each may hold several, os.pathsep-separated) go before
    ``$BENCHMARK_CONFIG_PATH`` while the block runs, and are checked at once. They travel
    through the environment, as absolute paths, so the processes a command starts (Ray's
    local workers, DDP workers) search them too; the old value comes back after."""
    given = [e for d in dirs for e in d.split(os.pathsep) if e.strip()]
    old = os.environ.get(CONFIG_PATH_ENV)
    if given:
        absolute = [str(Path(e).expanduser().absolute()) if Path(e).expanduser().is_dir() else e for e in given]
        os.environ[CONFIG_PATH_ENV] = os.pathsep.join([*absolute, *([old] if old else [])])
    try:
        user_config_dirs()  # a missing folder is said before any work starts
        yield
    finally:
        if old is None:
            os.environ.pop(CONFIG_PATH_ENV, None)
        else:
            os.environ[CONFIG_PATH_ENV] = old


def config_dirs() -> list[Path]:
    """Where named configs are looked up, first match wins: the user's folders, then the shipped ones."""
    return [*user_config_dirs(), config_dir()]


def find_config(kind: str, name: str) -> Path | None:
    """``<dir>/<kind>/<name>.yaml`` in the first folder of :func:`config_dirs` that has it; None
    for an unknown name. A name is a name: a path (``../x``, ``/abs/file``) never reaches outside."""
    if not is_name(name):
        return None
    return next((p for d in config_dirs() if (p := d / kind / f"{name}.yaml").is_file()), None)


def named_yaml(kind: str, name: str) -> dict[str, Any]:
    """The named config of ``kind`` (a user's before the shipped one); an unknown name lists what exists."""
    path = find_config(kind, name)
    if path is None:
        raise unknown_name(kind.rstrip("s"), str(name), available(kind))
    return load_yaml(path)


def available(kind: str) -> list[str]:
    """The names of ``kind``: the user's folders' and the shipped ones (files that configs
    include live in ``includes/``, so they are never listed as tasks or sweeps)."""
    return sorted({p.stem for d in config_dirs() for p in (d / kind).glob("*.yaml") if is_name(p.stem)})


def profile_overrides(profile: str, method: str, kind: str | None = None) -> dict[str, dict[str, Any]]:
    """A profile's overrides: ``method:`` (every method), ``methods: {name: ...}``
    (one method's own keys), ``task:`` (every task) and ``kinds: {kind: ...}`` (the
    tasks of one kind, e.g. the classification probe's own keys)."""
    data = named_yaml("profiles", profile)
    extra = set(data) - {"method", "methods", "task", "kinds", "description"}
    if extra:
        raise UserError(f"profile {profile!r}: unknown section(s) {sorted(extra, key=str)}; use method:, methods:, task: "
                        "and kinds:")
    for section in ("method", "methods", "task", "kinds"):
        if not isinstance(data.get(section) or {}, dict):
            raise UserError(f"profile {profile!r}: '{section}:' must map keys to values")
    own = (data.get("methods") or {}).get(method) or {}
    if not isinstance(own, dict):
        raise UserError(f"profile {profile!r}: 'methods: {method}:' must map keys to values")
    of_kind = (data.get("kinds") or {}).get(kind) or {} if kind else {}
    if not isinstance(of_kind, dict):
        raise UserError(f"profile {profile!r}: 'kinds: {kind}:' must map keys to values")
    return {"method": {**(data.get("method") or {}), **own}, "task": {**(data.get("task") or {}), **of_kind}}


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def hashed_fields(cfg: Any) -> dict[str, Any]:
    """The fields a config's hash covers: all but ``UNHASHED_FIELDS``, and a field of
    ``HASHED_IF_SET`` (added after results were stored) only where it differs from its
    default, so that configs which do not set it keep the hash they were stored under."""
    skip = set(getattr(cfg, "UNHASHED_FIELDS", ()))
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    optional = set(getattr(cfg, "HASHED_IF_SET", ()))
    return {k: v for k, v in to_dict(cfg).items()
            if k not in skip and not (k in optional and v == defaults.get(k))}


def config_hash(*parts: Any) -> str:
    """Short, stable hash of configs (dataclasses or plain data). A dataclass's
    ``UNHASHED_FIELDS`` (how a run executes or what it is called, not what it
    computes: loader workers, checkpoint interval, descriptions) are left out,
    so changing them reuses results."""
    plain = [hashed_fields(p) if dataclasses.is_dataclass(p) else p for p in parts]
    blob = json.dumps(plain, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
