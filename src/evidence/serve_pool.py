"""The query workers of ``evidence serve``: processes that each hold the graph, and a pool of them.

A query runs in a worker (:mod:`evidence.serve_worker`) while the server's event loop goes on
serving other requests. When a query passes the time limit the worker is killed, which is the only
way to stop pyoxigraph mid-query, and a fresh worker is started in its place; the request gets a
:class:`QueryTimeout`. Workers start as ``python -P serve_worker.py``, with the N-Quads export of
the build, and each loads its own in-memory store (about 0.5 KB a quad, see PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import collections
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
    """``size`` workers; :meth:`run` hands a job to a free one, under a time limit.

    When every worker is busy, requests wait in one queue per client, and a worker that comes free
    goes to the clients in turn (round robin), each client's requests in the order they came. So a
    client that sends many slow queries at once holds up its own, not everyone's: another client's
    query waits at most for the first worker to come free (the time limit, at worst), not behind
    all of them. With one client (every request from one address) it is first come, first served.
    """

    def __init__(self, nquads: Path, prefixes: dict[str, str], size: int, timeout: float, wait: float | None = None):
        self.nquads = nquads
        self.prefixes = prefixes
        self.size = max(1, size)
        self.timeout = timeout
        # How long a request may wait for a free worker: at least long enough for a killed
        # worker's replacement to load the graph.
        self.wait = wait if wait is not None else max(timeout, 30.0)
        self.info: dict[str, Any] = {}
        self._free: list[Worker] = []  # idle workers, when no request waits
        self._waiting: dict[str, collections.deque[asyncio.Future[Worker]]] = {}  # client -> its requests that wait, in order
        self._turns: collections.deque[str] = collections.deque()  # the clients with a request that waits, in turn
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
                self._release(w)
        if failed:
            await self.close()
            raise WorkerFailed(str(failed[0]))
        first = next(w for w in workers if isinstance(w, Worker))
        self.info = first.info
        log.info("%d query workers loaded %s quads in %.2f s", self.size, self.info.get("quads"), time.perf_counter() - t)

    async def run(self, job: dict[str, Any], client: str = "") -> Reply:
        """Evaluate ``job`` in a free worker, waiting in ``client``'s turn (see the class) for one;
        :class:`QueryTimeout` if it takes too long, :class:`PoolBusy` if no worker came free in time."""
        worker = await self._acquire(client)
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
        self._release(worker)
        return reply

    async def _acquire(self, client: str) -> Worker:
        if self._free and not self._turns:
            return self._free.pop()
        got: asyncio.Future[Worker] = asyncio.get_running_loop().create_future()
        if client not in self._waiting:
            self._waiting[client] = collections.deque()
            self._turns.append(client)
        self._waiting[client].append(got)
        try:
            return await asyncio.wait_for(asyncio.shield(got), self.wait)
        except BaseException as exc:  # no worker in time, or the client went away
            if got.done() and not got.cancelled() and got.exception() is None:
                self._release(got.result())  # handed over just as the wait ended: give it to the next
            else:
                got.cancel()
            if isinstance(exc, TimeoutError):
                raise PoolBusy(f"all {self.size} query workers stayed busy for {self.wait:g} s") from None
            raise

    def _release(self, worker: Worker) -> None:
        """Give a free worker to the first waiting request of the client whose turn it is."""
        while self._turns:
            client = self._turns.popleft()
            queue = self._waiting[client]
            while queue and queue[0].done():  # given up on (timed out, or the client went away)
                queue.popleft()
            if not queue:
                del self._waiting[client]
                continue
            queue.popleft().set_result(worker)
            if queue:
                self._turns.append(client)  # its next request waits for a later turn
            else:
                del self._waiting[client]
            return
        self._free.append(worker)

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
            self._release(worker)
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
