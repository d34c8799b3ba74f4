"""perf.parallel_imap's shared object (what forked workers see without its being pickled), and the
build's use of the collector (perf.gc_paused, perf.freeze_heap, perf.trim_heap)."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from evidence.perf import parallel_imap, parallel_map


def _item_of(shared, i):
    # `shared` holds a lock and a lambda: neither can be pickled, so a worker that sees it got it
    # through its copy of the parent's memory.
    assert shared["lock"] is not None and shared["double"](1) == 2
    return shared["double"](shared["items"][i]), os.getpid()


def _unpicklable(n):
    import threading

    return {"items": list(range(n)), "lock": threading.Lock(), "double": lambda x: 2 * x}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="forked workers need two cores")
def test_parallel_imap_hands_the_shared_object_to_forked_workers():
    shared = _unpicklable(300)
    got = list(parallel_imap(_item_of, list(range(300)), workers=2, minimum=2, shared=shared))
    assert [v for v, _pid in got] == [2 * i for i in range(300)]  # in order
    assert {pid for _v, pid in got} - {os.getpid()}  # made in workers
    assert multiprocessing.active_children() == []


def test_below_the_minimum_the_shared_object_is_used_here():
    shared = _unpicklable(3)
    got = parallel_map(_item_of, [0, 1, 2], workers=2, minimum=10, shared=shared)
    assert got == [(0, os.getpid()), (2, os.getpid()), (4, os.getpid())]
    assert parallel_map(abs, [-1, 2], workers=1) == [1, 2]  # without a shared object: fn(item)


def test_trim_heap_frees_cycles_left_while_the_collector_is_paused():
    import gc
    import weakref

    from evidence.perf import gc_paused, trim_heap

    class Node:
        pass

    with gc_paused():
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        alive = weakref.ref(a)
        del a, b
        assert alive() is not None
        trim_heap()
        assert alive() is None
    assert gc.isenabled()


def test_a_build_freezes_the_models_and_parts_before_the_collector_runs_again(config, tmp_path, monkeypatch):
    """The models (after validation) and the compiled parts (after compiling) live until the
    build ends: they are moved out of the collector's sight while it is still paused, so no
    collection walks them first (that walk took about 1 s of a 10,000-case rebuild). After the
    build, nothing stays frozen and the collector runs."""
    import gc

    from evidence import pipeline

    seen: list[bool] = []  # was the collector running when the heap was frozen?
    freeze = pipeline.freeze_heap

    def watched() -> None:
        seen.append(gc.isenabled())
        freeze()

    monkeypatch.setattr(pipeline, "freeze_heap", watched)
    pipeline.build(config, tmp_path / "_site")
    assert seen == [False, False]
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_render_is_freed_when_the_build_ends_without_the_collector(config, tmp_path):
    """Nothing the build leaves behind holds the render (SitePages), and through it the site
    model and every model of the kb, in a reference cycle: such a cycle was only freed by a full
    collection, 3.7 s at the end of a 10,000-case rebuild's process. Checked for a cold build and
    a rebuild, with the collector off while they run."""
    import gc

    from evidence.cache import BuildCache
    from evidence.pipeline import build
    from evidence.site_model import SiteModel
    from evidence.site_pages import SitePages

    cache = tmp_path / "cache"
    for what in ("a cold build", "a rebuild"):
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds unreachable goes to gc.garbage
        try:
            build(config, tmp_path / "_site", cache=BuildCache(cache))
            gc.collect()
            held = [type(o).__name__ for o in gc.garbage if isinstance(o, (SitePages, SiteModel))]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
        assert "SitePages" not in held, f"{what} left the render in a reference cycle"
        if what == "a rebuild":  # a cold build renders pages here, whose contexts are cycles of Jinja2's own
            assert held == [], f"{what} left the site model in a reference cycle"


# ------------------------------------------------------------------ forks the machine refuses
# Each case runs in a process of its own, where multiprocessing's fork is made to fail with
# EAGAIN (as when the machine is out of processes) after `allow` forks, for `times` forks (-1: for
# ever). A hang fails by the time limit.

_FORKS = r"""
import errno, json, logging, multiprocessing, os, sys, time
import multiprocessing.context as C
import evidence.perf as P
P.FORK_RETRIES = (0.01, 0.01)
allow, times, n, consume = {allow}, {times}, {n}, {consume}
forks = []
def refused():
    forks.append(1)
    k = len(forks) - allow
    return k > 0 and (times < 0 or k <= times)
if {at_fork}:  # os.fork itself fails, inside multiprocessing's Popen (after it opened the worker's pipes)
    real_fork = os.fork
    def fork():
        if refused():
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return real_fork()
    os.fork = fork
else:
    real = C.ForkProcess._Popen
    def popen(process):
        if refused():
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        return real(process)
    C.ForkProcess._Popen = staticmethod(popen)
logging.basicConfig(level=logging.WARNING, format="%(message)s")
import gc
def pipes():  # the pipes open in this process (multiprocessing's shared memory, made once, is not counted)
    if not os.path.isdir("/proc/self/fd"):
        return -1
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{{fd}}").startswith("pipe:")
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return n
pipes_before = pipes()
got, error = [], None
try:
    for i, x in enumerate(P.parallel_imap(abs, [-k for k in range(n)], workers=2, chunksize=25)):
        got.append(x)
        if i + 1 == consume:
            break
