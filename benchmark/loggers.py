"""Training curves: pre-training loss terms and downstream validation scores, as
TensorBoard event files (tensorboardX, installed with Ray) or a wandb run.

Which one: ``$BENCHMARK_LOGGER`` (the CLI's ``--logger`` sets it, so grid and
search workers inherit it): ``tensorboard`` (the default: offline, a few kB per
run, ``tensorboard --logdir`` reads it), ``wandb`` (needs ``pip install wandb``;
offline unless ``WANDB_MODE`` says otherwise or ``WANDB_API_KEY`` is set, so a run
never waits on the network or asks for a login) or ``none``.

A logger never changes a result: it is outside every config hash. Writing is
cheap in the hot loop: one event per step (every term in one protobuf), queued
to tensorboardX's writer thread (the loss terms are Python floats by then);
wandb logs from its own process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from benchmark.errors import UserError

log = logging.getLogger(__name__)
ENV = "BENCHMARK_LOGGER"
KINDS = ("tensorboard", "wandb", "none")
DEFAULT = "tensorboard"
EVENT_GLOB = "events.out.tfevents.*"
TB_DIR = "tb"  # the event files' folder inside the folder a logger is given
WANDB_PROJECT = "medvlp-bench"


def logger_kind(kind: str | None = None) -> str:
    """``kind``, else ``$BENCHMARK_LOGGER``, else tensorboard; checked (wandb: importable)."""
    kind = (kind or os.environ.get(ENV, "") or DEFAULT).strip().lower()
    if kind not in KINDS:
        raise UserError(f"unknown logger {kind!r} (from --logger or ${ENV}): choose one of {', '.join(KINDS)}")
    if kind == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise UserError("--logger wandb needs the wandb package: pip install wandb "
                            "(or --logger tensorboard, the default)") from None
    return kind


class Logger:
    """Logs nothing (``none``, and every DDP process but the first); the base of the others."""

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Logger:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class TensorBoardLogger(Logger):
    """Event files in ``folder``, one scalar series per key (``prefix`` + key). A step's
    values go as one event (one ``Summary`` holding every term) through tensorboardX's
    ``FileWriter``, which queues it to its writer thread: cheaper than one
    ``SummaryWriter.add_scalar`` event per term. The writer starts with the first
    scalar: a trial that trains nothing (zero-shot) leaves no folder."""

    def __init__(self, folder: Path, fresh: bool = False) -> None:
        self.folder, self.fresh, self.writer = folder, fresh, None

    def _open(self):
        from tensorboardX import FileWriter

        self.folder.mkdir(parents=True, exist_ok=True)
        if self.fresh:  # a run from its start: the curves of an earlier, abandoned run go
            for old in self.folder.glob(EVENT_GLOB):
                old.unlink(missing_ok=True)
        return FileWriter(str(self.folder), flush_secs=30)

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        if self.writer is None:
            self.writer = self._open()
        summary = Summary(value=[Summary.Value(tag=prefix + k, simple_value=float(v)) for k, v in values.items()])
        self.writer.add_summary(summary, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbLogger(Logger):
    """One wandb run, written under ``folder/wandb`` (offline unless configured online)."""

    def __init__(self, folder: Path, name: str, config: Mapping) -> None:
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), name=name, dir=str(folder),
                              config=dict(config), mode=mode, reinit=True)

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        self.run.log({prefix + k: v for k, v in values.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


def open_logger(folder: Path, name: str, config: Mapping, fresh: bool = False, enabled: bool = True,
                kind: str | None = None) -> Logger:
    """The configured logger writing under ``folder`` (an encoder's or a trial's): event
    files in ``folder/tb``, or a wandb run in ``folder/wandb`` named ``name``; a do-nothing
    one when ``enabled`` is false or the kind is ``none``. ``fresh``: a run from its start
    (earlier event files in ``folder/tb`` go)."""
    kind = logger_kind(kind)
    if not enabled or kind == "none":
        return Logger()
    if kind == "wandb":
        return WandbLogger(folder, name, config)
    return TensorBoardLogger(folder / TB_DIR, fresh)


def _masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC-32C of ``data`` (what each record stores after its length and data)."""
    from tensorboardX.crc32c import crc32c

    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in ``folder``'s event files: tag -> [(step, value), ...] in
    file order. Records are TFRecords (length, its CRC, an ``Event`` protobuf, its CRC),
    parsed with tensorboardX's own protobuf classes; a last record cut short (a writer
    still running, or killed) ends the file's reading."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob(EVENT_GLOB)):
        data, at = path.read_bytes(), 0
        while at + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            start, end = at + 12, at + 12 + length
            if end + 4 > len(data) or struct.unpack_from("<I", data, end)[0] != _masked_crc(data[start:end]):
                break
            event = Event.FromString(data[start:end])
            for value in event.summary.value:
                series.setdefault(value.tag, []).append((event.step, value.simple_value))
            at = end + 4
    return series


@contextmanager
def chosen(kind: str | None) -> Iterator[None]:
    """``$BENCHMARK_LOGGER`` set to ``kind`` (checked now, before any work) for the block, as
    the CLI's ``--logger`` sets it; None leaves it as it is."""
    if kind is None:
        yield
        return
    before = os.environ.get(ENV)
    os.environ[ENV] = logger_kind(kind)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
