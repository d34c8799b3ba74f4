"""Ctrl-C and SIGTERM (evidence.interrupts, and the forked workers of evidence.perf): the
exception waits for the end of a deferred block, one dropped by Python is raised again, and a
worker leaves the decision to stop to the process that started it. The whole build under a signal
to its process group is tested in test_build_faults.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evidence import interrupts
from evidence.errors import Terminated
from evidence.perf import parallel_imap


@pytest.fixture
def installed():
    interrupts.install()
    try:
        yield
    finally:
        interrupts.uninstall()


@pytest.fixture
def default_sigint():
    """Python keeps SIGINT ignored when it starts with it ignored (a command that a non-interactive
    shell runs in the background, as some CI runners do): a test about the default handler sets it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_without_install_deferred_changes_nothing(default_sigint):
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), interrupts.deferred():
        signal.raise_signal(signal.SIGINT)
        time.sleep(0)
        pytest.fail("the default handler raises at once")


@pytest.mark.parametrize(("sig", "exc"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_waits_for_the_end_of_the_outermost_deferred_block(installed, sig, exc):
    reached = []
    with pytest.raises(exc):
        with interrupts.deferred():
            with interrupts.deferred():
                signal.raise_signal(sig)
                reached.append("inner")
            reached.append("outer")  # the inner block's end does not raise: the outer one is still open
    assert reached == ["inner", "outer"]
    with pytest.raises(exc):  # outside any block: at once
        signal.raise_signal(sig)
        time.sleep(0)


def test_uninstall_puts_the_handlers_back():
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    interrupts.install()
    interrupts.uninstall()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_an_interrupt_dropped_by_python_is_raised_again(installed):
    """Raised in a __del__, Terminated would only be printed ("Exception ignored in ...") and the
    build would go on to its end."""

    class Dropping:
        def __del__(self):
            raise Terminated

    with pytest.raises(Terminated):
        obj = Dropping()
        del obj  # the hook sends SIGTERM again (from a thread); its handler raises here, where the stack unwinds
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.01)


# Run as `python -m probe`: a command whose Ctrl-C lands in code that Python runs from a string
# (here an exec; in a build, the methods a dataclass generates while a module is imported).
_PROBE = """
import argparse, sys
from evidence import cli, interrupts
if sys.argv[1:] == ["unfixed"]:
    interrupts.forget_escaped = lambda: None
def parser():
    ap = argparse.ArgumentParser()
    ap.set_defaults(func=lambda args: exec("raise KeyboardInterrupt"))
    return ap
cli.parser = parser
sys.exit(cli.main([]))
"""


@pytest.mark.skipif(os.name != "posix", reason="a process ended by a signal (POSIX)")
@pytest.mark.parametrize("how", ["fixed", "unfixed"])
def test_an_interrupt_handled_by_a_command_run_as_a_module_exits_130(tmp_path, how):
    """CPython notes each KeyboardInterrupt that leaves code run from a string and, for
    ``python -m``, ends the process by SIGINT at its exit even though the command handled it: an
    interrupted build printed "interrupted" and was reported killed by SIGINT. The unfixed run shows
    that this Python does so (without it, the test would prove nothing here)."""
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "__main__.py").write_text(_PROBE)
    src = Path(__file__).resolve().parents[1] / "src"
    r = subprocess.run([sys.executable, "-m", "probe", how], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(src)})
    assert r.stderr == "interrupted\n"
    if how == "fixed":
        assert r.returncode == 130
    elif r.returncode == 130:
        pytest.skip("this Python does not end such a process by SIGINT: forget_escaped is not needed here")
    else:
        assert r.returncode == -signal.SIGINT


def _slow_pid(_shared, i: int) -> tuple[int, int]:
    time.sleep(0.05)
    return i, os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork") or (os.cpu_count() or 1) < 2, reason="forked workers need fork and 2 cores")
def test_a_worker_leaves_stopping_to_the_process_that_started_it():
    """A SIGTERM or SIGINT from outside (sent to the whole group) does not kill a pool worker, whose
    death while waiting for a task would leave the pool's teardown waiting for ever; the pool's
    own teardown does end it."""
    results = parallel_imap(_slow_pid, range(40), workers=2, minimum=1, shared=None, chunksize=1)
    first = next(results)
    worker = first[1]
    assert worker != os.getpid()
    os.kill(worker, signal.SIGTERM)
    os.kill(worker, signal.SIGINT)
    rest: list[tuple[int, int]] = []
    reader = threading.Thread(target=lambda: rest.extend(results), daemon=True)
    reader.start()
    reader.join(60)  # a worker killed with its task: the pool waits for that result for ever
    assert not reader.is_alive(), "the pool lost a task: a worker died of a signal sent from outside"
    assert sorted([first[0]] + [i for i, _ in rest]) == list(range(40))
    pids = {pid for _, pid in [first, *rest]}
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "a worker outlived its pool"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not yet reaped counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
