"""One progress display for long work (training, evaluation, data generation).

On a terminal the line is rewritten in place; elsewhere (logs, CI) a line is printed at most every
``every`` seconds. The time left comes from the measured rate, or, when a wall-clock budget is
given (``budget_s``), from whichever ends first: the remaining work or the budget, so a run that
the clock will stop does not promise an hour; the total shown is then what the budget leaves room
for at the measured rate (never more than the work). Imports nothing heavy.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``42s``, ``3.5m`` or ``1.2h``; ``?`` for an unknown (infinite or NaN) time."""
    if not math.isfinite(s):
        return "?"
    s = max(s, 0.0)
    if s < 100:
        return f"{s:.0f}s"
    if s < 6000:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


class Progress:
    """``label: done/total unit (pct), rate unit/s, eta T [info]`` on stderr.

    ``start`` is where this process began (a resumed run starts past 0, and the rate counts only
    what it did itself); ``budget_s`` is a wall-clock limit measured from ``t0`` (default: now).
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "",
        start: int = 0,
        enabled: bool = True,
        every: float = 5.0,
        budget_s: float | None = None,
        bar: bool = False,
        stream=None,
        clock: Callable[[], float] = time.monotonic,
        t0: float | None = None,
    ):
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self.start, self.enabled, self.every, self.bar = start, enabled, every, bar
        self.budget_s = budget_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.t0 = clock() if t0 is None else t0
        self.t_shown = -math.inf
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._open = False

    def eta(self, done: int, now: float | None = None) -> float:
        """Seconds left: the remaining work at the measured rate, capped by the budget if any."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        rate = (done - self.start) / elapsed
        left = (self.total - done) / rate if rate > 0 else math.inf
        if self.budget_s is not None:
            left = min(left, max(self.budget_s - elapsed, 0.0))
        return left

    def expected_total(self, done: int, now: float | None = None) -> int:
        """The total shown: ``total``, or with a budget the units done when it runs out at the
        measured rate, if fewer."""
        now = self.clock() if now is None else now
        elapsed = max(now - self.t0, 1e-9)
        rate = (done - self.start) / elapsed
        if self.budget_s is None or rate <= 0:
            return self.total
        left = max(self.budget_s - elapsed, 0.0)
        return max(min(self.total, done + int(rate * left)), min(done, self.total), 1)

    def line(self, done: int, info: str = "", now: float | None = None) -> str:
        """The text shown for ``done`` units (no I/O; tests read it)."""
        now = self.clock() if now is None else now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        unit = f" {self.unit.strip()}" if self.unit.strip() else ""
        total = self.expected_total(done, now)
        frac = min(max(done / total, 0.0), 1.0)
        head = f"{self.label}: " if self.label else ""
        if self.bar:
            n = int(24 * frac)
            head += f"[{'#' * n}{'.' * (24 - n)}] "
        text = (
            f"{head}{done}/{total}{unit} ({100 * frac:.0f}%), "
            f"{rate:.2f}{unit}/s, eta {format_seconds(self.eta(done, now))}"
        )
        return f"{text} {info}".rstrip()

    def update(self, done: int, info: str = "", force: bool = False) -> None:
        """Show progress; at most every ``every`` s off a terminal unless ``force``."""
        if not self.enabled:
            return
        now = self.clock()
        if not (force or self.tty or now - self.t_shown >= self.every):
            return
        self.t_shown = now
        text = self.line(done, info, now)
        if self.tty and not force:
            self.stream.write("\r" + text[:160].ljust(160))
            self._open = True
        else:
            self.close()
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End an in-place line, so the next print starts on a fresh one."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
