"""Speed helpers measured to matter (see bench/README.md)."""

from __future__ import annotations

import functools
import gc
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .interrupts import deferred

__all__ = ["gc_paused", "frozen_heap", "freeze_heap", "trim_heap", "parallel_map", "parallel_imap"]


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
    if workers < 2 or len(items) < minimum:
        yield from (fn(x) if shared is _ALONE else fn(shared, x) for x in items)
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
            pool = context.Pool(workers, initializer=_worker_job, initargs=(fn, shared, closing), maxtasksperchild=RENEW_AFTER)
            _OPEN.append(closing)
            results: Iterable[Any] = pool.imap(_worker_call, items, chunksize=chunksize or max(1, min(64, len(items) // (workers * 8))))
        yield from results
    except BaseException:  # an error, Ctrl-C, SIGTERM, or the caller stopped reading (GeneratorExit)
        closing.value = 1  # the tasks still queued are skipped
        raise
    finally:
        if pool is not None:
            _close(pool, closing)


def _close(pool: Any, closing: Any) -> None:
    """End a pool as when every result is in: each worker finishes its task and leaves when told
    there is no more work. Not Pool.terminate(): it stops the workers with SIGTERM, and a worker
    that died holding the pool's lock on its task pipe (a signal sent to the whole group killed
    workers too), or one that missed its SIGTERM (about one build in ten did, for a worker forked
    by the pool's own thread), left the build waiting for ever.

    The wait may be cut short by a second Ctrl-C or SIGTERM (a worker killed outright, say by the
    kernel's out-of-memory killer, lost its task, and the pool waits for it for ever): the
    workers are then stopped as the process exits (_closing_at_exit)."""
    with deferred():
        pool.close()
    if threading.current_thread() in (pool._worker_handler, pool._task_handler, pool._result_handler):
        # A generator left open, finalised by the collector in one of this pool's own threads,
        # which cannot wait for itself: the workers obey the SIGTERM of the pool's teardown.
        closing.value = _EXITING
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


def _worker_call(item: Any) -> Any:
    assert _JOB is not None
    if _CLOSING is not None and _CLOSING.value:
        return None  # the caller stopped (an error, an interrupt): the queued tasks end at once
    fn, shared = _JOB
    return fn(item) if shared is _ALONE else fn(shared, item)
