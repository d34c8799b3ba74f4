"""``evidence serve`` as a child process on a free loopback port: start it, wait until it answers,
stop it. The endpoint's tests, its load test and ``bench/serve_bench.py`` all run the real server
this way (one copy of the start-up, not one per caller)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

__all__ = ["ServeProcess", "free_port"]

_SRC = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``python -m evidence --root ROOT serve --port P --site SITE ARGS...``; :meth:`stop` always
    ends it. The constructor returns once ``/sparql`` answers 200 (or raises with the log)."""

    def __init__(self, root: Path, site: Path, *args: str, log: Path, env: dict[str, str] | None = None, timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._out = open(log, "wb")  # closed in stop()
        env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(_SRC), os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "evidence", "--root", str(root), "serve", "--port", str(self.port), "--site", str(site), *args]
        started = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=root)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup = time.perf_counter() - started

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"evidence serve exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                with urlopen(self.url + "/sparql", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"evidence serve did not answer within {timeout:g} s:\n{self.log_text()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
