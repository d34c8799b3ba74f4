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
