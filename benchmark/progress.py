"""Progress that stays readable in logs: a tqdm bar on a terminal, a plain line
every ``interval`` seconds otherwise (CI and Ray logs), silent with TQDM_DISABLE=1.

Off a terminal the line comes every ``interval`` seconds even while one unit of work runs longer
(a paper-size step on a CPU, a grid waiting on its trials): a heartbeat thread writes it."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

from tqdm import tqdm


def quiet() -> bool:
    return os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")  # not print(): Ray Train workers also log every print, which doubled the lines
    sys.stderr.flush()


@contextlib.contextmanager
def heartbeat(desc: str, status: Callable[[], str], interval: float = 10.0,
              write: Callable[[str], None] = _stderr) -> Iterator[None]:
    """While the block runs, ``[desc] <status()> (<elapsed>s)`` every ``interval`` seconds (off with
    TQDM_DISABLE=1): a command that waits (a grid on its trials) still says it is alive."""
    if quiet():
        yield
        return
    stop, start = threading.Event(), time.monotonic()

    def beat() -> None:
        while not stop.wait(interval):
            write(f"[{desc}] {status()} ({time.monotonic() - start:.0f}s)")

    thread = threading.Thread(target=beat, name=f"heartbeat-{desc}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=1)


class Progress:
    def __init__(self, total: int | None, desc: str, interval: float = 10.0, unit: str = "it", disable: bool = False) -> None:
        self.total, self.desc, self.interval, self.unit = total, desc, interval, unit
        self.count = 0
        self.postfix = ""
        self._quiet = disable or quiet()
        self._bar = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        if not self._quiet and sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=desc, unit=unit, mininterval=0.5, leave=False)
        self._start = self._last = time.monotonic()
        if not self._quiet and self._bar is None:  # a log: a line every interval, also inside a long unit
            self._beat = threading.Thread(target=self._heartbeat, name=f"progress-{desc}", daemon=True)
            self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval / 4):
            with self._lock:
                if time.monotonic() - self._last >= self.interval:
                    self._last = time.monotonic()
                    self._line()

    def update(self, n: int = 1, **postfix: object) -> None:
        with self._lock:
            self.count += n
            if postfix:
                self.postfix = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in postfix.items())
            if self._bar is not None:
                self._bar.update(n)
                if postfix:
                    self._bar.set_postfix_str(self.postfix, refresh=False)
            elif not self._quiet and time.monotonic() - self._last >= self.interval:
                self._last = time.monotonic()
                self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self._start
        of = f"/{self.total}" if self.total else ""
        _stderr(f"[{self.desc}] {self.count}{of} {self.unit} {elapsed:.0f}s {self.postfix}".rstrip())

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1)
            self._beat = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
