"""Speed helpers measured to matter (see bench/README.md)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

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

    # The initializer and its arguments reach a forked worker through its copy of this process's
    # memory, not through a pipe.
    with multiprocessing.get_context("fork").Pool(workers, initializer=_worker_job, initargs=(fn, shared),
                                                  maxtasksperchild=RENEW_AFTER) as pool:
        results: Iterable[Any] = pool.imap(_worker_call, items, chunksize=chunksize or max(1, min(64, len(items) // (workers * 8))))
        yield from results


_JOB: tuple[Callable[..., Any], Any] | None = None  # in a pool worker: its (fn, shared)


def _worker_job(fn: Callable[..., Any], shared: Any) -> None:
    global _JOB
    _JOB = (fn, shared)


def _worker_call(item: Any) -> Any:
    assert _JOB is not None
    fn, shared = _JOB
    return fn(item) if shared is _ALONE else fn(shared, item)
