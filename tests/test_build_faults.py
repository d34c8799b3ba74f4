"""A build that fails half-way, or is interrupted, leaves the previous output exactly as it was
and no partial folder behind (the build writes into a temporary folder, then swaps it in)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evidence import pipeline
from evidence.cache import BuildCache
from evidence.folders import SITE_MARKER, SITE_MARKER_TEXT
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


def test_a_graphml_that_cannot_be_written_fails_the_build_cleanly(config, site, tmp_path, monkeypatch):
    """The GraphML is spliced from pieces (export._write_graphml): a failure to make one is the
    build's, and the previous site stays as it was."""
    from evidence import graph

    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    monkeypatch.setattr(graph, "case_graphml", lambda *a: (_ for _ in ()).throw(MemoryError("out of memory")))
    with pytest.raises(MemoryError):
        build(config, out, cache=BuildCache(None))  # no record of the old file: every piece is made
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"]


def test_a_render_that_fails_stops_the_exports_still_being_written(config, site, tmp_path, monkeypatch):
    import multiprocessing
    import threading
    import time

    from evidence import render
    from evidence.outputs import Splice

    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    slow = Splice._run
    monkeypatch.setattr(Splice, "_run", lambda self, *a: (time.sleep(0.2), slow(self, *a)))  # large files: still being written
    seen = {}

    def broken(*args, **kwargs):
        seen["children"] = len(multiprocessing.active_children())
        seen["splices"] = len([t for t in threading.enumerate() if t.name == "splice"])
        raise RuntimeError("a template broke")

    monkeypatch.setattr(render, "render_site", broken)
    t = time.perf_counter()
    with pytest.raises(RuntimeError, match="a template broke"):
        build(config, out, cache=BuildCache(None))  # no record of the old files: every dump is written by its thread
    assert time.perf_counter() - t < 30, "the build waited for the exports it no longer needs"
    assert seen["children"] == 0  # no forked writer: the GraphML is spliced too
    assert seen["splices"] == 6  # the five whole-graph files and the GraphML, each by its thread
    assert multiprocessing.active_children() == []
    assert not [t for t in threading.enumerate() if t.name == "splice"]
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"]


