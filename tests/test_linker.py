"""The process that links a rebuild's unchanged files (evidence.linker): every pair ends linked,
or copied, or named in an error; a process that fails or cannot start leaves the work to the
build; a process forked by the build does not keep it waiting."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from evidence.linker import Linker


def _olds(tmp_path, n, folders=3):
    old, new = tmp_path / "old", tmp_path / "new"
    pairs = []
    for i in range(n):
        sub = f"d{i % folders}"
        (old / sub).mkdir(parents=True, exist_ok=True)
        (new / sub).mkdir(parents=True, exist_ok=True)
        (old / sub / f"f{i}.html").write_text(f"page {i}")
        pairs.append((str(old / sub / f"f{i}.html"), str(new / sub / f"f{i}.html")))
    return pairs


@pytest.mark.parametrize("start_from", [0, 10**9], ids=["in-its-process", "here"])
def test_every_pair_is_linked(tmp_path, start_from, linker_processes):
    started = linker_processes
    pairs = _olds(tmp_path, 1203)
    lk = Linker(start_from)
    for old, new in pairs:
        lk.add(old, new)
    lk.finish()
    assert all(os.path.samefile(old, new) for old, new in pairs)
    assert len(started) == (1 if start_from == 0 else 0)


def test_a_link_that_cannot_be_made_is_a_copy(tmp_path, monkeypatch):
    """Where link() fails (here: another file system, as with a full disk or too many links to
    one file), the new file is a copy with the old one's bytes."""
    pairs = _olds(tmp_path, 3)
    real = os.link

    def refused(src, dst, *a, **k):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refused)
    lk = Linker(10**9)
    for old, new in pairs:
        lk.add(old, new)
    lk.finish()
    monkeypatch.setattr(os, "link", real)
    for old, new in pairs:
        assert Path(old).read_text() == Path(new).read_text() and not os.path.samefile(old, new)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no second file system at hand")
def test_the_process_copies_what_it_cannot_link(tmp_path):
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same file system")
        pairs = _olds(Path(other), 1000)
        pairs = [(old, str(tmp_path / os.path.relpath(new, other))) for old, new in pairs]
        for _old, new in pairs:
            os.makedirs(os.path.dirname(new), exist_ok=True)
        lk = Linker(0)
        for old, new in pairs:
            lk.add(old, new)
        lk.finish()
        assert all(Path(old).read_text() == Path(new).read_text() for old, new in pairs)


@pytest.mark.parametrize("start_from", [0, 10**9], ids=["in-its-process", "here"])
def test_a_pair_neither_linked_nor_copied_is_an_error_naming_the_file(tmp_path, start_from):
    pairs = _olds(tmp_path, 600)
    missing = str(tmp_path / "new" / "gone" / "x.html")  # its folder does not exist
    lk = Linker(start_from)
    for old, new in pairs[:300] + [(pairs[0][0], missing)] + pairs[300:]:
        lk.add(old, new)
    with pytest.raises(OSError) as caught:
        lk.finish()
    assert caught.value.filename == missing and caught.value.errno == 2
    assert all(os.path.samefile(old, new) for old, new in pairs[:300])


def test_a_process_killed_midway_leaves_its_work_to_the_build(tmp_path, linker_processes):
    started = linker_processes
    pairs = _olds(tmp_path, 3000)
    lk = Linker(0)
    for old, new in pairs[:1500]:
        lk.add(old, new)
    assert started, "no process was started"
    os.kill(started[0], signal.SIGKILL)
    for old, new in pairs[1500:]:
        lk.add(old, new)  # its input is broken now: kept for the end
    lk.finish()
    assert all(os.path.samefile(old, new) for old, new in pairs)


def test_no_process_to_be_had_links_here(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "posix_spawn", refused)
    pairs = _olds(tmp_path, 1200)
    lk = Linker(0)
    for old, new in pairs:
        lk.add(old, new)
    lk.finish()
    assert all(os.path.samefile(old, new) for old, new in pairs)


def test_abort_stops_the_process_and_leaves_no_child(tmp_path, linker_processes):
    started = linker_processes
    pairs = _olds(tmp_path, 1000)
    lk = Linker(0)
    for old, new in pairs:
        lk.add(old, new)
    lk.abort()
    assert started
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0], os.WNOHANG)  # waited for already: no zombie left


def test_a_process_forked_by_the_build_does_not_keep_it_waiting(tmp_path):
    """A render worker forked while the linker runs holds no copy of the process's input: the
    process sees its end when the build closes it, not when the worker ends."""
    pairs = _olds(tmp_path, 1000)
    lk = Linker(0)
    for old, new in pairs:
        lk.add(old, new)
    child = os.fork()
    if child == 0:  # a worker: busy for a while, then gone
        time.sleep(8)
        os._exit(0)
    try:
        t = time.monotonic()
        lk.finish()
        assert time.monotonic() - t < 5, "the build waited for the forked worker"
        assert all(os.path.samefile(old, new) for old, new in pairs)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)

