"""Messages and progress on stderr; stdout is reserved for data."""

from __future__ import annotations

import os
import sys

# Set by the global --quiet / --verbose options in main.py.
VERBOSITY = {"level": 1}


def set_verbosity(level: int) -> None:
    VERBOSITY["level"] = level


def verbose() -> bool:
    return VERBOSITY["level"] >= 2


def _emit(line: str) -> None:
    """One line on stderr; while a tqdm bar is drawn on the terminal, through tqdm.write,
    which clears the bar, prints the line and redraws the bar below it (a plain print would
    land in the middle of the bar's line)."""
    tq = sys.modules.get("tqdm.std")
    if tq is not None and any(not getattr(b, "disable", True) for b in list(getattr(tq.tqdm, "_instances", ()))):
        tq.tqdm.write(line, file=sys.stderr)
        return
    print(line, file=sys.stderr, flush=True)


def info(msg: str) -> None:
    """A progress/log line on stderr (hidden with --quiet); a ParameterMessage shows its flags."""
    if hasattr(msg, "flagged"):
        msg = msg.flagged()
    if VERBOSITY["level"] >= 1:
        _emit(f"radlens: {msg}")


def debug(msg: str) -> None:
    if VERBOSITY["level"] >= 2:
        _emit(f"radlens: {msg}")


def warn(msg: str) -> None:
    """A warning on stderr (shown even with --quiet); a library's ParameterMessage shows its flags."""
    if hasattr(msg, "flagged"):
        msg = msg.flagged()
    _emit(f"radlens: warning: {msg}")


def progress_disabled() -> bool:
    return VERBOSITY["level"] < 1 or os.environ.get("TQDM_DISABLE", "") not in ("", "0")


def progress(iterable=None, total=None, desc=None, unit="it"):
    """Progress on stderr: a tqdm bar on a terminal, plain lines elsewhere (cluster logs).

    Off with --quiet or TQDM_DISABLE=1.
    """
    if not progress_disabled() and not sys.stderr.isatty():
        return PlainProgress(iterable, total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=progress_disabled(), dynamic_ncols=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class PlainProgress:
    """A plain progress line every `step` percent (at most one per 2 s) or `every` seconds,
    for logs that are not a tty:

    radlens: extract 120/600 task (20%), 1.52 task/s, 5:15 left
    """

    disable = True  # callers print their own lines directly (no bar to write around)

    def __init__(self, iterable=None, total=None, desc=None, unit="it", step: float = 5.0,
                 every: float | None = None):
        import time

        self.iterable, self.desc, self.unit = iterable, desc or "progress", unit
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n = total, 0
        self.step = step
        self.every = float(os.environ.get("RADLENS_PROGRESS_SECONDS", "120")) if every is None else every
        self.start = self.last_t = time.monotonic()
        self.last_pct = 0.0
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def line(self) -> str:
        import time

        el = time.monotonic() - self.start
        rate = self.n / el if el > 0 else 0.0
        head = f"{self.desc} {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"
        if self.total:
            head += f" ({100.0 * self.n / self.total:.0f}%)"
        head += f", {rate:.3g} {self.unit}/s" if rate >= 0.01 else f", {el / max(self.n, 1):.0f} s/{self.unit}"
        if self.total and self.n and self.n < self.total:
            head += f", {_duration((self.total - self.n) / rate)} left"
        elif self.total and self.n >= self.total:
            head += f", done in {_duration(el)}"
        return head

    def update(self, n: int = 1) -> None:
        import time

        self.n += n
        now = time.monotonic()
        pct = 100.0 * self.n / self.total if self.total else 0.0
        # a percent step prints only when some time has passed too: a fast loop over a few
        # items gives its final line, not one line per item
        gap = min(2.0, self.every / 60.0)
        due = (self.total and pct >= self.last_pct + self.step and now - self.last_t >= gap) \
            or now - self.last_t >= self.every
        if due and not (self.total and self.n >= self.total):  # the last line comes from close()
            self.last_pct = pct - (pct % self.step) if self.total else 0.0
            self.last_t = now
            print(f"radlens: {self.line()}", file=sys.stderr, flush=True)

    def write(self, msg: str, file=None) -> None:
        print(msg, file=file or sys.stderr, flush=True)

    def close(self) -> None:
        if not self.closed and self.n:
            print(f"radlens: {self.line()}", file=sys.stderr, flush=True)
        self.closed = True
