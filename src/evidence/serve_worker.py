"""A query worker of ``evidence serve``: one process that holds the graph and answers queries.

pyoxigraph cannot interrupt a query that is running in the thread that started it, so the server
evaluates every query in a worker process and kills the process when the time limit passes (see
:mod:`evidence.serve_pool`). The server runs this file as a script, ``python -P serve_worker.py
NQUADS``, so that a fresh worker starts in milliseconds: it imports only pyoxigraph and the
standard library, never the ``evidence`` package (whose import takes about 0.4 s).

The protocol, over the worker's stdin and stdout:

- first the server writes one JSON line, ``{"prefixes": {...}}``; the worker loads the N-Quads
  file (or, started as ``serve_worker.py --segments``, the byte ranges listed in that line's
  ``"segments"``, ``[[descriptor, offset, length], ...]``, of descriptors it inherited: see
  :mod:`evidence.library_run`) and answers ``{"status": "ready", "quads": N, "graphs": {graph IRI: quads}}``;
- then, per query, the server writes one JSON line (see :func:`answer`) and the worker answers
  one JSON header line, ``{"status": ..., "length": n, ...}``, followed by ``n`` bytes of body.

A worker exits when its stdin closes, so it never outlives the server.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import sys
import threading
from typing import Any

import pyoxigraph as ox

__all__ = ["SELECT_FORMATS", "GRAPH_FORMATS", "STACK_SIZE", "answer", "dataset", "declares_dataset", "load_store", "main", "query_variables"]

STACK_SIZE = 512 << 20

SELECT_FORMATS: dict[str, ox.QueryResultsFormat] = {
    "json": ox.QueryResultsFormat.JSON,
    "xml": ox.QueryResultsFormat.XML,
    "csv": ox.QueryResultsFormat.CSV,
    "tsv": ox.QueryResultsFormat.TSV,
}
GRAPH_FORMATS: dict[str, ox.RdfFormat] = {
    "turtle": ox.RdfFormat.TURTLE,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "jsonld": ox.RdfFormat.JSON_LD,
    "rdfxml": ox.RdfFormat.RDF_XML,
}


class _TooMany(Exception):
    """Raised from inside pyoxigraph's writer when the result passes the cap."""


class _CappedLines:
    """A binary writer that keeps what it is given and stops the writer after ``limit`` lines.

    TSV results have one line per row (newlines in literals are escaped), so counting lines
    counts rows while pyoxigraph streams the solutions: a huge result stops at the cap instead of
    being evaluated to the end.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.lines = 0
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        chunk = bytes(data)
        self.lines += chunk.count(b"\n")
        self.parts.append(chunk)
        if self.lines > self.limit:
            raise _TooMany()
        return len(chunk)

    def flush(self) -> None:
        pass


class _Segments(io.RawIOBase):
    """The byte ranges (descriptor, offset, length) one after another, as one stream; a range
    that ends early is an error (never a graph that is silently short)."""

    def __init__(self, segments: list[list[int]]):
        self.segments = segments
        self.at = 0  # the range being read
        self.done = 0  # bytes read of it

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.at < len(self.segments):
            fd, offset, length = self.segments[self.at]
            left = length - self.done
            if left <= 0:
                self.at, self.done = self.at + 1, 0
                continue
            data = os.pread(fd, min(left, len(buffer)), offset + self.done)
            if not data:
                raise OSError(f"the graph's byte range {offset}-{offset + length} of descriptor {fd} ended at {offset + self.done}")
            buffer[: len(data)] = data
            self.done += len(data)
            return len(data)
        return 0


def load_store(path: str, segments: list[list[int]] | None = None) -> tuple[ox.Store, dict[str, int]]:
    """An in-memory store of the N-Quads file (gzip if its name ends with ``.gz``, as the build
    writes it), or of the byte ranges ``segments``, and the number of quads in each named graph."""
    store = ox.Store()
    # lenient: the file is the build's own export, already checked; about 20% faster at 1,000 cases.
    if segments is not None:
        store.bulk_load(input=io.BufferedReader(_Segments(segments), 1 << 20), format=ox.RdfFormat.N_QUADS, lenient=True)
    elif path.endswith(".gz"):
        with gzip.open(path, "rb") as fh:
            store.bulk_load(input=fh, format=ox.RdfFormat.N_QUADS, lenient=True)
    else:
        store.bulk_load(path=path, format=ox.RdfFormat.N_QUADS, lenient=True)
    graphs: dict[str, int] = {}
    for sol in store.query("SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"):
        g, n = sol["g"], sol["n"]
        if isinstance(g, ox.NamedNode) and n is not None:
            graphs[g.value] = int(n.value)
    return store, dict(sorted(graphs.items()))


# The tokens of a query, as far as telling its keywords and variables from the rest needs: long
# and short strings, IRIs (with \u escapes), comments and language tags are skipped; a variable;
# a word, with a prefix's colon and local name if it has one (one token, scanned once: a word
# tried again from each of its letters took time in the square of its length); a number (1FROM
# is 1 and FROM). Possessive (*+) and open-ended: a string left open runs to the end of its line
# (of the query, for a long one) instead of being tried again from each quote inside it.
_NAME = r"\w\u00b7\u0300-\u036f\u203f\u2040"  # the characters of a name, SPARQL's beyond Python's \w
_SKIP = "|".join([
    r"'{3}(?:[^'\\]|\\.|'(?!''))*+(?:'{3}|\Z)",  # a long string
    r'"{3}(?:[^"\\]|\\.|"(?!""))*+(?:"{3}|\Z)',
    r"'(?:[^'\\\n\r]|\\.)*+'?",  # a string
    r'"(?:[^"\\\n\r]|\\.)*+"?',
    r'<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*+>',  # an IRI (a < that is not one compares)
    r"#[^\r\n]*+",  # a comment
    r"@[A-Za-z]++(?:-[A-Za-z0-9]++)*+",  # a language tag ("x"@from)
    r"\d[\d.]*+(?:[eE][+-]?\d++)?",  # a number
])
_TOKENS = re.compile(
    f"(?P<skip>{_SKIP})"
    + rf"|(?P<var>[?$][{_NAME}]*+)"
    + rf"|(?P<word>[A-Za-z_][{_NAME}.-]*+(?::(?:[{_NAME}.:%-]|\\.)*+)?|:(?:[{_NAME}.:%-]|\\.)*+)"
    + r"""|[^'"<#@:?$\w]++|.""",
    re.DOTALL,
)


