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


def _olds(root, n, folders=3):
    """``n`` files in ``root/old`` (in a few folders), the same folders made in ``root/new``; the
    Linker for them, and each file's (old path, new path)."""
    old, new = Path(root) / "old", Path(root) / "new"
    rels = []
    for i in range(n):
        sub = f"d{i % folders}"
        (old / sub).mkdir(parents=True, exist_ok=True)
        (new / sub).mkdir(parents=True, exist_ok=True)
        (old / sub / f"f{i}.html").write_text(f"page {i}")
        rels.append(f"{sub}/f{i}.html")
    return str(old), str(new), rels


def _paths(old, new, rels):
    return [(os.path.join(old, r), os.path.join(new, r)) for r in rels]


@pytest.mark.parametrize("start_from", [0, 10**9], ids=["in-its-process", "here"])
def test_every_pair_is_linked(tmp_path, start_from, linker_processes):
    started = linker_processes
    old, new, rels = _olds(tmp_path, 1203)
    lk = Linker(old, new, start_from)
    for rel in rels:
        lk.add(rel)
    lk.finish()
    assert all(os.path.samefile(a, b) for a, b in _paths(old, new, rels))
    assert len(started) == (1 if start_from == 0 else 0)


def test_a_link_that_cannot_be_made_is_a_copy(tmp_path, monkeypatch):
    """Where link() fails (here: another file system, as with a full disk or too many links to
    one file), the new file is a copy with the old one's bytes."""
    old, new, rels = _olds(tmp_path, 3)
    real = os.link

    def refused(src, dst, *a, **k):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refused)
    lk = Linker(old, new, 10**9)
    for rel in rels:
        lk.add(rel)
    lk.finish()
    monkeypatch.setattr(os, "link", real)
    for a, b in _paths(old, new, rels):
        assert Path(a).read_text() == Path(b).read_text() and not os.path.samefile(a, b)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no second file system at hand")
def test_the_process_copies_what_it_cannot_link(tmp_path):
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as other:
        if os.stat(other).st_dev == os.stat(tmp_path).st_dev:
            pytest.skip("/dev/shm is on the same file system")
        old, _new, rels = _olds(other, 1000)
        _o, new, _r = _olds(tmp_path, 0)
        for rel in rels:
            os.makedirs(os.path.dirname(os.path.join(new, rel)), exist_ok=True)
        lk = Linker(old, new, 0)
        for rel in rels:
            lk.add(rel)
        lk.finish()
        assert all(Path(a).read_text() == Path(b).read_text() for a, b in _paths(old, new, rels))


@pytest.mark.parametrize("start_from", [0, 10**9], ids=["in-its-process", "here"])
def test_a_pair_neither_linked_nor_copied_is_an_error_naming_the_file(tmp_path, start_from):
    old, new, rels = _olds(tmp_path, 600)
    (Path(old) / "gone").mkdir()
    (Path(old) / "gone" / "x.html").write_text("x")  # its folder is not in the new one
    lk = Linker(old, new, start_from)
    for rel in rels[:300] + ["gone/x.html"] + rels[300:]:
        lk.add(rel)
    with pytest.raises(OSError) as caught:
        lk.finish()
    assert caught.value.filename == os.path.join(new, "gone/x.html") and caught.value.errno == 2
    assert all(os.path.samefile(a, b) for a, b in _paths(old, new, rels[:300]))


def test_a_process_killed_midway_leaves_its_work_to_the_build(tmp_path, linker_processes):
    started = linker_processes
    old, new, rels = _olds(tmp_path, 3000)
    lk = Linker(old, new, 0)
    for rel in rels[:1500]:
        lk.add(rel)
    assert started, "no process was started"
    os.kill(started[0], signal.SIGKILL)
    for rel in rels[1500:]:
        lk.add(rel)  # its input is broken now: kept for the end
    lk.finish()
    assert all(os.path.samefile(a, b) for a, b in _paths(old, new, rels))


