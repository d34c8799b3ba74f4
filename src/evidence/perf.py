"""Speed helpers measured to matter (see bench/README.md)."""

from __future__ import annotations

import errno
import functools
import gc
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import WorkerError
from .interrupts import deferred

__all__ = ["gc_paused", "frozen_heap", "freeze_heap", "settle_heap", "trim_heap", "parallel_map", "parallel_imap", "worker_limit", "WORKERS_ENV"]

log = logging.getLogger("evidence")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects that all stay alive.

    Loading a kb makes hundreds of thousands of dicts, lists and models and frees none of them,
    so every collection pass is wasted work: pausing it made validate about 3 times and compile
    about 2 times faster at 1,000 cases. Reference counting still frees what is dropped.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Within: :func:`freeze_heap` may move the objects alive so far out of the collector's sight;
    on leaving, they are handed back to it (so the caller's heap is as the collector left it)."""
    try:
        yield
    finally:
        gc.unfreeze()


def freeze_heap() -> None:
    """Move every object alive now into the collector's permanent generation.

    A 10,000-case kb is about ten million model objects that live until the build ends. Each full
    collection walked them all, which made the stages after validation slower the larger the kb
    (at 10,000 cases a rebuild spent 21 s in a SHACL stage with nothing to check and 55 s in an
    export whose pieces all came from the cache). Frozen objects are never walked.
    """
    gc.freeze()


def settle_heap() -> None:
    """Collect the garbage, then move what is left alive out of the collector's sight
    (:func:`freeze_heap`): for a stage that ran with the collector paused, whose own objects are
    gone, and that read back objects which live on (the models the site's pages read).

    Frozen at once, within the stage, its cyclic garbage was frozen too, and nothing freed it
    before the heap was unfrozen and a full collection ran: at 10,000 cases, 1.8 million objects
    after each rebuild, paid for by whatever the process did next (a benchmark's next phase ran
    23% slower) or by its exit."""
    gc.collect()
    gc.freeze()


def trim_heap() -> None:
    """Free the garbage and give the heap's free memory back to the system: call it before forking
    workers, which would otherwise each count what the build no longer uses.

    The collector is paused while pages render (:func:`gc_paused`), so cycles pile up; and glibc
    keeps what Python frees for reuse. At 10,000 cases the build held 1,649 MB before forking its
    render workers; 1,349 MB once the network was dropped, and 1,261 MB after giving back the free
    heap. On a system without glibc's ``malloc_trim`` only the collection is done.
    """
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl without it)
        pass


# Below this many items one process is quicker than forking workers.
PARALLEL_FROM = 200
# A forked worker is replaced by a fresh one after this many tasks (batches of items). Each page
# of the parent's heap that a worker touches (reference counts are writes) becomes a copy of its
# own, so a worker that lives through a whole stage ends up holding its own copy of much of the
# kb: at 10,000 cases, two render workers took the build from 6 GB to 9 GB. A fresh fork
# shares every page again; forking again costs milliseconds.
RENEW_AFTER = 4


_ALONE = object()  # parallel_imap's ``shared`` when there is none

# EVIDENCE_WORKERS=N: at most N worker processes per stage (1: every stage in the build's own
# process), for a machine short of processes or memory.
WORKERS_ENV = "EVIDENCE_WORKERS"
# A fork refused for want of processes or memory (EAGAIN, ENOMEM) is tried again after these
# pauses (seconds): such a shortage is often brief (another program's processes ending).
FORK_RETRIES = (0.05, 0.2, 0.5, 1.0, 2.0)
# How often (seconds) a caller waiting for results checks that its pool can still start workers.
WATCH = 0.25


