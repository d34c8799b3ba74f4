"""The kb in a real triplestore: a real Oxigraph server on loopback, loaded with the exported
N-Quads, answers the whole query library with the same rows as the local engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from evidence.library import load_library
from evidence.query import run_query, run_remote
from evidence.serve_process import free_port
from tests.test_library import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = load_library(ROOT / "kb" / "queries")


def _oxigraph() -> str:
    found = shutil.which("oxigraph") or str(Path(sys.executable).parent / "oxigraph")
    if not Path(found).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the oxigraph server is missing: pip install oxigraph (it is in the test extras)")
        pytest.skip("the oxigraph server is not installed: pip install -e '.[test]'")
    return found


@pytest.fixture(scope="module")
def endpoint(site, tmp_path_factory):
    binary = _oxigraph()
    work = tmp_path_factory.mktemp("oxigraph")
    nq = site / "evidence.nq.gz"  # the site's download, gzip, as a researcher loads it
    store = work / "store"
    subprocess.run([binary, "load", "--location", str(store), "--file", str(nq)], check=True, capture_output=True, timeout=120)
    port = free_port()
    log = open(work / "server.log", "wb")  # a file, not a pipe: a full pipe would stall the server
    proc = subprocess.Popen([binary, "serve-read-only", "--location", str(store), "--bind", f"127.0.0.1:{port}", "--union-default-graph"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/query"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}?query=ASK%7B%7D", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"oxigraph did not start: {(work / 'server.log').read_text(errors='replace')}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _rows(result) -> list[tuple[str, ...]]:
    return [tuple("" if r[v] is None else str(r[v]) for v in result.variables) for r in result.rows]


@pytest.mark.parametrize("q", LIBRARY, ids=[q.name for q in LIBRARY])
def test_library_query_gives_the_same_rows_remotely(q, compiled, endpoint):
    local = run_query(compiled, q.text)
    remote = run_remote(endpoint, q.text, compiled.ns.prefixes())
    assert remote.variables == local.variables
    assert _rows(remote) == _rows(local)
    assert remote.rows, "the founding kb answers every library query"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_parameters_bind_remotely_too(name, compiled, endpoint):
    q = next(q for q in LIBRARY if q.name == name)
    local = run_query(compiled, q.text, EXAMPLES[name])
    remote = run_remote(endpoint, q.text, compiled.ns.prefixes(), EXAMPLES[name])
    assert _rows(remote) == _rows(local) and local.rows


def test_cli_endpoint_flag(endpoint):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = [sys.executable, "-m", "evidence", "query", "drugs-by-gene", "--param", "gene=TREX1", "--format", "csv"]
    local = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    remote = subprocess.run(args + ["--endpoint", endpoint], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    assert "TREX1,baricitinib,3,1" in remote.stdout


def test_construct_comes_back_as_a_graph(compiled, endpoint):
    q = "CONSTRUCT { ?d ev:target ?g } WHERE { ?d a ev:Drug ; ev:target ?g }"
    local = run_query(compiled, q)
    remote = run_remote(endpoint, q, compiled.ns.prefixes())
    assert sorted(map(str, remote.triples)) == sorted(map(str, local.triples)) and len(local.triples) == 2


def test_unreachable_endpoint_is_a_clear_error():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([sys.executable, "-m", "evidence", "query", "sources", "--endpoint", f"http://127.0.0.1:{free_port()}/query", "--timeout", "5"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    assert "cannot reach the endpoint" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "evidence", "query", "sources", "--endpoint", "file:///etc/passwd"],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "must be an http(s) URL" in r.stderr
