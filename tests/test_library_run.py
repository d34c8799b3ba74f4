"""The query library answered by a worker process (evidence.library_run) while the site renders:
the same answers and errors as running each query here, and no worker left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from evidence.errors import QueryError
from evidence.library import LibraryQuery, load_library
from evidence.library_run import LibraryAnswers
from evidence.query import run_query


def _q(name: str, text: str) -> LibraryQuery:
    return LibraryQuery(name=name, title=name, question=name, params=(), text=text, path=Path(f"{name}.rq"))


def _same(a, b) -> None:
    assert (a.kind, a.variables, a.boolean) == (b.kind, b.variables, b.boolean)
    assert a.rows == b.rows
    assert sorted(map(str, a.triples or [])) == sorted(map(str, b.triples or []))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_every_library_query_gets_the_answer_it_gets_here(compiled, config):
    lib = load_library(config.kb_dir / "queries")
    assert len(lib) > 5
    with LibraryAnswers(compiled, lib) as answers:
        got = answers.result()
    assert [q.name for q, _ in got] == [q.name for q in lib]
    for q, res in got:
        assert not isinstance(res, QueryError), (q.name, res)
        _same(res, run_query(compiled, q.text))
    assert any(res.rows for _, res in got)


def test_ask_construct_and_errors_come_back_as_they_do_here(compiled):
    queries = [
        _q("ask", "ASK { ?c a ev:CaseReport }"),
        _q("construct", "CONSTRUCT { ?c a ev:CaseReport } WHERE { ?c a ev:CaseReport }"),
        _q("syntax", "SELECT ?x WHRE { ?x ?y ?z }"),
        _q("service", "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }"),
        _q("after", "SELECT (COUNT(*) AS ?n) WHERE { ?c a ev:CaseReport }"),
    ]
    with LibraryAnswers(compiled, queries) as answers:
        got = dict((q.name, res) for q, res in answers.result())
    for name in ("ask", "construct", "after"):
        _same(got[name], run_query(compiled, next(q.text for q in queries if q.name == name)))
    assert got["ask"].boolean is True and len(got["construct"].triples) == 3
    for name in ("syntax", "service"):
        with pytest.raises(QueryError) as here:
            run_query(compiled, next(q.text for q in queries if q.name == name))
        assert isinstance(got[name], QueryError) and got[name].message == here.value.message
    assert "^ where the parser stopped" in got["syntax"].message


def test_a_graph_without_a_spool_is_handed_over_in_a_file(compiled):
    """Compiled.from_quads keeps its chunks in memory: they go to a temporary file, deleted after."""
    made = type(compiled).from_quads(compiled.ns, compiled.quads)
    query = _q("cases", "SELECT ?c WHERE { ?c a ev:CaseReport } ORDER BY ?c")
    answers = LibraryAnswers(made, [query])
    folder = Path(answers._tmp.name)
    assert folder.is_dir()
    (_, res), = answers.result()
    _same(res, run_query(compiled, query.text))
    assert not folder.exists()


def test_closing_before_the_answers_stops_the_worker(compiled):
    answers = LibraryAnswers(compiled, [_q("all", "SELECT * WHERE { ?s ?p ?o ?x ?y }")])
    pid = answers._proc.pid
    t = time.perf_counter()
    answers.close()
    assert time.perf_counter() - t < 10 and _gone(pid)
    assert answers._thread is not None and not answers._thread.is_alive()


def test_a_render_that_fails_leaves_no_query_worker(config, tmp_path, monkeypatch):
    from evidence import library_run, site_pages
    from evidence.pipeline import build

    made: list[LibraryAnswers] = []
    real = library_run.LibraryAnswers.__init__

    def watched(self, *a, **k):
        real(self, *a, **k)
        made.append(self)

    monkeypatch.setattr(library_run.LibraryAnswers, "__init__", watched)
    monkeypatch.setattr(site_pages.SitePages, "cases", lambda self: (_ for _ in ()).throw(RuntimeError("a template broke")))
    with pytest.raises(RuntimeError, match="a template broke"):
        build(config, tmp_path / "_site")
    assert len(made) == 1 and made[0]._proc is None
    assert not (tmp_path / "_site").exists()


def test_a_worker_that_dies_is_a_clear_error(compiled, monkeypatch):
    from evidence import library_run

    monkeypatch.setattr(library_run, "WORKER_SCRIPT", Path("/nonexistent/serve_worker.py"))
    with LibraryAnswers(compiled, [_q("cases", "SELECT ?c WHERE { ?c a ev:CaseReport }")]) as answers:
        (_, res), = answers.result()
    assert isinstance(res, QueryError) and "the query worker stopped (exit status 2)" in res.message
    assert "can't open file" in res.message  # what the interpreter said, not a traceback on the terminal


def _spool_of_refs(compiled, path: Path):
    """The compiled graph with its chunks in ``path`` (as a build's are in the cache's packs),
    named in a spool by reference."""
    import dataclasses

    from evidence.spool import Spool

    names = list(compiled.chunks)
    path.write_bytes(b"".join(compiled.chunks[g] for g in names))
    spool, at = Spool(), 0
    fd = os.open(path, os.O_RDONLY)
    try:
        for g in names:
            size = len(compiled.chunks[g])
            spool.add_ref(g, fd, at, size)
            at += size
    finally:
        os.close(fd)  # the spool keeps its own descriptor
    return dataclasses.replace(compiled, chunks=spool, views={}, _store=None, _quads=None)


def test_chunks_named_by_reference_reach_the_worker_whole(compiled, config, tmp_path):
    by_ref = _spool_of_refs(compiled, tmp_path / "pack")
    (tmp_path / "pack").unlink()  # as a pack merged away since: the spool's descriptor keeps it
    lib = load_library(config.kb_dir / "queries")
    with LibraryAnswers(by_ref, lib) as answers:
        got = answers.result()
    for q, res in got:
        assert not isinstance(res, QueryError), (q.name, res)
        _same(res, run_query(compiled, q.text))


def test_a_chunk_that_cannot_be_read_fails_every_answer_never_answers_over_part_of_the_graph(compiled, tmp_path):
    by_ref = _spool_of_refs(compiled, tmp_path / "pack")
    os.truncate(tmp_path / "pack", 1000)  # the file is cut short after the spool named its chunks
    queries = [_q("count", "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"), _q("ask", "ASK { ?s ?p ?o }")]
    with LibraryAnswers(by_ref, queries) as answers:
        got = answers.result()
    assert all(isinstance(res, QueryError) and "ended at" in res.message for _q2, res in got), got