def worker_limit() -> int | None:
    """The most worker processes a stage may use, from ``EVIDENCE_WORKERS``; None when unset."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        log.warning("%s=%r is not a number of worker processes (1, 2, ...); ignored", WORKERS_ENV, raw)
        return None
    return n


def parallel_map(fn: Callable[..., Any], items: Sequence[Any], workers: int | None = None, minimum: int = PARALLEL_FROM,
                 shared: Any = _ALONE) -> list[Any]:
    """``[fn(x) for x in items]`` (or ``[fn(shared, x) ...]``), in forked worker processes when
    there are at least ``minimum`` items and more than one core; results come back in order.
    ``fn`` and ``shared`` reach the workers through their forked memory, never pickled (see
    :func:`parallel_imap`); the items and results are pickled."""
    return list(parallel_imap(fn, items, workers, minimum, shared))


def parallel_imap(fn: Callable[..., Any], items: Sequence[Any], workers: int | None = None, minimum: int = PARALLEL_FROM,
                  shared: Any = _ALONE, chunksize: int | None = None) -> Iterator[Any]:
    """Like :func:`parallel_map`, but the results come one by one, in order, as they are ready, so
    that the caller can write each and let it go instead of holding them all.

    With ``shared``, each call is ``fn(shared, x)``: the workers are forked, so they see ``shared``
    (however large: the kb, every compiled chunk) as it is in the caller's memory, without its
    being pickled; only the items and the results are. The items should therefore be small (an
    index into ``shared``, a name).

    A worker takes ``chunksize`` items at a time (by default up to 64, for many small items) and is
    replaced after :data:`RENEW_AFTER` such tasks; items that are already large tasks want 1.
    """
    workers = workers or os.cpu_count() or 1
    limit = worker_limit()
    if limit is not None:
        workers = min(workers, limit)
    if workers < 2 or len(items) < minimum:
        yield from _here(fn, items, shared)
        return
    import multiprocessing

    _register_exit_handler()
    # The initializer and its arguments reach a forked worker through its copy of this process's
    # memory, not through a pipe.
    context = multiprocessing.get_context("fork")
    closing = context.RawValue("b", 0)  # set when the caller gives up on the results: see _worker_call
    pool = None
    try:
        # Made, and handed its tasks, whole: a Ctrl-C or SIGTERM waits for this block, then lands
        # in the try, so the pool is always closed below.
        with deferred():
            try:
                _creating.started = []
                pool = _pool_class()(workers, initializer=_worker_job, initargs=(fn, shared, closing), maxtasksperchild=RENEW_AFTER,
                                     context=context)
            except (OSError, RuntimeError) as exc:  # no worker could be forked, or one of the pool's threads could not start: the work is done here
                if isinstance(exc, RuntimeError):  # (for an OSError, _start stopped the workers it had started)
                    _abandon_half_made_pool(exc, _creating.started or [])
                log.warning("could not start worker processes (%s); working in this one process, more slowly", exc)
            finally:
                _creating.started = None
            if pool is not None:
                _OPEN.append(closing)
                # In batches of our own: Pool.imap's would be a generator over its iterator, which
                # cannot be waited on with a time limit.
                size = chunksize or max(1, min(64, len(items) // (workers * 8)))
                batches = [items[i:i + size] for i in range(0, len(items), size)]
                results = pool.imap(_worker_call, batches, chunksize=1)
        if pool is None:
            yield from _here(fn, items, shared)
            return
        while True:
            try:
                batch = results.next(WATCH)
            except StopIteration:
                break
            except multiprocessing.TimeoutError:
                # Stopped if the pool's thread that replaces its workers (RENEW_AFTER) ended: a
                # fork failed past its retries (see _start). No worker would take the tasks left;
                # waiting for them would wait for ever.
                cause = _stop_if_broken(pool, closing)
                if cause is None:
                    killed = _died(pool)
                    if killed is None:
                        continue
                    _halt(pool, closing)
                    pool = None
                    try:
                        name = signal.Signals(killed).name
                    except ValueError:
                        name = f"signal {killed}"
                    raise WorkerError(f"a worker process was killed ({name}), and its work may be lost, so the build was stopped; nothing was "
                                      f"changed. SIGKILL is most often the system's out-of-memory killer: close other programs, or set "
                                      f"{WORKERS_ENV}=1 to work in one process. Any other signal is a crash of evidence or of a "
                                      "library it uses: please report it") from None
                pool = None
                raise WorkerError(f"could not start a worker process ({cause}): the machine is out of processes or memory. "
                                  f"Nothing was changed; close other programs and run the command again, or set {WORKERS_ENV}=1 "
                                  "to work in one process") from None
            yield from batch
    except BaseException:  # an error, Ctrl-C, SIGTERM, or the caller stopped reading (GeneratorExit)
        closing.value = 1  # the tasks still queued are skipped
        raise
    finally:
        if pool is not None:
            _close(pool, closing)


_creating = threading.local()  # .started: while this thread makes a pool (whose first forks fail to the caller), its workers so far
# A pool's thread that replaces its workers, ended by a fork that failed past its retries -> that
# fork's error (see _start).
_BROKEN: weakref.WeakKeyDictionary[threading.Thread, OSError] = weakref.WeakKeyDictionary()


def _here(fn: Callable[..., Any], items: Sequence[Any], shared: Any) -> Iterator[Any]:
    """The work of :func:`parallel_imap` in this process."""
    return (fn(x) if shared is _ALONE else fn(shared, x) for x in items)


@functools.cache  # one class
def _pool_class() -> type:
    """multiprocessing's Pool, whose workers retry a fork refused for want of processes or memory
    (see :func:`_start`)."""
    import multiprocessing.pool

    class _Pool(multiprocessing.pool.Pool):
        @staticmethod
        def Process(ctx: Any, *args: Any, **kwds: Any) -> Any:  # the hook Pool itself offers (ThreadPool uses it)
            process = ctx.Process(*args, **kwds)
            process.start = functools.partial(_start, process)
            inqueue = (kwds.get("args") or (None,))[0]  # the pool's task queue: which pool the worker is of
            process.join = functools.partial(_join, process, inqueue)
            process.run = functools.partial(_run_orphan_quietly, process)
            return process

    return _Pool


# The exit code of a pool's worker that was killed, by the pool's task queue (see _join and _died):
# gone with the pool.
_KILLED: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _run_orphan_quietly(process: Any) -> None:
    """A pool worker's run (in the worker): when the build that made it was killed outright
    (SIGKILL), its pipes break as it hands back its work, and multiprocessing printed the
    traceback of each worker on the build's terminal. It leaves without one then."""
    try:
        type(process).run(process)
    except (BrokenPipeError, ConnectionResetError, EOFError):
        if os.getppid() != process._parent_pid:  # the parent is gone (the worker was handed to init)
            os._exit(1)
        raise