def test_a_render_that_fails_after_the_search_index_started_stops_pagefind(config, site, tmp_path, monkeypatch):
    """Pagefind indexes while the pages render (site_search.SearchIndex): a page that fails
    then stops it, and leaves no staging folder and the previous site as it was."""
    import os
    import time

    from evidence import site_pages, site_search
    from evidence.errors import RenderError

    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    pids: list[int] = []
    real_run = site_search.run_pagefind

    def noting(bundle, docs, copies, timeout=600, admit=None, described=None, **more):
        return real_run(bundle, docs, copies, timeout, lambda proc: (pids.append(proc.pid), admit(proc))[1], described, **more)

    monkeypatch.setattr(site_search, "run_pagefind", noting)
    # Pagefind's service waits until the page has failed, so that it is still at work then: the
    # founding kb's one bundle starts once the query library's page is written, which may come
    # right after the search page (SitePages.write_all), and was indexed before the home page.
    real_binary = site_search._pagefind_binary()
    failed = tmp_path / "failed"
    slow = tmp_path / "slow-pagefind"
    slow.write_text(f'#!/bin/sh\nwhile [ ! -e "{failed}" ]; do sleep 0.05; done\nexec "{real_binary}" "$@"\n', encoding="utf-8")
    slow.chmod(0o755)
    monkeypatch.setattr(site_search, "_pagefind_binary", lambda: slow)

    services: list[int] = []  # Pagefind's own processes, started by the jobs

    def broken_home(self):
        deadline = time.monotonic() + 30
        while not services and time.monotonic() < deadline:  # fail once Pagefind runs
            services.extend(child for pid in list(pids) for child in _children(pid))
            time.sleep(0.01)
        failed.touch()
        raise RenderError("the home page broke")

    monkeypatch.setattr(site_pages.SitePages, "home", broken_home)
    with pytest.raises(RenderError, match="the home page broke"):
        build(config, out, cache=BuildCache(None))  # no record of the old bundles: every one is indexed
    assert pids and services, "Pagefind had started"
    for pid in pids:
        with pytest.raises((ProcessLookupError, ChildProcessError)):
            os.kill(pid, 0)  # reaped, not left running
    deadline = time.monotonic() + 10  # the service ends once its job's pipe does
    while any(_alive(pid) for pid in services) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in services), "Pagefind's service was left running"
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site", failed.name, slow.name], "a staging folder or temporary build was left behind"


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_the_first_search_bundle_that_fails_stops_the_others_at_once(tmp_path, monkeypatch):
    """SearchIndex.result reports the first failure as soon as it happens, and stops the Pagefind
    processes still running (here one that would run for a minute)."""
    import subprocess
    import sys
    import time

    from evidence import site_search
    from evidence.errors import RenderError
    from evidence.outputs import Outputs

    out = tmp_path / "_site"
    out.mkdir()
    parts = [site_search.Shard(folder=f"pagefind-{i}", docs=[(f"p{i}.html", "a title", "page", "words")]) for i in range(2)]
    slow: list[subprocess.Popen] = []

    def fake(bundle, docs, copies, timeout=600, admit=None, described=None, **more):
        if bundle.name == "pagefind-0":
            with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as proc:
                slow.append(proc)
                if not admit(proc):
                    proc.kill()
            raise RenderError(f"Pagefind stopped (status {proc.returncode})")
        while not slow:
            time.sleep(0.01)
        raise RenderError("Pagefind failed on purpose")

    monkeypatch.setattr(site_search, "run_pagefind", fake)
    t = time.monotonic()
    with pytest.raises(RenderError, match="failed on purpose"):
        site_search.SearchIndex(parts, out, Outputs(out=out), "context").result()
    assert time.monotonic() - t < 20 and slow[0].returncode is not None and slow[0].returncode < 0, "the slow one was killed"
    assert [p.name for p in tmp_path.iterdir()] == ["_site"], "no staging folder is left"


# ------------------------------------------------------------------ the search index begins early

def test_pagefind_runs_while_the_case_pages_render_and_waits_for_the_query_library(config, tmp_path, monkeypatch):
    """The search page comes before the case pages (SitePages.write_all): with the few bundles an
    edit remakes, Pagefind is already at work when they render. The bundle that holds the query
    library (written last, it waits for the library's answers) is indexed only once that page is
    written, from its HTML, and the words bundle after it."""
    from evidence import site_pages, site_search

    monkeypatch.setattr(site_search, "SHARD_DOCS", 4)  # several bundles
    monkeypatch.setattr(site_pages, "EARLY_BUNDLES", 1000)  # as few as an edit remakes
    started: list[str] = []  # the bundles handed to Pagefind, in order
    copies: dict[str, dict[str, str]] = {}
    real_run = site_search.run_pagefind

    def indexing(bundle, docs, pages, timeout=600, admit=None, described=None, **more):
        copies[str(bundle)] = dict(pages)
        return real_run(bundle, docs, pages, timeout, admit, described, **more)

    real_index = site_search.SearchIndex._index

    def noting(self, sh):
        started.append(sh.folder)
        return real_index(self, sh)

    monkeypatch.setattr(site_search, "run_pagefind", indexing)
    monkeypatch.setattr(site_search.SearchIndex, "_index", noting)
    seen: dict[str, object] = {}
    real_cases, real_queries = site_pages.SitePages.cases, site_pages.SitePages.queries

    def cases(self):
        seen["index at the case pages"] = self.index
        seen["bundles started by then"] = list(started)
        return real_cases(self)

    def queries(self):
        seen["waiting before the query library"] = [sh.folder for sh in self.search_shards if self.late_copies & sh.copies.keys()]
        return real_queries(self)

    monkeypatch.setattr(site_pages.SitePages, "cases", cases)
    monkeypatch.setattr(site_pages.SitePages, "queries", queries)
    out = tmp_path / "_site"
    build(config, out, cache=BuildCache(None))
    assert seen["index at the case pages"] is not None and seen["bundles started by then"], "Pagefind runs while the case pages render"
    waiting = seen["waiting before the query library"]
    assert len(waiting) == 1 and waiting[0] not in seen["bundles started by then"]
    # the words bundle (site_search.words_pages) needs every bundle's words: it comes right after
    assert started[-2:] == [waiting[0], site_search.WORDS_BUNDLE], "the query library's bundle is the last one indexed"
    library = [c for c in copies.values() if "queries.html" in c]
    assert len(library) == 1 and library[0]["queries.html"] == (out / "queries.html").read_text(encoding="utf-8")


