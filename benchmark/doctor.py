"""``benchmark doctor``: what a user with a GPU runs first (issue 28). One report of the CUDA path:

- the machine: torch and CUDA versions, the card, bf16 support, the precision policy chosen;
- every pre-trained method's step under that policy (``benchmark speed``'s step and bare-backbone
  ceiling, pairs/s and their ratio) with the GPU's peak memory;
- one trial per task kind (classification, segmentation, detection, zero-shot, retrieval);
- resume equality: a pre-training killed mid-run and resumed against one run straight through;
- the overflow check: an optimiser step that overflows (lr 1e38) must stop the run in one line
  and cache nothing (fused AdamW on CUDA does not raise by itself).

It runs in a temporary ``BENCHMARK_HOME`` and results store, so nothing of the user's is touched
or reused. On a machine without CUDA it refuses, unless ``--stand-in`` rehearses it on the CPU
under ``BENCHMARK_DEVICE_POLICY=cuda`` (what CI does, on the smoke profile).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.errors import TrainingDiverged, UserError

#: one trial per task kind: (method, task); zero-shot and retrieval need a text tower
TASK_KINDS = (("random", "rsna_cls"), ("random", "siim_seg"), ("random", "rsna_det"),
              ("imitate", "rsna_zs"), ("imitate", "chexpert5x200_ret"))
#: methods this check does not build (a released file, a Hub download)
NOT_HERE = ("checkpoint", "open_clip")
RESUME_METHOD = "imitate"
OVERFLOW_METHOD = "convirt"


@contextlib.contextmanager
def _scratch(stand_in: bool) -> Iterator[Path]:
    """A temporary home and store (and the CPU stand-in policy when asked), undone afterwards."""
    from benchmark.device import POLICY_ENV

    keys = ("BENCHMARK_HOME", "BENCHMARK_STORE", POLICY_ENV)
    old = {k: os.environ.get(k) for k in keys}
    with tempfile.TemporaryDirectory(prefix="benchmark-doctor-") as tmp:
        os.environ["BENCHMARK_HOME"] = str(Path(tmp) / "home")
        os.environ["BENCHMARK_STORE"] = str(Path(tmp) / "store.sqlite")
        if stand_in:
            os.environ[POLICY_ENV] = "cuda"
        try:
            yield Path(tmp)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _machine(dev) -> dict[str, Any]:
    import torch

    from benchmark.device import describe, policy

    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": describe(dev),
           "precision": policy(dev).describe()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        out.update(card=props.name, capability=f"{props.major}.{props.minor}",
                   memory_gib=round(props.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported())
    return out


def _steps(dev, profile: str, steps: int, warmup: int, say) -> list[dict]:
    import torch

    from benchmark.factory import method_class, method_names
    from benchmark.speed import measure_steps

    rows = []
    for name in method_names():
        if name in NOT_HERE or not method_class(name).pretrains:
            continue
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        try:
            r = measure_steps(name, profile, [], str(dev), steps, warmup).as_dict()
        except (UserError, TrainingDiverged, RuntimeError) as exc:
            rows.append({"method": name, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"})
            say(f"[doctor] {name}: failed: {rows[-1]['error']}")
            continue
        peak = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2) if dev.type == "cuda" else None
        rows.append({"method": name, "batch_size": r["batch_size"], "image_size": r["image_size"],
                     "step_pairs_per_s": r["step_pairs_per_s"], "ceiling_pairs_per_s": r["ceiling_pairs_per_s"],
                     "step_over_ceiling": r["step_over_ceiling"], "peak_gib": peak})
        say(f"[doctor] {name}: {r['step_pairs_per_s']} pairs/s, {r['step_over_ceiling']} of the ceiling")
    return rows


def _trials(dev, profile: str, say) -> list[dict]:
    from benchmark.errors import TrialFailed
    from benchmark.report.trivial import trivial_best
    from benchmark.runner import run_trial

    rows = []
    for method, task in TASK_KINDS:
        started = time.monotonic()
        try:
            t = run_trial(method, task, 1.0, 42, profile, [], None, str(dev)).trial
            best = trivial_best(t.refs, t.metric)  # a score is never shown without its trivial reference
            rows.append({"method": method, "task": task, "metric": t.metric, "value": t.value,
                         "trivial": None if best is None else {"name": best[0], "value": best[1]},
                         "seconds": round(time.monotonic() - started, 1)})
        except (UserError, TrialFailed) as exc:
            rows.append({"method": method, "task": task, "error": f"{type(exc).__name__}: {exc}"})
        say(f"[doctor] {task}: {rows[-1].get('value', rows[-1].get('error'))}")
    return rows


def _resume(dev, profile: str) -> dict:
    """Straight through against killed at step 3 and resumed, in two homes: the largest weight difference."""
    import torch

    from benchmark.factory import method_class, resolve
    from benchmark.runner import get_encoder

    sets = [("epochs", 2), ("checkpoint_every", 1), ("max_steps", 4)]
    home = Path(os.environ["BENCHMARK_HOME"])
    os.environ["BENCHMARK_HOME"] = str(home / "straight")
    try:
        straight = get_encoder(resolve(RESUME_METHOD, None, profile, sets), None, str(dev))
        os.environ["BENCHMARK_HOME"] = str(home / "killed")
        cls = method_class(RESUME_METHOD)
        real, calls = cls.training_step, []

        def dies_at_step_3(self, *a, **k):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(self, *a, **k)

        cls.training_step = dies_at_step_3
        try:
            get_encoder(resolve(RESUME_METHOD, None, profile, sets), None, str(dev))
        except KeyboardInterrupt:
            pass
        finally:
            cls.training_step = real
        resumed = get_encoder(resolve(RESUME_METHOD, None, profile, sets), None, str(dev))
    finally:
        os.environ["BENCHMARK_HOME"] = str(home)
    a, b = straight.weights(), resumed.weights()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if torch.is_floating_point(a[k]))
    return {"method": RESUME_METHOD, "steps": resumed.meta["steps"], "max_abs_difference": worst,
            "equal": worst <= 1e-5}


def _overflow(dev, profile: str) -> dict:
    from benchmark.factory import resolve
    from benchmark.paths import cache_dir
    from benchmark.runner import get_encoder

    try:
        get_encoder(resolve(OVERFLOW_METHOD, None, profile, [("lr", 1e38), ("max_steps", 1)]), None, str(dev))
    except TrainingDiverged as exc:
        cached = list(cache_dir("encoders").glob(f"{OVERFLOW_METHOD}-*/meta.json"))
        return {"caught": True, "line": str(exc), "nothing_cached": not cached}
    return {"caught": False, "line": "the overflowing step was not caught: an encoder was cached", "nothing_cached": False}


def run_doctor(device: str = "auto", profile: str = "cpu", stand_in: bool = False, steps: int = 5, warmup: int = 2,
               say=print) -> dict:
    """The whole check (see the module docstring); returns the report as a dict."""
    from benchmark.device import pick_device

    dev = pick_device(device)
    if dev.type != "cuda" and not stand_in:
        raise UserError(f"doctor checks the CUDA path and this run's device is {dev.type}: run it on a GPU machine "
                        "(--device cuda:N), or add --stand-in to rehearse it on the CPU (BENCHMARK_DEVICE_POLICY=cuda)")
    started = time.monotonic()
    with _scratch(stand_in):
        report = {"machine": _machine(dev), "profile": profile}
        say(f"[doctor] {report['machine']['device']}: {report['machine']['precision']}")
        report["steps"] = _steps(dev, profile, steps, warmup, say)
        report["trials"] = _trials(dev, profile, say)
        report["resume"] = _resume(dev, profile)
        report["overflow"] = _overflow(dev, profile)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["ok"] = (all("error" not in r for r in report["steps"] + report["trials"])
                    and report["resume"]["equal"] and report["overflow"]["caught"] and report["overflow"]["nothing_cached"])
    return report


def report_lines(report: dict) -> list[str]:
    """The report as markdown (what results/SPEED.md's GPU section takes)."""
    m = report["machine"]
    lines = [f"# benchmark doctor: {m['device']} ({report['profile']} profile, {report['seconds']} s)", "",
             f"- torch {m['torch']}, CUDA {m['cuda'] or 'none'}; precision: {m['precision']}"]
    if "card" in m:
        lines.append(f"- card {m['card']}, compute capability {m['capability']}, {m['memory_gib']} GiB, "
                     f"bf16 {'yes' if m['bf16'] else 'no'}")
    lines += ["", "| method | batch | px | step pairs/s | ceiling pairs/s | step / ceiling | peak GiB |",
              "|---|---|---|---|---|---|---|"]
    for r in report["steps"]:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error']} ||||||")
        else:
            lines.append(f"| {r['method']} | {r['batch_size']} | {r['image_size']} | {r['step_pairs_per_s']} | "
                         f"{r['ceiling_pairs_per_s']} | {r['step_over_ceiling']} | {r['peak_gib'] or 'n/a'} |")
    lines += ["", "One trial per task kind: that the path runs (phantom data, tiny budgets: the values are no result).", "",
              "| task | method | metric | value | best trivial reference | seconds |", "|---|---|---|---|---|---|"]
    for r in report["trials"]:
        if "error" in r:
            lines.append(f"| {r['task']} | {r['method']} | failed: {r['error']} ||||")
        else:
            ref = r["trivial"]
            ref_text = f"{ref['value']:.4f} ({ref['name']})" if ref else "-"
            lines.append(f"| {r['task']} | {r['method']} | {r['metric']} | {r['value']:.4f} | {ref_text} | {r['seconds']} |")
    res, ovf = report["resume"], report["overflow"]
    lines += ["", f"- resume: {res['method']} killed at step 3 and resumed to step {res['steps']}: largest weight "
                  f"difference {res['max_abs_difference']:.2e} ({'equal' if res['equal'] else 'NOT equal'} within 1e-5)",
              f"- overflow (lr 1e38): {'caught' if ovf['caught'] else 'NOT caught'}"
              f"{', nothing cached' if ovf['nothing_cached'] else ', an encoder was cached'}: {ovf['line']}",
              "", f"**{'all checks passed' if report['ok'] else 'some checks failed'}**"]
    return lines
