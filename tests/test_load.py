"""The endpoint under load, on loopback only: 20 concurrent clients send 5,000 requests, a mix of
library queries (and some malformed ones); no 5xx, every answer right, p50 and p99 reported, and
the server's memory flat over the run. Bounded in count and time; it stops by itself."""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest

from evidence.library import load_library
from tests.test_serve import Server, http

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 20
REQUESTS = 5000
DEADLINE_S = 240


def _rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (the query workers), from /proc."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


@pytest.fixture(scope="module")
def loaded_server(site, tmp_path_factory):
    srv = Server(site, "--workers", "2", "--no-yasgui", log=tmp_path_factory.mktemp("load") / "server.log")
    yield srv
    srv.stop()


def test_endpoint_under_load(loaded_server, compiled, tmp_path):
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read memory")
    library = load_library(ROOT / "kb" / "queries")
    expected = {}
    for q in library:  # the right answer of each query: its row count through the endpoint when idle
        status, _, body = http(loaded_server.url + "/sparql", {"query": q.text}, {"Accept": "application/sparql-results+json"})
        assert status == 200, body[:300]
        expected[q.name] = len(json.loads(body)["results"]["bindings"])
    rng = random.Random(7)
    plan = [rng.choice(library) if rng.random() > 0.02 else None for _ in range(REQUESTS)]  # 2% malformed
    latencies: list[float] = []
    problems: list[str] = []
    memory: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def sample_memory() -> None:
        while not stop.is_set():
            memory.append(_rss_kb(loaded_server.proc.pid))
            stop.wait(0.25)

    def one(q) -> None:
        if time.monotonic() - started > DEADLINE_S:
            return
        text = q.text if q is not None else "SELECT * WHERE { ?s ?p "
        t = time.perf_counter()
        status, _, body = http(loaded_server.url + "/sparql?" + urlencode({"query": text}), headers={"Accept": "application/sparql-results+json"}, timeout=60)
        dt = time.perf_counter() - t
        with lock:
            if q is None:
                if status != 400:
                    problems.append(f"malformed query gave {status}")
                return
            latencies.append(dt)
            if status != 200:
                problems.append(f"{q.name}: HTTP {status} {body[:120]!r}")
            elif len(json.loads(body)["results"]["bindings"]) != expected[q.name]:
                problems.append(f"{q.name}: wrong row count")

    sampler = threading.Thread(target=sample_memory, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(one, plan))
    stop.set()
    sampler.join()
    elapsed = time.monotonic() - started
    assert not problems, problems[:10]
    assert len(latencies) >= 0.95 * REQUESTS * 0.98, f"only {len(latencies)} requests in {DEADLINE_S} s"
    lat = sorted(latencies)
    p50 = statistics.median(lat)
    p99 = lat[int(0.99 * (len(lat) - 1))]
    # Memory flat: the last quarter of the run holds no more than the first quarter plus 20%.
    q = max(1, len(memory) // 4)
    first, last = max(memory[:q]), max(memory[-q:])
    report = (f"{len(lat)} requests, {CLIENTS} clients, {elapsed:.1f} s, {len(lat) / elapsed:.0f} req/s; "
              f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; RSS first quarter {first / 1024:.0f} MB, last {last / 1024:.0f} MB")
    (ROOT / "tests" / "artifacts").mkdir(exist_ok=True)
    (ROOT / "tests" / "artifacts" / "load.txt").write_text(report + "\n")
    print(report)
    assert last <= first * 1.2 + 10240, report
    assert p99 < 5.0, report