def _words(query: str):
    """The query's keywords and names, in order (prefixed names with their colon)."""
    for m in _TOKENS.finditer(query):
        w = m.group("word")
        if w:
            yield w


def declares_dataset(query: str) -> bool:
    """Whether the query names its own dataset (FROM or FROM NAMED). Such a query is run on it;
    any other on the union of all graphs (use_default_graph_as_union would replace a FROM)."""
    return any(":" not in w and w.rstrip(".-").upper() == "FROM" for w in _words(query))


def query_variables(query: str) -> tuple[str, set[str], set[str] | None]:
    """(the query's form: SELECT, ASK, CONSTRUCT or DESCRIBE, or "" if none is found; every
    variable it names outside strings, IRIs and comments; for a SELECT, the variables it selects,
    None for SELECT *). A subquery's SELECT is not the query's."""
    form, names, selected, state, depth = "", set(), set(), "", 0
    star = False
    for m in _TOKENS.finditer(query):
        var, word, skip = m.group("var"), m.group("word"), m.group("skip")
        if var:
            names.add(var[1:])
            if state == "projection":
                selected.add(var[1:])
        elif word:
            up = word.upper()
            if not form and up in ("SELECT", "ASK", "CONSTRUCT", "DESCRIBE"):
                form = up
                state = "projection" if up == "SELECT" else ""
            elif state == "projection" and depth == 0 and up in ("WHERE", "FROM"):
                state = "done"
        elif state == "projection" and not skip:
            for ch in m.group():  # the projection ends at its group pattern; * is SELECT * outside parentheses
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                elif ch == "{" and depth == 0:
                    state = "done"
                    break
                elif ch == "*" and depth == 0:
                    star = True
    return form, names, (None if star else selected) if form == "SELECT" else None


def ends_with_values(query: str) -> bool:
    """Whether the query ends with a VALUES clause of its own (one outside every group pattern),
    read with the tokens above: braces, VALUES and ``#`` inside strings, IRIs and comments do not
    count."""
    depth, trailing = 0, False
    for m in _TOKENS.finditer(query):
        var, word, skip = m.group("var"), m.group("word"), m.group("skip")
        if word:
            if depth == 0:
                trailing = word.upper() == "VALUES"
        elif not var and not skip:
            depth += m.group().count("{") - m.group().count("}")
    return trailing


def dataset(query: str, default_graph: list[str] | None = None, named_graphs: list[str] | None = None) -> dict[str, Any]:
    """The dataset options of a query for pyoxigraph: the protocol's default-graph-uri and
    named-graph-uri when either is given (each an empty set where not given, as the SPARQL
    protocol has it); else the query's own FROM clauses; else every graph, as the default graph."""
    if default_graph or named_graphs:
        return {"default_graph": [ox.NamedNode(g) for g in default_graph or []], "named_graphs": [ox.NamedNode(g) for g in named_graphs or []]}
    if declares_dataset(query):
        return {}
    return {"use_default_graph_as_union": True}


