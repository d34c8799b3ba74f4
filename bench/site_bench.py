"""Benchmark of the site: how long the render stage takes (every page, the assets and the Pagefind
index) for the founding kb and for synthetic kbs, with pages per second.

    cd /work/main
    .venv/bin/python bench/site_bench.py              # founding kb + 1,000 synthetic cases
    .venv/bin/python bench/site_bench.py --large      # ... + 10,000 synthetic cases (goal: site under 60 s)
    .venv/bin/python bench/site_bench.py --cases 200  # other sizes
    .venv/bin/python bench/site_bench.py --no-search  # leave the Pagefind index out

For each kb the render stage (``evidence.render.render_site``: every page, the assets and the
Pagefind index) runs ``--runs`` times on the validated, compiled kb into an empty folder; the table
shows the median. With ``--full-build`` the whole build (``evidence.pipeline.build``: validate,
compile, SHACL, exports, site) also runs once per kb, and its stage times are shown: the exports
dominate it, which is why it is not the default.
The pyoxigraph store of the compiled kb is built before the timing, as the export stage has
built it by the time a build renders (20 s at 10,000 cases). Synthetic kbs come from
``bench/synth.py`` (``bench/out/site-synth-*``, reused).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import synth  # noqa: E402
from evidence.compile import compile_kb  # noqa: E402
from evidence.config import SOURCE_TEXTS_ENV, load_config  # noqa: E402
from evidence.perf import frozen_heap, gc_paused, settle_heap  # noqa: E402
from evidence.pipeline import _DOWNLOADS, build, load_and_validate  # noqa: E402
from evidence.render import render_site  # noqa: E402


def _kb_root(cases: int, seed: int) -> Path:
    out = ROOT / "bench" / "out" / f"site-synth-{cases}-seed{seed}"
    marker = out / ".site-bench-done"
    if not marker.is_file():
        if out.exists():
            shutil.rmtree(out)
        t = time.perf_counter()
        synth.generate(out, cases, seed)
        marker.write_text("ok\n")
        print(f"  generated {cases} synthetic cases in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return out


def bench(name: str, root: Path, runs: int, search: bool, full: bool) -> dict:
    config = load_config(root)
    stages: dict[str, float] = {}
    total = None
    (ROOT / "bench" / "out").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="site-bench-", dir=ROOT / "bench" / "out") as tmp:
        if full:
            gc.collect()
            t = time.perf_counter()
            report = build(config, Path(tmp) / "_site", templates=ROOT / "site_templates")
            total = time.perf_counter() - t
            stages = report.timings
        t = time.perf_counter()
        kb = load_and_validate(config)
        stages.setdefault("validate", time.perf_counter() - t)
        t = time.perf_counter()
        compiled = compile_kb(kb)
        stages.setdefault("compile", time.perf_counter() - t)
        # In a build the export stage has built the pyoxigraph store already (the GraphML export
        # queries it), and the render stage reuses it: build it here too, outside the timing.
        t = time.perf_counter()
        compiled.store()
        stages["store"] = time.perf_counter() - t
        downloads = [{"href": n, "name": n, "description": d} for n, d in _DOWNLOADS]
        times: list[float] = []
        steps: dict[str, float] = {}
        files: list[str] = []  # the site's files, relative to its folder
        size = 0
        for i in range(runs):
            dest = Path(tmp) / f"render-{i}"
            dest.mkdir()
            gc.collect()
            step_times: dict[str, float] = {}
            t = time.perf_counter()
            # As the build renders (pipeline.build): the collector paused, the site model frozen
            # once made, and the heap settled after the render, within the time.
            with frozen_heap(), gc_paused():
                files = render_site(kb, compiled, ROOT / "site_templates", dest, downloads, search=search, timings=step_times, freeze=True)
                settle_heap()
            times.append(time.perf_counter() - t)
            if times[-1] <= min(times):
                steps = step_times
            size = sum((dest / f).stat().st_size for f in files)
            shutil.rmtree(dest)
        pages = sum(1 for f in files if f.endswith(".html"))
    render = statistics.median(times)
    return {
        "name": name, "cases": len(kb.cases), "patients": sum(len(c.patients) for c in kb.cases.values()), "pages": pages, "render": render,
        "spread": (min(times), max(times)), "pages_per_s": pages / render if render else 0.0, "build": total, "stages": stages, "steps": steps,
        "size_mb": size / 1e6, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, action="append", help="synthetic kb sizes (default: 1000; --large adds 10000)")
    ap.add_argument("--large", action="store_true", help="also 10,000 synthetic cases")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3, help="render runs per kb (default 3; 1 for 10,000 cases)")
    ap.add_argument("--no-search", action="store_true", help="leave out the Pagefind index")
    ap.add_argument("--full-build", action="store_true", help="also time the whole build once per kb (slow: the exports)")
    args = ap.parse_args(argv)
    os.environ.setdefault(SOURCE_TEXTS_ENV, str(ROOT.parent / "shared" / "seeds"))
    sizes = args.cases or [1000]
    if args.large and 10000 not in sizes:
        sizes.append(10000)
    kbs = [("founding", ROOT, args.runs)] + [(f"synthetic {n:,}", _kb_root(n, args.seed), 1 if n >= 10000 else args.runs) for n in sizes]
    results = []
    for name, root, runs in kbs:
        print(f"{name}: building…", file=sys.stderr)
        results.append(bench(name, root, runs, not args.no_search, args.full_build))
    print("| kb | cases | patients | pages | site render s, median (min–max) | pages/s | site MB | validate s | compile s | store s | full build s | export s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        st = r["stages"]
        full = f"{r['build']:.1f}" if r["build"] is not None else "–"
        export = f"{st['export']:.1f}" if "export" in st else "–"
        print(f"| {r['name']} | {r['cases']:,} | {r['patients']:,} | {r['pages']:,} | {r['render']:.2f} ({r['spread'][0]:.2f}–{r['spread'][1]:.2f}) | "
              f"{r['pages_per_s']:,.0f} | {r['size_mb']:.1f} | {st.get('validate', 0):.1f} | {st.get('compile', 0):.1f} | {st.get('store', 0):.1f} | {full} | {export} |")
    print()
    print("Render steps of the fastest run, seconds:")
    for r in results:
        print(f"- {r['name']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["steps"].items()))
    print(f"\nPeak memory of this process: {max(r['rss_mb'] for r in results):,.0f} MB")
    goal = [r for r in results if r["cases"] >= 10000]
    for r in goal:
        print(f"10,000-case goal (site with search index under 60 s): {'met' if r['render'] < 60 else 'NOT met'} ({r['render']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