def test_held_bundles_are_made_ahead_one_at_a_time_until_the_render_workers_fork(config, tmp_path, monkeypatch):
    """A cold build holds its many bundles while the render workers run, but until they start its
    own process works alone: the bundles are handed to Pagefind one at a time, at a low priority,
    and the last one handed ahead is finished before the workers fork (no Pagefind beside them).
    The site is the one a build without it makes."""
    from evidence import site_pages, site_search

    monkeypatch.setattr(site_search, "SHARD_DOCS", 4)  # several bundles
    monkeypatch.setattr(site_pages, "EARLY_BUNDLES", 0)  # held, as a cold build's are
    monkeypatch.setattr(site_pages, "PAGES_PER_WORKER", 1)  # the founding kb's pages rendered by forked workers
    monkeypatch.setattr(site_pages, "WORKERS", 2)  # two of them, whatever the machine's cores
    plain = tmp_path / "plain"
    with monkeypatch.context() as m:
        m.setattr(site_search.SearchIndex, "ahead", lambda self: None)
        build(config, plain, cache=BuildCache(None))
    runs: list[tuple[str, int, float, float]] = []  # (bundle, nice, start, end)
    forks: list[float] = []  # when the render workers were started
    real_run, real_imap = site_search.run_pagefind, site_pages.parallel_imap

    def indexing(bundle, docs, pages, timeout=600, admit=None, described=None, nice=0, **more):
        t = time.monotonic()
        try:
            return real_run(bundle, docs, pages, timeout, admit, described, nice=nice, **more)
        finally:
            runs.append((bundle.name, nice, t, time.monotonic()))

    def imap(fn, *args, **kwargs):
        if fn is site_pages._render_chunk and kwargs.get("workers", 1) > 1:
            forks.append(time.monotonic())
        return real_imap(fn, *args, **kwargs)

    monkeypatch.setattr(site_search, "run_pagefind", indexing)
    monkeypatch.setattr(site_pages, "parallel_imap", imap)
    out = tmp_path / "_site"
    build(config, out, cache=BuildCache(None))
    assert len(forks) == 1, forks
    ahead = [r for r in runs if r[1] == site_search.AHEAD_NICE]
    assert ahead, f"no bundle was made ahead: {runs}"
    assert all(end <= forks[0] for _b, _n, _s, end in ahead), "a bundle made ahead was still being made when the workers forked"
    assert all(r[1] == 0 and r[2] >= forks[0] for r in runs if r not in ahead), "the other bundles wait for the workers, at the usual priority"
    spans = sorted((start, end) for _b, _n, start, end in ahead)
    assert all(a_end <= b_start for (_s, a_end), (b_start, _e) in zip(spans, spans[1:])), "two bundles were made ahead at once"
    assert _snapshot(out) == _snapshot(plain)


def test_a_page_indexed_as_it_is_written_after_the_search_page_is_an_error(config, tmp_path, monkeypatch):
    """Its bundle might already be made without it: a RenderError that names the fix, and the
    previous site stays."""
    from evidence import site_pages
    from evidence.errors import RenderError

    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    real_home = site_pages.SitePages.home

    def home(self):
        self.page("late.html", "contributors.html", "a late page", title="Late", page_kind="contributors", indexed=True, people=[])
        return real_home(self)

    monkeypatch.setattr(site_pages.SitePages, "home", home)
    with pytest.raises(RenderError, match="late.html is to be indexed for search, but is written after the search page"):
        build(config, out)
    assert _snapshot(out) == before


