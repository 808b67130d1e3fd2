"""A plain install works outside the checkout (issue 14).

The wheel is built from a copy of the files git knows (so the checkout is not
touched), installed with ``--no-deps`` into a fresh venv whose only link to the
running environment is a ``.pth`` line naming its site-packages (for torch and
friends; a ``.pth`` file inside that folder, such as the editable install's
finder, is not processed from there), and its console script is run from a
folder outside the checkout. About 20 s on a 2-core machine, most of it the
wheel build and the smoke run.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import site
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from test_imports import PACKAGES

from benchmark.paths import config_dir, reference_dir
from benchmark.registry import unknown_name

ROOT = Path(__file__).resolve().parents[1]
VERSION = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


def _sh(args: list, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _copy_tracked(dest: Path) -> None:
    """The files git tracks (and new ones it does not ignore), as a clean source tree."""
    listed = _sh(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, listed.split("\0")):
        path = ROOT / rel
        if path.is_file():  # a tracked file deleted in the work tree is not shipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("install")
    src, dist, venv, work = tmp / "src", tmp / "dist", tmp / "venv", tmp / "work"
    _copy_tracked(src)
    build = _sh([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", dist, src])
    (wheel,) = dist.glob("medvlp_bench-*.whl")

    _sh([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _sh([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel])
    # only now (pip must not see the running environment's medvlp-bench): reuse its dependencies
    purelib = Path(_sh([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    deps = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (purelib / "_running_env.pth").write_text("".join(f"{d}\n" for d in deps))

    work.mkdir()
    # the venv sits inside another git repository, whose revision must not be recorded as this code's
    _sh(["git", "init", "-q", tmp])
    _sh(["git", "-C", tmp, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "--allow-empty", "-m", "x"])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "BENCHMARK_DATA")}
    env.update(BENCHMARK_HOME=str(tmp / "home"), BENCHMARK_STORE=str(tmp / "store.sqlite"),
               HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    return {"wheel": wheel, "build_log": build.stdout + build.stderr, "venv": venv, "python": python,
            "script": venv / "bin" / "medvlp-bench", "work": work, "env": env, "tmp": tmp}


def _cli(built: dict, *args: str) -> subprocess.CompletedProcess:
    return _sh([built["script"], *args], cwd=built["work"], env=built["env"])


def test_the_build_has_no_setuptools_deprecations(built):
    assert "running bdist_wheel" in built["build_log"]  # the backend's output was captured
    assert "SetuptoolsDeprecationWarning" not in built["build_log"]


def test_the_wheel_ships_configs_references_and_license(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    configs = sorted(p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").glob("*/*.yaml"))
    assert len(configs) >= 30 and "tasks/rsna_cls.yaml" in configs
    assert {f"benchmark/configs/{c}" for c in configs} <= names
    csvs = [p.name for p in (ROOT / "results" / "reference").glob("*.csv")]
    assert len(csvs) >= 3 and {f"benchmark/reference/{c}" for c in csvs} <= names
    assert f"medvlp_bench-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "Copyright (c) 2026 the medvlp-bench authors" in (ROOT / "LICENSE").read_text()


def test_the_wheel_holds_every_package(built):
    """pyproject lists the packages by hand (two are mapped folders): none may be missed."""
    in_wheel = {str(Path(n).parent).replace("/", ".") for n in zipfile.ZipFile(built["wheel"]).namelist()
                if n.endswith("/__init__.py")}
    in_tree = {".".join([package, *p.parent.relative_to(ROOT / top).parts])
               for top, package in PACKAGES.items() for p in (ROOT / top).rglob("__init__.py")}
    assert in_wheel == in_tree | {"benchmark.configs", "benchmark.reference"}


def test_the_installed_package_runs_outside_the_checkout(built):
    work = built["work"]
    assert ROOT not in work.parents
    where = _sh([built["python"], "-c", "import benchmark, benchmark.methods as m, benchmark.tasks as t, "
                 "benchmark.paths as p; print(benchmark.__file__, m.__file__, t.__file__, p.config_dir(), "
                 "p.reference_dir(), benchmark.__version__, sep='\\n')"], cwd=work, env=built["env"]).stdout.split("\n")
    for path in where[:5]:  # not the checkout through the editable install's finder
        assert Path(path).resolve().is_relative_to(built["venv"].resolve()), path
    assert where[5] == VERSION

    listed = _cli(built, "list", "tasks").stdout
    names = [line.split()[0] for line in listed.splitlines() if line.strip()]
    assert names == sorted(p.stem for p in (ROOT / "configs" / "tasks").glob("*.yaml"))
    assert len(names) == 14 and {"rsna_cls", "siim_seg", "siim_seg_pos", "chexpert5x200_zs"} <= set(names)
    assert _sh([built["python"], "-m", "benchmark", "list", "tasks"], cwd=work, env=built["env"]).stdout == listed
    assert _cli(built, "--version").stdout.strip() == f"medvlp-bench {VERSION}"

    run = _cli(built, "run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.1")
    assert "rsna_cls" in run.stdout and str(built["tmp"] / "store.sqlite") in run.stdout
    assert (built["tmp"] / "store.sqlite").is_file() and not (work / "results").exists()
    with sqlite3.connect(built["tmp"] / "store.sqlite") as db:  # not the surrounding repository's revision
        assert db.execute("SELECT git_rev FROM trials").fetchall() == [(None,)]

    table = _cli(built, "table", "--reference").stdout
    with (ROOT / "results" / "reference" / "g2d_table4_classification.csv").open(newline="") as fh:
        published = [r for r in csv.DictReader(fh) if r["task"] == "rsna_cls" and float(r["fraction"]) == 0.1]
    assert published
    for row in published:  # every published rsna_cls 10 % number, read from the shipped CSV
        line = next(x for x in table.splitlines() if x.strip("| ").startswith(f"{row['method']} †"))
        assert row["value"] in line
    assert re.search(r"^\|\s*random\s*\|", table, re.M)  # the measured row beside them


def test_site_packages_holds_only_benchmark_of_ours(built):
    """No generic top-level ``methods`` or ``tasks`` beside ``benchmark`` (issue 26): the wheel's
    top-level names, and what the installed venv's site-packages gained."""
    tops = {n.split("/")[0] for n in zipfile.ZipFile(built["wheel"]).namelist()}
    assert tops == {"benchmark", f"medvlp_bench-{VERSION}.dist-info"}
    purelib = Path(_sh([built["python"], "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    assert {p.name for p in purelib.iterdir()} >= {"benchmark"}
    assert not {"methods", "tasks"} & {p.name for p in purelib.iterdir()}
    gone = _sh([built["python"], "-c", "import importlib.util as u; print(u.find_spec('methods'), u.find_spec('tasks'))"],
               cwd=built["work"], env=built["env"]).stdout.split()
    assert gone == ["None", "None"]


def test_the_running_install_reads_the_checkouts_files():
    """An editable install (CI's) reads the same configs through importlib.resources as a wheel."""
    shipped = {p.relative_to(config_dir()).as_posix(): p.read_bytes() for p in config_dir().glob("*/*.yaml")}
    source = {p.relative_to(ROOT / "configs").as_posix(): p.read_bytes() for p in (ROOT / "configs").glob("*/*.yaml")}
    assert shipped == source and len(source) >= 30
    assert sorted(p.name for p in reference_dir().glob("*.csv")) == sorted(
        p.name for p in (ROOT / "results" / "reference").glob("*.csv"))


def test_no_names_installed_is_a_line_not_a_difflib_crash():
    assert str(unknown_name("task", "rsna_cls", [])) == "unknown task 'rsna_cls'; none are installed"
    assert str(unknown_name("task", "rsna_cl", ["siim_seg", "rsna_cls"])).startswith(
        "unknown task 'rsna_cl'; valid: rsna_cls, siim_seg")
