"""Atomic outputs, `--force`, and `-` for stdin/stdout (spooled through a temporary file)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile

from radlens_cli import log, provenance
from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError, UsageError

_SPOOLED: dict[str, str] = {}

# The running subcommand, set by the command wrapper: the default provenance of a CSV sidecar.
CURRENT = {"command": None}

# Output kinds by extension; a name of one kind for an output of another is refused.
KINDS = {".h5": "HDF5", ".hdf5": "HDF5", ".csv": "text table", ".tsv": "text table", ".csv.gz": "text table",
         ".tsv.gz": "text table", ".txt": "text", ".md": "text", ".pt": "checkpoint", ".pth": "checkpoint",
         ".html": "HTML", ".png": "PNG image", ".onnx": "ONNX"}
BINARY = {"HDF5", "checkpoint", "PNG image", "ONNX"}
TEXT_TABLES = (".csv", ".tsv", ".csv.gz", ".tsv.gz")
SIDECAR = ".json"


def extension(path: str) -> str:
    """The known extension of `path` (.csv.gz counts as one), lower case; '' when none."""
    low = os.fspath(path).lower()
    for ext in sorted(KINDS, key=len, reverse=True):
        if low.endswith(ext):
            return ext
    return os.path.splitext(low)[1]


def sidecar_path(path: str) -> str:
    """`delta.csv` -> `delta.csv.json`: the provenance of a text table beside it."""
    return os.fspath(path) + SIDECAR


def _check_kind(path: str, suffix: str) -> None:
    """Refuse `-o x.h5` for a CSV output (and the like), and binary output to a terminal."""
    kind = KINDS.get(extension(suffix)) if suffix else None
    if path == "-":
        if kind in BINARY and getattr(sys.stdout, "isatty", lambda: False)():
            raise UsageError(f"refusing to write {kind} to a terminal; redirect stdout or give -o FILE")
        return
    ext = extension(path)
    got = KINDS.get(ext)
    if kind == "text table" and ext and not got:   # -o delta.xlsx: CSV text in a spreadsheet's name
        raise UsageError(f"{path}: this output is a text table ({suffix}), but {ext} is not a "
                         f"format it writes; name it *{suffix}")
    if kind and got and got != kind and {kind, got} != {"text table", "text"}:
        raise UsageError(f"{path}: this output is {kind} ({suffix}), but the name says {got}; "
                         f"name it *{suffix}")


def check_output_name(path: str, suffix: str | tuple[str, ...]) -> None:
    """Refuse an output name whose extension is not one the output is written as (a CSV
    named *.xlsx would open as a broken spreadsheet). A name without extension passes."""
    suffixes = (suffix,) if isinstance(suffix, str) else tuple(suffix)
    if path == "-" or not suffixes:
        _check_kind(path, suffixes[0] if suffixes else "")
        return
    ext = extension(path)
    if not ext or ext in suffixes:
        return
    kind = KINDS.get(suffixes[0], suffixes[0].lstrip(".").upper())
    got = KINDS.get(ext)
    said = f"the name says {got}" if got else f"{ext} is not a format it writes"
    raise UsageError(f"{path}: this output is {kind} ({', '.join(suffixes)}), but {said}; "
                     f"name it *{suffixes[0]}")


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


def shown_name(path: str) -> str:
    """`stdin` for the temporary file stdin was spooled to, else the path itself."""
    return "stdin" if path in _SPOOLED.values() else path


def reset_stdin_spool() -> None:
    """Forget stdin spooled by an earlier command in this process (one spool per command)."""
    _SPOOLED.clear()


def check_output(path: str, force: bool = False, suffix: str | tuple[str, ...] | None = None) -> None:
    """Refuse to overwrite without --force; the output's folder must exist.

    suffix: the extension(s) the output is written with (e.g. ".csv"): a name with another
    extension (`-o delta.xlsx`, `-o delta.h5` for a CSV) is refused here, before the work."""
    if suffix:
        check_output_name(path, suffix)
    if path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise RadlensError(f"output folder does not exist: {folder}")
    if os.path.exists(path) and not force:
        raise ParameterError(f"output exists: {path} (use {{force}} to overwrite)", "force",
                             exit_code=EXIT_DATA, plain={"force": "force=True"})


def check_side_output(path: str | None, output: str, param: str, force: bool = False) -> None:
    """A second output (param: its parameter, e.g. "failures") must be writable and must
    not be the main output."""
    if not path:
        return
    check_output(path, force)
    if path == output or (path != "-" and output != "-"
                          and os.path.abspath(path) == os.path.abspath(output)):
        raise ParameterError(f"{{{param}}} and {{output}} name the same file (or both stdout)", param, "output")


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "", tmp: str | None = None, fsync: bool = False):
    """The one rename-into-place every radlens file goes through.

    Yield a temporary path beside `path` (or the given `tmp`, e.g. a name a sweeper can
    recognise); when the block succeeds, the file is made world-readable (0644), flushed to
    disk first with `fsync`, and renamed over `path`. On any error, Ctrl-C and SIGTERM
    included, the temporary file is removed, so no half-written file ever looks complete.
    """
    if tmp is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part" + suffix,
                                   dir=os.path.dirname(os.path.abspath(path)))
        os.close(fd)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        _cleanup(tmp)
        raise


@contextlib.contextmanager
def atomic_output(path: str, force: bool = False, suffix: str = "", provenance: dict | None = None):
    """Yield a temporary path for output `path`; on success it takes `path`'s place.

    An existing `path` needs `force`. On any error the temporary file is removed, so an
    interrupted command never leaves a half-written file that looks complete (atomic_path).
    `-` streams the finished file to stdout. A text table (.csv, .tsv, .csv.gz) gets its
    provenance in a sidecar `<path>.json` (`provenance`, else the running command's line,
    versions and time).
    """
    check_output(path, force)
    _check_kind(path, suffix)
    if path != "-":
        with atomic_path(path, suffix) as tmp:
            yield tmp
        if extension(path) in TEXT_TABLES:
            write_sidecar(path, provenance)
        return
    fd, tmp = tempfile.mkstemp(prefix="radlens-stdout-", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        out = getattr(sys.stdout, "buffer", None)
        with open(tmp, "rb") as fh:
            if out is None:
                sys.stdout.write(fh.read().decode())
            else:
                shutil.copyfileobj(fh, out)
                out.flush()
        os.unlink(tmp)
    except BaseException:
        _cleanup(tmp)
        raise


def write_text(text: str, path: str, force: bool = False, suffix: str = "") -> None:
    """Write `text` (UTF-8) to `path` (`-`: stdout) through atomic_output; `suffix` as there."""
    with atomic_output(path, force, suffix=suffix) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)


def save_npz(path: str, force: bool = True, **arrays) -> None:
    """np.savez through atomic_output (a cache entry: overwritten unless force=False)."""
    import numpy as np

    with atomic_output(path, force, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def save_torch(obj, path: str, force: bool = False) -> None:
    """torch.save through atomic_output; a checkpoint is a file, never stdout."""
    import torch

    if path == "-":
        raise UsageError("a checkpoint must be written to a file, not stdout")
    with atomic_output(path, force, suffix=".pt") as tmp:
        torch.save(obj, tmp)


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


def write_sidecar(path: str, attrs: dict | None = None) -> str:
    """Write `<path>.json`: the provenance of a text table (plain CSV readers ignore it).

    attrs: the root attributes an HDF5 output would carry (JSON strings are decoded);
    None: a record of the running command. Holds the table's sha256, so a stale
    sidecar (the CSV edited or replaced since) is recognised.
    """
    import json

    if attrs is None:   # what the running command declared: inputs with sha256, params, seed
        attrs = provenance.current(CURRENT["command"])
    rec = {"radlens_schema": "csv-provenance/1", "file": os.path.basename(path),
           "sha256": provenance.sha256_file(path), **provenance.decoded_attrs(attrs)}
    side = sidecar_path(path)
    with atomic_path(side) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(rec, fh, indent=1, sort_keys=True, default=str)
        fh.write("\n")
    return side


def read_sidecar(path: str) -> dict | None:
    """The provenance record beside a text table, or None (absent, unreadable, or stale)."""
    import json

    side = sidecar_path(path)
    if not os.path.isfile(side):
        return None
    try:
        with open(side, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        log.warn(f"{side}: unreadable provenance sidecar, ignored")
        return None
    if not isinstance(rec, dict) or rec.get("sha256") != provenance.sha256_file(path):
        log.warn(f"{side}: provenance sidecar does not match {path} (edited since?), ignored")
        return None
    return rec


def pid_temporary(path: str) -> str:
    """`<path>.<pid>.tmp`: a temporary a cache writer names after its process, so that
    sweep_stale_temporaries can tell one left by a killed process from one being written."""
    return f"{path}.{os.getpid()}.tmp"


def sweep_stale_temporaries(cache_dir: str) -> int:
    """Remove `*.<pid>.tmp` left in the cache by a process killed with SIGKILL (pid gone)."""
    removed = 0
    try:
        entries = list(os.scandir(cache_dir))
    except OSError:
        return 0
    for e in entries:
        parts = e.name.rsplit(".", 2)
        if len(parts) == 3 and parts[2] == "tmp" and parts[1].isdigit():
            try:
                os.kill(int(parts[1]), 0)
                continue  # its writer is alive (another run on this cache)
            except ProcessLookupError:
                pass
            except OSError:
                continue
            try:
                os.unlink(e.path)
                removed += 1
            except OSError:
                pass
    return removed
