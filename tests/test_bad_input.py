"""Every mistake a user can make on the command line ends in one line on stderr
(what is wrong, what to do) and exit status 2, never a traceback (issue 8).

One table: (case id, argv with {tmp} for the test's folder, fragments the line
must hold, optional set-up that writes the bad file or sets the environment and
may return more {placeholders} for the argv).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.cli import main
from benchmark.store import TRIALS, Store, Trial

RUN = ["run", "--method", "imitate", "--task", "rsna_cls"]
SMOKE = ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke"]
TEXT = ["pretrain", "--method", "imitate", "--profile", "smoke", "--set"]
CKPT = ["run", "--method", "checkpoint", "--task", "rsna_cls", "--profile", "smoke", "--checkpoint"]
GRID = ["grid", "--methods", "random", "--tasks", "rsna_cls", "--dry-run"]
OPEN_CLIP = ["run", "--method", "open_clip", "--task", "rsna_cls", "--profile", "smoke", "--set"]


# ------------------------------------------------------------------ set-ups
def rsna_root(tmp, monkeypatch):
    import test_real_layouts as F

    F.rsna(tmp / "root")
    monkeypatch.setenv("BENCHMARK_DATA_SUBSET", "1")  # the fixture has 47 label rows, not 30,227


def rsna_other_release(tmp, monkeypatch):
    import test_real_layouts as F

    F.rsna(tmp / "root")  # without the subset switch: the row count says it is not the official file


def rsna_renamed_column(tmp, monkeypatch):
    rsna_root(tmp, monkeypatch)
    labels = tmp / "root" / "rsna-pneumonia" / "stage_2_train_labels.csv"
    labels.write_text(labels.read_text().replace("Target", "Label"))


def rsna_corrupt_images(tmp, monkeypatch):
    rsna_root(tmp, monkeypatch)
    for dcm in (tmp / "root" / "rsna-pneumonia" / "stage_2_train_images").glob("*.dcm"):
        dcm.write_bytes(dcm.read_bytes()[:200])  # truncated DICOMs


def rsna_header_only(tmp, monkeypatch):
    rsna_root(tmp, monkeypatch)
    labels = tmp / "root" / "rsna-pneumonia" / "stage_2_train_labels.csv"
    labels.write_text(labels.read_text().splitlines()[0] + "\n")


def rsna_two_rows(tmp, monkeypatch):
    rsna_root(tmp, monkeypatch)
    labels = tmp / "root" / "rsna-pneumonia" / "stage_2_train_labels.csv"
    labels.write_text("\n".join(labels.read_text().splitlines()[:3]) + "\n")


def edited_split_manifest(tmp, monkeypatch):
    """The stored 50 % list of the smoke rsna_cls trial, truncated after it was written."""
    from benchmark.data.sources import task_splits
    from benchmark.data.splits import fraction_subset
    from benchmark.factory import resolve

    r = resolve("random", "rsna_cls", "smoke", [])
    train = task_splits(r.task_cfg, None, ("train",))[0]["train"]
    from benchmark.data.phantom.datasets import PHANTOM_VERSION

    tag = f"phantom-{PHANTOM_VERSION}"
    _, path = fraction_subset("rsna_cls", tag, train.ids, r.task_cls(r.task_cfg).strata(train), 0.5, 42,
                              r.task_cfg.subset)
    path.write_text(path.read_text()[:30])


def edited_published_list(tmp, monkeypatch):
    from benchmark.data.real.manifests import write_manifests

    rsna_root(tmp, monkeypatch)
    out, _ = write_manifests("rsna", tmp / "root", out=tmp / "lists")
    (out / "cls-test.txt").write_text("someone-else\n")


def chexpert_truncated_jpegs(tmp, monkeypatch):
    import test_real_layouts as F

    F.chexpert(tmp / "root")
    monkeypatch.setenv("BENCHMARK_DATA_SUBSET", "1")
    for jpg in (tmp / "root").rglob("*.jpg"):
        jpg.write_bytes(jpg.read_bytes()[:300])


def checkpoints(tmp, monkeypatch):
    import torchvision

    (tmp / "text.pth").write_text("not a checkpoint")
    torch.save(torchvision.models.resnet18().state_dict(), tmp / "resnet18.pth")
    (tmp / "truncated.pth").write_bytes((tmp / "resnet18.pth").read_bytes()[:1000])
    torch.save({"foo.weight": torch.zeros(2)}, tmp / "foreign.pth")


def checkpoints_vit(tmp, monkeypatch):
    """issue 17: an MRM-layout file holding two ViT keys, one of them misnamed."""
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 768), "blocks.0.norm9.weight": torch.zeros(768)}}, tmp / "mrm.pth")


def checkpoints_unsafe(tmp, monkeypatch):
    """A ResNet-50 of NaNs, and a file that is nothing but a pickled command (read inertly, never run)."""
    import os

    import torchvision

    state = torchvision.models.resnet50().state_dict()
    torch.save({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
               tmp / "nan.pth")

    class Command:
        def __reduce__(self):
            return (os.system, (f"touch {tmp}/MARKER",))

    torch.save(Command(), tmp / "command.pth")


def experiments(tmp, monkeypatch):
    (tmp / "bogus_key.yaml").write_text("methods: [imitate]\ntasks: [rsna_cls]\nbogus: 1\n")
    (tmp / "broken.yaml").write_text("methods: [imitate\n")
    (tmp / "ill_typed.yaml").write_text("methods: [imitate]\ntasks: [rsna_cls]\nfractions: [0.1]\nseeds: [one]\n")


def experiments_ill_typed(tmp, monkeypatch):
    grid = "methods: [random]\ntasks: [rsna_cls]\nfractions: [1]\n"
    (tmp / "profile5.yaml").write_text(grid + "seeds: [0]\nprofile: 5\n")
    (tmp / "seed-1.yaml").write_text(grid + "seeds: [42, -1]\n")
    (tmp / "seed2_63.yaml").write_text(grid + "seeds: [9223372036854775808]\n")
    (tmp / "task5.yaml").write_text("methods: [random]\ntasks: [5]\nfractions: [1]\nseeds: [0]\n")
    (tmp / "setkeys.yaml").write_text(grid + "seeds: [0]\nset: {1: 2, lr: 3}\n")
    (tmp / "bomb.yaml").write_text(ALIAS_BOMB)
    (tmp / "loop.yaml").write_text("methods: &m [random, *m]\n")
    (tmp / "protocol5.yaml").write_text(grid + "seeds: [0]\nprotocol: 5\n")
    (tmp / "fraction_nan.yaml").write_text("methods: [random]\ntasks: [rsna_cls]\nfractions: [.nan]\nseeds: [0]\n")
    (tmp / "set_nan.yaml").write_text(grid + "seeds: [0]\nset: {task.lr: .nan}\n")
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00methods")


#: 9 levels of 9 aliases in under 500 bytes: 387 million strings once expanded
ALIAS_BOMB = "".join(f"{k}: &{k} [{','.join([f'*{j}'] * 9) if j else ','.join(['lol'] * 9)}]\n"
                     for j, k in zip(["", *"abcdefgh"], "abcdefghi"))


def planted_configs(tmp, monkeypatch):
    """YAML files outside the configs folder that a name used as a path would load."""
    (tmp / "evil.yaml").write_text("kind: classification\ndataset: rsna\nmetric: auroc\nepochs: 0\n")
    (tmp / "evil_profile.yaml").write_text("method: {epochs: 0}\n")


def includes_gone_wrong(tmp, monkeypatch):
    """Experiment files whose include: loops, names a missing file or a file that holds no mapping."""
    grid = "methods: [random]\ntasks: [rsna_cls]\nfractions: [1]\nseeds: [0]\n"
    (tmp / "loop_a.yaml").write_text("include: loop_b.yaml\n" + grid)
    (tmp / "loop_b.yaml").write_text("include: loop_a.yaml\n")
    (tmp / "gone.yaml").write_text("include: nowhere.yaml\n" + grid)
    (tmp / "items.yaml").write_text("- random\n- imitate\n")
    (tmp / "of_list.yaml").write_text("include: [items.yaml]\n" + grid)


def user_dataset_modules(tmp, monkeypatch):
    (tmp / "cfg" / "datasets").mkdir(parents=True)
    (tmp / "cfg" / "datasets" / "broken.py").write_text("import nonexistent_module_xyz\n")
    (tmp / "twice" / "datasets").mkdir(parents=True)
    (tmp / "twice" / "datasets" / "again.py").write_text(
        "from benchmark.data.dataset import DataSet\nfrom benchmark.registry import DATASETS\n"
        "DATASETS.register('rsna')(DataSet())\n")
    (tmp / "tasks_cfg" / "tasks").mkdir(parents=True)
    (tmp / "tasks_cfg" / "tasks" / "bad_ds.yaml").write_text("kind: classification\ndataset: nosuch\nmetric: auroc\n")
    return {"{userdata}": str(Path(__file__).parent / "userdata")}


def disk_full(tmp, monkeypatch):
    """Every temporary file the caches write through (atomic writes) fails as on a full disk."""
    import errno
    import os
    import tempfile

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "mkstemp", full)


def a_file(tmp, monkeypatch):
    (tmp / "file").write_text("a file, not a folder")


def store_with_a_result(tmp, monkeypatch):
    a_file(tmp, monkeypatch)
    Store().record(Trial(method="imitate", method_hash="h", task="rsna_cls", task_hash="t", protocol="mgca",
                         fraction=1.0, seed=42, data_source="phantom-v1", status="finished", metric="auroc", value=0.7))


def home_under_a_file(tmp, monkeypatch):
    a_file(tmp, monkeypatch)
    monkeypatch.setenv("BENCHMARK_HOME", str(tmp / "file" / "home"))


def store_under_a_file(tmp, monkeypatch):
    a_file(tmp, monkeypatch)
    monkeypatch.setenv("BENCHMARK_STORE", str(tmp / "file" / "store.sqlite"))


def store_is_a_folder(tmp, monkeypatch):
    monkeypatch.setenv("BENCHMARK_STORE", str(tmp))


def store_not_a_database(tmp, monkeypatch):
    (tmp / "notes.sqlite").write_text("a,b\n1,2\n")


def foreign_databases(tmp, monkeypatch):
    """Another application's SQLite files (left byte-identical: tests/test_store.py)."""
    import sqlite3

    for name, table in (("app.sqlite", "users (id, name)"), ("clinic.sqlite", "trials (id, patient, arm)")):
        with sqlite3.connect(tmp / name) as db:
            db.execute(f"CREATE TABLE {table}")


