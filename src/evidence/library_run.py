"""The query library's answers for the site, worked out by a query worker while the site renders.

A kb with ``kb/queries/`` shows each library query's answer on the site (``queries.html``, and a
CSV of each SELECT), so every build runs the whole library. In the build's own process, after
the rest of the render, that was the largest part of a large build: at 10,000 synthetic cases,
loading the store took 18-24 s and the queries 33 s, and the store stayed in memory to the end.

:class:`LibraryAnswers` starts the query worker of ``evidence serve`` (``serve_worker.py``, a
fresh interpreter: a forked child would make every page the render writes a copy) when the render
starts, hands it every query at once, and a thread collects the answers as they come, so loading
and querying go on beside the render. The worker loads the compiled graph from the build's spool
(each chunk is canonical N-Quads ending in a line break, so the chunks back to back are one
N-Quads document): it is given the spool's descriptors and the byte range of every chunk, and
reads them itself (the chunks are never read into this process); a graph without a spool is
written to a temporary file first. Answers come back as TSV (ASK: ``true``/``false``; CONSTRUCT and DESCRIBE:
N-Triples), and are read back into the :class:`~evidence.query.QueryResult` that
:func:`~evidence.query.run_query` gives, with the same errors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .errors import QueryError
from .library import LibraryQuery
from .query import QueryResult, explain_syntax_error, refuse_service
from .serve_pool import WORKER_SCRIPT
from .spool import Spool

__all__ = ["LibraryAnswers"]

_NO_CAP = 1 << 62  # the worker's result cap: the site shows every row (in the CSV)


class LibraryAnswers:
    """The answers to ``queries`` over ``compiled``, from a worker process started here;
    :meth:`result` waits for them. Use it as a context manager (or call :meth:`close`): the
    worker is stopped on leaving, answered or not."""

    def __init__(self, compiled: Any, queries: list[LibraryQuery]):
        self.queries = queries
        self.prefixes = compiled.ns.prefixes()
        self._replies: list[tuple[dict[str, Any], bytes]] = []
        self._failure: str | None = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._stderr: Any = None
        self._refused = {q.name: _refusal(q.text) for q in queries}
        asked = [q for q in queries if self._refused[q.name] is None]
        if not asked:
            return
        chunks = compiled.chunks
        hello: dict[str, Any] = {"prefixes": self.prefixes}
        if isinstance(chunks, Spool):  # the worker reads the chunks where they are, through descriptors it inherits
            hello["segments"] = chunks.segments()
            arg, fds = "--segments", tuple(sorted({fd for fd, _at, _n in hello["segments"]}))
        else:  # a graph made in memory (Compiled.from_quads): its N-Quads in a file of their own
            self._tmp = tempfile.TemporaryDirectory(prefix="evidence-library-")
            arg, fds = str(Path(self._tmp.name) / "graph.nq"), ()
            Path(arg).write_bytes(compiled.nquads())
        # What the worker says on stderr (a traceback, if it fails) goes into the error, not onto the
        # build's terminal.
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen([sys.executable, "-P", str(WORKER_SCRIPT), arg], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=self._stderr, pass_fds=fds)
        except OSError as e:
            self._failure = f"the query worker could not start: {e}"
            return
        jobs = [json.dumps(hello)]
        jobs += [json.dumps({"query": q.text, "select": "tsv", "graph": "ntriples", "max": _NO_CAP}) for q in asked]
        self._thread = threading.Thread(target=self._talk, args=("\n".join(jobs) + "\n", len(asked)), name="library", daemon=True)
        self._thread.start()

    def _talk(self, jobs: str, n: int) -> None:
        """Hand the worker every job, then read its answers (in this thread, so that the worker
        never waits for the build to read a full pipe)."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(jobs.encode("utf-8"))
            proc.stdin.close()  # the worker ends once it has answered every job
        except OSError:
            pass  # the worker is gone: reading its answers says how
        try:
            for _ in range(n + 1):  # "ready", then one answer per job
                line = proc.stdout.readline()
                if not line:
                    raise OSError(f"the query worker stopped (exit status {proc.wait()}){self._said()}")
                header = json.loads(line)
                self._replies.append((header, _read_exactly(proc.stdout, int(header.get("length", 0)))))
        except (OSError, ValueError) as e:
            self._failure = str(e)

    def ready(self) -> bool:
        """Whether every answer is in (or the worker failed): :meth:`result` would not wait."""
        return self._thread is None or not self._thread.is_alive()

    def result(self) -> list[tuple[LibraryQuery, QueryResult | QueryError]]:
        """Each query with its answer, or the QueryError that running it met, in library order."""
        if self._thread is not None:
            self._thread.join()
        replies = iter(self._replies[1:])
        if self._replies and self._replies[0][0].get("status") != "ready":
            self._failure = f"the query worker could not load the graph: {self._replies[0][0]}"
        out: list[tuple[LibraryQuery, QueryResult | QueryError]] = []
        for q in self.queries:
            refused = self._refused[q.name]
            if refused is not None:
                out.append((q, refused))
                continue
            reply = next(replies, None)
            if reply is None or self._failure:
                out.append((q, QueryError(self._failure or "the query worker gave no answer")))
                continue
            out.append((q, self._result(q, *reply)))
        self.close()
        return out

    def _result(self, q: LibraryQuery, header: dict[str, Any], body: bytes) -> QueryResult | QueryError:
        status, kind = header.get("status"), header.get("kind")
        if status == "syntax":
            return QueryError(explain_syntax_error(q.text, str(header.get("message", "")), self.prefixes))
        if status != "ok":
            return QueryError(f"the query failed: {header.get('message') or status}")
        if kind == "ask":
            return QueryResult("ask", [], [], boolean=body.strip() == b"true")
        if kind == "graph":
            return QueryResult("graph", [], [], triples=list(ox.parse(body, format=ox.RdfFormat.N_TRIPLES)))
        solutions = ox.parse_query_results(body, format=ox.QueryResultsFormat.TSV)
        variables = [v.value for v in solutions.variables]
        return QueryResult("select", variables, [{v: sol[v] for v in variables} for sol in solutions])

    def close(self) -> None:
        """Stop the worker (if it is still working: its answers are not wanted) and let go of
        its pipes and of the temporary graph file."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self._thread is not None:
            self._thread.join()  # the pipe ends with the worker: the thread sees it and stops
        if proc is not None:
            for f in (proc.stdin, proc.stdout):
                if f is not None and not f.closed:
                    f.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _said(self) -> str:
        """The last line the worker wrote on stderr, if any (': ' and the line)."""
        self._stderr.seek(0)
        lines = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        return f": {lines[-1]}" if lines else ""

    def __enter__(self) -> LibraryAnswers:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _refusal(text: str) -> QueryError | None:
    try:
        refuse_service(text)
    except QueryError as e:
        return e
    return None


def _read_exactly(f: Any, n: int) -> bytes:
    data = f.read(n) if n else b""
    if len(data) != n:
        raise OSError(f"the query worker's answer ended early ({len(data)} of {n} bytes)")
    return data
