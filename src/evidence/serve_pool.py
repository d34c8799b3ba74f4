"""The query workers of ``evidence serve``: processes that each hold the graph, and a pool of them.

A query runs in a worker (:mod:`evidence.serve_worker`) while the server's event loop goes on
serving other requests. When a query passes the time limit the worker is killed, which is the only
way to stop pyoxigraph mid-query, and a fresh worker is started in its place; the request gets a
:class:`QueryTimeout`. Workers start as ``python -P serve_worker.py``, with the N-Quads export of
the build, and each loads its own in-memory store (about 0.5 KB a quad, see PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Reply", "Worker", "WorkerPool", "QueryTimeout", "PoolBusy", "WorkerFailed"]

log = logging.getLogger("evidence.serve")

WORKER_SCRIPT = Path(__file__).with_name("serve_worker.py")
# A worker's replies can be large (the result cap times a row); the header line is small.
_LINE_LIMIT = 1 << 20


class QueryTimeout(Exception):
    """The query ran past the time limit; its worker was killed."""


class PoolBusy(Exception):
    """No worker became free in time."""


class WorkerFailed(Exception):
    """A worker could not start, or died while it answered (``returncode``: how it ended, if known)."""

    def __init__(self, message: str, returncode: int | None = None):
        super().__init__(message)
        self.returncode = returncode

    @property
    def crashed(self) -> bool:
        """It died of a fault (SIGSEGV, SIGBUS, SIGABRT), as the engine does when a query exhausts its stack."""
        return self.returncode in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGABRT)


@dataclass
class Reply:
    """A worker's answer: the header (``status``, ``kind``, ``format``, ``rows``...) and the body."""

    header: dict[str, Any]
    body: bytes = b""

    @property
    def status(self) -> str:
        return str(self.header.get("status", ""))


@dataclass(eq=False)
class Worker:
    proc: asyncio.subprocess.Process
    info: dict[str, Any] = field(default_factory=dict)  # the "ready" header: quads, graphs

    @classmethod
    async def start(cls, nquads: Path, prefixes: dict[str, str], timeout: float = 300.0) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-P", str(WORKER_SCRIPT), str(nquads),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=_LINE_LIMIT,
        )
        worker = cls(proc)
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"prefixes": prefixes}).encode("utf-8") + b"\n")
            await proc.stdin.drain()
            reply = await asyncio.wait_for(worker._read(), timeout)
        except (TimeoutError, WorkerFailed, OSError) as exc:
            await worker.kill()
            raise WorkerFailed(f"a query worker could not load {nquads}: {exc}") from None
        if reply.status != "ready":
            await worker.kill()
            raise WorkerFailed(f"a query worker could not load {nquads}: {reply.header}")
        worker.info = reply.header
        return worker

    async def _read(self) -> Reply:
        out = self.proc.stdout
        assert out is not None
        try:
            line = await out.readline()
            if line:
                header = json.loads(line)
                return Reply(header, await out.readexactly(int(header.get("length", 0))))
        except (asyncio.IncompleteReadError, ValueError):
            pass
        returncode = None
        with contextlib.suppress(TimeoutError):
            returncode = await asyncio.wait_for(self.proc.wait(), 5)
        raise WorkerFailed(f"the query worker (pid {self.proc.pid}) stopped (exit status {returncode})", returncode)

    async def ask(self, job: dict[str, Any]) -> Reply:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(job).encode("utf-8") + b"\n")
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise WorkerFailed(f"the query worker (pid {self.proc.pid}) stopped: {exc}") from None
        return await self._read()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        with contextlib.suppress(Exception):
            await self.proc.wait()


class WorkerPool:
    """``size`` workers; :meth:`run` hands a job to a free one, under a time limit."""

    def __init__(self, nquads: Path, prefixes: dict[str, str], size: int, timeout: float, wait: float | None = None):
        self.nquads = nquads
        self.prefixes = prefixes
        self.size = max(1, size)
        self.timeout = timeout
        # How long a request may wait for a free worker: at least long enough for a killed
        # worker's replacement to load the graph.
        self.wait = wait if wait is not None else max(timeout, 30.0)
        self.info: dict[str, Any] = {}
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._all: set[Worker] = set()
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    async def start(self) -> None:
        """Start every worker and wait until each holds the graph."""
        t = time.perf_counter()
        workers = await asyncio.gather(*(Worker.start(self.nquads, self.prefixes) for _ in range(self.size)), return_exceptions=True)
        failed = [w for w in workers if isinstance(w, BaseException)]
        for w in workers:
            if isinstance(w, Worker):
                self._all.add(w)
                self._idle.put_nowait(w)
        if failed:
            await self.close()
            raise WorkerFailed(str(failed[0]))
        first = next(w for w in workers if isinstance(w, Worker))
        self.info = first.info
        log.info("%d query workers loaded %s quads in %.2f s", self.size, self.info.get("quads"), time.perf_counter() - t)

    async def run(self, job: dict[str, Any]) -> Reply:
        """Evaluate ``job`` in a free worker; :class:`QueryTimeout` if it takes too long."""
        try:
            worker = await asyncio.wait_for(self._idle.get(), self.wait)
        except TimeoutError:
            raise PoolBusy(f"all {self.size} query workers stayed busy for {self.wait:g} s") from None
        try:
            reply = await asyncio.wait_for(worker.ask(job), self.timeout)
        except TimeoutError:
            self._replace(worker)
            raise QueryTimeout() from None
        except WorkerFailed:
            self._replace(worker)
            raise
        except BaseException:  # cancelled (the client went away): the worker's state is unknown
            self._replace(worker)
            raise
        self._idle.put_nowait(worker)
        return reply

    def _replace(self, worker: Worker) -> None:
        task = asyncio.get_running_loop().create_task(self._respawn(worker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respawn(self, old: Worker) -> None:
        await old.kill()
        self._all.discard(old)
        delay = 0.5
        while not self._closed:
            try:
                worker = await Worker.start(self.nquads, self.prefixes)
            except WorkerFailed as exc:
                log.error("%s; trying again in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if self._closed:
                await worker.kill()
                return
            self._all.add(worker)
            self._idle.put_nowait(worker)
            log.info("started a fresh query worker (pid %d)", worker.proc.pid)
            return

    async def close(self) -> None:
        """Stop every worker (the server is shutting down)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for w in list(self._all):
            if w.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    w.proc.stdin.close()
        await asyncio.gather(*(w.kill() for w in list(self._all)), return_exceptions=True)
        self._all.clear()