def test_a_late_page_that_no_step_writes_is_an_error(config, tmp_path, monkeypatch):
    from evidence import site_pages
    from evidence.errors import RenderError

    monkeypatch.setattr(site_pages.SitePages, "LATE_COPIES", ("queries.html", "never-written.html"))
    with pytest.raises(RenderError, match="the search index waits for never-written.html"):
        build(config, tmp_path / "_site", cache=BuildCache(None))
    assert list(tmp_path.iterdir()) == []


def test_a_fork_waits_for_a_pagefind_start_in_progress():
    """A worker forked while Pagefind is being started would keep the pipes the start waits on
    (site_search._STARTING): a fork waits until the start is done."""
    import os
    import threading
    import time

    from evidence import site_search

    started, release = threading.Event(), threading.Event()

    def starting():
        with site_search._STARTING:  # as run_pagefind holds it around Popen
            started.set()
            release.wait(10)

    t = threading.Thread(target=starting)
    t.start()
    started.wait(10)
    threading.Timer(0.5, release.set).start()
    begun = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    waited = time.monotonic() - begun
    os.waitpid(pid, 0)
    t.join(10)
    assert waited >= 0.4, f"the fork went on while Pagefind was being started ({waited:.2f} s)"
    assert site_search._STARTING.acquire(blocking=False), "the lock is free again after the fork"
    site_search._STARTING.release()


def test_a_cold_build_holds_its_many_bundles_until_the_render_workers_are_done(config, tmp_path, monkeypatch):
    """More bundles than an edit remakes (a cold build) wait until the deferred pages are written
    (the render workers), so that Pagefind's processes do not add to their memory; only those made
    ahead, one at a time, run before (see the test after this one)."""
    from evidence import site_pages, site_search

    monkeypatch.setattr(site_search, "SHARD_DOCS", 4)  # 16 bundles, all to be made
    started: list[tuple[str, bool]] = []  # (bundle, whether it was handed over ahead), as Pagefind begins it
    real_index = site_search.SearchIndex._index
    monkeypatch.setattr(site_search.SearchIndex, "_index",
                        lambda self, sh: (started.append((sh.folder, sh.folder in self._low)), real_index(self, sh))[1])
    seen: dict[str, list] = {}
    real_deferred = site_pages.SitePages.run_deferred

    def deferred(self):
        seen["before the deferred pages"] = list(started)
        real_deferred(self)
        seen["held"] = [sh.folder for sh, _k in self.index.todo]

    monkeypatch.setattr(site_pages.SitePages, "run_deferred", deferred)
    build(config, tmp_path / "_site", cache=BuildCache(None))
    assert len(seen["held"]) > site_pages.EARLY_BUNDLES
    assert all(ahead for _b, ahead in seen["before the deferred pages"]), "before the render workers, only bundles made ahead"
    assert len(seen["before the deferred pages"]) < len(seen["held"]), "the others were handed to Pagefind once the render workers were done"
    assert set(seen["held"]) < {b for b, _a in started}, "then every one, and the query library's once it is written"