except P.WorkerError as exc:
    error = exc.message
time.sleep(0.3)
children = len(multiprocessing.active_children())
gc.collect()  # a pool that could not be made closes its queues' pipes when collected
print(json.dumps({{"got": got, "error": error, "forks": len(forks), "children": children, "pipes": [pipes_before, pipes()]}}))
"""


def _forks(tmp_path, allow: int, times: int, n: int = 1000, consume: int = -1, env: dict | None = None, at_fork: bool = False):
    import json
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run([sys.executable, "-c", _FORKS.format(allow=allow, times=times, n=n, consume=consume, at_fork=at_fork)], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(src), **(env or {})})
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout), r.stderr


@pytest.mark.parametrize("allow, times, parallel", [
    (0, -1, False),  # no worker can ever start: the work is done in the caller's process
    (1, -1, False),  # the first worker starts, the second never: Pool() stops the first (it waited for it for ever)
    (0, 2, True),  # the first fork refused twice, then given: the retries start the pool
    (5, 2, True),  # a replacement worker (RENEW_AFTER) refused twice, then given
], ids=["never", "second-never", "brief-at-start", "brief-later"])
def test_refused_forks_still_give_every_result_in_order(tmp_path, allow, times, parallel):
    out, err = _forks(tmp_path, allow, times)
    assert out["got"] == list(range(1000)) and out["error"] is None
    assert ("working in this one process" in err) is not parallel, err
    assert out["children"] == 0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts the open descriptors in /proc/self/fd")
def test_a_refused_fork_leaves_no_descriptor_open(tmp_path):
    """multiprocessing opens a worker's two pipes, then forks; when os.fork failed, the four
    descriptors stayed open (up to six attempts per failure). Here no fork ever succeeds, so the
    work is done in-process, and every descriptor opened for the attempts is closed again."""
    out, err = _forks(tmp_path, allow=0, times=-1, at_fork=True)
    assert out["got"] == list(range(1000)) and out["error"] is None
    assert "working in this one process" in err and out["forks"] == 3  # the first attempt and two retries
    before, after = out["pipes"]
    assert after == before, f"{after - before} pipe descriptor(s) left open by {out['forks']} refused forks"


def test_a_replacement_worker_that_cannot_start_is_an_error_not_a_hang(tmp_path):
    """Before, the pool's thread that replaces workers died of the error (with a traceback) and
    the caller waited for ever for tasks no worker would take."""
    out, err = _forks(tmp_path, allow=3, times=-1)
    assert out["error"] is not None and "could not start a worker process" in out["error"] and "EVIDENCE_WORKERS=1" in out["error"]
    assert "Resource temporarily unavailable" in out["error"]
    assert 0 < len(out["got"]) < 1000 and out["got"] == list(range(len(out["got"])))  # what came, came in order
    assert out["children"] == 0, "a worker outlived its pool"


def test_a_caller_that_stops_reading_after_a_refused_fork_does_not_hang(tmp_path):
    out, _err = _forks(tmp_path, allow=3, times=-1, n=5000, consume=60)
    assert out["got"] == list(range(60)) and out["error"] is None and out["children"] == 0


@pytest.mark.parametrize("value, forks", [("1", 0), ("2", 2), ("none", 2)])
def test_evidence_workers_bounds_the_workers(tmp_path, value, forks):
    out, err = _forks(tmp_path, allow=10**6, times=0, n=300, env={"EVIDENCE_WORKERS": value})
    assert out["got"] == list(range(300))
    assert out["forks"] >= forks and (out["forks"] == 0) == (forks == 0)
    assert ("is not a number of worker processes" in err) == (value == "none"), err


_NO_THREAD = """
import json, logging, multiprocessing, multiprocessing.pool, threading, time
from evidence import perf as P
logging.basicConfig(level=logging.WARNING, format="%(message)s")
real = threading.Thread.start
def start(self):  # as under a limit on processes: the pool forks its workers, then cannot start its {which} thread
    if getattr(self, "_target", None) == multiprocessing.pool.Pool.{target}:
        raise RuntimeError("can't start new thread")
    return real(self)
threading.Thread.start = start
got = list(P.parallel_imap(abs, [-k for k in range(1000)], workers=2, chunksize=25))
time.sleep(0.3)
print(json.dumps({{"ok": got == list(range(1000)), "children": len(multiprocessing.active_children())}}))
"""


@pytest.mark.parametrize(("which", "target"), [("first", "_handle_workers"), ("second", "_handle_tasks"), ("third", "_handle_results")])
def test_a_pool_whose_thread_cannot_start_leaves_the_work_here_and_exits(tmp_path, which, target):
    """Pool() forked its workers, then failed to start a thread: that was an 'internal error'
    with a traceback, and the process then waited for ever at exit for the workers it had left."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run([sys.executable, "-c", _NO_THREAD.format(which=which, target=target)], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(src)})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "working in this one process" in r.stderr
    assert json.loads(r.stdout) == {"ok": True, "children": 0}