def _join(process: Any, inqueue: Any, timeout: float | None = None) -> None:
    """A pool worker's join (the pool reaps each worker that has left): a negative exit code (a
    signal) is noted for the pool, which would otherwise forget the worker before the caller
    looked (see _died). Nothing is kept of the others."""
    type(process).join(process, timeout)
    code = process.exitcode
    if code is not None and code < 0 and inqueue is not None:
        _KILLED[inqueue] = code


def _died(pool: Any) -> int | None:
    """The signal that ended one of the pool's workers, if one was killed (a crash, or the
    out-of-memory killer): its task is lost, and the pool would wait for it for ever. A worker
    that leaves as it should (RENEW_AFTER, or when the pool closes) exits with 0."""
    code = _KILLED.get(pool._inqueue)
    if code is None:
        code = next((c for c in (w.exitcode for w in list(pool._pool)) if c is not None and c < 0), None)
    return -code if code is not None else None


def _start(process: Any) -> None:
    """Start a pool's worker; a fork refused with EAGAIN or ENOMEM is tried again (FORK_RETRIES).

    When it still fails: while the pool is being made, the error goes to the caller
    (:func:`parallel_imap` then works in its own process). Later, in the pool's own thread that
    replaces the workers, it is recorded and that thread ends quietly (SystemExit, which threads
    do not print); the caller, which checks that thread while it waits, stops the pool and
    raises WorkerError. Raised there as it was, it printed a traceback and the build waited for
    ever for tasks no worker would take. The pipes that multiprocessing made for a worker that
    was never forked are closed (:func:`_close_unforked_pipes`)."""
    start = type(process).start
    for pause in (*FORK_RETRIES, None):
        try:
            start(process)
            making = getattr(_creating, "started", None)
            if making is not None:
                making.append(process)
            return
        except OSError as exc:
            _close_unforked_pipes(exc)
            if pause is not None and exc.errno in (errno.EAGAIN, errno.ENOMEM):
                time.sleep(pause)
                continue
            making = getattr(_creating, "started", None)
            if making is not None:
                # Pool() now stops the workers it started and waits for them; they have not run
                # their initializer, or ignore SIGTERM (_worker_sigterm), so it would wait for ever.
                _kill(making)
                raise
            _BROKEN[threading.current_thread()] = exc
            raise SystemExit(1) from exc