# -- signals: what `timeout`, systemd, a CI runner or Ctrl-C in a terminal send to every process of
# the build's group, the forked workers included. Until session 13 a SIGTERM killed the build at
# once and left its unfinished folder beside the site; once SIGTERM unwound the stack, a worker
# killed while it held the pool's task lock made the build hang for ever.

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A 250-case synthetic project (enough files for the forked workers of every stage) with a
    built site: the previous site that an interrupted build must leave as it was."""
    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    root = tmp_path_factory.mktemp("signals") / "project"
    synth.generate(root, 250, seed=13)
    (root / "site_templates").symlink_to(ROOT / "site_templates")
    r = subprocess.run([sys.executable, "-m", "evidence", "--root", str(root), "build"], capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    return root


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "EVIDENCE_CACHE": "off"}  # no cache: every stage forks its workers


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _group_listing(pgid: int) -> str:
    lines = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")[:120]
            lines.append(f"{stat.parent.name} {fields[0]} {command!r}")
    return "\n".join(lines)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads a process's children from /proc (Linux)")
@pytest.mark.parametrize("when", ["workers", "writing"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_whole_group_stops_the_build_cleanly(project, sig, when):
    out = project / "_site"
    before = {p.relative_to(out): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")}
    proc = subprocess.Popen([sys.executable, "-m", "evidence", "--root", str(project), "build"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if when == "workers" and len(_children(proc.pid)) >= 2:  # a stage's forked workers are running
                break
            if when == "writing" and any(p.name.startswith("._site.tmp-") for p in project.iterdir()):
                time.sleep(0.5)  # exports and pages being written
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the build ended before it could be signalled:\n{proc.stderr.read()}"
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=60)  # a hang fails here
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM, err  # ended by the signal, after cleaning up
        assert "terminated" in err
    else:
        assert proc.returncode == 130, err
        assert "interrupted" in err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    deadline = time.monotonic() + 5  # the workers are being stopped as the build's process ends
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(proc.pid), "a process of the build outlived it:\n" + _group_listing(proc.pid)
    assert sorted(p.name for p in project.iterdir() if "_site" in p.name) == ["_site"], "an unfinished folder was left"
    assert {p.relative_to(out): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")} == before, "the previous site changed"


def test_folders_of_killed_builds_are_removed_and_a_moved_site_restored(config, tmp_path, monkeypatch):
    """SIGKILL cannot be caught: the next build removes what a killed one left, but not what a
    build still running holds (its lock), and puts back a site that a build killed mid-swap had
    moved. A folder whose number is now another process's is removed too: the number is not
    the build's (before, such a folder stayed as long as that process ran); unless it is a
    minute young, when it may be a build's that has made it and not yet locked it."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "_site"
    reused = os.getppid()  # the test runner's parent: a live process that is no build
    left = [tmp_path / f"._site.tmp-{dead.pid}", tmp_path / f".._site.tmp-{dead.pid}.search-x1", tmp_path / f"._site.old-{dead.pid}",
            tmp_path / f"._site.tmp-{reused}"]
    running = tmp_path / "._site.tmp-999999999"  # a build going on (another machine's number, say): it holds its lock
    making = tmp_path / f"._site.tmp-{reused}.search-new"  # unlocked, but made a moment ago by a live process
    for folder in [*left, running, making]:
        (folder / "cases").mkdir(parents=True)
        (folder / "cases" / "a.html").write_text(folder.name)
        (folder / SITE_MARKER).write_bytes(SITE_MARKER_TEXT)  # each stands for a site a build wrote
        if folder != making:
            os.utime(folder, (time.time() - 3600, time.time() - 3600))
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(120)", str(running)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        # A site moved aside by a build killed between the two renames: no _site, only the old one.
        monkeypatch.setattr(pipeline, "write_exports", lambda *a, **k: (_ for _ in ()).throw(OSError("no space left")))
        with pytest.raises(OSError):
            build(config, out, cache=BuildCache(None))
        assert (out / "cases" / "a.html").read_text() == f"._site.old-{dead.pid}", "the moved site was not put back"
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["_site", running.name, making.name])
        monkeypatch.undo()
        build(config, out, cache=BuildCache(None))
        assert (out / "index.html").is_file() and running.is_dir()
    finally:
        holder.kill()
        holder.communicate()
    os.utime(making, (time.time() - 3600, time.time() - 3600))
    build(config, out, cache=BuildCache(None))  # its holder gone, the folder is left behind: removed; and the old unlocked one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"]


