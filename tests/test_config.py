import pytest

from benchmark.config import build, coerce, parse_sets, route_sets
from benchmark.errors import UserError
from benchmark.factory import resolve
from benchmark.methods.imitate import ImitateConfig
from benchmark.tasks.segmentation import SegmentationConfig


def test_layers_yaml_profile_set():
    r = resolve("imitate", "rsna_seg", "cpu", parse_sets(["loss=infonce", "hierarchical=false", "task.epochs=3"]))
    assert r.method_cfg.loss == "infonce" and r.method_cfg.hierarchical is False
    assert r.method_cfg.image_size == 64  # cpu profile over the paper's 224
    assert r.method_cfg.lr == pytest.approx(2e-4)  # YAML value kept
    assert r.task_cfg.epochs == 3 and r.task_cfg.name == "rsna_seg" and r.task_cfg.weight_decay == 0.05
    paper = resolve("imitate", "rsna_seg", "paper")
    assert paper.method_cfg.image_size == 224 and paper.method_cfg.batch_size == 128
    assert paper.method_cfg.text_encoder == "emilyalsentzer/Bio_ClinicalBERT"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["lossy=cicl"], "unknown --set key 'lossy'; valid: loss"),
        (["hierarchical=maybe"], "bad value for 'hierarchical': expected bool, got 'maybe'"),
        (["loss=mse"], "expected 'cicl' | 'infonce'"),
        (["batch_size=8"], "ambiguous: write method.batch_size or task.batch_size"),
        (["task.nope=1"], "unknown task key 'nope'"),
        (["epochs"], "--set expects key=value"),
        (["cicl_ratio=-1"], "cicl_ratio must be in [0, 1], got -1"),
        (["cicl_ratio=2"], "cicl_ratio must be in [0, 1], got 2"),
        (["method.lr=nan"], "lr must be a finite number > 0, got nan"),
        (["method.lr=.inf"], "lr must be a finite number > 0, got inf"),
        (["method.lr=0"], "lr must be > 0, got 0.0"),
        (["task.weight_decay=-1e-6"], "weight_decay must be >= 0, got -1e-06"),
        (["method.grad_clip=-1"], "grad_clip must be >= 0, got -1.0"),
        (["min_lr=-1e-8"], "min_lr must be >= 0, got -1e-08"),
        (["min_lr=1"], "min_lr (1) must be <= lr (0.0002)"),
        (["seed=-1"], "seed must be in [0, 2**63 - 1], got -1"),
        (["seed=9223372036854775808"], "seed must be in [0, 2**63 - 1], got 9223372036854775808"),
        (["method.epochs=0"], "epochs must be >= 1, got 0"),
        (["max_steps=1.0e+30"], "max_steps must be >= 0 and fit in 64 bits"),
        (["channel_keep=[0.25, 0, 0.1, 0.1]"], "channel_keep must be in (0, 1], got 0.0"),
        (["adam_betas=[0.9, 1.0]"], "adam_betas must be in [0, 1), got 1.0"),
        (["temperature=0"], "temperature must be > 0, got 0.0"),
        (["task.kind=classification"], "--set task.kind is refused"),
        (["task.name=rsna_cls"], "--set task.name is refused"),
        (["dataset=siim"], "--set task.dataset is refused"),
    ],
)
def test_bad_sets_name_the_key(sets, message):
    with pytest.raises(UserError) as err:
        resolve("imitate", "rsna_seg", "cpu", parse_sets(sets))
    assert message in str(err.value)


def test_unknown_names_list_closest_first():
    with pytest.raises(UserError, match=r"unknown method 'imitat'; valid: imitate"):
        resolve("imitat", None)
    with pytest.raises(UserError, match=r"unknown task 'rsna_sg'; valid: rsna_seg"):
        resolve("imitate", "rsna_sg")
    with pytest.raises(UserError, match="unknown profile 'gpu'"):
        resolve("imitate", None, "gpu")


