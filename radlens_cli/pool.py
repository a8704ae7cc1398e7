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
import signal
import traceback

from radlens_cli.io.cases import describe_exit

# Test hook (documented in the man pages' ENVIRONMENT): the worker that takes this item
# kills itself with SIGKILL, once per RADLENS_TEST_KILL_ONCE file when that is set.
KILL_VAR, KILL_ONCE_VAR = "RADLENS_TEST_KILL_WORKER", "RADLENS_TEST_KILL_ONCE"
_IN_WORKER = {"yes": False}


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


def _worker_main(conn, initializer, initargs):
    _IN_WORKER["yes"] = True
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
            out = ("error", f"{type(e).__name__}: {first}" if first else type(e).__name__,
                   traceback.format_exc())
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    def __init__(self, ctx, initializer, initargs):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, initializer, initargs), daemon=True)
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