def test_no_process_to_be_had_links_here(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "posix_spawn", refused)
    old, new, rels = _olds(tmp_path, 1200)
    lk = Linker(old, new, 0)
    for rel in rels:
        lk.add(rel)
    lk.finish()
    assert all(os.path.samefile(a, b) for a, b in _paths(old, new, rels))


def test_abort_stops_the_process_and_leaves_no_child(tmp_path, linker_processes):
    started = linker_processes
    old, new, rels = _olds(tmp_path, 1000)
    lk = Linker(old, new, 0)
    for rel in rels:
        lk.add(rel)
    lk.abort()
    assert started
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0], os.WNOHANG)  # waited for already: no zombie left


def test_a_process_forked_by_the_build_does_not_keep_it_waiting(tmp_path):
    """A render worker forked while the linker runs holds no copy of the process's input: the
    process sees its end when the build closes it, not when the worker ends."""
    old, new, rels = _olds(tmp_path, 1000)
    lk = Linker(old, new, 0)
    for rel in rels:
        lk.add(rel)
    child = os.fork()
    if child == 0:  # a worker: busy for a while, then gone
        time.sleep(8)
        os._exit(0)
    try:
        t = time.monotonic()
        lk.finish()
        assert time.monotonic() - t < 5, "the build waited for the forked worker"
        assert all(os.path.samefile(a, b) for a, b in _paths(old, new, rels))
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)



def test_a_forked_process_links_what_it_is_given_itself(tmp_path):
    """A render worker forked during a build has the build's Outputs, whose Linker is the
    parent's: a link it asks for later is made at once, never queued where no one makes it."""
    from evidence.outputs import Outputs

    old, new, rels = _olds(tmp_path, 1)
    outputs = Outputs(out=Path(old))
    outputs.previous = {rels[0]: ("k", *(lambda st: (st.st_ino, st.st_size, st.st_mtime_ns))(os.stat(os.path.join(old, rels[0]))))}
    outputs.cache = object()  # enabled: the record is used
    with outputs.linking(Path(new)):
        child = os.fork()
        if child == 0:
            os._exit(0 if outputs.link(os.path.join(new, rels[0]), rels[0], "k", later=True) else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
        assert os.path.samefile(os.path.join(old, rels[0]), os.path.join(new, rels[0])), "the forked process's link was not made"


def test_ctrl_c_while_waiting_for_the_process_stops_it_and_leaves_no_zombie(tmp_path, monkeypatch, linker_processes):
    old, new, rels = _olds(tmp_path, 600)
    lk = Linker(old, new, 0)
    for rel in rels:
        lk.add(rel)
    assert linker_processes, "no process was started"

    def interrupted(fd, n):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "read", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lk.finish()
    monkeypatch.undo()
    with pytest.raises(ChildProcessError):
        os.waitpid(linker_processes[0], os.WNOHANG)  # stopped and waited for: no zombie
    assert lk._to is None and lk._back is None


def test_a_copy_cut_short_by_a_killed_process_is_made_again(tmp_path):
    """What the process left half-made (a copy, when it was killed) is replaced when the build
    links the files itself; a file already there otherwise is an error naming it."""
    old, new, rels = _olds(tmp_path, 3)
    Path(new, rels[0]).write_text("pa")  # a copy cut short
    lk = Linker(old, new, 10**9)
    for rel in rels:
        lk.add(rel)
    lk._link_here(made=True)
    assert all(Path(a).read_text() == Path(b).read_text() for a, b in _paths(old, new, rels))
    lk = Linker(old, new, 10**9)
    lk.add(rels[1])
    with pytest.raises(FileExistsError) as caught:
        lk.finish()
    assert caught.value.filename == os.path.join(new, rels[1])
    # Not a copy cut short (not the old file's first bytes): the build wrote there too, a clash.
    Path(new, rels[2]).unlink()
    Path(new, rels[2]).write_text("another page")
    lk = Linker(old, new, 10**9)
    lk.add(rels[2])
    with pytest.raises(FileExistsError):
        lk._link_here(made=True)
    assert Path(new, rels[2]).read_text() == "another page"
