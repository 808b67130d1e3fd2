"""The commands behind the CLI: each takes parsed args, does one thing, prints."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from benchmark.config import available, named_yaml, parse_sets
from benchmark.errors import UserError


def emit_json(obj: dict) -> None:
    """One line of valid JSON: NaN and infinities are null (Python's json would print a bare NaN)."""
    from benchmark.store import to_json

    print(to_json(obj, sort_keys=True))


def _human(args: argparse.Namespace):
    """``print`` for a command's human lines: to stderr under ``--json``, so that stdout holds
    exactly one JSON document (``| jq``, ``json.loads``)."""
    import sys

    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    return lambda *parts, **kw: print(*parts, file=stream, **kw)


def _is_phantom(source: str) -> bool:
    return source.startswith("phantom")


def _number(value) -> str:
    """A metric as printed; an undefined one (NaN, stored as null) reads n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _check_names(args: argparse.Namespace) -> None:
    """The method, task and profile names, from their YAMLs, before torch is imported: a typo is one
    line in a fraction of a second, not after seconds of imports (the YAMLs and the registry name the
    same methods: tests/test_cli.py)."""
    named_yaml("methods", args.method)
    if getattr(args, "task", None):
        named_yaml("tasks", args.task)
    named_yaml("profiles", args.profile)


#: the lower bound run beside every phantom trial, and where the measured comparison lives
BASELINE = "random"
PHANTOM_REPORT = "results/PHANTOM.md"


def _interval(metrics: dict) -> str:
    """`` [95 % CI low, high]`` from a trial's stored bootstrap interval, else nothing."""
    low, high = metrics.get("ci_low"), metrics.get("ci_high")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in (low, high)):
        return ""
    return f" [95 % CI {low:.4f}, {high:.4f}]"


def _parts_line(trial, indent: str = "  ") -> str | None:
    """A trial's metric taken apart (dice_pos, empty_acc, ...), each with its interval; None if none stored."""
    from benchmark.report.trivial import fixed, interval_text, parts_of

    parts = parts_of(trial.metrics)
    if not parts:
        return None
    return indent + ", ".join(f"{p} {fixed(trial.metrics[p])}{interval_text(trial.metrics, p, trial.metric)}"
                              for p in parts)


def _reference_block(t) -> list[str]:
    from benchmark.report.trivial import parts_of, reference_lines, split_text

    if not t.refs:
        return []
    return [f"  trivial references on this test split ({split_text(t.refs)}), from its labels alone:",
            *reference_lines(t.refs, [t.metric, *parts_of(t.metrics)], indent="    ")]


def _comparison_block(t, b) -> list[str]:
    """The method against the baseline per metric: a difference only where both beat the trivial reference."""
    from benchmark.report.trivial import comparable, comparison_line, parts_of

    refs = t.refs or b.refs
    lines = []
    for metric in [t.metric, *parts_of(t.metrics)]:
        mine, theirs = t.metrics.get(metric, t.value if metric == t.metric else None), b.metrics.get(metric)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mine, theirs)) or not comparable(refs, metric):
            continue
        lines.append("    " + comparison_line(metric, (t.method, mine), (BASELINE, theirs), refs))
    return [f"  {t.method} vs {BASELINE}:", *lines] if lines else []


