"""What every downstream task kind shares: its config fields and the fit/evaluate
interface, plus frozen-encoder feature handling used by the frozen protocols.

A named task is data (``configs/tasks/<name>.yaml``): its kind, data set,
metric and the protocol's hyper-parameters. A kind is code (one module here).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from benchmark.config import Count, NonNegative, Positive, Range, Size
from benchmark.data.types import TestLabels
from benchmark.device import autocast
from benchmark.errors import TrainingDiverged, UserError, overflow_as_divergence

PhantomSplit = Annotated[int, Range(1, 1_000_000)]

#: ``log(epoch, {"train/loss": ..., "val/score": ...})``: every epoch's curves (the trial's logger)
EpochLog = Callable[[int, dict], None]
#: what a validation metric that no pass could compute says (stored as the trial's ``val_note``)
VAL_UNDEFINED = ("undefined on every validation pass (a validation split without positives, or with one class): "
                 "no selection, the last epoch's head was kept")
#: ``on_epoch(epoch, score)``: called after every validation pass that may select the head
#: (see ``train_head``: none before ``min_steps``, only finite scores) with the score as
#: higher-is-better (the validation metric, or minus the validation loss); a search hands
#: one per trial to report to its scheduler
EpochReport = Callable[[int, float], None]


@dataclass
class TaskConfig:
    UNHASHED_FIELDS: ClassVar[tuple[str, ...]] = ("description",)  # prose: editing it changes no result
    #: fields added after results were stored: hashed only when set to something other than the default
    HASHED_IF_SET: ClassVar[tuple[str, ...]] = ("test_subset", "subset")
    #: what the task is (its YAML says): never overridden, or the stored config would lie
    IDENTITY_FIELDS: ClassVar[tuple[str, ...]] = ("name", "kind", "dataset", "metric")

    name: str = ""
    kind: str = ""
    dataset: str = ""  # data set key: which loader serves it, real or phantom
    description: str = ""
    metric: str = ""  # primary metric
    protocol: Literal["mgca", "finetune"] = "mgca"  # finetune: BenchX-style, the encoder trains too
    image_size: Annotated[int, Range(32, 4096)] = 224
    batch_size: Size = 16
    lr: Positive = 5e-4
    weight_decay: NonNegative = 1e-6
    epochs: Size = 50
    patience: Size = 10  # early stopping on validation loss
    #: at least this many optimiser steps before early stopping or selection may act (0: off, MGCA's loop)
    min_steps: Count = 0
    #: how the fraction subset is drawn (``benchmark.data.splits``): "stratified" per seed, or "mgca"
    #: (MGCA's ``sample(frac, random_state=42)``, one subset for every seed; its classification tasks' rule)
    subset: Literal["stratified", "mgca"] = "stratified"
    phantom_train: PhantomSplit = 1000  # phantom stand-in split sizes
    phantom_val: PhantomSplit = 200
    phantom_test: PhantomSplit = 200
    encoder_lr_ratio: Positive = 0.1  # finetune: encoder lr = lr x ratio
    warmup_epochs: NonNegative = 1.0  # finetune: linear warm-up, then cosine to 0 (stepped per batch)
    grad_clip: NonNegative = 1.0  # finetune: gradient-norm clip (0: none)

    def validate(self) -> None:
        """Checks across fields; each field's own range is declared on its type (checked by ``build``)."""
        if self.image_size % 32:
            raise UserError(f"image_size must be a multiple of 32 (ResNet stride), got {self.image_size}")


@dataclass
class Fit:
    """What one trial hands its task."""

    encoder_state: dict  # the transferred encoder's weights (a torchvision ResNet's keys by default)
    encoder_key: str  # identifies that encoder: keys feature caches
    train: Any  # the whole training split
    train_ids: list[str]  # the fraction subset of it
    val: Any
    test: Any
    seed: int
    device: torch.device
    load_method: Callable[[], Any] | None = None  # the whole pre-trained method (joint-space tasks)
    on_epoch: EpochReport | None = None  # per-epoch validation scores, for a search's scheduler
    #: per-epoch curves (``train/loss``, ``val/score``; NaN where validation is undefined): the trial's curves folder
    log: EpochLog | None = None
    #: the encoder's architecture (``methods.backbones`` spec); None: a torchvision ResNet, read from the weights
    encoder_arch: str | dict | None = None

    @property
    def arch(self) -> str | dict:
        """The architecture to rebuild: the spec the encoder came with, else the ResNet its keys say."""
        return architecture(self.encoder_state, self.encoder_arch)

    def train_subset(self):
        from benchmark.data.splits import select

        return select(self.train, self.train_ids)


