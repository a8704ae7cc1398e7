"""A process pool that outlives its workers: one killed by the OOM killer or a segfault in a
C extension fails only the item it held (after one retry in a fresh worker), and is replaced.

concurrent.futures' pool breaks as a whole when one worker dies (every pending future
fails, the other workers are terminated) and cannot say which item was lost. Here each
worker has its own pipe, so the driver knows what every worker holds; a dead worker is
seen from its process sentinel. Pipes only: no semaphores for the resource tracker to
report as leaked when the run is stopped.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import traceback

# Test hook (documented in the man pages' ENVIRONMENT): the worker that takes this item
# kills itself with SIGKILL, once per RADLENS_TEST_KILL_ONCE file when that is set.
KILL_VAR, KILL_ONCE_VAR = "RADLENS_TEST_KILL_WORKER", "RADLENS_TEST_KILL_ONCE"
_IN_WORKER = {"yes": False}


def describe_exit(exitcode: int | None) -> str:
    """'killed by signal 9 (SIGKILL; out of memory?)' for a worker's exit code (ASCII: cluster logs)."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        sig = -exitcode
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = {signal.SIGKILL: "; out of memory?", signal.SIGSEGV: "; a crash in a C extension?",
                signal.SIGBUS: "; a crash in a C extension?"}.get(sig, "")
        return f"killed by signal {sig} ({name}{hint})"
    return f"exited with status {exitcode}"


def in_worker() -> bool:
    return _IN_WORKER["yes"]


def test_kill_hook(*names: str) -> None:
    """Kill this worker process with SIGKILL when RADLENS_TEST_KILL_WORKER names this item.

    names: the item's names, e.g. ("case02", "case02:adc"); only inside a pool worker.
    """
    target = os.environ.get(KILL_VAR)
    if not target or target not in names:
        return
    once = os.environ.get(KILL_ONCE_VAR)
    if once:
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def _hook_env() -> dict:
    """The test hook's variables as the driver has them now (None: unset)."""
    return {k: os.environ.get(k) for k in (KILL_VAR, KILL_ONCE_VAR)}


def _worker_main(conn, initializer, initargs, hook_env=None):
    _IN_WORKER["yes"] = True
    # a forkserver's workers inherit the environment of the moment the server started
    # (the first pool of the process), not the driver's: take the hook's from the driver
    for k, v in (hook_env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops the workers
    # stopped by the driver (or scancel): unwind, so temporary files are removed on the way out
    signal.signal(signal.SIGTERM, _terminated)
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args = msg
        try:
            out = ("ok", fn(*args))
        except (SystemExit, KeyboardInterrupt):
            return
        except BaseException as e:  # noqa: BLE001 - reported against the item by the driver
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if hasattr(e, "message") and hasattr(e, "params"):  # a ParameterError keeps its parameters
                text = e.message(f"{type(e).__name__}: ")
            else:
                text = f"{type(e).__name__}: {first}" if first else type(e).__name__
            out = ("error", text, traceback.format_exc())
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx, initializer, initargs):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, initializer, initargs, _hook_env()),
                                daemon=True)
        self.proc.start()
        child.close()
        self.item = None

    def stop(self, timeout: float = 2.0) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout)
        if self.proc.is_alive():  # pragma: no cover - a worker stuck in C code
            self.proc.kill()
            self.proc.join()
        self.conn.close()


def imap_resilient(fn, items: list, jobs: int, ctx, initializer=None, initargs=(), retries: int = 1,
                   on_death=None):
    """Yield (index, status, value) as items finish, in order of completion.

    status "ok": value is fn(item); "error": value is a one-line message (fn raised);
    "lost": value says how the worker died (the item was tried 1 + retries times).
    on_death(index, how, will_retry) is called each time a worker dies holding an item.
    """
    queue = collections.deque(range(len(items)))
    attempts = collections.Counter()
    workers = [_Worker(ctx, initializer, initargs) for _ in range(min(jobs, len(items)))]
    from multiprocessing.connection import wait

    try:
        remaining = len(items)
        while remaining:
            for w in workers:
                if w.item is None and queue:
                    w.item = queue.popleft()
                    w.conn.send((fn, (items[w.item],)))
            busy = [w for w in workers if w.item is not None]
            ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
            for k, w in enumerate(workers):
                if w.item is None:
                    continue
                msg = None
                if w.conn in ready:
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):
                        msg = None
                if msg is not None:
                    i, w.item = w.item, None
                    remaining -= 1
                    yield (i, "ok", msg[1]) if msg[0] == "ok" else (i, "error", msg[1])
                    continue
                if w.proc.sentinel in ready or w.conn in ready:
                    w.proc.join()
                    how = describe_exit(w.proc.exitcode)
                    i, w.item = w.item, None
                    attempts[i] += 1
                    retry = attempts[i] <= retries
                    if on_death is not None:
                        on_death(i, how, retry)
                    if retry:
                        queue.appendleft(i)
                    else:
                        remaining -= 1
                        yield i, "lost", how
                    w.conn.close()
                    workers[k] = _Worker(ctx, initializer, initargs)
    finally:
        for w in workers:
            if w.item is not None:  # stopped early (Ctrl-C, an error): do not wait for its item
                w.proc.terminate()
        for w in workers:
            w.stop()


# ---------------------------------------------------------------- torch DataLoader workers