def _abandon_half_made_pool(exc: BaseException, started: list[Any]) -> None:
    """Undo a Pool() that failed to start one of its threads ("can't start new thread", under a
    limit on processes): its workers were forked and wait for tasks, and ignore SIGTERM (see
    _worker_job), so the exit handler of multiprocessing waited for them for ever, after an
    'internal error'. Its thread that replaces workers, if it started, is told to end (found in
    the error's traceback, as Pool.__init__ raised before returning the pool), and the workers
    are killed and reaped."""
    import multiprocessing.pool

    tb = exc.__traceback__
    while tb is not None:
        pool = tb.tb_frame.f_locals.get("self")
        if tb.tb_frame.f_code.co_name == "__init__" and isinstance(pool, multiprocessing.pool.Pool):
            for name in ("_worker_handler", "_task_handler", "_result_handler"):
                thread = getattr(pool, name, None)
                if thread is not None:
                    thread._state = multiprocessing.pool.TERMINATE
        tb = tb.tb_next
    _kill(started)
    for process in started:
        process.join(5)


def _kill(processes: list[Any]) -> None:
    """SIGKILL each of a pool's workers started so far (they ignore SIGTERM, see _worker_job)."""
    for process in processes:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except (OSError, TypeError):  # gone already; or never forked (no pid)
            pass


