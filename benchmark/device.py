"""Device choice and the per-device training settings (AMP bf16 on CUDA, channels_last)."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from benchmark.errors import OutOfMemory, UserError

#: device types a trial can train on (torch knows more: meta has no data, xla/xpu/hpu are untested here)
TRAINING_DEVICES = ("cpu", "cuda", "mps")


def parse_device(preference: str) -> torch.device:
    """A device name trials can train on (cpu, cuda[:N], mps), not yet checked
    against this machine: a grid's driver checks the name before its trials,
    which may run on other machines, check availability."""
    try:
        device = torch.device(preference)
    except (RuntimeError, ValueError, TypeError):
        raise UserError(f"unknown device {preference!r}; use auto, cpu, cuda or cuda:N (or mps on Apple silicon)") from None
    if device.type not in TRAINING_DEVICES:
        raise UserError(f"device {preference!r} is not one a trial can train on; use auto, cpu, cuda or cuda:N "
                        "(or mps on Apple silicon)")
    return device


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` (or ``$BENCHMARK_DEVICE``; empty means auto): CUDA if present, else CPU.
    A device this machine lacks, or one nothing trains on, is a UserError."""
    if preference == "auto":
        preference = os.environ.get("BENCHMARK_DEVICE", "").strip() or "auto"
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = parse_device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {preference!r} asked for, but no CUDA device is available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {preference!r} asked for, but this machine has {torch.cuda.device_count()} "
                            f"CUDA device(s): cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {preference!r} asked for, but MPS (Apple silicon) is not available here; use --device cpu")
    return device


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on CPU (fp32 there is both faster and exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last everywhere: on CUDA for tensor cores, on CPU because oneDNN's
    ResNet-50 convolutions run about 2x faster in it (measured 2026-11-23 on the
    2-core CI-class machine: a ResNetStages forward+backward+AdamW loop, batch 64
    at 64 px, median of 4 steps, 22 vs 10.6 img/s; ``benchmark speed``, issue 7,
    is to make this a command)."""
    return torch.channels_last


@contextlib.contextmanager
def out_of_memory_as(what: str, batch_size: int, image_size: int, prefix: str = ""):
    """A CUDA out-of-memory error becomes one line naming the sizes to lower
    (and the cached blocks are freed, so that a grid's next trial can run)."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise OutOfMemory(
            f"GPU out of memory in {what} at batch_size {batch_size}, image_size {image_size}: "
            f"lower --set {prefix}batch_size or --set {prefix}image_size"
        ) from exc


def compile_requested() -> bool:
    """``BENCHMARK_COMPILE=1``: torch.compile the backbone (a speed switch: it is
    not part of any config hash, and the loss is the same to float tolerance)."""
    return os.environ.get("BENCHMARK_COMPILE", "") not in ("", "0")


def maybe_compile(module: torch.nn.Module, enabled: bool | None = None) -> torch.nn.Module:
    """Compile ``module.backbone`` in place (state-dict keys unchanged) when asked."""
    if enabled if enabled is not None else compile_requested():
        module.backbone.compile()
    return module


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{torch.get_num_threads()}threads"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
