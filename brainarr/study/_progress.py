"""One progress line per stage: items done of the total, elapsed time and the time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A progress line ``label: done/total [elapsed < left]`` rewritten in place.

    Parameters
    ----------
    total : int
        Number of items of the stage.
    label : str
        What is counted (``"subjects"``).
    enabled : bool, default True
        False: print nothing (``--quiet``).
    stream : file, optional
        Where to write (default ``sys.stderr``).
    interval : float, default 0.5
        Least seconds between two updates of the line (the last one is always written).

    Examples
    --------
    >>> bar = Progress(3, "subjects", enabled=False)
    >>> for _ in range(3):
    ...     bar.update()
    >>> bar.close()
    >>> bar.done
    3
    """

    def __init__(
        self, total: int, label: str, *, enabled: bool = True, stream: TextIO | None = None, interval: float = 0.5
    ) -> None:
        self.total = int(total)
        self.label = label
        self.enabled = enabled and self.total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.done = 0
        self.start = time.perf_counter()
        self._shown = -float("inf")
        if self.enabled:
            self._show()

    def line(self) -> str:
        """The current line (without carriage return)."""
        elapsed = time.perf_counter() - self.start
        left = elapsed / self.done * (self.total - self.done) if self.done else None
        eta = _clock(left) if left is not None else "?"
        percent = 100 * self.done // max(self.total, 1)
        return f"{self.label}: {self.done}/{self.total} ({percent}%) [{_clock(elapsed)} < {eta}]"

    def _show(self) -> None:
        self.stream.write("\r" + self.line())
        self.stream.flush()
        self._shown = time.perf_counter()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done."""
        self.done += n
        if self.enabled and (self.done >= self.total or time.perf_counter() - self._shown >= self.interval):
            self._show()

    def close(self) -> None:
        """End the line."""
        if self.enabled:
            self._show()
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False