def run(args: argparse.Namespace) -> int:
    from benchmark import api
    from benchmark.report.results import backbone
    from benchmark.report.trivial import parts_of

    say = _human(args)
    if (args.method is None) == (args.encoder is None):
        raise UserError("run needs --method NAME or --encoder NAME (a cached encoder that pretrain printed), not both")
    if args.encoder is not None:
        from benchmark.factory import cached_encoder_config

        if cached_encoder_config(args.encoder) is None:
            raise UserError(f"no cached encoder {args.encoder!r}: give a name that pretrain, run or grid printed "
                            "(`cache list` shows them)")
        args.method = args.encoder
    else:
        _check_names(args)
    out = api.run(args.method, args.task, args.fraction, seed=args.seed, profile=args.profile, data_root=args.data_root,
                  device=args.device, force=args.force, overrides=parse_sets(args.sets), checkpoint=args.checkpoint,
                  protocol=args.protocol, baseline=BASELINE)
    t, base = out.trial, out.baseline
    if out.reused:
        say(f"stored result from {t.finished_at} reused (--force re-runs the trial)")
    rule = f", subset {t.task_config.get('subset', 'stratified')}" if "train_images" in t.metrics else ""
    say(f"{t.task} {t.metric} = {t.value:.4f}{_interval(t.metrics)}   "
          f"({t.method}, {backbone(t)}, fraction {t.fraction:g}, seed {t.seed}, "
          f"protocol {t.protocol}{rule})")
    lines = [line for line in [_parts_line(t)] if line] + _reference_block(t)
    if isinstance(base, str):
        lines.append(f"  beside it, the untrained {BASELINE} encoder on the same subset {base}")
    elif base is not None:
        b = base.trial
        lines.append(f"  beside it, the untrained {BASELINE} encoder on the same subset: {b.metric} = {b.value:.4f}"
                     f"{_interval(b.metrics)}")
        lines += [line for line in [_parts_line(b, "    ")] if line] + _comparison_block(t, b)
    if lines:
        say("\n".join(lines))
    if _is_phantom(t.data_source):
        say(f"  one seed on phantom data; {PHANTOM_REPORT} has the real comparison (every method, 5 seeds, 95 % intervals)")
    skip = {t.metric, "ci_low", "ci_high"} | {f"{p}{s}" for p in parts_of(t.metrics) for s in ("", "_ci_low", "_ci_high")}
    others = ", ".join(f"{k} {_number(v)}" for k, v in t.metrics.items() if k not in skip)
    if others:
        say(f"  other: {others}")
    say(f"  encoder {t.method}-{t.method_hash} (export and run --encoder take this name)  task config {t.task_hash}  "
        f"profile {args.profile}")
    note = "  (synthetic phantom data: not a real-data number)" if _is_phantom(t.data_source) else ""
    say(f"  data {t.data_source}{note}")
    pre = f" (pre-training {t.pretrain_seconds:.1f}s)" if t.pretrain_seconds else " (cached encoder)"
    say(f"  device {t.device}  time {t.seconds:.1f}s{pre}  git {t.git_rev or '-'}")
    say(f"  store {out.store}")
    if args.json:
        emit_json(out.as_dict())
    return 0


def baselines(args: argparse.Namespace) -> int:
    from benchmark import api
    from benchmark.report.trivial import baselines_lines

    result = api.baselines(args.task, profile=args.profile, data_root=args.data_root, overrides=parse_sets(args.sets))
    if args.json:
        emit_json(result)
    else:
        print("\n".join(baselines_lines(result)))
    return 0


def pretrain(args: argparse.Namespace) -> int:
    from benchmark import api

    say = _human(args)
    _check_names(args)
    pre = api.pretrain(args.method, profile=args.profile, data_root=args.data_root, device=args.device, force=args.force,
                       max_steps=args.max_steps, overrides=parse_sets(args.sets), checkpoint=args.checkpoint)
    m = pre.meta
    state = "cached" if pre.reused else "pre-trained"
    say(f"{args.method} {state}: {m['steps']} steps on {m['corpus']['pairs']} {m['corpus']['source']} pairs, "
          f"final loss {m['final_loss']:.4f}, {m['seconds']:.1f}s on {m['device']}"
          + (f" x {m['processes']} DDP processes" if m.get("processes", 1) > 1 else ""))
    say(f"  encoder {pre.path}")
    say(f"  loss curve {pre.path.parent / 'losses.csv'}")
    if (pre.path.parent / "tb").is_dir():
        say(f"  TensorBoard: tensorboard --logdir {pre.path.parent / 'tb'}")
    if args.json:
        emit_json({"method": args.method, "encoder": str(pre.path), "reused": pre.reused, **m})
    return 0


def export(args: argparse.Namespace) -> int:
    from benchmark.export import export_encoder

    out = export_encoder(args.encoder, args.out)
    print(f"wrote {out} (config.json, model.safetensors, README.md)")
    print(f"  read it back: --method checkpoint --checkpoint {out}, or benchmark.load_encoder({str(out)!r})")
    return 0


