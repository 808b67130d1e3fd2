"""Device choice and the per-device training settings: the precision policy (bf16 autocast and
fused AdamW on CUDA, fp16 autocast with a GradScaler on a GPU without bf16, plain float32 on
CPU) and channels_last.

``BENCHMARK_DEVICE_POLICY`` puts the CUDA path on the CPU, so that CI (which has no GPU)
exercises it: ``cuda`` is a bf16 GPU's policy (bf16 autocast, fused AdamW, channels_last),
``cuda-fp16`` a GPU's without bf16 (fp16 autocast, GradScaler, fused AdamW). Empty or ``auto``:
each device's own. It is a switch of how a run executes, in no config hash; the policy a
pre-training ran under is recorded in its ``meta.json``.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

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
    A device this machine lacks, or one nothing trains on, is a UserError (and so is a
    ``BENCHMARK_DEVICE_POLICY`` that names no policy: said before any work starts)."""
    stand_in()
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


POLICY_ENV = "BENCHMARK_DEVICE_POLICY"
#: the stand-ins ``BENCHMARK_DEVICE_POLICY`` may name: the CUDA path's settings, on any device
STAND_INS = ("cuda", "cuda-fp16")


@dataclass(frozen=True)
class Precision:
    """How a device trains: the autocast dtype (None: float32), fused AdamW, a GradScaler (fp16),
    and why (the device's capability, or the stand-in that asked for it)."""

    device_type: str
    dtype: torch.dtype | None
    fused_adamw: bool
    grad_scaler: bool
    why: str

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        return torch.amp.GradScaler(self.device_type) if self.grad_scaler else None

    def describe(self) -> str:
        """``bf16 autocast, fused AdamW, channels_last (CUDA with bf16)``, as logs and meta.json say it."""
        parts = ["float32" if self.dtype is None else f"{_DTYPE_NAMES[self.dtype]} autocast"]
        parts += ["GradScaler"] if self.grad_scaler else []
        parts += ["fused AdamW"] if self.fused_adamw else []
        return ", ".join([*parts, "channels_last"]) + f" ({self.why})"

    @property
    def tag(self) -> str:
        """A short name for file names of what the precision changes (cached features): empty for float32."""
        return "" if self.dtype is None else _DTYPE_NAMES[self.dtype]


_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


def stand_in() -> str:
    """The stand-in ``BENCHMARK_DEVICE_POLICY`` names ('' for none); another value is a UserError."""
    value = os.environ.get(POLICY_ENV, "").strip()
    if value in ("", "auto"):
        return ""
    if value not in STAND_INS:
        raise UserError(f"{POLICY_ENV}={value!r} is not a policy; use auto, {' or '.join(STAND_INS)}")
    return value


def policy(device: torch.device) -> Precision:
    """The device's precision: bf16 on a CUDA GPU that has it, else fp16 with a GradScaler; float32 on
    CPU and MPS (fp32 there is both faster and exact), unless a stand-in asks for the CUDA path."""
    t = device.type
    if (which := stand_in()) and t != "cuda":
        if which == "cuda-fp16":
            return Precision(t, torch.float16, True, True, f"stand-in {POLICY_ENV}={which}")
        return Precision(t, torch.bfloat16, True, False, f"stand-in {POLICY_ENV}={which}")
    if t == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(t, torch.bfloat16, True, False, "CUDA with bf16")
        return Precision(t, torch.float16, True, True, f"CUDA without bf16: {torch.cuda.get_device_name(device)}")
    return Precision(t, None, False, False, t.upper() if t == "cpu" else t)


def autocast(device: torch.device):
    """The device policy's autocast region (nothing where it trains in float32)."""
    return policy(device).autocast()


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
