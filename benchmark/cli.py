"""``python -m benchmark``: parse, call one function, print. Heavy imports stay
inside the commands so ``--help`` and ``list tasks`` are instant.

A :class:`UserError` ends as one line on stderr and exit status 2, a failed
trial (:class:`TrialFailed`: NaN loss, GPU out of memory) as one line and exit
status 1; anything else is an internal error and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import signal
import sys
import threading

from benchmark.config import CONFIG_PATH_ENV, SEED_RANGE, config_path
from benchmark.errors import TrialFailed, UserError
from benchmark.version import __version__


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UserError(f"{message} (see {self.prog} --help)")


def _bounded(cast: type, minimum: float, strict: bool = False):
    """An argparse type: a ``cast`` (int or float) above (``strict``) or at least ``minimum``."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if cast is int else 'a number'}, got {text!r}") from None
        if not (value > minimum if strict else value >= minimum) or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        return value

    return parse


def _nonempty(text: str) -> str:
    """An argparse type for paths and names: an empty value is a mistake, never "the default"
    (``--data-root ""`` would quietly mean phantom data, ``--out ""`` the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _seed(text: str) -> int:
    """An argparse type: a seed in the range of every config's ``seed``, [0, 2**63 - 1]
    (the results store and torch's generators hold 64-bit integers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not SEED_RANGE.holds(value):
        raise argparse.ArgumentTypeError(f"must be {SEED_RANGE.describe()}, got {text}")
    return value


def _disk_full(exc: OSError) -> str | None:
    """The user's line for a full disk or quota (ENOSPC, EDQUOT), else None."""
    if exc.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return None
    from benchmark.paths import home_path

    where = f" writing {exc.filename}" if exc.filename else ""
    return (f"no space left on device{where} (caches are under BENCHMARK_HOME={home_path()}): "
            "free space or set BENCHMARK_HOME to a folder on a disk with room")


#: shown under each command's --help
EXAMPLES = {
    "run": ['python -m benchmark run --encoder convirt-afa9dc9dc69a --task rsna_cls --fraction 0.01',
            'python -m benchmark run --method imitate --task rsna_seg --fraction 0.01 --seed 42', 'python -m benchmark run --method checkpoint --checkpoint imitate.pth --task rsna_cls --fraction 0.1 --json'],
    "pretrain": ['python -m benchmark pretrain --method imitate --set loss=infonce --set hierarchical=false', 'python -m benchmark pretrain --method prior --profile paper --set ddp_workers=4'],
    "data": ['python -m benchmark data phantom --preview grid.png', 'python -m benchmark data check rsna --data-root /data', 'python -m benchmark data split rsna --data-root /data --out splits/rsna', 'python -m benchmark data prepare mimic --data-root /data'],
    "list": ['python -m benchmark list tasks'],
    "grid": ['python -m benchmark grid --methods imitate,random --tasks rsna_cls,siim_seg --fractions 0.01,0.1,1 --seeds 42,0,1', 'python -m benchmark grid --experiment imitate_ablations --address 10.0.0.5:6379'],
    "tune": ['python -m benchmark tune --method imitate --task rsna_cls --fraction 0.01 --trials 20'],
    "results": ['python -m benchmark results --format csv'],
    "table": ['python -m benchmark table --format latex --data real --reference', 'python -m benchmark table --data phantom --vs random --json',
              'python -m benchmark table --by backbone'],
    "plot": ['python -m benchmark plot --out results/plots', 'python -m benchmark plot --by backbone'],
    "baselines": ['python -m benchmark baselines rsna_seg', 'python -m benchmark baselines siim_seg --data-root /data --json'],
    "export": ['python -m benchmark export imitate-1a2b3c4d5e6f --out exported/imitate',
               'python -m benchmark run --method checkpoint --checkpoint exported/imitate --task rsna_cls'],
    "speed": ['python -m benchmark speed --method imitate --batch-size 8 --image-size 64 --json', 'python -m benchmark speed --method imitate --task rsna_cls'],
    "cache": ['python -m benchmark cache list', 'python -m benchmark cache prune --dry-run',
              'python -m benchmark cache prune --store results/benchmark.sqlite --store old.sqlite'],
    "doctor": ['python -m benchmark doctor --device cuda:0 --out gpu_check.md',
               'python -m benchmark doctor --stand-in --profile smoke --steps 1 --warmup 0'],
}


def _command(sub, name: str, help: str) -> argparse.ArgumentParser:
    """A sub-command whose --help repeats its one-line summary and ends with examples."""
    epilog = "examples:\n" + "\n".join(f"  {e}" for e in EXAMPLES[name])
    p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    _config_path_arg(p, "sub_config_path")  # also after the command: `run ... --config-path DIR`
    return p


def _config_path_arg(p: argparse.ArgumentParser, dest: str) -> None:
    p.add_argument("--config-path", dest=dest, action="append", default=[], type=_nonempty, metavar="DIR",
                   help="a folder of your own configs (DIR/tasks/NAME.yaml, DIR/experiments/NAME.yaml, methods/, profiles/, "
                   f"sweeps/), searched before the shipped ones; repeatable or '{os.pathsep}'-separated "
                   f"(also ${CONFIG_PATH_ENV})")


def _trial_args(p: argparse.ArgumentParser, method_required: bool = True) -> None:
    p.add_argument("--method", required=method_required, help="a registered method (see `list methods`)")
    p.add_argument("--profile", default="cpu", help="configs/profiles/<name>.yaml: cpu (default, minutes on a laptop) or paper")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field; method.KEY / task.KEY when both have it (repeatable)")
    p.add_argument("--checkpoint", type=_nonempty, metavar="FILE", help="released encoder weights for --method checkpoint "
                   "(format: --set checkpoint_format=auto|torchvision|mgca|gloria|prior|biovil|medclip_resnet|medclip_swin|"
                   "chexzero|mgca_vit|mrm)")
    p.add_argument("--data-root", type=_nonempty, help="folder with the official downloads (default: $BENCHMARK_DATA; none: phantom data)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    p.add_argument("--json", action="store_true", help="stdout holds exactly one JSON document, the result (the human lines go to stderr)")
    _logger_arg(p)


def _logger_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--logger", choices=["tensorboard", "wandb", "none"],
                   help="training curves: tensorboard (default; event files in the encoder's tb/ and the trial's "
                        "runs/ folder), wandb (offline unless WANDB_MODE or WANDB_API_KEY), none (also $BENCHMARK_LOGGER)")


def build_parser() -> Parser:
    parser = Parser(prog="python -m benchmark", description="medvlp-bench: medical VLP pre-training and transfer benchmark")
    parser.add_argument("--version", action="version", version=f"medvlp-bench {__version__}")
    _config_path_arg(parser, "config_path")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser,
                                help="one of the commands below; `COMMAND --help` for its options and examples")

    run = _command(sub, "run", "one trial: pre-train (or reuse) an encoder, fit a task, store test metrics")
    _trial_args(run, method_required=False)
    run.add_argument("--encoder", metavar="NAME", help="instead of --method: a cached encoder by the name pretrain, run or "
                     "grid printed (imitate-1a2b3c4d5e6f), with the config it was trained with")
    run.add_argument("--task", required=True, help="a named task (see `list tasks`)")
    run.add_argument("--fraction", type=float, default=1.0, help="fraction of the training labels, in (0, 1] (default 1)")
    run.add_argument("--seed", type=_seed, default=42, help="seed of the fraction subset and the head (default 42)")
    run.add_argument("--protocol", help="mgca (frozen encoder, the default) or finetune (BenchX-style, encoder trained)")
    run.add_argument("--force", action="store_true", help="re-run even if the store has this trial finished")
    run.set_defaults(handler="run")

    pre = _command(sub, "pretrain", "pre-train a method and cache its encoder")
    _trial_args(pre)
    pre.add_argument("--max-steps", type=int, help="stop after N optimiser steps (smoke runs)")
    pre.add_argument("--force", action="store_true", help="re-train even if the encoder is cached")
    pre.set_defaults(handler="pretrain")

    data = _command(sub, "data", "data sets: phantom preview; real data check, split manifests, MIMIC preparation")
    data.add_argument("what", choices=["phantom", "check", "split", "prepare"],
                      help="phantom (--preview FILE), check NAME, split NAME, prepare mimic")
    data.add_argument("name", nargs="?", help="data set (`list datasets`) or a task name; see docs/DATA.md")
    data.add_argument("--preview", type=_nonempty, metavar="FILE", help="phantom: write a labelled grid of samples (.png, .pdf, .jpg or .svg)")
    data.add_argument("--data-root", type=_nonempty, help="folder with the official downloads (default: $BENCHMARK_DATA)")
    data.add_argument("--protocol", default="mgca", help="split: the split recipe (default mgca)")
    data.add_argument("--out", type=_nonempty, metavar="DIR", help="split: where the lists go (default: the cache's manifests/)")
    data.add_argument("--size", type=_bounded(int, 16), default=256, help="prepare: stored image size in pixels (default 256)")
    data.add_argument("--limit", type=_bounded(int, 0), default=0, help="prepare: cache only the first N train images (0: all)")
    data.set_defaults(handler="data")

    _grid_parsers(sub)
    _speed_parser(sub)
    _doctor_parser(sub)
    _cache_parser(sub)

    exp = _command(sub, "export", "write a cached encoder as a Hub-style folder: config.json, model.safetensors, "
                                  "a model card with its provenance")
    exp.add_argument("encoder", type=_nonempty, metavar="ENCODER",
                     help="an encoder folder (its path, or its name under $BENCHMARK_HOME/encoders, as pretrain prints it)")
    exp.add_argument("--out", type=_nonempty, required=True, metavar="DIR", help="a new or empty folder")
    exp.set_defaults(handler="export")

    lst = _command(sub, "list", "what is registered")
    lst.add_argument("what", choices=["methods", "tasks", "datasets"],
                     help="methods (registered), tasks (configs/tasks/*.yaml) or datasets (benchmark/data/sets/, "
                          "a config folder's datasets/*.py)")
    lst.set_defaults(handler="list_registered")
    return parser


