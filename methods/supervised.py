"""``supervised``: the positive control, not a method from the literature.

What it is for: proof that the benchmark's measurement has power. The image
encoder is pre-trained with multi-label BCE on the phantom corpus's own finding
labels (``benchmark.data.phantom.labels``: the lesions the renderer drew for
each image, from the same reports the VLP methods read), through the same loop,
corpus, augmentation and initialisation as the VLP methods. If this encoder
does not beat ``random`` downstream, no VLP result on the phantom means
anything; if it does, the gap is the room a method has to show.

It is phantom-only: real reports carry no rendered ground truth, so on real
data it is refused (``phantom_only``, checked by the runner before any data is
read). It has no text tower: zero-shot and retrieval refuse it, like ``random``.

Model: the ResNet (``backbone``) -> global average pool of layer4 -> one linear
layer to the finding logits. Augmentation: IMITATE's (``ImitateViews``), one
view; its horizontal flip is applied here instead of inside the transform, so
that a flipped image gets its right/left labels swapped (a flip moves the
patient's right lung to the other side of the image). Moving the flip to the
end of the pipeline leaves the distribution of views unchanged: crop, rotation
and perspective are drawn symmetrically and autocontrast is per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.data.phantom.labels import (
    FINDINGS,
    MIRROR,
    corpus_reports,
    finding_labels,
)
from benchmark.data.sources import PHANTOM
from benchmark.data.transforms import ImitateViews
from benchmark.errors import UserError
from benchmark.methods.base import Method, MethodConfig
from benchmark.models.backbones import pooled
from benchmark.registry import METHODS


@dataclass
class SupervisedConfig(MethodConfig):
    pass


def split_flip(views: ImitateViews) -> tuple[ImitateViews, float]:
    """``views`` with its horizontal flip taken out of the pipeline, and that flip's
    probability (0 when it has none), so the caller can flip and swap labels itself."""
    from torchvision.transforms import v2

    steps = list(views.geometric.transforms)
    flips = [t for t in steps if isinstance(t, v2.RandomHorizontalFlip)]
    views.geometric = v2.Compose([t for t in steps if t not in flips])
    return views, float(flips[0].p) if flips else 0.0


@METHODS.register("supervised")
class Supervised(Method):
    """Multi-label BCE on the phantom's ground-truth findings (a linear head on pooled layer4)."""

    config_class = SupervisedConfig
    views = 1
    #: refused on real data with this line, before anything is loaded (``benchmark.runner``)
    phantom_only = ("'supervised' is a phantom-only positive control: it trains on the phantom renderer's "
                    "ground-truth findings, which real reports do not carry; run it without --data-root "
                    "and BENCHMARK_DATA (phantom data)")

    def __init__(self, cfg: SupervisedConfig) -> None:
        super().__init__(cfg)
        self.head = nn.Linear(self.backbone.pooled_dim, len(FINDINGS))
        _, self.flip_p = split_flip(ImitateViews(cfg.image_size))
        self.generator = torch.Generator().manual_seed(cfg.seed)  # flip draws: saved in checkpoints
        self.register_buffer("labels", torch.zeros(0, len(FINDINGS)), persistent=False)
        self.register_buffer("mirror", torch.tensor(MIRROR), persistent=False)

    def train_transform(self) -> ImitateViews:
        return split_flip(ImitateViews(self.cfg.image_size))[0]

    def prepare(self, corpus) -> None:
        """The label matrix of the corpus (N x len(FINDINGS)), indexed by ``batch["index"]``."""
        if corpus.source != PHANTOM:
            raise UserError(self.phantom_only)
        self.labels = torch.from_numpy(finding_labels(corpus_reports(corpus.ids)))

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(pooled(self.backbone, images))

    def training_step(self, batch: dict[str, torch.Tensor], flip: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``flip``: which rows to mirror (B bools); drawn with ``flip_p`` when not given."""
        images, target = batch["view1"], self.labels[batch["index"]]
        if flip is None:
            flip = torch.rand(len(images), generator=self.generator) < self.flip_p
        flip = flip.to(images.device)
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        target = torch.where(flip[:, None], target[:, self.mirror], target)
        loss = F.binary_cross_entropy_with_logits(self.logits(images).float(), target)
        return {"loss": loss}

    def rng_state(self) -> dict:
        return {"flips": self.generator.get_state()}

    def load_rng_state(self, state: dict) -> None:
        if "flips" in state:
            self.generator.set_state(state["flips"])