def test_where_folders_cannot_be_locked_the_pid_decides(config, tmp_path, monkeypatch):
    """A file system that refuses flock (some NFS mounts): a folder is left behind when its
    process no longer runs, as before locks; and the build goes on without its own lock."""
    import errno
    import fcntl

    dead = subprocess.Popen(["true"])
    dead.wait()
    gone, alive = tmp_path / f"._site.tmp-{dead.pid}", tmp_path / f"._site.tmp-{os.getppid()}"
    for folder in (gone, alive):
        folder.mkdir()
        os.utime(folder, (time.time() - 3600, time.time() - 3600))

    def refuse(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)
    build(config, tmp_path / "_site", cache=BuildCache(None))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["_site", alive.name])


def _interrupted_build(config, out, cache):
    """A build, with the CLI's handlers of Ctrl-C installed, that must end in KeyboardInterrupt."""
    from evidence import interrupts

    interrupts.install()
    try:
        with pytest.raises(KeyboardInterrupt):
            build(config, out, cache=cache)
    finally:
        interrupts.uninstall()


@pytest.mark.parametrize("fault", [KeyboardInterrupt(), OSError(28, "No space left on device")], ids=["ctrl-c", "error"])
def test_a_failed_rebuild_stops_the_process_that_links_its_files(config, tmp_path, monkeypatch, fault, linker_processes):
    """The unchanged files' links are made by a process of their own (evidence.linker): a build
    that fails while it runs stops it, and leaves the previous site as it was and nothing beside it."""
    from evidence import linker, site_pages

    out, cache = tmp_path / "_site", tmp_path / "cache"
    build(config, out, cache=BuildCache(cache))
    before = _snapshot(out)
    monkeypatch.setattr(linker, "START_FROM", 1)
    monkeypatch.setattr(linker, "_BATCH", 1)
    started = linker_processes
    def failing(self):
        raise fault

    monkeypatch.setattr(site_pages.SitePages, "home", failing)  # the last step: every earlier page is linked by then
    if isinstance(fault, KeyboardInterrupt):
        _interrupted_build(config, out, BuildCache(cache))
    else:
        with pytest.raises(OSError):
            build(config, out, cache=BuildCache(cache))
    assert len(started) == 1
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0], os.WNOHANG)  # stopped and waited for
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site", "cache"]


def test_a_second_interrupt_while_the_build_cleans_up_leaves_no_folder(config, tmp_path, monkeypatch):
    """Ctrl-C, then Ctrl-C again while the unfinished folder is removed: it is moved into the
    cache's trash whole before the second one is raised (an rmtree cut short left it beside the
    site until the next build)."""
    out = tmp_path / "_site"
    cache = tmp_path / "cache"
    build(config, out, cache=BuildCache(cache))
    before = _snapshot(out)
    discard = pipeline.discard_tree

    def interrupted_again(tree, c, **kw):
        if tree.name.startswith("._site.tmp-"):
            signal.raise_signal(signal.SIGINT)  # the second Ctrl-C: held until the folder is out of the way
        return discard(tree, c, **kw)

    monkeypatch.setattr(pipeline, "discard_tree", interrupted_again)
    monkeypatch.setattr(pipeline, "write_exports", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    _interrupted_build(config, out, BuildCache(cache))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site", "cache"], "the unfinished folder was left"
    assert _snapshot(out) == before


def test_a_signal_during_the_swap_waits_for_it(config, tmp_path, monkeypatch):
    """Ctrl-C in the middle of the swap is raised once the new site is in place and recorded, and
    the old one on its way out: no copy of the old site is left beside it."""
    from evidence.outputs import Outputs

    out = tmp_path / "_site"
    build(config, out, cache=BuildCache(None))
    (out / "stale.txt").write_text("from the previous site")  # gone once the new site is in
    save = Outputs.save

    def interrupted_save(self):
        signal.raise_signal(signal.SIGINT)  # held: the swap goes on
        save(self)

    monkeypatch.setattr(Outputs, "save", interrupted_save)
    _interrupted_build(config, out, BuildCache(None))
    assert (out / "index.html").is_file() and not (out / "stale.txt").exists(), "the new site is not in place"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"], "a copy of a site was left beside it"


def _can_exchange(folder: Path) -> bool:
    """Whether the file system of ``folder`` exchanges two names in one step (tmpfs, ext4 and
    btrfs do; some do not, and the build then renames twice)."""
    from evidence import folders

    a, b = folder / ".probe-a", folder / ".probe-b"
    a.mkdir()
    b.mkdir()
    try:
        return folders.exchange(a, b)
    finally:
        a.rmdir()
        b.rmdir()


def test_exchange_swaps_two_folders_at_once(tmp_path, monkeypatch):
    from evidence import folders

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "name").write_text(d.name)
    with pytest.raises(FileNotFoundError) as caught:
        folders.exchange(tmp_path / "missing", b)
    assert caught.value.filename == str(tmp_path / "missing")
    with monkeypatch.context() as m:
        m.setattr(folders, "_renameat2", None)  # a system without the call: nothing done, the caller renames
        assert folders.exchange(a, b) is False and (a / "name").read_text() == "a"
    if not _can_exchange(tmp_path):
        pytest.skip("this file system cannot exchange two names (renameat2 RENAME_EXCHANGE): the build renames twice")
    ino = {d.name: d.stat().st_ino for d in (a, b)}
    assert folders.exchange(a, b) is True
    assert (a / "name").read_text() == "b" and (b / "name").read_text() == "a"
    assert (a.stat().st_ino, b.stat().st_ino) == (ino["b"], ino["a"])


