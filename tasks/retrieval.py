"""Image-to-report retrieval: every test image ranks every test report by the
method's joint-space similarity; a retrieved report is a hit when it shares the
image's class. Precision@K for K in ``ks`` (mean over images)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.config import Width
from benchmark.data.types import TestLabels
from benchmark.registry import TASK_KINDS
from benchmark.tasks.base import Fit, Task, TaskConfig, joint_scores
from benchmark.tasks.references import retrieval_chance


@dataclass
class RetrievalConfig(TaskConfig):
    ks: tuple[Width, ...] = (1, 5, 10)  # precision at each k


def precision_at_k(scores: torch.Tensor, query_labels: np.ndarray, item_labels: np.ndarray, k: int) -> float:
    """Mean over queries of the share of the top-k items whose label matches."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices.numpy()
    return float((np.asarray(item_labels)[top] == np.asarray(query_labels)[:, None]).mean())


@TASK_KINDS.register("retrieval")
class Retrieval(Task):
    config_class = RetrievalConfig
    splits = ("test",)
    needs_text_tower = True

    def fit_evaluate(self, fit: Fit) -> dict[str, float]:
        labels = np.asarray(fit.test.labels)
        scores = joint_scores(fit, fit.test, list(fit.test.texts), self.cfg.image_size)
        out = {f"p@{k}": precision_at_k(scores, labels, labels, k) for k in self.cfg.ks}
        out["test_images"] = len(labels)
        return out

    def references(self, labels: TestLabels) -> dict:
        return retrieval_chance(labels.labels, tuple(self.cfg.ks))
