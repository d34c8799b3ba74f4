"""evidence.spool.Spool: named bytes in a temporary file, read back by threads and forked workers."""

from __future__ import annotations

import gc
import os
import pickle
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evidence.perf import parallel_map
from evidence.spool import Spool


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.binary(max_size=3000), max_size=12))
def test_a_spool_gives_back_what_was_added(items):
    sp = Spool(items.items())
    try:
        assert dict(sp.items()) == items and list(sp) == list(items) and len(sp) == len(items)
        assert all(sp.size(k) == len(v) for k, v in items.items())
        sp.sort()
        assert list(sp) == sorted(items) and dict(sp.items()) == items
        assert "not there" not in sp and sp.get("not there", b"?") == b"?"
    finally:
        sp.close()


def test_a_name_is_written_once():
    sp = Spool([("a", b"1")])
    with pytest.raises(KeyError, match="already in the spool"):
        sp.add("a", b"2")
    assert sp["a"] == b"1"


def test_the_bytes_are_not_held_in_memory(tmp_path):
    big = os.urandom(1 << 20)
    sp = Spool([("big", big)], dir=str(tmp_path))
    assert sp._end == len(big) and sp["big"] == big
    assert os.fstat(sp._fh.fileno()).st_size == len(big)  # in the file
    assert list(tmp_path.iterdir()) == []  # which has no name: nothing to leave behind


def _read(spool, name):
    return spool[name]


def test_threads_and_forked_workers_read_at_once():
    items = {f"g{i}": os.urandom(5000 + i) for i in range(300)}
    sp = Spool(items.items())
    got: dict[str, bytes] = {}
    threads = [threading.Thread(target=lambda ks=ks: got.update((k, sp[k]) for k in ks)) for ks in (list(items)[::2], list(items)[1::2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == items
    assert parallel_map(_read, list(items), workers=2, minimum=2, shared=sp) == list(items.values())


def test_a_pickled_spool_is_its_bytes_and_a_collected_one_closes_its_file():
    sp = Spool([("a", b"x"), ("b", b"yz")])
    assert pickle.loads(pickle.dumps(sp)) == {"a": b"x", "b": b"yz"}
    fd = sp._fh.fileno()
    del sp
    gc.collect()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_bytes_named_by_reference_outlive_the_file_name_and_descriptor_they_came_from(tmp_path):
    src = tmp_path / "pack"
    data = os.urandom(3 << 20)
    src.write_bytes(data)
    fd = os.open(src, os.O_RDONLY)
    sp = Spool([("first", b"abc")])
    sp.add_ref("ref", fd, 1000, len(data) - 2000)
    sp.add_ref("ref2", fd, 0, 10)
    sp.add("after", b"xyz")
    with pytest.raises(OSError, match="past the end"):
        sp.add_ref("past the end", fd, len(data) - 10, 20)
    with pytest.raises(KeyError, match="already in the spool"):
        sp.add_ref("first", fd, 0, 1)
    os.close(fd)
    src.unlink()  # as a pack that a later build merged away
    assert "past the end" not in sp and len(sp) == 4
    assert sp["ref"] == data[1000:-1000] and sp["ref2"] == data[:10] and sp["first"] == b"abc" and sp["after"] == b"xyz"
    assert sp.size("ref") == len(data) - 2000
    own = sp._fds[:]
    assert len(own) == 2, "one descriptor of its own per file"
    assert [os.pread(f, n, at) for f, at, n in sp.segments()] == [b"xyz", b"abc", data[1000:-1000], data[:10]], "in sorted name order"
    sp.sort()
    assert list(sp) == ["after", "first", "ref", "ref2"]
    sp.close()
    with pytest.raises(OSError):
        os.fstat(own[1])


def test_bytes_named_with_a_crc_are_checked_as_they_are_read(tmp_path):
    """A compiled part is named where the build cache keeps it (add_ref) and was read unchecked:
    a byte changed there reached the shape check and the exports. With the entry's CRC-32 the
    read is a CompileError that says the cache is damaged."""
    import zlib

    from evidence.errors import CompileError

    data = b"<a> <b> <c> <g> .\n" * 100
    path = tmp_path / "pack"
    path.write_bytes(b"head" + data)
    fd = os.open(path, os.O_RDWR)
    try:
        spool = Spool()
        spool.add_ref("g", fd, 4, len(data), zlib.crc32(data))
        spool.add_ref("unchecked", fd, 4, len(data))
        assert spool["g"] == data
        os.pwrite(fd, b"X", 50)
        with pytest.raises(CompileError, match="build cache is damaged"):
            spool["g"]
        assert spool["unchecked"] != data  # without a CRC the bytes are given as they are
    finally:
        os.close(fd)
