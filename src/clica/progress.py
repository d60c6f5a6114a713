"""Progress reporting: a tqdm bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def duration(seconds: float) -> str:
    """``41s``, ``12m05s`` or ``1h02m``: a time left that reads at a glance."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts work done towards ``total``.

    On a terminal it draws a tqdm bar; otherwise (logs, CI, pipes) it prints a
    line ``desc: done/total (rate/s, eta)`` at most every ``every_s`` seconds.
    """

    def __init__(self, total: int, desc: str = "", initial: int = 0, unit: str = "it",
                 every_s: float = 30.0, enabled: bool = True, stream=None):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.n = initial
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._bar = None
        self._t0 = self._last = time.monotonic()
        self._n0 = initial
        if enabled and self.stream.isatty():
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit,
                             file=self.stream, dynamic_ncols=True)

    def update(self, k: int = 1, **postfix) -> None:
        self.n += k
        if self._bar is not None:
            self._bar.update(k)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)
            return
        now = time.monotonic()
        if self.enabled and (now - self._last >= self.every_s or self.n >= self.total):
            self._last = now
            rate = (self.n - self._n0) / max(now - self._t0, 1e-9)
            eta = (self.total - self.n) / rate if rate > 0 else float("inf")
            extra = "".join(f" {k}={v}" for k, v in postfix.items())
            speed = f"{rate:.1f} {self.unit}/s" if rate >= 0.1 or rate == 0 else f"{1 / rate:.0f} s/{self.unit}"
            print(f"{self.desc}: {self.n}/{self.total} ({speed}, eta {duration(eta)}){extra}",
                  file=self.stream, flush=True)

    def write(self, message: str) -> None:
        """Print a message without breaking the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