@pytest.mark.parametrize("atomic", [True, False], ids=["exchange", "two-renames"])
def test_the_swap_exchanges_the_sites_in_one_step_where_it_can(config, tmp_path, monkeypatch, atomic):
    """With renameat2 the site's name never goes missing: a server of the folder never answers
    404 mid-swap (with two renames it did, for a moment). Without it, two renames do the swap.
    Either way the new site is in place, the old one is gone, and nothing is left beside it."""
    from evidence import folders

    if atomic and not _can_exchange(tmp_path):
        pytest.skip("this file system cannot exchange two names (renameat2 RENAME_EXCHANGE): the build renames twice")
    out = tmp_path / "_site"
    build(config, out, cache=BuildCache(None))
    (out / "stale.txt").write_text("from the previous site")
    calls = []
    real_exchange, real_rename = folders.exchange, Path.rename

    def watched_exchange(a, b):
        assert b == out and (out / "stale.txt").is_file()
        calls.append("exchange")
        if not atomic:
            return False
        done = real_exchange(a, b)
        assert done and (out / SITE_MARKER).is_file() and not (out / "stale.txt").exists()
        return done

    def watched_rename(self, target):
        if self == out:
            calls.append("site renamed away")
        return real_rename(self, target)

    monkeypatch.setattr(pipeline, "exchange", watched_exchange)
    monkeypatch.setattr(Path, "rename", watched_rename)
    build(config, out, cache=BuildCache(None))
    assert calls == (["exchange"] if atomic else ["exchange", "site renamed away"])
    assert (out / "index.html").is_file() and not (out / "stale.txt").exists(), "the new site is not in place"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"], "a copy of a site was left beside it"