def test_coercion():
    assert coerce("2e-4", float, "lr") == pytest.approx(2e-4)  # YAML 1.1 leaves this a string
    assert coerce(3, float, "lr") == 3.0
    assert coerce([0.1, 0.2], tuple[float, ...], "k") == (0.1, 0.2)
    with pytest.raises(UserError):
        coerce(True, int, "epochs")
    with pytest.raises(UserError):
        coerce(1.5, int, "epochs")


def test_unknown_yaml_key_is_named():
    with pytest.raises(UserError, match="unknown key in method test: 'hierarchy'"):
        build(ImitateConfig, {"hierarchy": True}, "method test")


def test_route_sets_explicit_scope():
    routed = route_sets([("method.image_size", 32), ("task.image_size", 64), ("focal_weight", 1)],
                        {"method": ImitateConfig, "task": SegmentationConfig})
    assert routed == {"method": {"image_size": 32}, "task": {"image_size": 64, "focal_weight": 1}}


@pytest.mark.parametrize("profile", ["cpu", "paper", "smoke", "phantom"])
def test_every_method_and_task_resolves_under_every_profile(profile):
    from benchmark.config import available

    for method in available("methods"):
        sets = [("checkpoint_path", "weights.pth")] if method == "checkpoint" else []
        for task in available("tasks"):
            r = resolve(method, task, profile, sets)
            assert r.task_cfg.name == task and r.task_cfg.kind


def test_runtime_fields_stay_out_of_the_hash():
    from benchmark.config import config_hash

    def key(*sets):
        return config_hash("imitate", resolve("imitate", None, "cpu", list(sets)).method_cfg, "phantom-v1")

    base = key()
    assert key(("num_workers", 0), ("checkpoint_every", 7)) == base  # how the run executes
    assert key(("lr", 1e-3)) != base and key(("ddp_workers", 2)) != base  # what it computes
    assert resolve("imitate", None, "cpu", [("num_workers", 0)]).method_cfg.num_workers == 0  # still recorded
    task = resolve("imitate", "rsna_cls", "cpu").task_cfg
    reworded = resolve("imitate", "rsna_cls", "cpu", [("task.description", "another wording")]).task_cfg
    assert config_hash(task) == config_hash(reworded) != config_hash(resolve("imitate", "rsna_cls", "cpu", [("task.lr", 1e-3)]).task_cfg)


def every_config_class() -> list[type]:
    import benchmark.methods  # noqa: F401  (registers them)
    import benchmark.tasks  # noqa: F401
    from benchmark.registry import METHODS, TASK_KINDS

    classes = {METHODS.get(n).config_class for n in METHODS.names()} | {TASK_KINDS.get(n).config_class for n in TASK_KINDS.names()}
    return sorted(classes, key=lambda c: c.__name__)


def test_every_numeric_field_declares_its_range():
    """A new int or float field without a Range would take NaN, -1 or 10**30 silently."""
    import typing

    from benchmark.config import Range, field_types

    def bounded(tp) -> bool:
        if typing.get_origin(tp) is typing.Annotated:
            base, *extra = typing.get_args(tp)
            return base in (int, float) and any(isinstance(e, Range) for e in extra)
        if typing.get_origin(tp) in (tuple, list):
            return bounded(typing.get_args(tp)[0])
        return False

    def numeric(tp) -> bool:
        if typing.get_origin(tp) is typing.Annotated:
            return numeric(typing.get_args(tp)[0])
        if typing.get_origin(tp) in (tuple, list):
            return numeric(typing.get_args(tp)[0])
        return tp in (int, float)

    classes = every_config_class()
    assert len(classes) >= 10  # 7 methods' and 5 task kinds' configs (random shares the base fields)
    unbounded = [f"{cls.__name__}.{key}" for cls in classes for key, tp in field_types(cls).items()
                 if numeric(tp) and not bounded(tp)]
    assert unbounded == []


