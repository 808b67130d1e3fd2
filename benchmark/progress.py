"""Progress that stays readable in logs: a tqdm bar on a terminal, a plain line
every ``interval`` seconds otherwise (CI and Ray logs), silent with TQDM_DISABLE=1."""

from __future__ import annotations

import os
import sys
import time

from tqdm import tqdm


class Progress:
    def __init__(self, total: int | None, desc: str, interval: float = 10.0, unit: str = "it", disable: bool = False) -> None:
        self.total, self.desc, self.interval, self.unit = total, desc, interval, unit
        self.count = 0
        self.postfix = ""
        self._quiet = disable or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        self._bar = None
        if not self._quiet and sys.stderr.isatty():
            self._bar = tqdm(total=total, desc=desc, unit=unit, mininterval=0.5, leave=False)
        self._start = self._last = time.monotonic()

    def update(self, n: int = 1, **postfix: object) -> None:
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
        line = f"[{self.desc}] {self.count}{of} {self.unit} {elapsed:.0f}s {self.postfix}".rstrip()
        sys.stderr.write(line + "\n")  # not print(): Ray Train workers also log every print, which doubled the lines
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
