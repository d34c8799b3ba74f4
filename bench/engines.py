"""rdflib against pyoxigraph on the same graph: which engine the build uses, by measurement.

    .venv/bin/python bench/engines.py                # 1,000 synthetic cases, 3 runs
    .venv/bin/python bench/engines.py --cases 300    # a smaller kb

For each of the query library's queries and for Turtle output it prints the median time of each
engine and their ratio. rdflib gets a time limit per call (--limit, default 60 s); a call over it
is shown as '>limit'.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import pyoxigraph as ox  # noqa: E402

from evidence.config import load_config  # noqa: E402
from evidence.pipeline import compile_checked, load_and_validate  # noqa: E402


def _median(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _rdflib_query(nt_path: str, query: str, prefixes: dict[str, str], runs: int) -> float:
    from rdflib import Graph

    g = Graph()
    g.parse(nt_path, format="nt")
    head = "".join(f"PREFIX {k}: <{v}>\n" for k, v in prefixes.items())
    return _median(lambda: list(g.query(head + query)), runs)


def _rdflib_turtle(nt_path: str, runs: int) -> float:
    from rdflib import Graph

    g = Graph()
    g.parse(nt_path, format="nt")
    return _median(lambda: g.serialize(format="turtle"), runs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit", type=float, default=60.0, help="seconds allowed to one rdflib measurement")
    args = ap.parse_args(argv)

    import synth

    out = ROOT / "bench" / "out" / f"engines-{args.cases}-seed{args.seed}"
    if not (out / "evidence.toml").exists():
        synth.generate(out, args.cases, args.seed)
    compiled = compile_checked(load_and_validate(load_config(out)))
    store = compiled.store()
    nt = out / "graph.nt"
    triples = sorted({ox.Triple(q.subject, q.predicate, q.object) for q in compiled.quads}, key=lambda t: (t.subject.value, t.predicate.value, t.object.value))
    nt.write_bytes(ox.serialize(triples, format=ox.RdfFormat.N_TRIPLES))
    prefixes = compiled.ns.prefixes()
    rows = []
    ox_ttl = _median(lambda: ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=prefixes), args.runs)
    with ProcessPoolExecutor(max_workers=1) as pool:
        try:
            rd_ttl = pool.submit(_rdflib_turtle, str(nt), args.runs).result(timeout=args.limit * args.runs + 60)
        except FutureTimeout:
            rd_ttl = float("inf")
    rows.append(("Turtle output", rd_ttl, ox_ttl))
    for q in sorted((ROOT / "kb" / "queries").glob("*.rq")):
        text = q.read_text(encoding="utf-8")
        oxt = _median(lambda text=text: list(store.query(text, prefixes=prefixes, use_default_graph_as_union=True)), args.runs)
        pool = ProcessPoolExecutor(max_workers=1)
        fut = pool.submit(_rdflib_query, str(nt), text, prefixes, args.runs)
        try:
            rdt = fut.result(timeout=args.limit * args.runs + 60)
        except FutureTimeout:
            rdt = float("inf")
            for p in pool._processes.values():  # a query past its limit is stopped, not waited for
                p.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        rows.append((f"query {q.stem}", rdt, oxt))
    print(f"{args.cases} synthetic cases, {len(triples):,} triples, medians of {args.runs} runs\n")
    print("| step | rdflib s | pyoxigraph s | rdflib / pyoxigraph |")
    print("| --- | ---: | ---: | ---: |")
    for name, rd, oxv in rows:
        rds = ">limit" if rd == float("inf") else f"{rd:.3f}"
        ratio = "n/a" if rd == float("inf") else f"x{rd / oxv:,.0f}"
        print(f"| {name} | {rds} | {oxv:.4f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