_DEATH = re.compile(r"DataLoader worker \(pids?\(?s?\)? ?([\d, ]+)\)")
_SIGNAL = re.compile(r"killed by signal: (.+?)\.?\s*$", re.M)


def loader_worker_death(e: BaseException) -> tuple[list[int], str] | None:
    """(pids, how) when `e` is a DataLoader's report of a dead worker, else None."""
    text = str(e)
    m = _DEATH.search(text)
    if not isinstance(e, RuntimeError) or m is None or ("exited unexpectedly" not in text
                                                        and "killed by signal" not in text):
        return None
    pids = [int(p) for p in re.findall(r"\d+", m.group(1))]
    how = "died"
    s = _SIGNAL.search(text)
    if s:
        names = {signal.strsignal(sig): sig for sig in signal.Signals if signal.strsignal(sig)}
        sig = names.get(s.group(1).strip())
        how = describe_exit(-int(sig)) if sig else f"killed by signal {s.group(1).strip()}"
    return pids, how


class MarkedDataset:
    """Wraps a map-style dataset: each worker notes the index it is working on in
    `<marker_dir>/<pid>`, so a dead worker's case is known. Also runs the test kill hook."""

    def __init__(self, inner, marker_dir: str, names: list[str]):
        self.inner, self.marker_dir, self.names = inner, marker_dir, names

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        import torch.utils.data

        if torch.utils.data.get_worker_info() is not None:
            with open(os.path.join(self.marker_dir, str(os.getpid())), "w") as fh:
                fh.write(str(int(i)))
            test_kill_hook(self.names[i])
        return self.inner[i]


def resilient_batches(make_loader, batches: list[list[int]], marker_dir: str, retries: int = 1,
                      on_death=None):
    """Yield (batch, item) for each batch, in order, from loaders that make_loader(batches) builds.

    When a loader worker dies, the case it was reading (from its marker) is retried once
    in a fresh loader over the batches not yet delivered; the second time it is dropped
    from its batch and reported: on_death(index, how, retried) -- retried False means lost.
    """
    attempts = collections.Counter()
    pending = [list(b) for b in batches]
    # torch's SIGCHLD handler raises a dead worker's error at any point of the main thread
    # (in the forward pass, say); without it the loader reports it from next(), within
    # seconds, where it is known which batches were delivered.
    old_handler = _quiet_sigchld()
    try:
        yield from _resilient(make_loader, pending, marker_dir, retries, on_death, attempts)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGCHLD, old_handler)


def _quiet_sigchld():
    try:
        from torch.utils.data._utils import signal_handling
    except ImportError:  # pragma: no cover
        return None
    signal_handling._SIGCHLD_handler_set = True  # torch installs its handler only once
    old = signal.getsignal(signal.SIGCHLD)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return old


def _exit_of_dead_worker(it, pids) -> str | None:
    for w in getattr(it, "_workers", []) or []:
        if w.pid in pids or (not pids and not w.is_alive()):
            w.join(1.0)
            if w.exitcode is not None:
                return describe_exit(w.exitcode)
    return None


def _resilient(make_loader, pending, marker_dir, retries, on_death, attempts):
    while pending:
        it = iter(make_loader(pending))
        k = 0
        try:
            while k < len(pending):
                try:
                    item = next(it)
                except RuntimeError as e:
                    death = loader_worker_death(e)
                    if death is None:
                        raise
                    pids, how = death
                    if how == "died":
                        how = _exit_of_dead_worker(it, pids) or how
                    raise _Dead(pids, how) from None
                yield pending[k], item
                k += 1
            pending = []
        except _Dead as d:
            rest = pending[k:]
            culprit = None
            for pid in d.pids:
                try:
                    with open(os.path.join(marker_dir, str(pid))) as fh:
                        culprit = int(fh.read().strip())
                except (OSError, ValueError):
                    continue
            if culprit is None or not any(culprit in b for b in rest):
                culprit = rest[0][0]  # unknown: the batch waited for
            attempts[culprit] += 1
            retry = attempts[culprit] <= retries
            if on_death is not None:
                on_death(culprit, d.how, retry)
            if not retry:
                rest = [[i for i in b if i != culprit] for b in rest]
                rest = [b for b in rest if b]
            pending = rest
        finally:
            del it  # shuts the loader's workers down


class _Dead(Exception):
    def __init__(self, pids, how):
        super().__init__(how)
        self.pids, self.how = pids, how


def loader_death(e: BaseException, loader, batch_lists: list, delivered: int, case_ids) -> tuple[str, list] | None:
    """(how the worker died, the case ids of the batch it held) for a dead-worker error of
    `loader` after `delivered` batches of `batch_lists`; None for any other error.

    A loader hands batch j to worker j mod W (round robin, reset each epoch) and each
    worker reads its batches in order, so the dead worker held its first undelivered one.
    """
    death = loader_worker_death(e)
    if death is None:
        return None
    pids, how = death
    it = getattr(loader, "_iterator", None)
    if how == "died":
        how = _exit_of_dead_worker(it, pids) or how
    workers = list(getattr(it, "_workers", None) or [])
    k = next((n for n, w in enumerate(workers) if w.pid in pids), None)
    j = delivered
    if k is not None and workers:
        j += (k - delivered) % len(workers)
    ids = []
    if 0 <= j < len(batch_lists):
        ids = [str(case_ids[i]) if case_ids is not None else str(i) for i in batch_lists[j]]
    return how, ids
