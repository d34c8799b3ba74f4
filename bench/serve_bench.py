"""Latency of the query library through `evidence serve`, on the founding kb and a synthetic kb.

    cd /work/main
    .venv/bin/python bench/serve_bench.py                  # founding kb + 1,000 synthetic cases, 7 requests a query
    .venv/bin/python bench/serve_bench.py --runs 11 --cases 10000 --seed 2

For each kb the script compiles the graph (``evidence.compile.compile_kb``), writes its
N-Quads to ``bench/out/serve-<kb>/site/evidence.nq.gz`` (git ignores ``bench/out/``), starts a real
``python -m evidence serve`` on a free port over that folder, and sends every query of
``kb/queries/`` as an ``application/sparql-query`` POST asking for SPARQL JSON, over one kept-alive
connection: one request to warm up, then ``--runs`` timed ones. It prints, per query, the median
time of a request (client side: HTTP, the hand-over to a worker process, evaluation and
serialisation) beside the median of the same query evaluated and serialised in this process by
pyoxigraph (run right after each request), so the difference is the cost of the server. The server runs with a result cap and a
time limit high enough that no library query is refused (the defaults are 10,000 results and 10 s).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import pyoxigraph as ox  # noqa: E402

import synth  # noqa: E402
from evidence.compile import compile_kb  # noqa: E402
from evidence.config import load_config  # noqa: E402
from evidence.export import FORMATS, GZIP_LEVEL, serialize  # noqa: E402
from evidence.library import LibraryQuery, load_library  # noqa: E402
from evidence.namespaces import Namespaces  # noqa: E402
from evidence.pipeline import load_and_validate  # noqa: E402
from evidence.serve_process import ServeProcess  # noqa: E402

OUT = ROOT / "bench" / "out"


def write_nquads(project: Path, folder: Path) -> tuple[Path, int, float]:
    """Compile the project's kb and write its N-Quads into ``folder``, gzip, as a build names and
    writes them (the server loads that file); (path, quads, seconds)."""
    t = time.perf_counter()
    # No SHACL check (compile_checked): the bench is about serving, and pyshacl takes a minute at 1,000 cases.
    compiled = compile_kb(load_and_validate(load_config(project)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FORMATS["nq"][0]
    path.write_bytes(gzip.compress(serialize(compiled, "nq"), GZIP_LEVEL, mtime=0))
    return path, len(compiled.quads), time.perf_counter() - t


def start_server(project: Path, site: Path, log: Path) -> ServeProcess:
    return ServeProcess(project, site, "--no-yasgui", "--workers", "2", "--timeout", "600", "--max-results", "100000000", log=log, timeout=600)


def medians(port: int, store: ox.Store, prefixes: dict[str, str], queries: list[LibraryQuery], runs: int) -> dict[str, tuple[float, float, int]]:
    """query name -> (median seconds over HTTP, median seconds in this process, rows).

    Each HTTP request is followed by the same query in this process, so that the machine's drift
    (about +-35% between runs, see PERFORMANCE.md) weighs on both columns alike.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    headers = {"Content-Type": "application/sparql-query", "Accept": "application/sparql-results+json"}
    out = {}
    try:
        for q in queries:
            remote, local, body = [], [], b""
            for i in range(runs + 1):
                t = time.perf_counter()
                conn.request("POST", "/sparql", body=q.text.encode("utf-8"), headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                elapsed = time.perf_counter() - t
                if resp.status != 200:
                    raise SystemExit(f"{q.name}: HTTP {resp.status}: {body.decode(errors='replace')}")
                t = time.perf_counter()
                store.query(q.text, prefixes=prefixes, use_default_graph_as_union=True).serialize(format=ox.QueryResultsFormat.JSON)
                if i:  # the first round warms up
                    remote.append(elapsed)
                    local.append(time.perf_counter() - t)
            out[q.name] = (statistics.median(remote), statistics.median(local), len(json.loads(body)["results"]["bindings"]))
    finally:
        conn.close()
    return out


def ms(seconds: float) -> str:
    v = seconds * 1000
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def bench(name: str, project: Path, queries: list[LibraryQuery], runs: int) -> None:
    folder = OUT / f"serve-{name}"
    nquads, quads, compile_s = write_nquads(project, folder / "site")
    prefixes = Namespaces(load_config(project).base_iri).prefixes()
    store = ox.Store()
    with gzip.open(nquads, "rb") as fh:
        store.bulk_load(input=fh, format=ox.RdfFormat.N_QUADS)
    server = start_server(project, folder / "site", folder / "server.log")
    try:
        times = medians(server.port, store, prefixes, queries, runs)
    finally:
        server.stop()
    print(f"\n### {name}: {quads:,} quads (compiled in {compile_s:.1f} s; server ready in {server.startup:.1f} s), "
          f"median of {runs} requests a query\n")
    print("| query | rows | HTTP median ms | in-process median ms | server overhead ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for q in queries:
        remote, local, rows = times[q.name]
        print(f"| {q.name} | {rows:,} | {ms(remote)} | {ms(local)} | {ms(remote - local)} |")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="timed requests per query, after one to warm up (default: 7; at least 5)")
    ap.add_argument("--cases", type=int, default=1000, help="cases in the synthetic kb (default: 1000)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the synthetic kb (default: 1)")
    args = ap.parse_args(argv)
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    queries = load_library(ROOT / "kb" / "queries")
    print(f"`evidence serve` latency, {len(queries)} library queries, {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"pyoxigraph {ox.__version__ if hasattr(ox, '__version__') else '?'}")
    bench("founding", ROOT, queries, args.runs)
    project = OUT / f"serve-synth-{args.cases}-seed{args.seed}"
    t = time.perf_counter()
    synth.generate(project, args.cases, args.seed, force=True)
    print(f"\n(synthetic kb of {args.cases} cases, seed {args.seed}, generated in {time.perf_counter() - t:.1f} s)")
    bench(f"synth-{args.cases}", project, queries, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