_KILLED = """
import json, multiprocessing, os, signal, time
from evidence import perf as P
def work(x):
    if x == 37:
        os.kill(os.getpid(), signal.{sig})  # as the out-of-memory killer, or a crash
    time.sleep(0.002)
    return x
got, error = [], None
try:
    for x in P.parallel_imap(work, list(range(400)), workers=2, chunksize=5):
        got.append(x)
except P.WorkerError as exc:
    error = exc.message
time.sleep(0.3)
print(json.dumps({{"got": got, "error": error, "children": len(multiprocessing.active_children())}}))
"""


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGSEGV"])
def test_a_worker_killed_while_it_holds_work_stops_the_stage_with_an_error(tmp_path, sig):
    """Its task was lost, and the pool waited for its result for ever (a damaged compiled template
    crashed a render worker, and the build hung until a second Ctrl-C)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run([sys.executable, "-c", _KILLED.format(sig=sig)], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(src)})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert out["error"] and f"a worker process was killed ({sig})" in out["error"], out
    assert out["got"] == list(range(len(out["got"]))) and len(out["got"]) < 37  # what came, came in order, up to the lost work
    assert out["children"] == 0, "a worker outlived its pool"


_ORPHANS = """
import os, signal, threading, time
from evidence import perf as P
def work(x):
    time.sleep(0.05)
    return x
threading.Timer(0.8, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()  # the build killed outright
for _ in P.parallel_imap(work, list(range(2000)), workers=2, chunksize=4):
    pass
"""


def test_workers_of_a_build_killed_outright_leave_without_a_traceback(tmp_path):
    """Their pipes break as they hand back their work, and each printed multiprocessing's
    traceback (BrokenPipeError) on the terminal. The stderr pipe is read until every worker has
    closed it, so the workers have ended when it is checked."""
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run([sys.executable, "-c", _ORPHANS], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(src)})
    assert r.returncode == -9
    assert "Traceback" not in r.stderr and "BrokenPipeError" not in r.stderr, r.stderr


def _built_twice(tmp_path, seed: int, after) -> None:
    """A synthetic kb of 40 cases built cold, then again after one case's title was edited (with
    the cache); ``after(what)`` is called after each build. 40 cases: every page is rendered in
    the build's own process (parallel work starts at 200 items), where Jinja2 leaves its cycles."""
    import sys
    from pathlib import Path

    from evidence import pipeline
    from evidence.cache import BuildCache
    from evidence.config import load_config

    root_dir = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root_dir / "bench"))
    import synth

    root = tmp_path / "project"
    synth.generate(root, 40, seed=seed)
    case = sorted((root / "kb").glob("*.yaml"))[20]
    text = case.read_text(encoding="utf-8")
    cache = BuildCache(tmp_path / "cache")
    for what, title in (("a cold build", "title: "), ("a rebuild after an edit", "title: Edited, ")):
        case.write_text(text.replace("title: ", title, 1), encoding="utf-8")
        pipeline.build(load_config(root), tmp_path / "_site", templates=root_dir / "site_templates", cache=cache)
        after(what)


def test_a_build_leaves_no_garbage_out_of_the_collectors_sight(tmp_path):
    """The build freezes the models the site's pages read back once the render's own objects are
    gone (perf.settle_heap). Frozen within the render, its cyclic garbage was frozen too and only
    freed by a full collection after the build: 26,726 objects after a cold build of these 40
    cases, 1.8 million after a rebuild of 10,000, which the process's next work paid for."""
    import gc

    def check(what: str) -> None:
        assert gc.get_freeze_count() == 0
        left = gc.collect()
        assert left < 2000, f"{what} left {left} unreachable objects for the next full collection"

    gc.collect()  # what the tests before this one left
    _built_twice(tmp_path, 3, check)


def test_the_site_model_is_frozen_while_pages_render_and_freed_without_the_collector(tmp_path, monkeypatch):
    """Made, the site model is moved out of the collector's sight (render_site's ``freeze``); its
    records are dropped once the pages are rendered (SiteModel.release). Before, the collection
    after the render (perf.settle_heap) walked every record, held by Jinja2's cycles between a
    page's context and its macros: 800,000 objects and 0.6 s of a 10,000-case rebuild."""
    import gc

    from evidence import pipeline
    from evidence.site_facts import Ref

    seen: dict[str, tuple[int, int]] = {}
    walk: list[tuple[int, int]] = []

    def settle() -> None:  # the collection after the render: how many records it walks, and frees
        walked = sum(isinstance(o, Ref) for o in gc.get_objects())
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            freed = sum(isinstance(o, Ref) for o in gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        walk.append((walked, freed))
        gc.freeze()

    monkeypatch.setattr(pipeline, "settle_heap", settle)
    _built_twice(tmp_path, 5, lambda what: seen.setdefault(what, walk.pop()))
    assert len(seen) == 2 and not walk
    for what, (walked, freed) in seen.items():
        assert walked == 0, f"{what}: the collection after the render walked {walked} records of the site model"
        assert freed == 0, f"{what}: {freed} records of the site model were left for the collector to free"