def _ray_args(p: argparse.ArgumentParser, profile_default: str) -> None:
    p.add_argument("--profile", help=f"configs/profiles/<name>.yaml (default: {profile_default})")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field for every trial (repeatable; see run --help)")
    p.add_argument("--protocol", help="mgca (frozen encoder, the default) or finetune")
    p.add_argument("--data-root", type=_nonempty, help="folder with the official downloads (default: $BENCHMARK_DATA; none: phantom data)")
    p.add_argument("--device", default="auto", help="device inside each trial: auto (its GPU if it has one), cpu, cuda")
    p.add_argument("--address", help="an existing Ray cluster (HOST:PORT, auto, ray://...); default: local Ray sized to this machine")
    p.add_argument("--cpus-per-trial", type=_bounded(float, 0, strict=True), help="CPUs per trial (default 1)")
    p.add_argument("--gpus-per-trial", type=_bounded(float, 0),
                   help="GPUs per trial (default 1 when the cluster has GPUs, else 0)")
    _logger_arg(p)


def _grid_parsers(sub) -> None:
    grid = _command(sub, "grid", "methods x tasks x fractions x seeds through Ray Tune; resumes: finished trials are skipped")
    grid.add_argument("--experiment", type=_nonempty, metavar="FILE", help="a grid file, or a name in configs/experiments/ (e.g. imitate_tmi2024)")
    grid.add_argument("--methods", help="comma-separated methods, e.g. imitate,convirt,random")
    grid.add_argument("--cpus-per-encoder", type=_bounded(float, 0, strict=True),
                      help="CPUs per pre-training job before the trials (default: the experiment's cpus_per_encoder, "
                           "else --cpus-per-trial)")
    grid.add_argument("--tasks", help="comma-separated tasks, e.g. rsna_cls,siim_seg")
    grid.add_argument("--fractions", help="comma-separated label fractions (default 0.01,0.1,1)")
    grid.add_argument("--seeds", help="comma-separated seeds (default 42)")
    grid.add_argument("--dry-run", action="store_true", help="list the trials to run and stop")
    _ray_args(grid, "the experiment's, else cpu")
    grid.set_defaults(handler="grid")

    tune = _command(sub, "tune", "hyper-parameter search (Optuna TPE via Ray Tune, ASHA early stopping) on a validation metric")
    tune.add_argument("--method", required=True, help="a method with configs/sweeps/<method>.yaml")
    tune.add_argument("--task", required=True, help="a named task (not zero-shot: the search selects on validation)")
    tune.add_argument("--fraction", type=float, default=1.0, help="fraction of the training labels (default 1)")
    tune.add_argument("--seed", type=_seed, default=42, help="seed of the subset, the head and the sampler (default 42)")
    tune.add_argument("--trials", type=int, default=20, help="number of configurations to try (default 20)")
    tune.add_argument("--name", type=_nonempty, help="name of the search: its folder is tune/NAME beside the "
                      "results store (default: METHOD-TASK-FRACTION-seedSEED)")
    _ray_args(tune, "cpu")
    tune.set_defaults(handler="tune")

    res = _command(sub, "results", "the stored trials, one row each")
    res.add_argument("--format", choices=["table", "csv", "json"], default="table", help="output format (default table)")
    res.add_argument("--store", help="a results store file (default: $BENCHMARK_STORE or results/benchmark.sqlite)")
    res.set_defaults(handler="results")

    tab = _command(sub, "table", "paper-style tables: methods x (task, fraction), mean +- std and 95 %% interval over seeds")
    tab.add_argument("--format", choices=["markdown", "latex", "csv", "json"], default="markdown",
                     help="output format (default markdown); json has every number of every cell")
    tab.add_argument("--json", action="store_true", help="the same as --format json")
    tab.add_argument("--vs", type=_nonempty, metavar="ROW",
                     help="add each row's paired difference (same seeds) against this row, e.g. random or a variant's name")
    tab.add_argument("--data", choices=["real", "phantom"], help="only this data (default: one table per data source)")
    tab.add_argument("--reference", action="store_true", help="add the published numbers from results/reference/*.csv")
    tab.add_argument("--metric", type=_nonempty, metavar="NAME",
                     help="any stored metric (dice_pos, empty_acc, dice_pooled, map_50, balanced_accuracy, ...) "
                          "instead of each task's primary one")
    tab.add_argument("--protocol", help="only this protocol (default: every protocol, in separate tables)")
    tab.add_argument("--by", choices=["method", "backbone"], default="method",
                     help="method (default): rows per method config, labelled with the backbone when a table holds "
                          "several; backbone: one table per backbone")
    tab.add_argument("--store", help="a results store file (default: $BENCHMARK_STORE or results/benchmark.sqlite)")
    tab.set_defaults(handler="table")

    base = _command(sub, "baselines", "what trivial predictors score on a task's test split, from its labels alone "
                               "(predict nothing, the whole image, a constant score, the majority class, chance)")
    base.add_argument("task", help="a named task (see `list tasks`)")
    base.add_argument("--data-root", type=_nonempty, help="folder with the official downloads (default: $BENCHMARK_DATA; "
                      "none: the phantom test split); only the label files are read")
    base.add_argument("--profile", default="cpu", help="configs/profiles/<name>.yaml (the phantom split's size and image size)")
    base.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                      help="override a task config field, e.g. test_subset=positive (repeatable)")
    base.add_argument("--json", action="store_true", help="print one JSON object (task, split, size, each reference)")
    base.set_defaults(handler="baselines")

    plot = _command(sub, "plot", "label-efficiency curves and an ablation chart (PNG and PDF)")
    plot.add_argument("--out", type=_nonempty, default="results/plots", help="output folder (default results/plots)")
    plot.add_argument("--data", choices=["real", "phantom"], help="only this data (default: real if there is any, else phantom)")
    plot.add_argument("--by", choices=["method", "backbone"], default="method",
                      help="method (default): a line per method config, labelled with the backbone when a figure holds "
                           "several; backbone: one set of figures per backbone")
    plot.add_argument("--store", help="a results store file (default: $BENCHMARK_STORE or results/benchmark.sqlite)")
    plot.set_defaults(handler="plot")


