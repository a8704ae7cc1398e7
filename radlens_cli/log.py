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


def info(msg: str) -> None:
    """A progress/log line on stderr (hidden with --quiet)."""
    if VERBOSITY["level"] >= 1:
        print(f"radlens: {msg}", file=sys.stderr, flush=True)


def debug(msg: str) -> None:
    if VERBOSITY["level"] >= 2:
        print(f"radlens: {msg}", file=sys.stderr, flush=True)


def warn(msg: str) -> None:
    """A warning on stderr (shown even with --quiet)."""
    print(f"radlens: warning: {msg}", file=sys.stderr, flush=True)


def progress(iterable=None, total=None, desc=None, unit="it"):
    """tqdm on stderr; animates only on a terminal, off with TQDM_DISABLE=1 or --quiet."""
    from tqdm.auto import tqdm

    disable = (
        VERBOSITY["level"] < 1
        or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        or not sys.stderr.isatty()
    )
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=disable, dynamic_ncols=True)
