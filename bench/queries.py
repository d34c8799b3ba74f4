"""The query library on each engine: rdflib's SPARQL against pyoxigraph's, on the founding kb and
on seeded synthetic kbs, and their Turtle writers. This is the measurement behind the choice of
pyoxigraph as the build's query and serialisation engine.

    .venv/bin/python bench/queries.py                  # founding kb and 1,000 cases, 3 runs each
    .venv/bin/python bench/queries.py --large          # ... and 10,000 cases (pyoxigraph only there,
                                                       #     unless --rdflib-large)
    .venv/bin/python bench/queries.py --limit 30       # rdflib's time limit per query (default 60 s)

Prints one Markdown table per kb: the median latency of each library query on each engine, their
ratio, and the rows returned (the engines must agree on the count).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import pyoxigraph as ox  # noqa: E402

from evidence.compile import compile_kb  # noqa: E402
from evidence.config import load_config  # noqa: E402
from evidence.library import load_library  # noqa: E402
from evidence.query import with_prefixes  # noqa: E402
from evidence.validate import validate_kb  # noqa: E402


def _median(fn, runs: int) -> tuple[float, int]:
    times, n = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        n = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), n


class _OverLimit(Exception):
    pass


def _rdflib_worker(nq_path: str, jobs: list[tuple[str, str]], runs: int, limit: float) -> dict[str, tuple[float, int | str] | None]:
    """In a child process: load the graph into rdflib once, then time each query (or TriG
    output). rdflib is pure Python, so an alarm signal stops a query at the limit."""
    import signal

    from rdflib import Dataset

    def stop(signum, frame):
        raise _OverLimit

    signal.signal(signal.SIGALRM, stop)
    ds = Dataset(default_union=True)
    ds.parse(nq_path, format="nquads")
    out: dict[str, tuple[float, int] | None] = {}
    for name, text in jobs:
        signal.setitimer(signal.ITIMER_REAL, limit * runs)
        try:
            if name == "trig":
                out[name] = _median(lambda: len(ds.serialize(format="trig")), runs)
            else:
                out[name] = _median(lambda text=text: len(list(ds.query(text))), runs)
        except _OverLimit:
            out[name] = None
        except Exception as exc:  # rdflib's engine fails on some valid queries: report, go on
            out[name] = (float("nan"), f"error: {type(exc).__name__}: {str(exc)[:60]}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return out


def bench_kb(label: str, root: Path, runs: int, limit: float, rdflib: bool) -> None:
    kb = validate_kb(load_config(root))
    compiled = compile_kb(kb)
    store = compiled.store()
    prefixes = compiled.ns.prefixes()
    quads = compiled.sorted_quads()
    nq = root / ".bench-graph.nq" if root != ROOT else Path("/tmp/evidence-founding.nq")
    nq.write_bytes(ox.serialize(quads, format=ox.RdfFormat.N_QUADS))
    library = load_library(ROOT / "kb" / "queries")
    rd: dict[str, tuple[float, int] | None] = {}
    if rdflib:
        jobs = [("trig", "")] + [(q.name, with_prefixes(q.text, prefixes)) for q in library]
        with ProcessPoolExecutor(max_workers=1) as pool:
            rd = pool.submit(_rdflib_worker, str(nq), jobs, runs, limit).result()
    rows = [("TriG output (whole graph)", rd.get("trig"), _median(lambda: len(ox.serialize(quads, format=ox.RdfFormat.TRIG, prefixes=prefixes)), runs))]
    for q in library:
        res = _median(lambda q=q: len(list(store.query(q.text, prefixes=prefixes, use_default_graph_as_union=True))), runs)
        rows.append((q.name, rd.get(q.name), res))
    print(f"\n### {label}: {len(kb.cases):,} cases, {len(quads):,} quads; medians of {runs} runs\n")
    print("| query | rdflib ms | pyoxigraph ms | rdflib / pyoxigraph | rows |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, rd, (oxt, n) in rows:
        if rd is None:
            rds, ratio = (f">{limit * 1000:,.0f}" if rdflib else "not run"), "n/a"
        elif isinstance(rd[1], str):
            rds, ratio = rd[1], "n/a"
        else:
            rds, ratio = f"{rd[0] * 1000:,.1f}", f"x{rd[0] / oxt:,.1f}"
            if name != rows[0][0] and rd[1] != n:
                ratio += f" (rdflib rows {rd[1]})"
        print(f"| {name} | {rds} | {oxt * 1000:,.1f} | {ratio} | {n if name != rows[0][0] else ''} |")
    slow = [name for name, _, (oxt, _) in rows[1:] if oxt > 0.1]
    print(f"\npyoxigraph queries over 100 ms: {', '.join(slow) if slow else 'none'}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--large", action="store_true", help="also 10,000 cases")
    ap.add_argument("--rdflib-large", action="store_true", help="run rdflib at 10,000 cases too (slow)")
    ap.add_argument("--limit", type=float, default=60.0, help="seconds allowed to one rdflib query run")
    args = ap.parse_args(argv)

    import synth

    bench_kb("founding kb", ROOT, args.runs, args.limit, True)
    sizes = [args.cases] + ([10000] if args.large else [])
    for n in sizes:
        out = ROOT / "bench" / "out" / f"synth-{n}-seed{args.seed}"
        synth.generate(out, n, args.seed)
        bench_kb(f"synthetic {n:,}", out, args.runs, args.limit, n < 10000 or args.rdflib_large)
    return 0


if __name__ == "__main__":
    sys.exit(main())
