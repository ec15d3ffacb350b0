"""Progress on long runs: a bar with texts/s and ETA on a terminal, a plain line every few seconds otherwise.

Log messages (retries, splits) go through the same stream: on a terminal the bar is erased,
the message printed, and the bar drawn again below it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Callable, TextIO

BAR_WIDTH = 24
TTY_INTERVAL_S = 0.2
LOG_INTERVAL_S = 10.0


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        tty: bool | None = None,
        retries: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "texts",
        detail: Callable[[], str] | None = None,
    ):
        self.unit = unit
        self._detail = detail  # more of the run's state, after the counts (a Batch run's children)
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._retries = retries
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._lock = threading.Lock()
        self._bar_shown = False

    def advance(self, texts: int) -> None:
        with self._lock:
            self.done += texts
            now = self._clock()
            interval = TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S
            if now - self._last_draw >= interval or self.done >= self.total:
                self._last_draw = now
                self._draw(now)

    def line(self) -> str:
        """`4,500/10,000 texts (45%), 812 texts/s, ETA 0:07, 0 retries`"""
        elapsed = max(self._clock() - self._started, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        percent = 100 * self.done / self.total if self.total else 100.0
        eta = duration(left) if left is not None else "?"
        return (
            f"{self.done:,}/{self.total:,} {self.unit} ({percent:.0f}%), {rate:,.0f} {self.unit}/s, ETA {eta}, "
            f"{self._retries():,} retries" + (f"; {self._detail()}" if self._detail else "")
        )

    def message(self, text: str) -> None:
        """A log line that keeps the bar intact."""
        with self._lock:
            if self.tty and self._bar_shown:
                self.stream.write("\r\x1b[2K")
            self.stream.write(text + "\n")
            if self.tty and self._bar_shown:
                self._draw(self._clock())
            self.stream.flush()

    def close(self) -> None:
        with self._lock:
            if self.tty and self._bar_shown:
                self.stream.write("\n")
                self.stream.flush()
            self._bar_shown = False

    def _draw(self, now: float) -> None:
        if self.tty:
            filled = int(BAR_WIDTH * self.done / self.total) if self.total else BAR_WIDTH
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(f"\r\x1b[2K[{bar}] {self.line()}")
            self._bar_shown = True
        else:
            self.stream.write(f"progress: {self.line()}\n")
        self.stream.flush()


class ProgressLogHandler(logging.Handler):
    """Routes log records through the progress display so they never tear the bar."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.message(self.format(record))
