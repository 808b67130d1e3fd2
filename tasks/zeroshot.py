"""Zero-shot classification: class prompts through the method's text tower and
projection, the image's score for a class = the max over that class's prompts;
accuracy, macro F1 and macro AUROC (one-vs-rest on the softmax of class scores).

Prompts are data: each class lists severities, subtypes and locations in the
task YAML, and every combination is a prompt (GLoRIA's scheme), capped at
``max_prompts`` per class by a seeded draw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from benchmark.config import Width
from benchmark.data.types import TestLabels
from benchmark.errors import UserError
from benchmark.registry import TASK_KINDS
from benchmark.tasks.base import Fit, Task, TaskConfig, joint_scores
from benchmark.tasks.metrics import accuracy, auroc, macro_f1
from benchmark.tasks.references import label_chance


@dataclass
class ZeroShotConfig(TaskConfig):
    IDENTITY_FIELDS = (*TaskConfig.IDENTITY_FIELDS, "classes")  # prompts stay settable (prompt ablations)

    classes: tuple[str, ...] = ()
    prompts: dict = field(default_factory=dict)  # class -> {severity: [...], subtype: [...], location: [...]}
    max_prompts: Width = 50

    def validate(self) -> None:
        super().validate()
        missing = [c for c in self.classes if c not in self.prompts]
        if len(self.classes) < 2 or missing:
            raise UserError(f"zero-shot task {self.name!r} needs >= 2 classes, each with prompts; missing {missing}")


def class_prompts(spec: dict, limit: int, seed: int = 0) -> list[str]:
    """Every severity x subtype x location phrase (empty parts allowed), at most ``limit``."""
    parts = [spec.get(k) or [""] for k in ("severity", "subtype", "location")]
    prompts = [" ".join(p for p in combo if p) for combo in itertools.product(*parts)]
    prompts = list(dict.fromkeys(p for p in prompts if p))
    if len(prompts) > limit:
        keep = np.random.default_rng(seed).choice(len(prompts), limit, replace=False)
        prompts = [prompts[i] for i in sorted(keep)]
    return prompts


def max_over_prompts(scores: torch.Tensor, owner: list[int], classes: int) -> torch.Tensor:
    """(N x P) prompt scores -> (N x C) class scores, each the max over its prompts."""
    owner_t = torch.as_tensor(owner)
    return torch.stack([scores[:, owner_t == c].max(dim=1).values for c in range(classes)], dim=1)


@TASK_KINDS.register("zeroshot")
class ZeroShot(Task):
    config_class = ZeroShotConfig
    splits = ("test",)
    needs_text_tower = True

    def fit_evaluate(self, fit: Fit) -> dict[str, float]:
        c = self.cfg
        prompts, owner = [], []
        for k, name in enumerate(c.classes):
            mine = class_prompts(c.prompts[name], c.max_prompts)
            prompts += mine
            owner += [k] * len(mine)
        scores = max_over_prompts(joint_scores(fit, fit.test, prompts, c.image_size), owner, len(c.classes))
        truth = np.asarray(fit.test.labels)
        predicted = scores.argmax(1).numpy()
        probs = torch.softmax(scores, dim=1).numpy()
        return {
            "accuracy": accuracy(truth, predicted),
            "f1": macro_f1(truth, predicted, len(c.classes)),
            "auroc": auroc(np.eye(len(c.classes))[truth], probs),
            "prompts": len(prompts),
            "test_images": len(truth),
        }

    def references(self, labels: TestLabels) -> dict:
        return label_chance(labels.labels, len(self.cfg.classes))