def data(args: argparse.Namespace) -> int:
    if args.what == "phantom":
        if not args.preview:
            raise UserError("data phantom needs --preview FILE")
        from benchmark.data.phantom.preview import write_preview

        print(f"wrote {write_preview(args.preview)}")
        return 0
    from benchmark.data.sources import data_root

    if not args.name:
        raise UserError(f"data {args.what} needs a data set name (see docs/DATA.md)")
    root = data_root(args.data_root)
    if root is None:
        raise UserError(f"data {args.what} needs --data-root DIR (or BENCHMARK_DATA): the folder with the official downloads")
    if args.what == "check":
        from benchmark.data.real.check import run_check

        report = run_check(args.name, root)
        print("\n".join(report.lines))
        return 0 if report.ok else 1
    if args.what == "split":
        from benchmark.data.real.manifests import write_manifests

        out, summary = write_manifests(args.name, root, args.protocol, args.out)
        for name, entry in summary["lists"].items():
            print(f"{entry['file']:36s} {entry['count']:8d}  {entry['sha256'][:16]}")
        print(f"wrote {len(summary['lists'])} lists and summary.json to {out}")
        return 0
    from benchmark.data.catalog import corpus
    from benchmark.data.real.prepare import prepare

    if args.name != corpus().name:
        raise UserError(f"data prepare is for {corpus().name} (the pre-training corpus), not {args.name!r}")

    info = prepare(root, args.size, limit=args.limit)
    print(f"pre-training table {info['table']}: {info['rows']} frontal images with FINDINGS or IMPRESSION "
          f"({info['split_rows']} in train)")
    print(f"image cache: {info['images']} images at {info['size']} px" + (f", {len(info['bad'])} unreadable left out"
                                                                         if info["bad"] else ""))
    for name, path in info["lists"].items():
        print(f"{name} list: {path}")
    return 0


def list_registered(args: argparse.Namespace) -> int:
    if args.what == "methods":
        # from the method YAMLs, without importing the methods (torch and every model library: seconds);
        # tests/test_cli.py holds the YAMLs and the registry to the same names
        for name in available("methods"):
            print(f"{name:12s} {named_yaml('methods', name).get('description', '')}")
        return 0
    if args.what == "datasets":
        from benchmark.data import catalog

        for ds in catalog.everything():
            title = ds.layout.title if ds.layout is not None else "phantom only"
            where = type(ds).__module__
            print(f"{ds.name:14s} {title:44s} {where}")
        return 0
    rows = []
    for name in available("tasks"):
        cfg = named_yaml("tasks", name)
        rows.append((name, cfg.get("kind", "?"), cfg.get("dataset", "?"), cfg.get("metric", "?"), cfg.get("description", "")))
    for row in rows:
        print(f"{row[0]:18s} {row[1]:15s} {row[2]:14s} {row[3]:9s} {row[4]}")
    return 0


def _given(text: str | None, default: str) -> str:
    """An option's text, or the default when it was not given (an empty value stays empty, and is an error)."""
    return default if text is None else text


def _store(args: argparse.Namespace, readonly: bool):
    """The results store; ``readonly`` for commands that only read it (they never write to the
    file, and a default store that does not exist yet reads as empty, without being made)."""
    from benchmark.store import Store

    path = getattr(args, "store", None)
    if path == "":  # would silently be the default store
        raise UserError("--store is empty: give a results store file")
    if path is not None and not Path(path).exists():
        raise UserError(f"results store {path} does not exist")
    return Store(path, readonly=readonly)


def grid(args: argparse.Namespace) -> int:
    from benchmark.experiments import (
        from_cli,
        load_experiment,
        parse_fractions,
        parse_seeds,
        split_list,
    )
    from benchmark.orchestrate.grid import expand, run_plan, summary_lines

    if args.experiment:
        if args.methods or args.tasks:
            raise UserError("give --experiment FILE or --methods/--tasks, not both")
        spec = load_experiment(args.experiment)
        if args.fractions is not None:
            spec.fractions = parse_fractions(split_list(args.fractions, "fractions"))
        if args.seeds is not None:
            spec.seeds = parse_seeds(split_list(args.seeds, "seeds"))
        if args.fractions is not None or args.seeds is not None:
            spec.blocks = []  # the command line names the fractions and seeds to run: the file's blocks step aside
    elif not args.methods or not args.tasks:
        raise UserError("grid needs --methods and --tasks (or --experiment FILE)")
    else:
        spec = from_cli(args.methods, args.tasks, _given(args.fractions, "0.01,0.1,1"), _given(args.seeds, "42"))
    _check_device_name(args.device)
    store = _store(args, readonly=args.dry_run)  # a dry run writes nothing, not even the schema
    plan = expand(spec, args.profile or spec.profile or "cpu", parse_sets(args.sets), args.protocol, args.data_root, store)
    if args.dry_run:
        for item in plan.todo:
            print(f"to run: {item.name} (config {item.trial.method_hash})")
        print(f"{len(plan.todo)} to run, {len(plan.finished)} already finished, {len(plan.not_applicable)} not applicable")
        return 0
    summary = run_plan(plan, store, args.address, args.cpus_per_trial, args.gpus_per_trial, args.device,
                       cpus_per_encoder=args.cpus_per_encoder or spec.cpus_per_encoder)
    print("\n".join(summary_lines(summary)))
    print(f"  store {store.path}")
    return 0 if summary.ok else 1


