"""perf.Background: a job in a forked process while the caller goes on."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from evidence.perf import Background

_SEEN = None  # set before forking: the child sees it without its being pickled


def _add(a, b):
    return a + b + (_SEEN or 0)


def _pid():
    return os.getpid()


def _fail():
    raise ValueError("no such graph")


def _sleep():
    time.sleep(60)
    return "late"


def test_the_child_sees_the_callers_objects_and_returns_its_result(monkeypatch):
    monkeypatch.setattr(f"{__name__}._SEEN", 100)
    assert Background(_add, 1, 2, workers=2).result() == 103
    assert Background(_pid, workers=2).result() != os.getpid()


def test_with_one_core_the_job_runs_here():
    assert Background(_pid, workers=1).result() == os.getpid()


def test_what_the_child_raises_is_raised_with_its_message():
    with pytest.raises(RuntimeError, match="ValueError: no such graph"):
        Background(_fail, workers=2).result()
    assert multiprocessing.active_children() == []


def test_a_cancelled_job_is_stopped_at_once():
    t = time.perf_counter()
    with pytest.raises(KeyError):
        with Background(_sleep, workers=2):
            raise KeyError("the build failed")
    assert time.perf_counter() - t < 10
    assert multiprocessing.active_children() == []