def _cache_parser(sub) -> None:
    cache = _command(sub, "cache", "what $BENCHMARK_HOME holds (encoders, their features, sizes, the stored trials "
                     "that use each), and prune what no stored trial refers to")
    cache.add_argument("what", choices=["list", "prune"], help="list: every encoder and cache by size; prune: remove "
                       "the encoders (and features) that no trial in the stores refers to")
    cache.add_argument("--store", action="append", default=[], metavar="FILE",
                       help="a results store whose trials keep their encoders (repeatable; default: $BENCHMARK_STORE or "
                            "results/benchmark.sqlite; every search's store under $BENCHMARK_HOME/tune is read too)")
    cache.add_argument("--dry-run", action="store_true", help="prune: say what would go, remove nothing")
    cache.add_argument("--unfinished", action="store_true",
                       help="prune: also unfinished encoders (a killed run's folder, which could resume)")
    cache.add_argument("--json", action="store_true", help="stdout holds exactly one JSON document")
    cache.set_defaults(handler="cache")


def _doctor_parser(sub) -> None:
    doc = _command(sub, "doctor", "check the CUDA path on this machine: every method's step (pairs/s against the "
                   "bare backbone, peak memory), a trial of every task kind, resume equality, the overflow check; one report")
    doc.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N")
    doc.add_argument("--profile", default="cpu", help="configs/profiles/<name>.yaml for every run (default cpu)")
    doc.add_argument("--stand-in", action="store_true",
                     help="no GPU: rehearse on the CPU with the CUDA path's settings (BENCHMARK_DEVICE_POLICY=cuda)")
    doc.add_argument("--steps", type=int, default=5, help="timed steps per method (default 5)")
    doc.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    doc.add_argument("--out", help="also write the report (markdown) to this file")
    doc.add_argument("--json", action="store_true", help="stdout holds exactly one JSON document, the report")
    doc.set_defaults(handler="doctor")