def _close_unforked_pipes(exc: BaseException) -> None:
    """Close the two pipes (four descriptors) that multiprocessing opened for a worker whose fork
    failed: its ``Popen._launch`` opens them, then forks, and closes them only once the fork has
    succeeded, so each refused fork leaked them (up to six attempts per failure, FORK_RETRIES).
    They are found in that call's frame, which the error's traceback holds; nothing else knows
    them. Only when the fork did not happen (the Popen has no ``pid``): after it, the parent has
    closed two of them itself, and their numbers may already be another file's."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        # Only the fork start method's: popen_spawn_posix's _launch has the same names, but has
        # closed two of them itself and handed the others to a finalizer by the time it raises.
        if frame.f_code.co_name == "_launch" and frame.f_globals.get("__name__") == "multiprocessing.popen_fork":
            found = frame.f_locals
            if getattr(found.get("self"), "pid", None) is None:
                for name in ("parent_r", "child_w", "child_r", "parent_w"):
                    fd = found.get(name)
                    if type(fd) is int:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
        tb = tb.tb_next


def _stop_if_broken(pool: Any, closing: Any) -> OSError | None:
    """Stop the pool (:func:`_halt`) if its thread that replaces its workers has ended (see
    :func:`_start`), and return the error of the fork that ended it (None: the pool is not
    broken, and goes on)."""
    cause = _BROKEN.get(pool._worker_handler)
    if cause is not None:
        _halt(pool, closing)
    return cause


def _halt(pool: Any, closing: Any) -> None:
    """Stop a pool whose work will not be done: the task thread is told to end, so that it tells
    the workers left to leave, then Pool.terminate() ends what remains (the workers obey its
    SIGTERM once the flag says the pool is going, see _worker_sigterm). Held whole."""
    with deferred():
        closing.value = _EXITING
        pool._taskqueue.put(None)
        pool.terminate()  # a second time (a signal came before the caller forgot the pool) does nothing
        if closing in _OPEN:
            _OPEN.remove(closing)


def _close(pool: Any, closing: Any) -> None:
    """End a pool as when every result is in: each worker finishes its task and leaves when told
    there is no more work. Not Pool.terminate(): it stops the workers with SIGTERM, and a worker
    that died holding the pool's lock on its task pipe (a signal sent to the whole group killed
    workers too), or one that missed its SIGTERM (about one build in ten did, for a worker forked
    by the pool's own thread), left the build waiting for ever.

    The wait may be cut short by a second Ctrl-C or SIGTERM (a worker killed outright, say by the
    kernel's out-of-memory killer, lost its task, and the pool waits for it for ever): the
    workers are then stopped as the process exits (_closing_at_exit)."""
    if _stop_if_broken(pool, closing) is not None:  # a fork failed past its retries (see _start): join would wait for ever
        return
    handler = pool._worker_handler
    with deferred():
        pool.close()
    if threading.current_thread() in (handler, pool._task_handler, pool._result_handler):
        # A generator left open, finalised by the collector in one of this pool's own threads,
        # which cannot wait for itself: the workers obey the SIGTERM of the pool's teardown.
        closing.value = _EXITING
        return
    # The workers finish the tasks queued (skipping them, see _worker_call), replaced as they
    # leave (RENEW_AFTER); a replacement that cannot start ends the thread that replaces them.
    while handler.is_alive():
        handler.join(WATCH)
    if _stop_if_broken(pool, closing) is not None:
        return
    pool.join()
    _OPEN.remove(closing)


_OPEN: list[Any] = []  # the flags of the pools not yet closed (see _closing_at_exit)


def _closing_at_exit() -> None:
    """A pool still open when the process exits (its generator never finished): multiprocessing's
    own exit handler then stops its workers with SIGTERM, which a worker obeys only once its flag
    is set (see _worker_job). This handler is registered after multiprocessing's, so it runs
    first."""
    for flag in _OPEN:
        flag.value = _EXITING


@functools.cache  # once
def _register_exit_handler() -> None:
    import atexit
    import multiprocessing.util  # noqa: F401  (its exit handler first: they run last registered, first)

    atexit.register(_closing_at_exit)


_JOB: tuple[Callable[..., Any], Any] | None = None  # in a pool worker: its (fn, shared)


def _worker_job(fn: Callable[..., Any], shared: Any, closing: Any) -> None:
    global _JOB, _CLOSING
    _JOB = (fn, shared)
    _CLOSING = closing
    # Ctrl-C and SIGTERM reach every process of the group (a terminal, `timeout`, systemd, a CI
    # runner cancelling a job), so the workers too. A worker killed while it waits for a task dies
    # holding the pool's lock on its task pipe, and closing the pool then waits for that lock for
    # ever: the interrupted build hung (and workers printed tracebacks on Ctrl-C). So a worker
    # leaves the decision to the process that started it, which unwinds (KeyboardInterrupt,
    # errors.Terminated) and closes the pool (see parallel_imap). A worker whose parent was killed
    # outright ends when its task pipe closes, after its task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _worker_sigterm)


_CLOSING: Any = None  # in a pool worker: the flag its parent sets when it no longer wants the results


_EXITING = 2  # a pool's flag: 1 once the caller stops reading its results, 2 as the process exits


def _worker_sigterm(signum: int, frame: Any) -> None:
    # Only at the process's exit (see _closing_at_exit). A worker that died of the SIGTERM sent to
    # the whole group lost its task, and closing the pool waited for that result for ever.
    if _CLOSING is not None and _CLOSING.value == _EXITING:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _worker_call(batch: Sequence[Any]) -> list[Any]:
    assert _JOB is not None
    if _CLOSING is not None and _CLOSING.value:
        return []  # the caller stopped (an error, an interrupt): the queued tasks end at once
    fn, shared = _JOB
    return [fn(item) for item in batch] if shared is _ALONE else [fn(shared, item) for item in batch]
