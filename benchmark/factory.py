"""Names become typed configs, then objects: the one place that does it (as open_clip's
``create_model`` turns a model name into a config into a model).

A method name is looked up in the registry (``benchmark.methods`` and, for a ``--config-path``
folder, its ``methods/*.py`` modules, which register themselves) and in the method YAMLs; the
two must name the same methods, else one line says which side is missing. A config is built
from its layers, lowest first: the class's defaults < the YAML < the profile's ``method:`` /
``task:`` / ``kinds:`` layers < the profile's ``methods: {name:}`` block and the method YAML's
own ``profiles: {profile:}`` block < ``--set``. The CLI, the API, grids, searches and ``speed``
all come here; the runner receives what this module made and runs it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config import (
    available,
    build,
    check_seed,
    config_hash,
    find_config,
    named_yaml,
    profile_overrides,
    route_sets,
    to_dict,
    user_config_dirs,
)
from benchmark.data.sources import PHANTOM, corpus_fingerprints, data_root, task_fingerprints
from benchmark.data.splits import check_fraction
from benchmark.errors import UserError
from benchmark.legacy_hashes import legacy_task_hashes
from benchmark.registry import METHODS, TASK_KINDS
from benchmark.store import Trial

#: the YAML keys that describe a method config but are no config field
METHOD_YAML_META = ("method", "description", "order", "profiles")
#: the package name a config folder's method modules are imported under
PLUGIN_PACKAGE = "medvlp_user_methods"


@dataclass
class Resolved:
    """A method (and optionally a task) by name, with its class and its validated config."""

    method: str
    method_cls: type
    method_cfg: Any
    task: str | None = None
    task_cls: type | None = None
    task_cfg: Any = None


def load_plugins() -> list[str]:
    """Import the method modules of the user's config folders (``DIR/methods/*.py``, each
    registering its class with ``@METHODS.register``), once per process; their module names."""
    names = []
    for folder in user_config_dirs():
        for path in sorted((folder / "methods").glob("*.py")):
            name = f"{PLUGIN_PACKAGE}.{path.stem}"
            if name not in sys.modules:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except Exception:
                    del sys.modules[name]
                    raise
            names.append(name)
    return names


def method_names() -> list[str]:
    """Every method, in registration order (the shipped ones, then a config folder's), after checking
    that the registry and the YAMLs name the same methods (tables order rows by each YAML's ``order:``)."""
    import benchmark.methods  # noqa: F401  (registers the shipped methods)

    load_plugins()
    registered, configured = METHODS.ordered(), set(available("methods"))
    if missing := [n for n in registered if n not in configured]:
        cls = METHODS.get(missing[0])
        raise UserError(f"method {missing[0]!r} ({cls.__module__}) is registered but has no config: add "
                        f"methods/{missing[0]}.yaml (its paper's defaults) to the shipped configs or a --config-path folder")
    if orphans := sorted(configured - set(registered)):
        path = find_config("methods", orphans[0])
        raise UserError(f"method config {path} has no method class: register one with "
                        f"@METHODS.register({orphans[0]!r}) in a module of benchmark/methods, or in "
                        f"{path.parent / (orphans[0] + '.py')} beside it")
    return registered


def method_class(method: str) -> type:
    if method not in method_names():
        METHODS.get(method)  # the unknown-name line, closest names first
    return METHODS.get(method)


def method_layers(method: str, profile: str) -> tuple[type, dict, dict]:
    """(class, YAML values, the YAML's own block for ``profile``)."""
    cls = method_class(method)
    values = named_yaml("methods", method)
    own = (values.get("profiles") or {}).get(profile) or {}
    if not isinstance(own, dict):
        raise UserError(f"method config {method}: 'profiles: {profile}:' must map keys to values")
    return cls, {k: v for k, v in values.items() if k not in METHOD_YAML_META}, own


def _task_layers(task: str) -> tuple[type, dict]:
    import benchmark.tasks  # noqa: F401  (registers the task kinds)

    values = named_yaml("tasks", task)
    values["name"] = task
    if "kind" not in values:
        raise UserError(f"task config configs/tasks/{task}.yaml has no 'kind'")
    return TASK_KINDS.get(values["kind"]), values


def cached_encoder_config(name: str) -> tuple[str, dict] | None:
    """(method, its whole config) of the cached encoder folder ``name`` (``imitate-1a2b3c4d5e6f``, as
    ``pretrain``, ``run`` and ``grid`` print it), or None when no finished encoder has that name."""
    import json

    from benchmark.paths import META, home_path

    if name in METHODS or "-" not in name or "/" in name:
        return None
    meta = home_path() / "encoders" / name / META
    if not meta.is_file():
        return None
    try:
        data = json.loads(meta.read_text())
        return data["method"], dict(data["config"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"the cached encoder {name} has an unreadable {meta}: pre-train it again") from None


def resolve(method: str, task: str | None, profile: str = "cpu", sets: list[tuple[str, Any]] = ()) -> Resolved:
    """Configs from class defaults < YAML < profile < ``--set``, validated. ``method`` may also name a
    cached encoder (``convirt-afa9dc9dc69a``, what ``pretrain`` printed): its own recorded config is the
    method's (the profile's layers do not apply to it; ``--set`` still does), so its trials use it."""
    cached = cached_encoder_config(method)
    if cached is not None:
        method, recorded = cached
        method_cls = method_class(method)
    else:
        method_cls, method_values, own = method_layers(method, profile)
    scopes = {"method": method_cls.config_class}
    kind = None
    if task is not None:
        task_cls, task_values = _task_layers(task)
        scopes["task"], kind = task_cls.config_class, task_values["kind"]
    layers = profile_overrides(profile, method, kind)
    routed = route_sets(list(sets), scopes)
    if cached is not None:  # the encoder's whole config (fields a newer version dropped left out)
        known = {f.name for f in dataclasses.fields(method_cls.config_class)}
        base, implied = {k: v for k, v in recorded.items() if k in known}, {}
    else:
        base = {**method_values, **layers["method"], **own}
        implied = method_cls.implied_settings({**base, **routed["method"]})
    method_cfg = build(method_cls.config_class, {**base, **implied, **routed["method"]}, f"method {method}")
    if why := getattr(method_cls, "needs_pyramid", ""):
        from benchmark.models.backbones import require_pyramid

        require_pyramid(method_cfg.backbone, method, why)
    resolved = Resolved(method, method_cls, method_cfg)
    if task is not None:
        resolved.task, resolved.task_cls = task, task_cls
        resolved.task_cfg = _task_config(task, task_cls, task_values, layers["task"], routed["task"], profile)
    return resolved


def _task_config(task: str, task_cls: type, values: dict, profile_layer: dict, sets: dict, profile: str):
    """The task config from its YAML < the profile's task layer < ``--set``; a profile may not
    redefine what the task is."""
    if fixed := sorted(set(profile_layer) & set(task_cls.config_class.IDENTITY_FIELDS)):
        raise UserError(f"profile {profile!r} sets {', '.join(fixed)} under task:, which define(s) a task, "
                        "not how it runs; remove them from the profile")
    return build(task_cls.config_class, {**values, **profile_layer, **sets}, f"task {task}")


def resolve_task(task: str, profile: str = "cpu", sets: list[tuple[str, Any]] = ()) -> tuple[type, Any]:
    """(task kind class, task config) from class defaults < YAML < profile (``task:``, ``kinds:``)
    < ``--set``, for what needs a task without a method (the trivial references)."""
    task_cls, values = _task_layers(task)
    layer = profile_overrides(profile, "", values["kind"])["task"]
    routed = route_sets(list(sets), {"task": task_cls.config_class})["task"]
    return task_cls, _task_config(task, task_cls, values, layer, routed, profile)


def make_method(resolved: Resolved):
    """The method's model (untrained) for its config."""
    return resolved.method_cls(resolved.method_cfg)


def make_task(resolved: Resolved):
    """The task kind's object for the task's config."""
    return resolved.task_cls(resolved.task_cfg)


def source_tag(root: Path | None) -> str:
    if root is None:
        from benchmark.data.phantom.datasets import PHANTOM_VERSION

        return f"{PHANTOM}-{PHANTOM_VERSION}"
    return "real"


def check_source(resolved: Resolved, root: Path | None) -> None:
    """A phantom-only method (the ``supervised`` control: ``phantom_only`` says why) is
    refused when a data root is configured, before any data is read or trained on."""
    why = getattr(resolved.method_cls, "phantom_only", "")
    if root is not None and why:
        raise UserError(why)


def method_key(resolved: Resolved, root: Path | None) -> str:
    """The method config's store hash: what identifies its encoder (the config, the data source, a
    checkpoint's content, on real data the corpus's label files). A trial's ``method_hash`` and the
    encoder's folder name (``<method>-<key>``) are this one name."""
    mcfg = resolved.method_cfg
    return config_hash(resolved.method, mcfg, source_tag(root), resolved.method_cls.fingerprint(mcfg),
                       *corpus_fingerprints(root, resolved.method_cls.pretrains))


def plan_trial(
    method: str, task: str, fraction: float, seed: int = 42, profile: str = "cpu",
    sets: list[tuple[str, Any]] = (), data_root_arg: str | None = None,
) -> tuple[Trial, Resolved, Path | None]:
    """The trial's store key and configs, without running it (grids look finished trials up with it)."""
    fraction, seed = check_fraction(fraction), check_seed(seed)  # the Python API has no argparse in front
    resolved = resolve(method, task, profile, sets)
    root = data_root(data_root_arg)
    check_source(resolved, root)
    tag = source_tag(root)
    mcfg, tcfg = resolved.method_cfg, resolved.task_cfg
    # real data: keyed on the label files' content (not the root's path); phantom: no extra inputs
    method_hash, task_fp = method_key(resolved, root), task_fingerprints(root, tcfg.dataset)
    trial = Trial(
        method=resolved.method, method_hash=method_hash, task=task, task_hash=config_hash(tcfg, *task_fp), protocol=tcfg.protocol,
        fraction=fraction, seed=seed, data_source=tag, method_config=to_dict(mcfg), task_config=to_dict(tcfg),
        task_aliases=legacy_task_hashes(tcfg, *task_fp), profile=profile,
    )
    if resolved.task_cls.needs_text_tower and not resolved.method_cls.has_joint_space():
        raise UserError(f"task {task!r} needs a method with a text tower (zero-shot / retrieval); {resolved.method!r} has none")
    return trial, resolved, root
