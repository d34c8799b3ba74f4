"""A build that fails half-way, or is interrupted, leaves the previous output exactly as it was
and no partial folder behind (the build writes into a temporary folder, then swaps it in)."""

from __future__ import annotations

import os

import pytest

from evidence import pipeline
from evidence.cache import BuildCache
from evidence.pipeline import build


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fault", [RuntimeError("disk full"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_failure_while_writing_keeps_the_previous_site(config, site, tmp_path, monkeypatch, fault):
    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    assert before

    def broken(*args, **kwargs):
        raise fault

    monkeypatch.setattr(pipeline, "write_exports", broken)
    with pytest.raises(type(fault)):
        build(config, out)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"], "a temporary build folder was left behind"


def test_failure_on_a_first_build_leaves_nothing(config, tmp_path, monkeypatch):
    out = tmp_path / "_site"
    monkeypatch.setattr(pipeline, "write_exports", lambda *a, **k: (_ for _ in ()).throw(OSError("no space left")))
    with pytest.raises(OSError):
        build(config, out)
    assert list(tmp_path.iterdir()) == []


_ONE_CORE = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="with one core the GraphML is written in the build's own process")


@pytest.mark.parametrize("forked", [pytest.param(True, marks=_ONE_CORE), False], ids=["forked", "here"])
def test_a_graphml_that_cannot_be_written_fails_the_build_cleanly(config, site, tmp_path, monkeypatch, forked):
    """The GraphML is written by a forked process while the site renders (export.Finishing): its
    failure is the build's, with the file named, and the previous site stays as it was."""
    from evidence import errors, export, graph

    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    monkeypatch.setattr(export, "GRAPHML_FORK_FROM", 0 if forked else 10**9)
    monkeypatch.setattr(graph, "write_graphml", lambda g, fh: (_ for _ in ()).throw(MemoryError("out of memory")))
    with pytest.raises(errors.RenderError, match="cannot write evidence.graphml: MemoryError: out of memory") if forked else pytest.raises(MemoryError):
        build(config, out)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"]


@_ONE_CORE
def test_a_render_that_fails_stops_the_exports_still_being_written(config, site, tmp_path, monkeypatch):
    import multiprocessing
    import threading

    from evidence import export, render

    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    import time

    from evidence import graph

    monkeypatch.setattr(export, "GRAPHML_FORK_FROM", 0)
    monkeypatch.setattr(graph, "write_graphml", lambda g, fh: time.sleep(60))  # a large network
    seen = {}

    def broken(*args, **kwargs):
        seen["children"] = len(multiprocessing.active_children())
        seen["splices"] = len([t for t in threading.enumerate() if t.name == "splice"])
        raise RuntimeError("a template broke")

    monkeypatch.setattr(render, "render_site", broken)
    t = time.perf_counter()
    with pytest.raises(RuntimeError, match="a template broke"):
        build(config, out, cache=BuildCache(None))  # no record of the old files: every dump is written by its thread
    assert time.perf_counter() - t < 30, "the build waited for the GraphML it no longer needs"
    assert seen["children"] == 1  # the GraphML was being written when the render failed
    assert seen["splices"] == 5  # and the five whole-graph files by their threads
    assert multiprocessing.active_children() == []
    assert not [t for t in threading.enumerate() if t.name == "splice"]
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"]
