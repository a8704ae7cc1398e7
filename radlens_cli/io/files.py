"""Atomic outputs, `--force`, and `-` for stdin/stdout (spooled through a temporary file)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile

from radlens_cli.errors import RadlensError, UsageError

_SPOOLED: dict[str, str] = {}


def _cleanup(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def input_path(path: str, what: str = "input") -> str:
    """A readable path for `path`; `-` spools stdin to a temporary file (once per process)."""
    if path != "-":
        if not os.path.exists(path):
            raise RadlensError(f"{what} file not found: {path}")
        if os.path.isdir(path):
            raise RadlensError(f"{what} is a folder, not a file: {path}")
        return path
    stdin = sys.stdin
    # stdin can be read once; a second `-` argument of the same command reuses the spool
    # (reset_stdin_spool() starts each command afresh)
    key = "-"
    if key in _SPOOLED:
        return _SPOOLED[key]
    if stdin is None or (hasattr(stdin, "isatty") and stdin.isatty()):
        raise UsageError(f"{what} is '-' but stdin is a terminal; pipe a file in or give a path")
    fd, tmp = tempfile.mkstemp(prefix="radlens-stdin-", suffix=".spool")
    atexit.register(_cleanup, tmp)
    src = getattr(stdin, "buffer", stdin)
    with os.fdopen(fd, "wb") as out:
        data = src.read()
        if isinstance(data, str):
            data = data.encode()
        out.write(data)
    if os.path.getsize(tmp) == 0:
        raise RadlensError(f"{what} is '-' but stdin was empty")
    _SPOOLED[key] = tmp
    return tmp


def reset_stdin_spool() -> None:
    """Forget stdin spooled by an earlier command in this process (one spool per command)."""
    _SPOOLED.clear()


def check_output(path: str, force: bool = False) -> None:
    """Refuse to overwrite without --force; the output's folder must exist."""
    if path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RadlensError(f"output folder does not exist: {folder}")
    if os.path.exists(path) and not force:
        raise RadlensError(f"output exists: {path} (use --force to overwrite)")


def check_side_output(path: str | None, output: str, option: str, force: bool = False) -> None:
    """A second output (e.g. --failures) must be writable and must not be the main output."""
    if not path:
        return
    check_output(path, force)
    if path == output or (path != "-" and output != "-"
                          and os.path.abspath(path) == os.path.abspath(output)):
        raise UsageError(f"{option} and --output name the same file (or both stdout)")


@contextlib.contextmanager
def atomic_output(path: str, force: bool = False, suffix: str = ""):
    """Yield a temporary path beside `path`; on success rename it into place.

    On any error the temporary file is removed, so an interrupted command never leaves a
    half-written file that looks complete. `-` streams the finished file to stdout.
    """
    check_output(path, force)
    if path == "-":
        fd, tmp = tempfile.mkstemp(prefix="radlens-stdout-", suffix=suffix)
    else:
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part" + suffix,
                                   dir=folder)
    os.close(fd)
    try:
        yield tmp
        if path == "-":
            out = getattr(sys.stdout, "buffer", None)
            with open(tmp, "rb") as fh:
                if out is None:
                    sys.stdout.write(fh.read().decode())
                else:
                    shutil.copyfileobj(fh, out)
                    out.flush()
            os.unlink(tmp)
        else:
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    except BaseException:
        _cleanup(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str):
    """Yield a temporary folder beside `path`; on success it replaces `path` (a folder an
    earlier run wrote is removed first: callers check --force before). On any error the
    temporary folder is removed, so a half-written folder never looks complete."""
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.part-", dir=parent)
    try:
        yield tmp
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
