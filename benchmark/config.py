"""Typed configs: dataclasses filled from YAML, profiles and ``--set key=value``.

Every value is checked against its field's type, so an unknown key or a wrong
type is a one-line :class:`UserError` naming the key and the expected type,
never a silent default or a traceback deep inside a training loop.

Layers, later wins: class defaults < ``configs/<kind>/<name>.yaml`` (the paper's
values) < ``configs/profiles/<profile>.yaml`` < ``--set``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from benchmark.errors import UserError
from benchmark.paths import config_dir
from benchmark.registry import unknown_name


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing, unreadable or malformed file is a UserError."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of key: value")
    return data


def type_name(tp: Any) -> str:
    origin = get_origin(tp)
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
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "2e-4" as a string
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad()
    raise TypeError(f"unsupported config field type {tp!r} for {key!r}")


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
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
            value = yaml.safe_load(raw) if raw.strip() else ""
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
            routed[scope][bare] = value
            continue
        owners = [name for name in scopes if key in fields[name]]
        if not owners:
            every = {k for f in fields.values() for k in f}
            raise unknown_name("--set key", key, every)
        if len(owners) > 1:
            options = " or ".join(f"{o}.{key}" for o in owners)
            raise UserError(f"--set key {key!r} is ambiguous: write {options}")
        routed[owners[0]][key] = value
    return routed


def named_yaml(kind: str, name: str) -> dict[str, Any]:
    """``configs/<kind>/<name>.yaml``; an unknown name lists what exists."""
    folder = config_dir() / kind
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise unknown_name(kind.rstrip("s"), name, available(kind))
    return load_yaml(path)


def available(kind: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / kind).glob("*.yaml"))


def profile_overrides(profile: str, method: str) -> dict[str, dict[str, Any]]:
    """A profile's overrides: ``method:`` (every method), ``methods: {name: ...}``
    (one method's own keys) and ``task:`` (every task)."""
    data = named_yaml("profiles", profile)
    extra = set(data) - {"method", "methods", "task", "description"}
    if extra:
        raise UserError(f"profile {profile!r}: unknown section(s) {sorted(extra)}; use method:, methods: and task:")
    own = (data.get("methods") or {}).get(method) or {}
    return {"method": {**(data.get("method") or {}), **own}, "task": data.get("task") or {}}


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _hashed(cfg: Any) -> dict[str, Any]:
    skip = set(getattr(cfg, "UNHASHED_FIELDS", ()))
    return {k: v for k, v in to_dict(cfg).items() if k not in skip}


def config_hash(*parts: Any) -> str:
    """Short, stable hash of configs (dataclasses or plain data). A dataclass's
    ``UNHASHED_FIELDS`` (how a run executes or what it is called, not what it
    computes: loader workers, checkpoint interval, descriptions) are left out,
    so changing them reuses results."""
    plain = [_hashed(p) if dataclasses.is_dataclass(p) else p for p in parts]
    blob = json.dumps(plain, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