def _dataset(job: dict[str, Any]) -> dict[str, Any]:
    return dataset(job["query"], job.get("default_graph"), job.get("named_graphs"))


def answer(store: ox.Store, prefixes: dict[str, str], job: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Evaluate one query job; returns the reply header and body.

    ``job``: ``query``; ``select`` and ``graph``, the format names for a SELECT/ASK result and for
    a CONSTRUCT/DESCRIBE result (None: the client accepts none); ``max``, the result cap; and
    optionally ``default_graph`` and ``named_graphs`` (lists of IRIs, the protocol's dataset).
    Statuses: ``ok``, ``syntax`` (the query does not parse: ``message``), ``failed`` (it parsed
    but evaluation failed: ``message``), ``too_many`` (more than ``max`` results) and
    ``not_acceptable`` (the client accepts no format for this kind of result).
    """
    limit = int(job["max"])
    try:
        res = store.query(job["query"], prefixes=prefixes, **_dataset(job))
    except SyntaxError as exc:
        return {"status": "syntax", "message": str(exc)}, b""
    except (OSError, ValueError, RuntimeError) as exc:
        return {"status": "failed", "message": str(exc)}, b""
    try:
        if isinstance(res, ox.QueryBoolean):
            fmt = job.get("select")
            if fmt is None:
                return {"status": "not_acceptable", "kind": "ask"}, b""
            return {"status": "ok", "kind": "ask", "format": fmt, "rows": 1}, res.serialize(format=SELECT_FORMATS[fmt])
        if isinstance(res, ox.QuerySolutions):
            fmt = job.get("select")
            if fmt is None:
                return {"status": "not_acceptable", "kind": "select"}, b""
            writer = _CappedLines(limit + 1)  # the header line, then at most `limit` rows
            try:
                res.serialize(writer, format=ox.QueryResultsFormat.TSV)
            except _TooMany:
                return {"status": "too_many", "kind": "select", "max": limit}, b""
            tsv = b"".join(writer.parts)
            rows = max(tsv.count(b"\n") - 1, 0)
            if fmt == "tsv":
                return {"status": "ok", "kind": "select", "format": fmt, "rows": rows}, tsv
            # The rows are few (at most the cap): read the TSV back and write the format asked for.
            body = ox.parse_query_results(tsv, format=ox.QueryResultsFormat.TSV).serialize(format=SELECT_FORMATS[fmt])
            return {"status": "ok", "kind": "select", "format": fmt, "rows": rows}, body
        fmt = job.get("graph")
        if fmt is None:
            return {"status": "not_acceptable", "kind": "graph"}, b""
        triples: list[ox.Triple] = []
        for t in res:
            triples.append(t)
            if len(triples) > limit:
                return {"status": "too_many", "kind": "graph", "max": limit}, b""
        body = ox.serialize(triples, format=GRAPH_FORMATS[fmt], prefixes=prefixes if fmt in ("turtle", "rdfxml") else None)
        return {"status": "ok", "kind": "graph", "format": fmt, "rows": len(triples)}, body
    except (OSError, ValueError, RuntimeError, SyntaxError) as exc:  # errors met while the results stream
        return {"status": "failed", "message": str(exc)}, b""


def _send(out, header: dict[str, Any], body: bytes = b"") -> None:
    header["length"] = len(body)
    out.write(json.dumps(header).encode("utf-8") + b"\n")
    out.write(body)
    out.flush()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: serve_worker.py NQUADS-FILE|--segments (started by `evidence serve` and the build)", file=sys.stderr)
        return 2
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    first = inp.readline()
    if not first:
        return 0
    hello = json.loads(first)
    prefixes = hello.get("prefixes", {})
    store, graphs = load_store(argv[0], hello.get("segments") if argv[0] == "--segments" else None)
    _send(out, {"status": "ready", "quads": len(store), "graphs": graphs})

    def serve() -> None:
        for line in inp:
            job = json.loads(line)
            try:
                header, body = answer(store, prefixes, job)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a bug (or a pyoxigraph panic) must not kill the worker silently: report it
                header, body = {"status": "error", "message": f"{type(exc).__name__}: {exc}"}, b""
            _send(out, header, body)

    # pyoxigraph parses and evaluates recursively on the calling thread's stack: 8 MiB (the main
    # thread's) overflows at a few thousand nested or chained terms, a 512 MiB one (reserved, not
    # used) at about a hundred times more, past what a 1 MiB query can hold but for deep nesting,
    # which the server refuses before it gets here.
    try:
        threading.stack_size(STACK_SIZE)
    except (ValueError, RuntimeError):
        pass
    thread = threading.Thread(target=serve, name="queries")
    thread.start()
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
