"""Where caches and results live (environment-overridable)."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

#: an encoder cache folder's metadata, written last: its presence marks a finished encoder (here, not in
#: the pre-training loop's module, so that commands which only look at the cache need no torch)
META = "meta.json"

log = logging.getLogger(__name__)
#: below this much free space, a failed write is taken for a full disk
FULL_DISK_MARGIN = 64 << 20

#: the folder above the package: the checkout in a source tree or an editable
#: install, site-packages in a wheel install (so never a place to read data from)
REPO_ROOT = Path(__file__).resolve().parents[1]


def _package_dir(package: str) -> Path:
    """The folder of a data package, through importlib.resources: configs/ and
    results/reference/ stay at the top of the repository and are mapped into the
    installed package (pyproject.toml), so an editable install and a wheel read
    the same files the same way."""
    folder = resources.files(package)
    if not isinstance(folder, Path):  # a zipped install: no folder to glob
        raise RuntimeError(f"{package} is not a folder on disk ({folder!r}); install medvlp-bench unzipped")
    return folder


def config_dir() -> Path:
    """The shipped YAML configs: ``<kind>/<name>.yaml`` for methods, tasks, profiles, sweeps, experiments."""
    return _package_dir("benchmark.configs")


def reference_dir() -> Path:
    """The shipped published numbers (``*.csv``) for ``table --reference``."""
    return _package_dir("benchmark.reference")


def writable_dir(path: Path, what: str, hint: str) -> Path:
    """``path`` created if needed; a folder that cannot be made is the user's to fix."""
    from benchmark.errors import UserError

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} {path} ({exc.strerror or exc}); {hint}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{what} {path} is not writable; {hint}")
    return path


def env_path(name: str, default: str) -> Path:
    """``$name`` as a path, ``default`` when it is unset or empty: ``BENCHMARK_HOME=``
    (a script's unset variable) must not mean the current folder."""
    value = os.environ.get(name, "")
    return Path(value if value.strip() else default).expanduser()


def home_path() -> Path:
    """Where the caches go, without creating it (for messages)."""
    return env_path("BENCHMARK_HOME", "~/.cache/medvlp-bench")


def home() -> Path:
    """Root of every cache: phantom data, text embeddings, encoders, features, splits."""
    return writable_dir(home_path(), "the cache folder", "set BENCHMARK_HOME to a writable folder")


def cache_dir(*parts: str) -> Path:
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_path() -> Path:
    """The SQLite results store (relative paths are taken from the working directory)."""
    return env_path("BENCHMARK_STORE", "results/benchmark.sqlite")


TEMP_GLOB = ".*.tmp"  # what _temp_beside names: .<target name>.<random>.tmp


def _temp_beside(path: Path) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return tmp


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (SIGKILL runs no
    cleanup); returns how many. Call it only while holding the folder's lock: a
    live writer's temporary file looks the same."""
    removed = 0
    for tmp in folder.glob(TEMP_GLOB):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _commit(tmp: str, path: Path) -> None:
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` a temporary file beside ``path``, then rename it into place, so a
    reader (or a run killed mid-write) never sees half a file."""
    tmp = _temp_beside(path)
    try:
        write(Path(tmp))
        _commit(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_memmaps(paths: Sequence[Path], shape: tuple[int, ...]) -> Iterator[list]:
    """One writable uint8 ``.npy`` memmap of ``shape`` per path, under temporary
    names; renamed into place when the block ends, removed if it raises. The image
    caches (phantom renders, decoded real images) are written this way."""
    import numpy as np

    tmps: list[str] = []
    try:
        for path in paths:
            tmps.append(_temp_beside(path))
        arrays = [np.lib.format.open_memmap(t, mode="w+", dtype=np.uint8, shape=shape) for t in tmps]
        yield arrays
        for arr in arrays:
            arr.flush()
        del arrays
        for tmp, path in zip(tmps, paths):
            _commit(tmp, path)
    except BaseException:
        for tmp in tmps:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_json(path: Path, obj: object) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8"))


def atomic_torch_save(obj: object, path: Path) -> None:
    import torch

    def save(tmp: Path) -> None:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:  # torch's writer reports a full disk as "file write failed", not ENOSPC
            if shutil.disk_usage(tmp.parent).free >= FULL_DISK_MARGIN:
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc

    atomic_write(path, save)


def atomic_safetensors_save(state: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    """A flat dict of tensors as a safetensors file, atomically. Tensors are copied to
    contiguous CPU memory first: safetensors refuses views and storage shared by two keys
    (tied weights), and a channels_last CUDA weight is neither contiguous nor on the CPU."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}

    def save(tmp: Path) -> None:
        try:
            save_file(flat, str(tmp), metadata=metadata)
        except Exception as exc:  # the Rust writer reports a full disk as its own error type
            if shutil.disk_usage(tmp.parent).free >= FULL_DISK_MARGIN:
                raise
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc

    atomic_write(path, save)


@contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``lock`` (created if needed): a second process doing
    the same work waits, says so, and then finds the first one's result. ``filelock``
    locks the open file itself (``flock`` on Unix, ``msvcrt`` on Windows), so the
    system frees it when the holder dies, even by SIGKILL, while a stopped holder
    (SIGSTOP) keeps it."""
    from filelock import FileLock, Timeout

    held = FileLock(lock, thread_local=False)  # acquired and released by whichever thread runs the block
    try:
        held.acquire(timeout=0)  # one attempt first, so that a wait is said once
    except Timeout:
        log.info("waiting for another process %s (lock %s)", what, lock)
        held.acquire()
    try:
        yield
    finally:
        held.release()