def test_range_edges_and_messages():
    from benchmark.config import (
        SEED_MAX,
        NonNegative,
        Positive,
        Range,
        Seed,
        Share,
        coerce,
    )

    assert coerce(0, NonNegative, "k") == 0.0 and coerce(1, Share, "k") == 1.0 and coerce(SEED_MAX, Seed, "seed") == SEED_MAX
    assert coerce("2e-4", Positive, "lr") == pytest.approx(2e-4)  # the YAML-1.1 string still parses
    cases = [(0, Positive, "k must be > 0, got 0.0"), (1.0000001, Share, "k must be in [0, 1], got 1.0000001"),
             ("nan", NonNegative, "k must be a finite number >= 0, got nan"), (-0.5, Share, "in [0, 1], got -0.5"),
             (SEED_MAX + 1, Seed, "in [0, 2**63 - 1], got 9223372036854775808"), (-1, Seed, "got -1"),
             (10**400, Positive, "k must be a finite number > 0, got inf"), (float("-inf"), float, "k must be a finite number, got -inf"),
             (2**64, int, "k must be an integer that fits in 64 bits, got 18446744073709551616")]
    for value, tp, message in cases:
        with pytest.raises(UserError) as err:
            coerce(value, tp, "k")
        assert message in str(err.value), (value, str(err.value))
    assert Range(0, 1, hi_open=True).describe() == "in [0, 1)" and Range(2, why="x").describe() == ">= 2 (x)"
    with pytest.raises(UserError, match=r"^batch_size must be >= 2 \(in-batch contrastive negatives\), got 1$"):
        build(ImitateConfig, {"batch_size": 1}, "test")
    with pytest.raises(UserError, match="expected int"):
        coerce(float("nan"), int, "epochs")  # not an integer at all: the type error, not a range


def test_every_default_is_in_range():
    """The class defaults pass their own ranges."""
    import dataclasses

    from benchmark.config import coerce, field_types

    checked = 0
    for cls in every_config_class():
        types_ = field_types(cls)
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                assert coerce(f.default, types_[f.name], f.name) == f.default
                checked += 1
    assert checked > 100  # the YAMLs under every profile: test_every_method_and_task_resolves_under_every_profile


