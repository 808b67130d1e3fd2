"""End to end through the CLI on the smoke profile (tiny phantom data, seconds)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.data.phantom.datasets import PHANTOM_VERSION

PHANTOM_TAG = f"phantom-{PHANTOM_VERSION}"

# pinned to the CPU: the file asserts bit-identical reruns, which cuDNN does not promise on a GPU
SMOKE = ["--method", "imitate", "--task", "rsna_seg", "--profile", "smoke", "--device", "cpu"]


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_run_stores_then_reuses_then_forces(capsys, monkeypatch):
    assert main(["run", *SMOKE, "--fraction", "0.1", "--json"]) == 0
    first = last_json(capsys.readouterr().out)
    assert first["metric"] == "dice" and 0 <= first["value"] <= 1
    assert first["data_source"] == PHANTOM_TAG and first["reused"] is False
    from benchmark.data.sets.rsna import phantom_rsna

    counts = np.bincount(phantom_rsna("train", 20, 32).labels)
    assert first["metrics"]["train_images"] == sum(max(1, round(0.1 * c)) for c in counts)  # stratified
    assert {"method", "task", "protocol", "fraction", "seed", "config_hash", "device", "seconds"} <= set(first)

    from benchmark.tasks.segmentation import Segmentation

    def boom(*a, **k):
        raise AssertionError("a finished trial must not run again")

    with monkeypatch.context() as patch:
        patch.setattr(Segmentation, "fit_evaluate", boom)
        assert main(["run", *SMOKE, "--fraction", "0.1", "--json"]) == 0
    out = capsys.readouterr().out
    assert "reused" in out
    again = last_json(out)
    assert again["reused"] is True and again["value"] == first["value"]
    assert main(["run", *SMOKE, "--fraction", "0.1", "--force", "--json"]) == 0
    forced = last_json(capsys.readouterr().out)
    assert forced["reused"] is False
    assert forced["value"] == first["value"]  # same seed, CPU: identical result


def test_ablation_switch_changes_the_config_hash(capsys):
    assert main(["pretrain", "--method", "imitate", "--profile", "smoke", "--max-steps", "1", "--json"]) == 0
    base = last_json(capsys.readouterr().out)
    assert base["steps"] == 1 and base["reused"] is False
    assert main(["pretrain", "--method", "imitate", "--profile", "smoke", "--max-steps", "1", "--json",
                 "--set", "loss=infonce", "--set", "hierarchical=false"]) == 0
    flat = last_json(capsys.readouterr().out)
    assert flat["config_hash"] != base["config_hash"]
    assert main(["pretrain", "--method", "imitate", "--profile", "smoke", "--max-steps", "1", "--json"]) == 0
    assert last_json(capsys.readouterr().out)["reused"] is True


def test_list(capsys):
    assert main(["list", "methods"]) == 0
    assert "imitate" in capsys.readouterr().out
    assert main(["list", "tasks"]) == 0
    assert "rsna_seg" in capsys.readouterr().out


# bad input: tests/test_bad_input.py (one table)


def test_module_entry_point_exit_status():
    proc = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "nope", "--task", "rsna_seg"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown method 'nope'; valid: ")
    assert "imitate" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_phantom_preview(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["data", "phantom", "--preview", str(out)]) == 0
    assert out.stat().st_size > 50_000 and out.read_bytes()[:4] == b"\x89PNG"
    assert main(["data", "phantom", "--preview", str(tmp_path / "grid.txt")]) == 2
    assert "must end in .png" in capsys.readouterr().err


def test_version_is_the_package_version(capsys):
    import re
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = re.search(r'^version = "(.+)"', pyproject.read_text(), re.M).group(1)
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"medvlp-bench {declared}"


def test_every_command_help_is_complete(capsys):
    import argparse

    from benchmark.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert len(commands) == 14  # issue 17 added export, issue 23 baselines, issue 28 doctor, issue 27 cache
    with pytest.raises(SystemExit) as done:  # the top level too: a bare % in a command's summary broke it
        main(["--help"])
    top = capsys.readouterr().out
    assert done.value.code == 0 and all(name in top for name in commands)
    for name, parser in commands.items():
        assert all(a.help for a in parser._actions), name  # every option says what it does
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert parser.description in text and f"examples:\n  python -m benchmark {name}" in text, name


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT"])
def test_a_full_disk_is_one_line_other_os_errors_keep_their_traceback(code, monkeypatch, capsys, tmp_path):
    import errno
    import os

    from benchmark import commands

    def full(args):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(tmp_path / "home" / "x.npy"))

    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(commands, "list_registered", full)
    assert main(["list", "tasks"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: no space left on device writing {tmp_path}/home/x.npy (caches are under "
                   f"BENCHMARK_HOME={tmp_path}/home): free space or set BENCHMARK_HOME to a folder on a disk with room")

    def broken(args):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(commands, "list_registered", broken)
    with pytest.raises(OSError, match="Input/output error"):  # not the user's: an internal error keeps its traceback
        main(["list", "tasks"])


@pytest.mark.parametrize("writer", ["torch", "safetensors"])
def test_torch_writing_to_a_full_disk_is_the_same_line(writer, monkeypatch, capsys, tmp_path):
    """torch.save reports a full disk as a RuntimeError ("file write failed"), safetensors as its own error
    type, not ENOSPC: with little room left it is the full-disk line; with room left it stays an internal
    error with its traceback. The encoders are safetensors: the first torch.save a trial reaches is its
    feature cache's."""
    import shutil
    from collections import namedtuple

    import safetensors.torch
    from safetensors import SafetensorError

    def failing_save(obj, f, *args, **kwargs):
        if writer == "torch":
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: file write failed")
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull }): file write failed")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(*((torch, "save") if writer == "torch" else (safetensors.torch, "save_file")), failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - 4096, 4096))
    argv = ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    first = "/features/" if writer == "torch" else "encoder.safetensors"
    assert err.startswith("error: no space left on device writing ") and first in err, err
    assert not list((tmp_path / "home" / "encoders").rglob("*.tmp"))  # the partial file is gone
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 40, 0, 1 << 40))
    with pytest.raises((RuntimeError, SafetensorError), match="file write failed"):
        main(argv)