class Task:
    """A task kind. ``fit_evaluate`` trains the protocol's head on the fraction
    subset of the training split, selects on ``val`` and returns test metrics.
    Zero-shot kinds train nothing (``splits = ("test",)``) and need the method's
    joint image-text space (``needs_text_tower``)."""

    config_class: type[TaskConfig] = TaskConfig
    splits: tuple[str, ...] = ("train", "val", "test")
    needs_text_tower: bool = False

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg

    def strata(self, split) -> np.ndarray | None:
        """Labels that stratify the fraction subset (None: no stratification)."""
        return None

    def fit_evaluate(self, fit: Fit) -> dict[str, float]:
        raise NotImplementedError

    def test_split(self, test):
        """The test images this task scores (all of them unless its config narrows them)."""
        return test

    def test_labels(self, test) -> TestLabels:
        """A loaded test split's labels, as :meth:`references` takes them."""
        return TestLabels(list(test.ids), np.asarray(test.labels))

    def references(self, labels: TestLabels) -> dict:
        """What trivial predictors score on a test split from its labels alone
        (``tasks.references``), the same from a loaded split (stored with every trial) and
        from the label files (``baselines``). {} where a kind has none."""
        return {}


def head_epochs(cfg: TaskConfig, n_train: int) -> int:
    """The epoch budget: ``cfg.epochs``, raised until it holds ``cfg.min_steps`` optimiser steps
    (a 1 % subset of 10 images in batches of 48 is one step per epoch)."""
    per_epoch = max(1, -(-n_train // cfg.batch_size))
    return max(cfg.epochs, -(-cfg.min_steps // per_epoch))


def train_head(
    head: nn.Module, cfg: TaskConfig, seed: int, n_train: int, n_val: int,
    batch_loss: Callable[[str, np.ndarray], torch.Tensor],
    val_score: Callable[[], float] | None = None,
    encoder: nn.Module | None = None,
    on_epoch: EpochReport | None = None,
    log: EpochLog | None = None,
) -> tuple[float, int]:
    """Head training for both protocols: AdamW, shuffled batches per (seed,
    epoch), early stopping on validation (models in eval mode), and the
    best-validation weights restored. ``batch_loss(split, idx)`` is the mean loss
    of the rows ``idx`` of ``split``. Selection is on the mean validation loss,
    or on ``val_score()`` (higher is better; NaN never wins) when given.

    ``cfg.min_steps`` (0: off) is a floor in optimiser steps, not epochs, so that
    a head on a small subset trains at all: the epoch budget is raised to hold
    that many steps (``head_epochs``), and validation passes before the step
    count reaches it are neither candidates for the restored weights nor counted
    by the patience counter (nor reported to ``on_epoch``); the first pass at or
    after ``min_steps`` is the first candidate. MGCA's and BenchX's loops have no
    such floor (``min_steps: 0`` is exactly their loop): there, a 10-image subset
    in batches of 48 takes one step per epoch and the validation loss can select
    a head a few steps from its random initialisation.

    With ``encoder`` (the finetune protocol) the encoder trains too, at
    ``lr * encoder_lr_ratio``, with linear warm-up + cosine stepped per batch over
    the whole (raised) budget, and gradient clipping, as BenchX does.
    A validation value that is undefined (NaN: a validation split without positives, or with
    one class) selects nothing: while no pass has a defined value the latest weights are kept
    and patience does not count, and the returned value is NaN (see ``val_metrics``). ``log``
    hears every validation epoch's mean training loss and validation score (NaN where undefined).
    Returns (best validation loss or score, epochs run)."""
    trained = nn.ModuleList([head] + ([encoder] if encoder is not None else []))
    groups = [{"params": [p for p in head.parameters() if p.requires_grad], "lr": cfg.lr}]
    if encoder is not None:
        groups.append({"params": [p for p in encoder.parameters() if p.requires_grad], "lr": cfg.lr * cfg.encoder_lr_ratio})
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch, epochs = max(1, -(-n_train // cfg.batch_size)), head_epochs(cfg, n_train)
    sched = None
    if encoder is not None:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(round(cfg.warmup_epochs * per_epoch), epochs * per_epoch))
    sign = -1.0 if val_score is not None else 1.0  # minimise loss, or -score
    best, best_state, stale, epochs_run, steps = math.inf, copy.deepcopy(trained.state_dict()), 0, 0, 0
    defined = False  # whether a validation pass at or after min_steps had a value
    for epoch in range(epochs):
        trained.train()
        seen, total_loss = 0, 0.0
        for step, idx in enumerate(batches(n_train, cfg.batch_size, seed, epoch), 1):
            loss = batch_loss("train", idx)
            seen, total_loss = seen + len(idx), total_loss + float(loss.detach()) * len(idx)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"{cfg.name} training loss became {loss.item()} at epoch {epoch + 1}, step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if sched is not None and cfg.grad_clip:
                nn.utils.clip_grad_norm_(trained.parameters(), cfg.grad_clip)
            with overflow_as_divergence(f"{cfg.name} training at epoch {epoch + 1}, step {step}"):
                opt.step()
            steps += 1
            if sched is not None:
                sched.step()
        epochs_run = epoch + 1
        if steps < cfg.min_steps and epochs_run < epochs:
            continue  # too close to the initialisation to be selected: no validation pass at all
        trained.eval()
        with torch.no_grad():
            if val_score is None:
                val = sum(float(batch_loss("val", idx)) * len(idx) for idx in batches(n_val, cfg.batch_size)) / n_val
            else:
                val = val_score()
        if log is not None:
            log(epochs_run, {"train/loss": total_loss / max(seen, 1), "val/score": -sign * val if math.isfinite(val)
                             else math.nan})
        if not math.isfinite(val):
            if not defined:  # nothing to select on yet: the latest weights stand, patience waits
                best_state = copy.deepcopy(trained.state_dict())
            continue
        val = sign * val
        if on_epoch is not None:
            on_epoch(epochs_run, -val)
        if not defined or val < best:
            best, best_state, stale, defined = val, copy.deepcopy(trained.state_dict()), 0, True
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    trained.load_state_dict(best_state)
    trained.eval()
    return (sign * best if defined else math.nan), epochs_run


def val_metrics(name: str, best: float) -> dict:
    """``{name: best}``, and ``val_note`` saying why where no validation pass had a value (NaN)."""
    return {name: best, **({"val_note": VAL_UNDEFINED} if math.isnan(best) else {})}


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """lr factor per step: linear warm-up over ``warmup`` steps, then cosine to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def batches(n: int, batch_size: int, seed: int | None = None, epoch: int = 0) -> Iterator[np.ndarray]:
    """Index batches, shuffled per (seed, epoch) when a seed is given."""
    order = np.arange(n) if seed is None else np.random.default_rng([seed, epoch]).permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class FrozenFeatures:
    """A frozen encoder's outputs for one split.

    With a frozen encoder and no augmentation the features never change, so they
    are computed once (when they fit in ``budget_bytes``) and every epoch trains
    only the head; otherwise they are recomputed per batch, with the same result.
    """

    def __init__(self, encoder: nn.Module, inputs, n: int, device: torch.device, batch_size: int, budget_bytes: float = 2e9):
        self.encoder, self.inputs, self.n, self.device, self.batch_size = encoder, inputs, n, device, batch_size
        self.cached: list[torch.Tensor] | None = None
        with torch.no_grad():
            sample = self._encode(np.arange(1))
        per_image = sum(t[0].numel() * t.element_size() for t in sample)
        if per_image * n <= budget_bytes:
            parts = [self._encode(idx) for idx in batches(n, batch_size)]
            self.cached = [torch.cat(level) for level in zip(*parts)]

    @torch.no_grad()
    def _encode(self, idx: np.ndarray) -> list[torch.Tensor]:
        """The encoder's outputs under the device policy's autocast, kept in float32 (the heads train in it)."""
        x = self.inputs(idx).to(self.device, memory_format=torch.channels_last)
        with autocast(self.device):
            return [t.detach().float() for t in self.encoder(x)]

    def __call__(self, idx: np.ndarray) -> list[torch.Tensor]:
        if self.cached is not None:
            index = torch.as_tensor(idx, device=self.cached[0].device)
            return [t.index_select(0, index) for t in self.cached]
        return self._encode(idx)


class LiveFeatures:
    """The finetune protocol's encoder outputs: computed on every batch, with
    gradients, in whatever mode the trainer has set; in float32 on every device
    (the heads' loops have no GradScaler, which fp16 would need)."""

    def __init__(self, encoder: nn.Module, inputs, device: torch.device) -> None:
        self.encoder, self.inputs, self.device = encoder, inputs, device

    def __call__(self, idx: np.ndarray) -> list[torch.Tensor]:
        return self.encoder(self.inputs(idx).to(self.device, memory_format=torch.channels_last))


def encoder_features(encoder: nn.Module, inputs, n: int, cfg: TaskConfig, device: torch.device):
    """Frozen features (computed once) for mgca, live ones for finetune."""
    if cfg.protocol == "finetune":
        return LiveFeatures(encoder, inputs, device)
    return FrozenFeatures(encoder, inputs, n, device, cfg.batch_size)


def prepare_encoder(encoder: nn.Module, cfg: TaskConfig) -> nn.Module | None:
    """Freeze for mgca (returns None); leave trainable for finetune (returns it for train_head)."""
    if cfg.protocol == "finetune":
        return encoder.requires_grad_(True)
    encoder.eval().requires_grad_(False)
    return None


@torch.no_grad()
def joint_scores(fit: Fit, split, texts: list[str], image_size: int, batch_size: int = 64) -> torch.Tensor:
    """Image-text scores (N images x T texts) in the method's joint space, with
    the method's own input normalisation; texts are embedded by ``similarity``."""
    from benchmark.data.transforms import downstream_batch

    model = fit.load_method().to(fit.device).eval()
    model.text_device = str(fit.device)  # its frozen text encoder (if any) on the trial's device
    rows = []
    for idx in batches(len(split.ids), batch_size):
        x = downstream_batch(split.images[idx], image_size, model.image_stats).to(fit.device)
        with autocast(fit.device):
            rows.append(model.similarity(x, texts).float().cpu())
    return torch.cat(rows)


def load_encoder(encoder: nn.Module, state: dict) -> None:
    """Strict load: a mismatch is a bug (or a bad checkpoint), never silently ignored."""
    from benchmark.models.backbones import state_mismatch

    if differs := state_mismatch(nn.Module.state_dict(encoder), state):
        raise RuntimeError(f"encoder weights do not match {getattr(encoder, 'arch', type(encoder).__name__)}: {differs}")
    # nn.Module's own method: smp's encoder overrides it and returns nothing
    nn.Module.load_state_dict(encoder, state, strict=True)


def architecture(state: dict, arch: str | dict | None = None) -> str | dict:
    """``arch``, or for a state dict that came without one (caches and checkpoints from before
    architectures were recorded: torchvision ResNets) the ResNet its keys say."""
    if arch is not None:
        return arch
    from benchmark.models.encoders import backbone_of

    try:
        return backbone_of(state)
    except ValueError as exc:
        raise RuntimeError(f"the encoder's weights came without their architecture and are {exc}") from None


def transferred_encoder(state: dict, arch: str | dict | None = None) -> nn.Module:
    """The transferred encoder rebuilt from its architecture (``architecture``) and loaded strictly."""
    from benchmark.models.backbones import build_backbone

    encoder = build_backbone(architecture(state, arch))
    load_encoder(encoder, state)
    return encoder