BOMB = """a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_fails_in_one_line_within_a_second(tmp_path):
    import time

    from benchmark.config import load_yaml

    assert len(BOMB.encode()) <= 500  # 9**9 = 387 million strings once expanded
    (tmp_path / "bomb.yaml").write_text(BOMB)
    started = time.monotonic()
    with pytest.raises(UserError, match="expands to more than 100,000 values through its aliases") as err:
        load_yaml(tmp_path / "bomb.yaml")
    assert time.monotonic() - started < 1.0 and "\n" not in str(err.value)
    with pytest.raises(UserError, match="--set description expands to more than"):  # the same bomb as a --set value
        parse_sets(["description={" + BOMB.strip().replace("\n", ", ") + "}"])
    (tmp_path / "loop.yaml").write_text("a: &a [1, *a]\n")
    with pytest.raises(UserError, match="alias .* inside its own anchor"):
        load_yaml(tmp_path / "loop.yaml")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match="nested too deeply"):
        load_yaml(tmp_path / "deep.yaml")
    (tmp_path / "big.yaml").write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(UserError, match="larger than 1 MiB"):
        load_yaml(tmp_path / "big.yaml")
    (tmp_path / "small.yaml").write_text("base: &b {lr: 0.1, epochs: 2}\nmethod: *b\ntask: {<<: *b, epochs: 3}\n")
    assert load_yaml(tmp_path / "small.yaml") == {"base": {"lr": 0.1, "epochs": 2}, "method": {"lr": 0.1, "epochs": 2},
                                                  "task": {"lr": 0.1, "epochs": 3}}  # ordinary anchors still work


@pytest.mark.parametrize("kind, name", [("tasks", "../../x/evil"), ("profiles", "/abs/file"), ("tasks", "..%2Fx"),
                                        ("profiles", "../profiles/cpu"), ("sweeps", ".hidden"), ("tasks", "")])
def test_config_names_are_names_not_paths(kind, name, tmp_path):
    from benchmark.config import named_yaml
    from benchmark.paths import config_dir

    planted = config_dir() / kind / f"{name}.yaml"
    with pytest.raises(UserError, match=rf"unknown {kind[:-1]} .*; valid: "):
        named_yaml(kind, name)
    assert named_yaml("profiles", "cpu")["method"]["image_size"] == 64  # a real name still loads
    if name == "../profiles/cpu":
        assert planted.resolve().is_file()  # the path exists: only the name rule refuses it


def test_an_explicit_experiment_file_still_loads_but_a_name_stays_in_the_folder(tmp_path, monkeypatch):
    from benchmark.experiments import experiment_path, load_experiment

    (tmp_path / "mine.yaml").write_text("methods: [random]\ntasks: [rsna_cls]\nfractions: [1]\nseeds: [0]\n")
    assert load_experiment(str(tmp_path / "mine.yaml")).methods[0].method == "random"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    with pytest.raises(UserError, match="not found"):  # a name: configs/experiments/../../mine.yaml is never tried
        experiment_path("sub/../mine")
    (tmp_path / "bad.yaml").write_text("methods: [random]\ntasks: [rsna_cls]\nfractions: [1]\nseeds: [0]\nprofile: 5\n")
    with pytest.raises(UserError, match=r"unknown profile in experiment .*bad.yaml: '5'; valid: "):
        load_experiment(str(tmp_path / "bad.yaml"))
    (tmp_path / "bad.yaml").write_text("methods: [random]\ntasks: [rsna_cls]\nfractions: [1]\nseeds: [-3]\n")
    with pytest.raises(UserError, match=r"seed must be in \[0, 2\*\*63 - 1\], got -3"):
        load_experiment(str(tmp_path / "bad.yaml"))


@pytest.mark.parametrize("value, default", [("", "~/.cache/medvlp-bench"), ("  ", "~/.cache/medvlp-bench")])
def test_an_empty_benchmark_home_means_the_default(value, default, monkeypatch):
    from pathlib import Path

    from benchmark.paths import home_path, store_path

    monkeypatch.setenv("BENCHMARK_HOME", value)
    monkeypatch.setenv("BENCHMARK_STORE", value)
    assert home_path() == Path(default).expanduser() != Path.cwd()
    assert store_path() == Path("results/benchmark.sqlite")


def test_a_profile_cannot_redefine_a_task(tmp_path, monkeypatch):
    """Like --set, a profile's task: section may change how a task runs, never what it is."""
    import shutil

    from benchmark import config
    from benchmark.factory import resolve
    from benchmark.paths import config_dir

    shutil.copytree(config_dir(), tmp_path / "configs")
    (tmp_path / "configs" / "profiles" / "odd.yaml").write_text("task: {epochs: 1, kind: segmentation, metric: dice}\n")
    monkeypatch.setattr(config, "config_dir", lambda: tmp_path / "configs")
    with pytest.raises(UserError, match=r"profile 'odd' sets kind, metric under task:, which define\(s\) a task"):
        resolve("random", "rsna_cls", "odd")
    (tmp_path / "configs" / "profiles" / "odd.yaml").write_text("task: {epochs: 1}\n")
    assert resolve("random", "rsna_cls", "odd").task_cfg.epochs == 1  # how it runs stays settable


def test_a_profile_kinds_section_reaches_only_that_kind():
    """The phantom and cpu profiles standardise the classification probe's features; other kinds
    have no such key and get nothing; the paper profile keeps MGCA's raw features."""
    cls, seg = resolve("random", "rsna_cls", "phantom"), resolve("random", "siim_seg", "phantom")
    assert cls.task_cfg.probe_norm == "standardize" and cls.task_cfg.min_steps == 300
    assert not hasattr(seg.task_cfg, "probe_norm") and seg.task_cfg.min_steps == 300
    assert cls.method_cfg.backbone == "resnet18" and resolve("random", "rsna_cls", "cpu").method_cfg.backbone == "resnet50"
    assert resolve("random", "rsna_cls", "paper").task_cfg.probe_norm == "none"
    with pytest.raises(UserError, match="probe_norm is for the frozen probe"):
        resolve("random", "rsna_cls", "phantom", [("protocol", "finetune")])