def store_from_a_newer_version(tmp, monkeypatch):
    import sqlite3

    Store().close()
    with sqlite3.connect(tmp / "store.sqlite") as db:
        db.execute("ALTER TABLE trials ADD COLUMN lineage TEXT NOT NULL DEFAULT 'x'")
        db.execute("PRAGMA user_version = 99")


def store_with_a_column_it_cannot_fill(tmp, monkeypatch):
    import sqlite3

    Store().close()
    with sqlite3.connect(tmp / "store.sqlite") as db:
        db.execute("DROP TABLE trials")
        db.execute(TRIALS.replace("finished_at TEXT", "finished_at TEXT, reviewer TEXT NOT NULL"))


def store_is_dev_null(tmp, monkeypatch):
    (tmp / "null.sqlite").symlink_to("/dev/null")
    monkeypatch.setenv("BENCHMARK_STORE", str(tmp / "null.sqlite"))


def store_locked(tmp, monkeypatch):
    """Another connection holds the write lock (kept open until the test's monkeypatch is undone)."""
    import sqlite3

    import benchmark.store

    Store().close()
    db = sqlite3.connect(tmp / "store.sqlite", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(store_locked, "db", db, raising=False)
    monkeypatch.setattr(benchmark.store, "BUSY_TIMEOUT", 0.2)


def store_read_only(tmp, monkeypatch):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    Store().close()
    (tmp / "store.sqlite").chmod(0o444)


def store_damaged(tmp, monkeypatch):
    """A real store with pages overwritten in the middle (its header and schema still read)."""
    store = Store()
    for seed in range(200):
        store.record(Trial(method="imitate", method_hash="h", task="rsna_cls", task_hash="t", protocol="mgca",
                           fraction=1.0, seed=seed, data_source="phantom-v1", status="finished", metric="auroc",
                           value=0.7, metrics={"pad": "x" * 2000}))
    store.close()
    data = bytearray((tmp / "store.sqlite").read_bytes())
    data[len(data) // 2: len(data) // 2 + 8192] = b"\xff" * 8192
    (tmp / "store.sqlite").write_bytes(bytes(data))


def tune_store_foreign(tmp, monkeypatch):
    """The search's own store (tune/NAME/trials.sqlite beside the results store) is another application's."""
    (tmp / "tune" / "t1").mkdir(parents=True)
    foreign_databases(tmp / "tune" / "t1", monkeypatch)
    (tmp / "tune" / "t1" / "app.sqlite").rename(tmp / "tune" / "t1" / "trials.sqlite")


def store_env(name: str, make):
    """A set-up: ``make`` the file, then point BENCHMARK_STORE at it."""
    def setup(tmp, monkeypatch):
        make(tmp, monkeypatch)
        monkeypatch.setenv("BENCHMARK_STORE", str(tmp / name))

    return setup


def text_model_without_weights(tmp, monkeypatch):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37).save_pretrained(tmp / "bert")


def text_model_broken_tokenizer(tmp, monkeypatch):
    text_model_without_weights(tmp, monkeypatch)
    (tmp / "bert" / "tokenizer.json").write_text("{}")


def no_local_ray(tmp, monkeypatch):
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray session is running in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def something_listening(tmp, monkeypatch):
    """A port that answers (not Ray), for ``{port}``: the address check passes, Ray Client is next."""
    import socket

    from ray._private.utils import get_ray_client_dependency_error

    if get_ray_client_dependency_error() is None:
        pytest.skip("ray[client] is installed here")
    sock = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setattr(something_listening, "sock", sock, raising=False)  # closed at teardown by GC
    return {"{port}": str(sock.getsockname()[1])}


def exported_encoder(tmp, monkeypatch):
    """A cached random encoder ({encoder}), a non-empty folder, broken export folders, a cut safetensors file."""
    import json

    from safetensors.torch import save_file

    from benchmark import api

    pre = api.pretrain("random", profile="smoke", overrides={"backbone": "resnet18"})
    (tmp / "full").mkdir()
    (tmp / "full" / "notes.txt").write_text("mine")
    (tmp / "foreign_export").mkdir()
    (tmp / "foreign_export" / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    (tmp / "no_weights").mkdir()
    (tmp / "no_weights" / "config.json").write_text(json.dumps({"format": "medvlp-bench-encoder", "format_version": 1,
                                                                  "backbone": "resnet18"}))
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp / "whole.safetensors")
    data = (tmp / "whole.safetensors").read_bytes()
    (tmp / "cut.safetensors").write_bytes(data[: len(data) // 2])
    return {"{encoder}": pre.path.parent.name}


def no_wandb(tmp, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError, installed or not


def empty_hub_cache(tmp, monkeypatch):
    """Offline, with a Hugging Face cache that holds nothing (whatever this machine has cached)."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp / "hf"))


def open_clip_files(tmp, monkeypatch):
    (tmp / "nocfg").mkdir()
    (tmp / "bad.pt").write_bytes(b"not a checkpoint")


CASES = [
    # names, with the closest first
    ("unknown method", ["run", "--method", "imitat", "--task", "rsna_cls"], ["unknown method 'imitat'; valid: imitate"], None),
    ("unknown task", ["run", "--method", "imitate", "--task", "rsna_clss"], ["unknown task 'rsna_clss'; valid: rsna_cls"], None),
    ("unknown protocol", [*RUN, "--protocol", "linear"], ["'protocol'", "'mgca' | 'finetune'", "'linear'"], None),
    ("unknown data set", ["data", "check", "rsnaa", "--data-root", "{tmp}"], ["no split recipe for 'rsnaa'", "rsna"], None),
    ("unknown split protocol", ["data", "split", "rsna", "--protocol", "x", "--data-root", "{tmp}"], ["unknown split protocol 'x'"], None),
    ("unknown profile", [*RUN, "--profile", "fast"], ["unknown profile 'fast'"], None),
    ("unknown method in a grid", ["grid", "--methods", "imitate,nope", "--tasks", "rsna_cls", "--dry-run"], ["unknown method 'nope'"], None),
    ("unknown sweep", ["tune", "--method", "nope", "--task", "rsna_cls"], ["unknown method 'nope'"], None),
    ("unknown command", ["train"], ["invalid choice: 'train'"], None),
    ("unknown list", ["list", "metods"], ["invalid choice: 'metods'"], None),
    ("option of another command", ["results", "--method", "imitate"],
     ["unrecognized arguments: --method imitate", "python -m benchmark results --help"], None),
    ("unknown table format", ["table", "--format", "html"], ["invalid choice: 'html'"], None),
    ("task without a text tower", ["run", "--method", "random", "--task", "rsna_zs"], ["needs a method with a text tower"], None),
    # numbers
    ("fraction 0", [*RUN, "--fraction", "0"], ["fraction must be in (0, 1]"], None),
    ("fraction 1.5", [*RUN, "--fraction", "1.5"], ["fraction must be in (0, 1]"], None),
    ("fraction nan", [*RUN, "--fraction", "nan"], ["fraction must be in (0, 1]"], None),
    ("fraction text", [*RUN, "--fraction", "ten"], ["invalid float value: 'ten'"], None),
    ("grid fraction 2", ["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--fractions", "0.1,2", "--dry-run"],
     ["fraction must be in (0, 1]", "'2'"], None),
    ("grid fractions empty", ["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--fractions", "", "--dry-run"],
     ["--fractions is empty"], None),
    ("seed text", [*RUN, "--seed", "x"], ["argument --seed: expected an integer, got 'x'"], None),
    ("grid seeds", ["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--seeds", "42,x", "--dry-run"],
     ["bad seed 'x'", "integers"], None),
    ("cpus per trial 0", ["grid", "--methods", "imitate", "--tasks", "rsna_cls", "--cpus-per-trial", "0", "--dry-run"],
     ["--cpus-per-trial", "must be > 0"], None),
    ("tune trials 0", ["tune", "--method", "imitate", "--task", "rsna_cls", "--trials", "0"], ["--trials must be >= 1"], None),
    ("tune name with a slash", ["tune", "--method", "imitate", "--task", "rsna_cls", "--name", "../x"],
     ["--name '../x': give a plain name"], None),
    ("prepare size too small", ["data", "prepare", "mimic", "--size", "8", "--data-root", "{tmp}"],
     ["argument --size: must be >= 16, got 8", "data --help"], None),
    ("prepare limit negative", ["data", "prepare", "mimic", "--limit", "-1", "--data-root", "{tmp}"],
     ["argument --limit: must be >= 0, got -1"], None),
    ("speed steps 0", ["speed", "--method", "imitate", "--steps", "0"], ["--steps must be >= 1"], None),
    ("max steps -1", ["pretrain", "--method", "imitate", "--max-steps", "-1"], ["max_steps must be >= 0"], None),
    ("image size below the crop margin", ["speed", "--method", "imitate", "--image-size", "7"],
     ["image_size must be in [14, 1792]", "got 7"], None),
    ("ddp workers beyond the cluster", [*TEXT, "ddp_workers=256", "--set", "method.batch_size=2", "--set", "corpus_size=512",
                                         "--device", "cpu"], ["ddp_workers=256 needs 256 CPUs", "in all"], None),
    ("ddp workers 0", ["pretrain", "--method", "imitate", "--set", "ddp_workers=0"], ["ddp_workers must be >= 1"], None),
    # --set and YAML keys
    ("set unknown key", [*RUN, "--set", "batchsize=4"], ["unknown --set key 'batchsize'; valid: batch_size"], None),
    ("set ill-typed int", [*RUN, "--set", "method.batch_size=abc"], ["'batch_size'", "expected int", "'abc'"], None),
    ("set ill-typed bool", [*RUN, "--set", "view_view=sometimes"], ["expected bool"], None),
    ("set ill-typed list", [*RUN, "--set", "channel_keep=abc"], ["'channel_keep'", "expected list of float"], None),
    ("set ambiguous key", [*RUN, "--set", "batch_size=4"], ["ambiguous", "method.batch_size or task.batch_size"], None),
    ("set without =", [*RUN, "--set", "epochs"], ["--set expects key=value"], None),
    ("experiment unknown key", ["grid", "--experiment", "{tmp}/bogus_key.yaml", "--dry-run"], ["unknown key(s) ['bogus']"], experiments),
    ("experiment ill-typed", ["grid", "--experiment", "{tmp}/ill_typed.yaml", "--dry-run"], ["seed", "'one'"], experiments),
    ("experiment not YAML", ["grid", "--experiment", "{tmp}/broken.yaml", "--dry-run"], ["not valid YAML (line 2)"], experiments),
    ("experiment missing", ["grid", "--experiment", "{tmp}/none.yaml", "--dry-run"], ["not found", "imitate_tmi2024"], None),
    ("experiment is a folder", ["grid", "--experiment", "{tmp}", "--dry-run"], ["not found"], None),
    # data
    ("data root missing", [*SMOKE, "--data-root", "{tmp}/nowhere"], ["data root {tmp}/nowhere does not exist"], None),
    ("data root from env missing", SMOKE, ["does not exist", "(from BENCHMARK_DATA)"],
     lambda tmp, mp: mp.setenv("BENCHMARK_DATA", str(tmp / "nowhere"))),
    ("data set not in the root", [*SMOKE, "--data-root", "{tmp}"], ["RSNA", "not found under data root", "rsna-pneumonia"], None),
    ("another data set not in the root", ["run", "--method", "random", "--task", "siim_seg", "--profile", "smoke",
                                          "--data-root", "{tmp}/root"], ["SIIM-ACR", "siim-acr-pneumothorax, siim, siim-acr"],
     rsna_root),
    ("prepare for a task data set", ["data", "prepare", "rsna", "--data-root", "{tmp}"], ["data prepare is for mimic"], None),
    ("label file of another release", ["data", "split", "rsna", "--data-root", "{tmp}/root"],
     ["47 rows; the official", "30227", "BENCHMARK_DATA_SUBSET"], rsna_other_release),
    ("label file lacks a column", ["data", "split", "rsna", "--data-root", "{tmp}/root"],
     ["stage_2_train_labels.csv", "lacks the column(s) Target"], rsna_renamed_column),
    ("truncated DICOMs", [*SMOKE, "--data-root", "{tmp}/root"], ["cannot be read", ".dcm"], rsna_corrupt_images),
    ("truncated JPEGs", ["run", "--method", "random", "--task", "chexpert_cls", "--profile", "smoke", "--data-root",
                         "{tmp}/root"], ["images cannot be read", ".jpg: OSError: Truncated"], chexpert_truncated_jpegs),
    ("data command without a root", ["data", "check", "rsna"], ["needs --data-root DIR"], None),
    # checkpoints
    ("checkpoint missing", [*CKPT, "{tmp}/none.pth"], ["checkpoint file {tmp}/none.pth does not exist"], None),
    ("checkpoint is a folder", [*CKPT, "{tmp}"], ["is a folder, not a file"], None),
    ("checkpoint not a checkpoint", [*CKPT, "{tmp}/text.pth"], ["not a readable PyTorch checkpoint"], checkpoints),
    ("checkpoint truncated", [*CKPT, "{tmp}/truncated.pth"], ["not a readable PyTorch checkpoint"], checkpoints),
    ("checkpoint of another network", [*CKPT, "{tmp}/resnet18.pth"], ["keys do not match a ResNet-50", "missing"], checkpoints),
    ("checkpoint without encoder keys", [*CKPT, "{tmp}/foreign.pth"], ["no ResNet-50 encoder keys", "foo.weight"], checkpoints),
    ("checkpoint not given", ["run", "--method", "checkpoint", "--task", "rsna_cls"], ["needs a file: --checkpoint FILE"], None),
    # issue 17: checkpoint formats
    ("checkpoint in a ViT release's layout, keys wrong", [*CKPT, "{tmp}/mrm.pth", "--set", "checkpoint_format=mrm"],
     ["keys do not match a timm vit_base_patch16_224 encoder in format 'mrm'", "missing ['pos_embed'",
      "1 unexpected ['blocks.0.norm9.weight']"], checkpoints_vit),
    # Ray
    ("Ray address dead", ["grid", "--methods", "random", "--tasks", "rsna_cls", "--profile", "smoke", "--address", "127.0.0.1:9"],
     ["no Ray cluster answers at 127.0.0.1:9"], None),
    ("Ray address auto, none running", ["grid", "--methods", "random", "--tasks", "rsna_cls", "--profile", "smoke",
                                        "--address", "auto"], ["no Ray cluster found for --address auto"], no_local_ray),
    ("Ray address of another scheme", ["tune", "--method", "imitate", "--task", "rsna_cls", "--address", "http://h:1"],
     ["expected HOST:PORT, auto or ray://HOST:PORT"], None),
    ("Ray Client without its extra", ["grid", "--methods", "random", "--tasks", "rsna_cls", "--profile", "smoke",
                                      "--address", "ray://127.0.0.1:{port}"], ["pip install 'ray[client]'"], something_listening),
    ("Ray address malformed", ["tune", "--method", "imitate", "--task", "rsna_cls", "--address", "nohost"], ["expected HOST:PORT"], None),
    # outputs that cannot be written
    ("cache folder not writable", SMOKE, ["cannot create the cache folder", "BENCHMARK_HOME"], home_under_a_file),
    ("store not writable", SMOKE, ["cannot open the results store", "BENCHMARK_STORE"], store_under_a_file),
    ("store not a database", ["results", "--store", "{tmp}/notes.sqlite"], ["file is not a database"], store_not_a_database),
    ("store is a folder", ["table", "--store", "{tmp}"], ["results store {tmp} is a folder"], None),
    ("store from env is a folder", ["results"], ["is a folder: give a file"], store_is_a_folder),
    ("store missing", ["table", "--store", "{tmp}/none.sqlite"], ["results store {tmp}/none.sqlite does not exist"], None),
    ("split --out not writable", ["data", "split", "rsna", "--data-root", "{tmp}/root", "--out", "{tmp}/root/rsna-pneumonia/stage_2_train_labels.csv/x"],
     ["cannot create the --out folder"], rsna_root),
    ("plot --out not writable", ["plot", "--out", "{tmp}/file/plots"], ["cannot create the --out folder"], store_with_a_result),
    ("preview not writable", ["data", "phantom", "--preview", "{tmp}/file/grid.png"], ["cannot write {tmp}/file/grid.png"], a_file),
    ("preview format", ["data", "phantom", "--preview", "{tmp}/grid.txt"], ["must end in .png"], None),
    # models
    ("text encoder offline", [*TEXT, "text_encoder=no/such-model"],
     ["text encoder 'no/such-model' is not available", "HF_HUB_OFFLINE"], None),
    ("text encoder folder without weights", [*TEXT, "text_encoder={tmp}/bert"],
     ["text encoder folder {tmp}/bert cannot be loaded", "model.safetensors", "save_pretrained"], text_model_without_weights),
    ("text encoder folder, broken tokenizer", [*TEXT, "text_encoder={tmp}/bert"],
     ["text encoder folder {tmp}/bert cannot be loaded", "KeyError"], text_model_broken_tokenizer),
    ("cuda without a GPU", [*RUN, "--device", "cuda"], ["no CUDA device is available"], None),
    # issue 14: config values (ranges checked at resolve time)
    ("text encoder empty", [*TEXT, "text_encoder="], ["text_encoder must not be empty"], None),
    ("seed -1", [*RUN, "--seed", "-1"], ["argument --seed: must be in [0, 2**63 - 1], got -1"], None),
    ("seed 2**63", [*RUN, "--seed", "9223372036854775808"], ["must be in [0, 2**63 - 1], got 9223372036854775808"], None),
    ("tune seed -1", ["tune", "--method", "imitate", "--task", "rsna_cls", "--seed", "-1"], ["--seed: must be in [0, 2**63 - 1]"], None),
    ("grid seeds -1", [*GRID, "--seeds", "42,-1"], ["seed must be in [0, 2**63 - 1], got -1"], None),
    ("grid seeds 2**64", [*GRID, "--seeds", "18446744073709551616"], ["seed must be in [0, 2**63 - 1], got 18446744073709551616"], None),
    ("experiment seed -1", ["grid", "--experiment", "{tmp}/seed-1.yaml", "--dry-run"], ["seed must be in [0, 2**63 - 1], got -1"],
     experiments_ill_typed),
    ("experiment seed 2**63", ["grid", "--experiment", "{tmp}/seed2_63.yaml", "--dry-run"], ["got 9223372036854775808"],
     experiments_ill_typed),
    ("set seed -1", [*RUN, "--set", "seed=-1"], ["seed must be in [0, 2**63 - 1], got -1"], None),
    ("set seed 2**63", [*RUN, "--set", "seed=9223372036854775808"], ["seed must be in [0, 2**63 - 1]"], None),
    ("set lr nan", [*RUN, "--set", "method.lr=nan"], ["lr must be a finite number > 0, got nan"], None),
    ("set lr inf", [*RUN, "--set", "task.lr=inf"], ["lr must be a finite number > 0, got inf"], None),
    ("set lr .inf", [*RUN, "--set", "method.lr=.inf"], ["lr must be a finite number > 0, got inf"], None),
    ("set lr -1", [*RUN, "--set", "task.lr=-1"], ["lr must be > 0, got -1.0"], None),
    ("set lr 0", [*RUN, "--set", "method.lr=0"], ["lr must be > 0, got 0.0"], None),
    ("set lr huge integer", [*RUN, "--set", "method.lr=" + "9" * 400], ["lr must be a finite number > 0, got inf"], None),
    ("set lr empty", [*RUN, "--set", "method.lr="], ["'lr'", "expected float", "''"], None),
    ("set weight_decay nan", [*RUN, "--set", "task.weight_decay=nan"], ["weight_decay must be a finite number >= 0, got nan"], None),
    ("set weight_decay -1", [*RUN, "--set", "method.weight_decay=-1"], ["weight_decay must be >= 0, got -1.0"], None),
    ("set grad_clip -1", [*RUN, "--set", "method.grad_clip=-1"], ["grad_clip must be >= 0, got -1.0"], None),
    ("set task grad_clip -1", [*RUN, "--set", "task.grad_clip=-1", "--protocol", "finetune"], ["grad_clip must be >= 0, got -1.0"], None),
    ("set min_lr -1", [*RUN, "--set", "min_lr=-1"], ["min_lr must be >= 0, got -1.0"], None),
    ("set min_lr above lr", [*RUN, "--set", "min_lr=0.1"], ["min_lr (0.1) must be <= lr (0.0002)"], None),
    ("set cicl_ratio 2", [*RUN, "--set", "cicl_ratio=2"], ["cicl_ratio must be in [0, 1], got 2"], None),
    ("set temperature 0", [*RUN, "--set", "temperature=0"], ["temperature must be > 0, got 0.0"], None),
    ("set channel_keep 0", [*RUN, "--set", "channel_keep=[0.25, 0.15, 0, 0.1]"], ["channel_keep must be in (0, 1], got 0.0"], None),
    ("set adam_betas 1", [*RUN, "--set", "adam_betas=[0.9, 1]"], ["adam_betas must be in [0, 1), got 1.0"], None),
    ("set epochs 0", [*RUN, "--set", "method.epochs=0"], ["epochs must be >= 1, got 0"], None),
    ("set task epochs -1", [*RUN, "--set", "task.epochs=-1"], ["epochs must be >= 1, got -1"], None),
    ("set epochs 1.5", [*RUN, "--set", "task.epochs=1.5"], ["'epochs'", "expected int", "1.5"], None),
    ("set batch_size 1 (contrastive)", [*RUN, "--set", "method.batch_size=1"], ["batch_size must be >= 2 (in-batch contrastive negatives)"], None),
    ("set task batch_size 0", [*RUN, "--set", "task.batch_size=0"], ["batch_size must be >= 1, got 0"], None),
    ("set task image_size 0", [*RUN, "--set", "task.image_size=0"], ["image_size must be in [32, 4096], got 0"], None),
    ("set patience 0", [*RUN, "--set", "patience=0"], ["patience must be >= 1, got 0"], None),
    ("set encoder_lr_ratio 0", [*RUN, "--set", "encoder_lr_ratio=0"], ["encoder_lr_ratio must be > 0, got 0.0"], None),
    ("set num_workers huge", [*RUN, "--set", "num_workers=100000"], ["num_workers must be in [0, 256], got 100000"], None),
    ("set threshold 1.5", ["run", "--method", "random", "--task", "siim_seg", "--set", "threshold=1.5"],
     ["threshold must be in [0, 1], got 1.5"], None),
    ("set dice_smooth 0", ["run", "--method", "random", "--task", "siim_seg", "--set", "dice_smooth=0"], ["dice_smooth must be > 0"], None),
    ("set nms_iou nan", ["run", "--method", "random", "--task", "rsna_det", "--set", "nms_iou=nan"],
     ["nms_iou must be a finite number in [0, 1], got nan"], None),
    ("set ks 0", ["run", "--method", "imitate", "--task", "chexpert5x200_ret", "--set", "ks=[1, 0]"], ["ks must be in [1, 65536], got 0"], None),
    ("max steps beyond 64 bits", ["pretrain", "--method", "imitate", "--max-steps", "9" * 30], ["max_steps must be >= 0 and fit in 64 bits"], None),
    ("set task.kind", [*RUN, "--set", "task.kind=segmentation"], ["--set task.kind is refused", "choose another --task"], None),
    ("set task.name", [*RUN, "--set", "task.name=siim_seg"], ["--set task.name is refused"], None),
    ("set dataset", [*RUN, "--set", "dataset=siim"], ["--set task.dataset is refused"], None),
    ("set task metric", [*RUN, "--set", "task.metric=accuracy"], ["--set task.metric is refused", "defines the task"], None),
    ("set classes of a binary task", [*RUN, "--set", "classes=[a, b]"], ["--set task.classes is refused"], None),
    ("set real data definition", [*RUN, "--set", "real={}"], ["unknown --set key 'real'"], None),
    ("grid set seed -1", [*GRID, "--set", "seed=-1"], ["seed must be in [0, 2**63 - 1], got -1"], None),
    ("tune set lr nan", ["tune", "--method", "imitate", "--task", "rsna_cls", "--set", "method.lr=nan"],
     ["lr must be a finite number > 0, got nan"], None),
    ("pretrain set lr .nan", ["pretrain", "--method", "imitate", "--set", "lr=.nan"], ["lr must be a finite number > 0, got nan"], None),
    ("speed set task lr -1", ["speed", "--method", "imitate", "--task", "rsna_cls", "--set", "task.lr=-1"], ["lr must be > 0, got -1.0"], None),
    ("speed image size beyond 64 bits", ["speed", "--method", "imitate", "--image-size", "9" * 25], ["image_size must be in [1, 4096]"], None),
    # issue 14: names, paths and environment
    ("data root empty", [*SMOKE, "--data-root", ""], ["argument --data-root: must not be empty"], None),
    ("plot --out empty", ["plot", "--out", ""], ["argument --out: must not be empty"], None),
    ("tune --name empty", ["tune", "--method", "random", "--task", "rsna_cls", "--name", " "],
     ["argument --name: must not be empty"], None),
    ("checkpoint empty", [*CKPT, ""], ["argument --checkpoint: must not be empty"], None),
    ("cpus per trial inf", ["grid", "--methods", "random", "--tasks", "rsna_cls", "--cpus-per-trial", "inf", "--dry-run"],
     ["--cpus-per-trial", "must be > 0, got inf"], None),
    ("task name is a path", ["run", "--method", "random", "--task", "../../x/evil"], ["unknown task '../../x/evil'; valid: "], None),
    ("task name is an absolute path", ["run", "--method", "random", "--task", "{tmp}/evil"], ["unknown task '{tmp}/evil'; valid: "],
     planted_configs),
    ("profile is an absolute path", [*RUN, "--profile", "{tmp}/evil_profile"], ["unknown profile '{tmp}/evil_profile'; valid: "],
     planted_configs),
    ("profile is a file", [*RUN, "--profile", "{tmp}/evil_profile.yaml"], ["unknown profile '{tmp}/evil_profile.yaml'; valid: ", "cpu"], planted_configs),
    ("profile climbs out", [*RUN, "--profile", "../profiles/cpu"], ["unknown profile '../profiles/cpu'"], None),
    ("grid profile is a path", [*GRID, "--profile", "{tmp}/evil_profile"], ["unknown profile"], planted_configs),
    ("task name unicode", ["run", "--method", "random", "--task", "rsna_clś"], ["unknown task 'rsna_clś'; valid: rsna_cls"], None),
    ("task name empty", ["run", "--method", "random", "--task", ""], ["unknown task ''; valid: "], None),
    ("experiment name climbs out", ["grid", "--experiment", "../experiments/imitate_tmi2024", "--dry-run"],
     ["experiment file ../experiments/imitate_tmi2024 not found", "imitate_tmi2024"], None),
    ("experiment profile: 5", ["grid", "--experiment", "{tmp}/profile5.yaml", "--dry-run"],
     ["unknown profile in experiment {tmp}/profile5.yaml: '5'; valid: "], experiments_ill_typed),
    ("experiment protocol 5", ["grid", "--experiment", "{tmp}/protocol5.yaml", "--dry-run"], ["'protocol' must be a text, got 5"],
     experiments_ill_typed),
    ("experiment fraction .nan", ["grid", "--experiment", "{tmp}/fraction_nan.yaml", "--dry-run"], ["fraction must be in (0, 1], got nan"],
     experiments_ill_typed),
    ("experiment set lr .nan", ["grid", "--experiment", "{tmp}/set_nan.yaml", "--dry-run"], ["lr must be a finite number > 0, got nan"],
     experiments_ill_typed),
    ("experiment not UTF-8", ["grid", "--experiment", "{tmp}/binary.yaml", "--dry-run"], ["{tmp}/binary.yaml is not UTF-8 text"],
     experiments_ill_typed),
    ("experiment task 5", ["grid", "--experiment", "{tmp}/task5.yaml", "--dry-run"], ["'tasks' must list task names"], experiments_ill_typed),
    ("experiment set keys not names", ["grid", "--experiment", "{tmp}/setkeys.yaml", "--dry-run"], ["'set' must map keys to values"],
     experiments_ill_typed),
    ("experiment alias bomb", ["grid", "--experiment", "{tmp}/bomb.yaml", "--dry-run"],
     ["{tmp}/bomb.yaml expands to more than 100,000 values through its aliases"], experiments_ill_typed),
    ("experiment alias loop", ["grid", "--experiment", "{tmp}/loop.yaml", "--dry-run"], ["alias (*) inside its own anchor"],
     experiments_ill_typed),
    ("set value alias bomb", [*RUN, "--set", "description={" + ALIAS_BOMB.strip().replace("\n", ", ") + "}"],
     ["--set description expands to more than 100,000 values"], None),
    ("device mps", [*RUN, "--device", "mps"], ["device 'mps' asked for, but MPS (Apple silicon) is not available"], None),
    ("device meta", [*RUN, "--device", "meta"], ["device 'meta' is not one a trial can train on"], None),
    ("grid device meta", ["grid", "--methods", "random", "--tasks", "rsna_cls", "--device", "meta", "--dry-run"],
     ["device 'meta' is not one a trial can train on"], None),
    ("tune device meta", ["tune", "--method", "random", "--task", "rsna_cls", "--device", "meta"],
     ["device 'meta' is not one a trial can train on"], None),
    ("device empty", [*RUN, "--device", ""], ["unknown device ''"], None),
    ("device from env meta", RUN, ["device 'meta' is not one a trial can train on"], lambda tmp, mp: mp.setenv("BENCHMARK_DEVICE", "meta")),
    ("disk full under BENCHMARK_HOME", SMOKE, ["no space left on device", "BENCHMARK_HOME={tmp}/home", "free space or set BENCHMARK_HOME"],
     disk_full),
    # issue 14: results store
    ("store of another application", ["results", "--store", "{tmp}/app.sqlite"],
     ["{tmp}/app.sqlite is not a medvlp-bench results store (it has tables users and no trials table)", "left as it is"],
     foreign_databases),
    ("store with a foreign trials table", ["table", "--store", "{tmp}/clinic.sqlite"],
     ["not a medvlp-bench results store (its trials table lacks the column(s) method, method_hash"], foreign_databases),
    ("store of another application for a run", [*SMOKE], ["{tmp}/app.sqlite is not a medvlp-bench results store"],
     store_env("app.sqlite", foreign_databases)),
    ("grid dry run on another application's store", ["grid", "--methods", "random", "--tasks", "rsna_cls", "--dry-run"],
     ["is not a medvlp-bench results store"],
     store_env("clinic.sqlite", foreign_databases)),
    ("store of a newer version", SMOKE, ["written by a newer medvlp-bench (store schema 99", "upgrade"],
     store_from_a_newer_version),
    ("store with a column it cannot fill", SMOKE, ["has column(s) reviewer this medvlp-bench cannot fill"],
     store_with_a_column_it_cannot_fill),
    ("store not a database for a run", SMOKE, ["is not an SQLite database (file is not a database)"],
     store_env("notes.sqlite", store_not_a_database)),
    ("store damaged, read", ["results"], ["store.sqlite is damaged", "restore it from a backup"], store_damaged),
    ("store damaged, before a run trains", SMOKE, ["store.sqlite is damaged", "malformed"], store_damaged),
    ("store given empty", ["results", "--store", ""], ["--store is empty"], None),
    ("store is /dev/null", ["results"], ["null.sqlite is not a regular file"], store_is_dev_null),
    ("store locked by another process", SMOKE, ["store.sqlite is locked by another process", "try again"], store_locked),
    ("store read-only", SMOKE, ["cannot write to the results store", "readonly database"], store_read_only),
    ("grid on a locked store", ["grid", "--methods", "random", "--tasks", "rsna_cls", "--profile", "smoke"],
     ["store.sqlite is locked by another process"], store_locked),
    ("tune on another application's search store", ["tune", "--method", "random", "--task", "rsna_cls", "--profile",
                                                    "smoke", "--name", "t1"],
     ["tune/t1/trials.sqlite is not a medvlp-bench results store"], tune_store_foreign),
    ("table of an unknown protocol", ["table", "--protocol", "bogus"],
     ["no finished trials with protocol 'bogus' (the finished ones have protocol mgca)"], store_with_a_result),
    ("table of real data with phantom only", ["table", "--data", "real"],
     ["no finished real-data trials (the finished ones are phantom-data)"], store_with_a_result),
    # issue 14: data files and split manifests
    ("label file with a header only", [*SMOKE, "--data-root", "{tmp}/root"],
     ["label file {tmp}/root/rsna-pneumonia/stage_2_train_labels.csv has a header but no rows"], rsna_header_only),
    ("label file too short to split", ["data", "split", "rsna", "--data-root", "{tmp}/root"],
     ["label file(s) {tmp}/root/rsna-pneumonia/stage_2_train_labels.csv hold too few rows for the split recipe"],
     rsna_two_rows),
    ("split manifest edited", [*SMOKE, "--fraction", "0.5"],
     ["no longer matches its recorded SHA-256", "-f0.5-mgca.txt.sha256", "restore it", "delete both files"],
     edited_split_manifest),
    ("published split list edited", ["data", "split", "rsna", "--data-root", "{tmp}/root", "--out", "{tmp}/lists"],
     ["split list {tmp}/lists/cls-test.txt no longer matches the SHA-256 in {tmp}/lists/summary.json"],
     edited_published_list),
    # issue 14: checkpoints and caches
    ("checkpoint of NaNs", [*CKPT, "{tmp}/nan.pth"], ["{tmp}/nan.pth: 265 of 318 encoder tensors hold NaN"],
     checkpoints_unsafe),
    ("checkpoint that is a pickled command", [*CKPT, "{tmp}/command.pth"],
     ["{tmp}/command.pth holds no state dict of tensors (found <not loaded: posix.system>)"], checkpoints_unsafe),
    # issue 15: statistics and tables
    ("table --vs of an unknown row", ["table", "--vs", "randm"],
     ["--vs 'randm' is not a row of these tables; the rows are: imitate"], store_with_a_result),
    ("table --vs empty", ["table", "--vs", " "], ["--vs", "must not be empty"], store_with_a_result),
    ("table --json with another format", ["table", "--json", "--format", "latex"],
     ["--json and --format latex ask for two formats: give one"], store_with_a_result),
    # issue 15: heads
    ("set min_steps -1", [*RUN, "--set", "task.min_steps=-1"], ["min_steps must be >= 0, got -1"], None),
    ("set min_steps 2.5", [*RUN, "--set", "task.min_steps=2.5"], ["'min_steps'", "expected int", "2.5"], None),
    # issue 15: backbone
    ("backbone unknown", [*RUN, "--set", "backbone=resnet152"],
     ["'backbone'", "'resnet18' | 'resnet34' | 'resnet50' | 'resnet101'", "resnet152"], None),
    ("checkpoint of another depth", [*CKPT, "{tmp}/resnet18.pth", "--set", "backbone=resnet34"],
     ["do not match a ResNet-34", "they fit a ResNet-18; add --set backbone=resnet18"], checkpoints),
    # issue 15: controls
    ("supervised on real data (run)", ["run", "--method", "supervised", "--task", "rsna_cls", "--data-root", "{tmp}"],
     ["'supervised' is a phantom-only positive control", "ground-truth findings, which real reports do not carry"], None),
    ("supervised on real data (pretrain)", ["pretrain", "--method", "supervised", "--data-root", "{tmp}"],
     ["'supervised' is a phantom-only positive control", "without --data-root and BENCHMARK_DATA"], None),
    ("supervised on real data (BENCHMARK_DATA, grid)", ["grid", "--methods", "supervised", "--tasks", "rsna_cls",
                                                        "--dry-run"],
     ["'supervised' is a phantom-only positive control"], lambda tmp, mp: mp.setenv("BENCHMARK_DATA", str(tmp))),
    ("supervised on zero-shot", ["run", "--method", "supervised", "--task", "rsna_zs", "--profile", "smoke"],
     ["needs a method with a text tower", "'supervised' has none"], None),
    # issue 16: config files (include:, --config-path)
    ("include cycle", ["grid", "--experiment", "{tmp}/loop_a.yaml", "--dry-run"],
     ["config file {tmp}/loop_b.yaml includes itself: {tmp}/loop_a.yaml -> {tmp}/loop_b.yaml -> {tmp}/loop_a.yaml"],
     includes_gone_wrong),
    ("include of a missing file", ["grid", "--experiment", "{tmp}/gone.yaml", "--dry-run"],
     ["config file {tmp}/gone.yaml includes {tmp}/nowhere.yaml, which is not a file"], includes_gone_wrong),
    ("include of a list", ["grid", "--experiment", "{tmp}/of_list.yaml", "--dry-run"],
     ["config file {tmp}/items.yaml must hold a mapping of key: value"], includes_gone_wrong),
    ("config path missing", ["--config-path", "{tmp}/nope", "list", "tasks"],
     ["config folder {tmp}/nope (BENCHMARK_CONFIG_PATH or --config-path) is not a folder"], None),
    ("config path missing after the command", [*SMOKE, "--config-path", "{tmp}/nope"], ["config folder {tmp}/nope"], None),
    ("config path from env missing", ["list", "tasks"], ["config folder {tmp}/nope (BENCHMARK_CONFIG_PATH"],
     lambda tmp, mp: mp.setenv("BENCHMARK_CONFIG_PATH", f"{tmp}/nope")),
    ("config path empty", ["--config-path", " ", "list", "tasks"], ["argument --config-path: must not be empty"], None),
    # issue 16: data sets as a registry
    ("data set module fails to import", ["--config-path", "{tmp}/cfg", "data", "check", "rsna", "--data-root", "{tmp}"],
     ["data set module {tmp}/cfg/datasets/broken.py failed to import: ModuleNotFoundError"], user_dataset_modules),
    ("data set module reuses a name", ["--config-path", "{tmp}/twice", "data", "split", "rsna", "--data-root", "{tmp}"],
     ["data set module {tmp}/twice/datasets/again.py failed to import: ValueError: data set 'rsna' registered twice"],
     user_dataset_modules),
    ("task on an unknown data set", ["--config-path", "{tmp}/tasks_cfg", "run", "--method", "random", "--task", "bad_ds", "--profile", "smoke"],
     ["unknown data set 'nosuch'; valid: ", "rsna"], user_dataset_modules),
    ("data set without a phantom stand-in", ["--config-path", "{userdata}", "run", "--method", "random", "--task", "toy_cxr_cls", "--profile", "smoke"],
     ["no phantom stand-in for data set 'toy_cxr': it runs on real data only; pass --data-root DIR"],
     user_dataset_modules),
    ("prepare an unknown data set", ["data", "prepare", "mimc", "--data-root", "{tmp}"],
     ["data prepare is for mimic (the pre-training corpus), not 'mimc'"], None),
    # issue 17: backbones
    ("backbone misspelt", [*RUN, "--set", "backbone=convnext_tiyn"],
     ["bad value for 'backbone': unknown backbone 'convnext_tiyn'; valid: convnext_tiny", "timm.list_models()"], None),
    ("backbone without CNN stages for gloria", ["run", "--method", "gloria", "--task", "rsna_cls", "--set",
                                                 "backbone=vit_base_patch16_224"],
     ["method 'gloria' needs a backbone with four CNN stages", "strides [16, 16, 16, 16]"], None),
    ("backbone imagenet weights offline", ["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke",
                                           "--set", "backbone=convnext_tiny", "--set", "backbone_weights=imagenet"],
     ["cannot load ImageNet convnext_tiny weights", "--set backbone_weights=none"],
     lambda tmp, mp: mp.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp / "hf"))),  # an empty cache
    # issue 17: io (export, safetensors, loggers)
    ("export an unknown encoder", ["export", "imitate-0000", "--out", "{tmp}/out"],
     ["no encoder 'imitate-0000': give an encoder folder under", "by name or path"], None),
    ("export a folder that is no encoder", ["export", "{tmp}", "--out", "{tmp}/out"],
     ["{tmp} is not a finished encoder folder (no meta.json)"], None),
    ("export into a non-empty folder", ["export", "{encoder}", "--out", "{tmp}/full"],
     ["--out {tmp}/full is not empty: give a new or empty folder"], exported_encoder),
    ("export folder with a foreign config", [*CKPT, "{tmp}/foreign_export"],
     ["config.json is not an exported medvlp-bench encoder"], exported_encoder),
    ("export folder without weights", [*CKPT, "{tmp}/no_weights"], ["has a config.json but no model.safetensors"],
     exported_encoder),
    ("safetensors checkpoint truncated", [*CKPT, "{tmp}/cut.safetensors"], ["is not a readable safetensors file"],
     exported_encoder),
    ("wandb logger without wandb", [*SMOKE, "--logger", "wandb"], ["--logger wandb needs the wandb package: pip install wandb"],
     no_wandb),
    ("unknown logger in the environment", SMOKE, ["unknown logger 'tensorbored' (from --logger or $BENCHMARK_LOGGER)"],
     lambda tmp, mp: mp.setenv("BENCHMARK_LOGGER", "tensorbored")),
    # issue 17: open_clip
    ("open_clip hub model not cached", [*OPEN_CLIP, "model=hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"],
     ["hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224 is not in the local Hugging Face cache", "download it once with network access",
      "python -c \"import open_clip; open_clip.create_model_and_transforms('hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224'); open_clip.get_tokenizer("],
     empty_hub_cache),
    ("open_clip hub model not cached, random weights", [*OPEN_CLIP, "model=hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "--set", "weights=none"],
     ["is not in the local Hugging Face cache"], empty_hub_cache),
    ("open_clip tag not cached", [*OPEN_CLIP, "model=RN50", "--set", "weights=openai"],
     ["RN50 (weights openai) is not in the local Hugging Face cache",
      "open_clip.create_model_and_transforms('RN50', pretrained='openai')"], empty_hub_cache),
    ("open_clip unknown model", [*OPEN_CLIP, "model=ViT-B-61", "--set", "weights=none"],
     ["unknown open_clip model 'ViT-B-61'; valid: ViT-B-16"], None),
    ("open_clip model needs weights", [*OPEN_CLIP, "model=RN50"], ["open_clip model RN50 needs weights: one of its tags (openai"],
     None),
    ("open_clip missing weights file", [*OPEN_CLIP, "model=RN50", "--set", "weights={tmp}/gone.pt"],
     ["weights file {tmp}/gone.pt does not exist"], None),
    ("open_clip unreadable weights file", [*OPEN_CLIP, "model=RN50", "--set", "weights={tmp}/bad.pt"],
     ["cannot load open_clip model RN50 with weights {tmp}/bad.pt"], open_clip_files),
    ("open_clip missing model folder", [*OPEN_CLIP, "model={tmp}/nowhere"], ["model folder {tmp}/nowhere does not exist"], None),
    ("open_clip folder without config", [*OPEN_CLIP, "model={tmp}/nocfg"], ["model folder {tmp}/nocfg holds no open_clip_config.json"],
     open_clip_files),
]


@pytest.mark.parametrize("argv, fragments, setup", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_user_mistakes_are_one_line_exit_2(argv, fragments, setup, tmp_path, monkeypatch, capsys):
    if "--device" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    holes = {"{tmp}": str(tmp_path)}
    if setup is not None:
        holes.update(setup(tmp_path, monkeypatch) or {})
    for hole, value in holes.items():
        argv = [a.replace(hole, value) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment.replace("{tmp}", str(tmp_path)) in err, err


def test_a_refused_pickle_checkpoint_is_one_line_in_a_real_process(tmp_path):
    """Under pytest, warnings are captured; a user's terminal showed torch's four-line UserWarning
    about the pickle protocol before the one-line refusal. A subprocess sees what a user sees."""
    import os
    import pickle
    import subprocess
    import sys

    class Command:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path}/MARKER",))

    with open(tmp_path / "raw.pkl", "wb") as fh:  # a raw pickle, not torch.save's zip: torch warns about it
        pickle.dump(Command(), fh, protocol=4)
    env = {**os.environ, "BENCHMARK_HOME": str(tmp_path / "home"), "BENCHMARK_STORE": str(tmp_path / "s.sqlite")}
    done = subprocess.run([sys.executable, "-m", "benchmark", *CKPT, str(tmp_path / "raw.pkl")], env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line[:8].replace(":", "").isdigit()]
    assert done.returncode == 2 and len(lines) == 1 and "raw.pkl" in lines[0], done.stderr
    assert not (tmp_path / "MARKER").exists()


def test_a_step_cap_above_the_runs_length_is_refused_with_the_reason(capsys):
    """Issue 27: `pretrain --max-steps 5` on the smoke corpus silently ran 2 steps (one epoch)."""
    assert main(["pretrain", "--method", "convirt", "--profile", "smoke", "--max-steps", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: max_steps 5 is more than this run's 2 steps (1 epoch(s) of 8 pairs in batches of 4: "
                   "2 a pass); set epochs=3 as well, or max_steps <= 2")
    assert main(["pretrain", "--method", "convirt", "--profile", "smoke", "--max-steps", "5", "--set", "epochs=3"]) == 0
    assert "convirt pre-trained: 5 steps" in capsys.readouterr().out