def test_a_closed_pipe_ends_quietly():
    """`medvlp-bench list tasks | head -0`: stdout closed before the listing is written, no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "list", "tasks"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_list_is_fast_and_imports_no_torch_and_methods_match_the_registry():
    """`list methods` reads the method YAMLs (importing the methods took 6 s and 860 MB); the
    registry and the YAMLs must name the same methods for that to be the truth."""
    import subprocess
    import sys

    import benchmark.methods  # noqa: F401
    from benchmark.config import available
    from benchmark.registry import METHODS

    assert set(available("methods")) == set(METHODS.names())
    code = ("import sys, io, contextlib; from benchmark.cli import main\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    assert main(['list', 'methods']) == 0 and main(['list', 'tasks']) == 0\n"
            "print('torch' in sys.modules, out.getvalue().count(chr(10)))")
    torch_loaded, lines = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         check=True).stdout.split()
    assert torch_loaded == "False" and int(lines) == len(METHODS.names()) + len(available("tasks"))


@pytest.mark.parametrize("argv", [
    ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5", "--set", "task.epochs=1"],
    ["pretrain", "--method", "imitate", "--profile", "smoke", "--max-steps", "1"],
    ["baselines", "rsna_seg", "--profile", "smoke"],
])
def test_json_is_the_whole_of_stdout(argv, capsys):
    """`--json`: stdout is exactly one JSON document (it had the human lines before it, so `| jq` and
    json.load failed); the human lines go to stderr."""
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # the whole of it
    if argv[0] != "baselines":
        assert captured.err.strip()  # the human lines are still said


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--method", "imitat", "--task", "rsna_seg"], "unknown method 'imitat'; valid: imitate"),
    (["run", "--method", "imitate", "--task", "rsna_sg"], "unknown task 'rsna_sg'; valid: rsna_seg"),
    (["pretrain", "--method", "convirtt"], "unknown method 'convirtt'; valid: convirt"),
    (["speed", "--method", "imitate", "--profile", "smok"], "unknown profile 'smok'; valid: smoke"),
])
def test_a_misspelt_name_is_one_line_before_torch_is_imported(argv, fragment):
    """A typo cost seconds of imports (torch, every model library) before its one-line error."""
    code = ("import sys; from benchmark.cli import main\n"
            f"code = main({argv!r})\n"
            "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: {fragment}"), done.stderr