def _speed_parser(sub) -> None:
    speed = _command(sub, "speed", "pairs/s of the pre-training step vs the bare ResNet-50 and the authors' "
                           "naive step; with --task, a 9-trial linear-probe grid vs one trial")
    _trial_args(speed)
    speed.add_argument("--batch-size", type=int, help="pairs per step (default: the profile's batch_size)")
    speed.add_argument("--image-size", type=int, help="pixels (default: the profile's image_size)")
    speed.add_argument("--steps", type=int, default=5, help="timed steps; the figures are medians (default 5)")
    speed.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    speed.add_argument("--task", help="time a 1/10/100 %% x 3-seed grid on this task against one trial instead")
    speed.add_argument("--compile", action="store_true",
                       help="torch.compile the backbone of the ceiling and the step (pre-training: BENCHMARK_COMPILE=1)")
    speed.set_defaults(handler="speed")


def _setup_logging() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    for noisy in ("transformers", "huggingface_hub", "urllib3", "timm"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's cancel), raised like Ctrl-C so that cleanups run:
    ``finally`` blocks, the removal of half-written temporary files."""


def _raise_terminated(signum: int, frame) -> None:
    raise Terminated()


def _failed_where(exc: TrialFailed, command: str) -> str:
    """What a failed trial's line adds: the store row ``run`` wrote (a failed forced re-run writes none)."""
    if command == "pretrain":
        return " (no encoder was cached)"
    if getattr(exc, "recorded_in", None):
        return " (recorded in the store as failed)"
    return " (not recorded: the store keeps its finished result)" if command == "run" else ""


def main(argv: list[str] | None = None) -> int:
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    args = None
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # argparse would blame the top-level parser; point at the sub-command's help
            raise UserError(f"unrecognized arguments: {' '.join(extra)} (see {parser.prog} {args.command} --help)")
        _setup_logging()
        from benchmark import commands
        from benchmark.loggers import chosen

        with config_path([*args.config_path, *args.sub_config_path]), chosen(getattr(args, "logger", None)):
            return getattr(commands, args.handler)(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrialFailed as exc:
        print(f"failed: {exc}{_failed_where(exc, getattr(args, 'handler', ''))}", file=sys.stderr)
        return 1
    except Terminated:
        print("terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head` closed stdout: stop quietly, as other command-line tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush cannot fail again
        return 128 + signal.SIGPIPE
    except OSError as exc:  # a full disk is the user's to fix; any other OSError keeps its traceback
        if (line := _disk_full(exc)) is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    finally:
        if in_main_thread and previous is not None:  # None: a handler not set from Python
            signal.signal(signal.SIGTERM, previous)
