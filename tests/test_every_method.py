"""One test over every registered method (issue 26), in the spirit of timm's test over
``list_models()``: a method added as one module plus one YAML is covered without a test of
its own. Each pre-trained method: a short pre-training (smoke profile), killed mid-run and
resumed to the same encoder, and the encoder's round trip (cached weights -> the backbone its
architecture names -> the API's ``load_encoder``, the same features). Methods that do not
pre-train: the round trip alone. Then a method that lives in a ``--config-path`` folder (one
module, one YAML) is listed, pre-trained, tuned with the default space and shown in a table.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

import benchmark
from benchmark.factory import method_class, method_names, resolve
from benchmark.runner import get_encoder

#: methods this test cannot build offline, and why (each has its own tests)
ELSEWHERE = {
    "checkpoint": "needs a released weights file (tests/test_checkpoint_formats.py)",
    "open_clip": "its default model is on the Hugging Face Hub (tests/test_open_clip.py)",
}
SETS = [("epochs", 2), ("checkpoint_every", 1)]  # smoke corpus 8 / batch 4: 4 steps, a checkpoint each


def _features(state: dict, arch, x: torch.Tensor) -> torch.Tensor:
    from benchmark.tasks.classification import PooledEncoder

    with torch.no_grad():
        return PooledEncoder(state, 1.0, arch).eval()(x)


@pytest.mark.parametrize("name", [n for n in method_names() if n not in ELSEWHERE])
def test_every_method_pretrains_resumes_and_round_trips(name, monkeypatch, isolated_home):
    cls = method_class(name)
    x = torch.randn(2, 3, 32, 32)
    if not cls.pretrains:
        pre = benchmark.pretrain(name, profile="smoke")
    else:
        monkeypatch.setenv("BENCHMARK_HOME", str(isolated_home / "straight"))
        straight = get_encoder(resolve(name, None, "smoke", SETS), None)
        assert straight.meta["steps"] == 4 and torch.isfinite(torch.tensor(straight.meta["final_loss"]))

        monkeypatch.setenv("BENCHMARK_HOME", str(isolated_home / "killed"))
        real_step, calls = cls.training_step, []

        def dies_at_step_3(self, *a, **k):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real_step(self, *a, **k)

        monkeypatch.setattr(cls, "training_step", dies_at_step_3)
        with pytest.raises(KeyboardInterrupt):
            get_encoder(resolve(name, None, "smoke", SETS), None)
        monkeypatch.setattr(cls, "training_step", real_step)
        pre = get_encoder(resolve(name, None, "smoke", SETS), None)
        assert pre.meta["steps"] == 4 and not pre.reused
        torch.testing.assert_close(_features(pre.weights(), pre.arch, x), _features(straight.weights(), straight.arch, x),
                                   rtol=0, atol=1e-5)
    # the round trip: what was cached is what the API hands out
    loaded = benchmark.load_encoder(name, profile="smoke",
                                    device="cpu", overrides=dict(SETS) if cls.pretrains else {})
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), _features(pre.weights(), pre.arch, x), rtol=1e-4, atol=1e-4)  # channels_last


PLUGIN = '''
"""A method that lives outside the package: one module and one YAML in a --config-path folder."""
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.methods.base import Method, MethodConfig
from benchmark.models.backbones import pooled
from benchmark.registry import METHODS


@METHODS.register("toy")
class Toy(Method):
    """Two augmented views pulled together (no text): the least a method needs."""

    config_class = MethodConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.head = nn.Linear(self.backbone.pooled_dim, 16)

    def training_step(self, batch):
        a, b = (F.normalize(self.head(pooled(self.backbone, batch[v])), dim=-1) for v in ("view1", "view2"))
        loss = (2 - 2 * (a * b).sum(-1)).mean()
        return {"loss": loss, "views": loss.detach()}
'''


@pytest.fixture
def registry_restored():
    """A config folder's method stays registered in its process (as the shipped ones do): the
    tests that add one give the registry back as it was."""
    import sys

    from benchmark.factory import PLUGIN_PACKAGE
    from benchmark.registry import METHODS

    before = METHODS.ordered()
    yield
    for name in set(METHODS.ordered()) - set(before):
        del METHODS._entries[name]
    for module in [m for m in sys.modules if m.startswith(PLUGIN_PACKAGE + ".")]:
        del sys.modules[module]


def test_a_method_in_a_config_folder_is_listed_pretrained_tuned_and_tabled(tmp_path, capsys, isolated_home,
                                                                           registry_restored):
    from benchmark.cli import main

    folder = tmp_path / "mine"
    (folder / "methods").mkdir(parents=True)
    (folder / "methods" / "toy.py").write_text(textwrap.dedent(PLUGIN))
    (folder / "methods" / "toy.yaml").write_text("description: two views pulled together (a test's method)\n"
                                                 "lr: 1.0e-3\nprofiles:\n  smoke:\n    batch_size: 4\n")
    opt = ["--config-path", str(folder)]
    assert main([*opt, "list", "methods"]) == 0
    assert "toy          two views pulled together" in capsys.readouterr().out
    assert main([*opt, "pretrain", "--method", "toy", "--profile", "smoke", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["method"] == "toy" and meta["steps"] == 2
    assert main([*opt, "run", "--method", "toy", "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5"]) == 0
    assert main([*opt, "tune", "--method", "toy", "--task", "rsna_cls", "--profile", "smoke", "--fraction", "0.5",
                 "--trials", "2", "--name", "toy"]) == 0
    out = capsys.readouterr().out
    assert "--set method.lr=" in out and "--set task.lr=" in out  # the default space: its own lr and the head's
    assert main([*opt, "table"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    names = [r.split("|")[1].strip() for r in rows]
    assert names.index("toy") > names.index("random")  # a method without order: goes after the shipped ones


def test_a_method_config_without_a_class_and_a_class_without_a_config_are_one_line(tmp_path, capsys, monkeypatch,
                                                                                   isolated_home, registry_restored):
    from benchmark.cli import main
    from benchmark.registry import METHODS

    folder = tmp_path / "mine"
    (folder / "methods").mkdir(parents=True)
    (folder / "methods" / "lonely.yaml").write_text("description: no module registers it\n")
    argv = ["--config-path", str(folder), "run", "--method", "lonely", "--task", "rsna_cls", "--profile", "smoke"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"method config {folder / 'methods' / 'lonely.yaml'} has no method class: register one with "
                        f"@METHODS.register('lonely') in a module of benchmark/methods, or in "
                        f"{folder / 'methods' / 'lonely.py'} beside it") and "\n" not in err

    monkeypatch.setitem(METHODS._entries, "stray", type("Stray", (), {"__module__": "somewhere"}))
    assert main(["run", "--method", "random", "--task", "rsna_cls", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("method 'stray' (somewhere) is registered but has no config: add methods/stray.yaml "
                        "(its paper's defaults) to the shipped configs or a --config-path folder") and "\n" not in err