def _check_device_name(device: str) -> None:
    """A grid's or search's trials may run on other machines: the driver checks the name only."""
    from benchmark.device import parse_device

    if device != "auto":
        parse_device(device)


def tune(args: argparse.Namespace) -> int:
    from benchmark.orchestrate.tune import run_search, search_lines

    _check_device_name(args.device)
    result = run_search(
        args.method, args.task, args.fraction, args.seed, args.trials, args.profile or "cpu", parse_sets(args.sets),
        args.protocol, args.data_root, args.device, args.address, args.cpus_per_trial, args.gpus_per_trial, args.name,
    )
    print("\n".join(search_lines(result)))
    return 0 if result.best is not None else 1


def results(args: argparse.Namespace) -> int:
    from benchmark.report.results import format_results

    store = _store(args, readonly=True)
    print(format_results(store.all(), args.format, where=str(store.path)))
    return 0


def table(args: argparse.Namespace) -> int:
    from benchmark.report.tables import (
        build_tables,
        load_reference,
        nothing_to_show,
        render_all,
    )

    if args.json and args.format not in ("markdown", "json"):
        raise UserError(f"--json and --format {args.format} ask for two formats: give one")
    fmt = "json" if args.json else args.format
    store = _store(args, readonly=True)
    reference = load_reference() if args.reference else None
    trials = store.all()
    tables = build_tables(trials, store.variants(), args.data, args.protocol, reference, vs=args.vs, by=args.by,
                          metric=args.metric)
    if not tables:
        raise UserError(f"{nothing_to_show(trials, args.data, args.protocol, args.metric)} in {store.path} "
                        "(run `python -m benchmark grid ...` first)")
    print(render_all(tables, fmt))
    return 0


def plot(args: argparse.Namespace) -> int:
    from benchmark.report.plots import write_plots

    store = _store(args, readonly=True)
    for path in write_plots(store.all(), store.variants(), args.out, args.data, by=args.by):
        print(f"wrote {path}")
    return 0


def speed(args: argparse.Namespace) -> int:
    _check_names(args)  # before benchmark.speed imports torch
    from benchmark.api import set_pairs
    from benchmark.speed import measure_steps, measure_task, speed_lines, task_lines

    say = _human(args)
    sets = set_pairs(args.method, parse_sets(args.sets), args.checkpoint)
    if args.task:
        result = measure_task(args.method, args.task, args.profile, sets, args.device, args.data_root)
        say("\n".join(task_lines(result)))
    else:
        if args.batch_size is not None:
            sets.append(("batch_size", args.batch_size))
        if args.image_size is not None:
            sets.append(("image_size", args.image_size))
        result = measure_steps(args.method, args.profile, sets, args.device, args.steps, args.warmup, args.data_root,
                               args.compile).as_dict()
        say("\n".join(speed_lines(result)))
    if args.json:
        emit_json(result)
    return 0


def doctor(args: argparse.Namespace) -> int:
    from benchmark.doctor import report_lines, run_doctor

    say = _human(args)
    report = run_doctor(args.device, args.profile, args.stand_in, args.steps, args.warmup, say=say)
    text = "\n".join(report_lines(report))
    if args.out:
        Path(args.out).write_text(text + "\n")
        say(f"wrote {args.out}")
    if args.json:
        emit_json(report)
    else:
        print(text)
    return 0 if report["ok"] else 1


def cache(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from benchmark.caches import inventory, list_lines, mib, prune
    from benchmark.paths import store_path

    stores = args.store or [str(store_path())]
    if args.what == "list":
        encoders, others, read = inventory(stores)
        if args.json:
            emit_json({"encoders": [asdict(e) for e in encoders], "other_bytes": others, "stores": [str(p) for p in read]})
        else:
            print("\n".join(list_lines(encoders, others, read)))
        return 0
    gone, freed = prune(stores, dry_run=args.dry_run, unfinished=args.unfinished)
    if args.json:
        emit_json({"removed": gone, "freed_bytes": freed, "dry_run": args.dry_run})
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for name in gone:
        print(f"{verb} {name}")
    print(f"{verb} {len(gone)} folder(s), {mib(freed).strip()}" + (" (run without --dry-run to remove them)"
                                                                 if args.dry_run and gone else ""))
    return 0
