import pytest

from benchmark.config import build, coerce, parse_sets, route_sets
from benchmark.errors import UserError
from benchmark.runner import resolve
from methods.imitate import ImitateConfig
from tasks.segmentation import SegmentationConfig


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
        (["cicl_ratio=-1"], "cicl_ratio must be >= 0"),
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


@pytest.mark.parametrize("profile", ["cpu", "paper", "smoke"])
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