_REFUSED_FORKS = r"""
import errno, sys
import multiprocessing.context as C
import evidence.perf as P
from evidence.cli import main
P.FORK_RETRIES = (0.01,)
allow, real, forks = int(sys.argv[1]), C.ForkProcess._Popen, []
def popen(process):  # as when the machine is out of processes: fork() fails with EAGAIN
    forks.append(1)
    if len(forks) > allow:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
    return real(process)
C.ForkProcess._Popen = staticmethod(popen)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("allow", [3, 0], ids=["a-replacement-worker", "every-worker"])
def test_a_build_whose_workers_cannot_start(project, allow):
    """A worker that the machine refuses to fork after the work began (the pool replaces its
    workers): the build stops with exit code 4 and a message, the previous site as it was (this
    hung for ever before). No worker at all: the build is made in its own process."""
    out = project / "_site"
    before = {p.relative_to(out): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")}
    r = subprocess.run([sys.executable, "-c", _REFUSED_FORKS, str(allow), "--root", str(project), "build"], capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert "Traceback" not in r.stderr and "Exception in thread" not in r.stderr, r.stderr
    assert sorted(p.name for p in project.iterdir() if "_site" in p.name) == ["_site"], "an unfinished folder was left"
    if allow:
        assert r.returncode == 4, r.stderr
        assert "error: could not start a worker process ([Errno 11] Resource temporarily unavailable)" in r.stderr
        assert "EVIDENCE_WORKERS=1" in r.stderr
        assert {p.relative_to(out): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*")} == before, "the previous site changed"
    else:
        assert r.returncode == 0, r.stderr
        assert "working in this one process" in r.stderr
        assert (out / "index.html").is_file() and len(list((out / "cases").glob("*.html"))) == 250


# ------------------------------------------------------------------ one file, written whole

def test_a_file_written_whole_is_the_old_one_or_the_new_one_never_half(tmp_path, monkeypatch):
    """export --out, diff --out and fmt write through folders.write_whole: when the write fails
    part-way (a full disk), the old file is as it was and nothing is left beside it; a link is
    written through, and the file keeps its permissions."""
    from evidence import folders

    target = tmp_path / "case.yaml"
    target.write_bytes(b"old text\n")
    target.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(target.name)

    class Full(OSError):
        pass

    def failing_fsync(fd):
        raise Full(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(Full):
        folders.write_whole(link, b"new text that does not fit\n")
    assert target.read_bytes() == b"old text\n" and link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.yaml", "link.yaml"]
    monkeypatch.undo()
    folders.write_whole(link, b"new text\n")
    assert target.read_bytes() == b"new text\n" and link.is_symlink() and (target.stat().st_mode & 0o777) == 0o640
    folders.write_whole(tmp_path / "fresh.ttl", b"x")
    assert (tmp_path / "fresh.ttl").read_bytes() == b"x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case.yaml", "fresh.ttl", "link.yaml"]


@pytest.mark.parametrize(("broken", "said"), [
    ("{% if c.title %}", "Encountered unknown tag 'endblock'"),  # a block left open: found where the main block ends
    ("{{ c.title | nosuchfilter }}", "No filter named 'nosuchfilter'"),
], ids=["syntax", "unknown-filter"])
def test_an_error_in_a_template_names_the_template_and_its_line(config, tmp_path, broken, said):
    """A template that does not compile said only 'TemplateSyntaxError: ...', without the file or line."""
    import shutil

    from evidence.errors import RenderError

    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).resolve().parents[1] / "site_templates", templates)
    case = templates / "case.html"
    lines = case.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.startswith("<h1>"))
    lines.insert(at + 1, broken + "\n")
    case.write_text("".join(lines), encoding="utf-8")
    out = tmp_path / "_site"
    with pytest.raises(RenderError) as err:
        build(config, out, templates=templates, cache=BuildCache(None))
    message = str(err.value)
    assert f"{case}:" in message and said in message, message
    line = int(message.split(f"{case}:", 1)[1].split(":", 1)[0])
    assert line > at + 2 if "endblock" in said else line == at + 2
    assert not out.exists()


def test_a_site_moved_aside_by_a_killed_swap_is_back_even_when_the_next_build_fails_validation(config, tmp_path, monkeypatch):
    """It was put back only after validation and compiling: a kb that no longer validated left
    the site missing."""
    from evidence.errors import ValidationError

    dead = subprocess.Popen(["true"])
    dead.wait()
    out = tmp_path / "_site"
    moved = tmp_path / f"._site.old-{dead.pid}"
    (moved / "cases").mkdir(parents=True)
    (moved / "cases" / "a.html").write_text("the site")
    (moved / SITE_MARKER).write_bytes(SITE_MARKER_TEXT)

    def invalid(*args, **kwargs):
        raise ValidationError("1 error(s) in the kb; nothing was built")

    monkeypatch.setattr(pipeline, "load_and_validate", invalid)
    with pytest.raises(ValidationError):
        build(config, out, cache=BuildCache(None))
    assert (out / "cases" / "a.html").read_text() == "the site" and not moved.exists()
