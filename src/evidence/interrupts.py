"""Ctrl-C and SIGTERM: stop a command cleanly, never half-way through tearing something down.

Python raises ``KeyboardInterrupt`` from its SIGINT handler between any two instructions of the
main thread, lock and queue handling included. Raised inside a worker pool's teardown or a queue
operation, it left the build waiting for ever: a worker that the pool never stopped, a thread that
never saw its last item. :func:`install` (called by :func:`evidence.cli.main`) makes SIGINT and
SIGTERM raise ``KeyboardInterrupt`` and :class:`~evidence.errors.Terminated`, as before, except
inside :func:`deferred`, where the exception waits until the block ends. Without :func:`install`
(the package used as a library), :func:`deferred` changes nothing.

A forked child that inherited the handlers leaves both signals to the process that started it
(pool workers, see :func:`evidence.perf.parallel_imap`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import Terminated

__all__ = ["deferred", "forget_escaped", "install", "uninstall"]

_owner: int | None = None  # the process that installed the handlers
_depth = 0  # how many deferred() blocks the main thread is in
_pending: type[BaseException] | None = None  # the exception a signal asked for, inside deferred()
_saved: dict[int, Any] = {}
_saved_unraisable: Any = None


def _handler(signum: int, frame: Any) -> None:
    global _pending
    if os.getpid() != _owner:
        # A forked child that has not set handlers of its own yet: a pool worker before its
        # initializer ran (the only children this package forks). The process that started it
        # decides, as the worker will (evidence.perf._worker_job): a worker killed here lost its
        # task, and the pool waited for that task's result for ever.
        return
    exc = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _depth:
        _pending = exc if _pending is None or exc is Terminated else _pending  # SIGTERM wins: the process must end by it
        return
    raise exc


def _unraisable(info: Any) -> None:
    """An interrupt raised where Python cannot raise it (a ``__del__``, a generator closed by the
    collector) was printed and dropped, and the build went on to its end. The signal is sent
    again, from another thread: sent from here, its handler would run inside this hook, and the
    exception would be dropped again. The main thread runs the handler once this hook has
    returned, where the stack can unwind (or, dropped once more, it comes back here)."""
    sig = signal.SIGTERM if isinstance(info.exc_value, Terminated) else signal.SIGINT
    if _owner == os.getpid() and isinstance(info.exc_value, (Terminated, KeyboardInterrupt)):
        threading.Thread(target=_raise_later, args=(sig,), name="interrupt again", daemon=True).start()
    else:
        _saved_unraisable(info)


def _raise_later(sig: int) -> None:
    time.sleep(0.01)  # once the hook has returned (Thread.start waits for the thread to run)
    if _owner == os.getpid():  # not after uninstall()
        signal.pthread_kill(threading.main_thread().ident, sig)  # to the main thread: it wakes from a wait


def install() -> None:
    """Handle SIGINT and SIGTERM in this process (its main thread)."""
    global _owner, _saved_unraisable, _pending
    _owner, _pending = os.getpid(), None
    for sig in (signal.SIGINT, signal.SIGTERM):
        _saved[sig] = signal.signal(sig, _handler)
    _saved_unraisable, sys.unraisablehook = sys.unraisablehook, _unraisable


def uninstall() -> None:
    """Put back the handlers that :func:`install` replaced."""
    global _owner
    for sig, previous in _saved.items():
        signal.signal(sig, previous)
    _saved.clear()
    if _saved_unraisable is not None:
        sys.unraisablehook = _saved_unraisable
    _owner = None


def forget_escaped() -> None:
    """Forget that an interrupt escaped code that Python ran from a string, once the command has
    handled it. CPython notes in a flag of the whole process each ``KeyboardInterrupt`` that
    leaves such code (``exec`` or ``eval`` of a string: the methods that ``dataclasses`` and
    ``namedtuple`` generate as a module is imported), caught later or not, and a process started
    as ``python -m`` then ends by SIGINT at its exit, whatever its code (``run_eval_code_obj`` in
    Python/pythonrun.c, read by ``Py_RunMain``). A build interrupted while it imported such a
    module printed "interrupted" and was reported killed by SIGINT instead of exiting 130 (one CI
    run in about forty). Running a string that raises nothing clears the flag."""
    exec("pass")  # noqa: S102  (a constant: the only way Python offers to reset its flag)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise what arrived. For short blocks
    that must not stop half-way: stopping a worker pool, handing an item to a thread."""
    global _depth, _pending
    if _owner is None or threading.current_thread() is not threading.main_thread():
        yield  # no handlers installed, or not the thread where their exceptions are raised
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            exc, _pending = _pending, None
            raise exc
