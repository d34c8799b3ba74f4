"""The whole build, stage by stage, on seeded synthetic kbs: the issue-6 scale benchmark.

    .venv/bin/python bench/build.py                 # 100 and 1,000 cases, 3 runs each
    .venv/bin/python bench/build.py --large         # ... and 10,000 cases
    .venv/bin/python bench/build.py --sizes 300 --runs 5
    .venv/bin/python bench/build.py --sizes 1000 --against /tmp/old   # A/B with another checkout
    .venv/bin/python bench/build.py --sizes 1000 --runs 1 --profile /tmp/rebuild.pstats   # + where a rebuild's time goes

Each run is a fresh child process running `evidence.pipeline.build` into a temporary folder, so
that its peak memory (ru_maxrss) is its own:

1. a cold build, with an empty build cache;
2. the same child then edits one case (its title) and builds again with the cache: the rebuild
   after one edit; then edits it again and builds again (the second rebuild, as in a curator's
   edit-build loop); the case file is put back afterwards;
3. it runs every query of the library once on the compiled graph (the query library time).

The timed runs are not watched from outside: their peak memory is the ru_maxrss bound the child
reports itself. The peak PSS (the child and its workers, sampled every 0.1 s) comes from one more
run per size (and per tree, with ``--against``), the memory run, whose times are not used: a
sample reads every page table of the build, and sampling made a 10,000-case cold build 12% slower
(see bench/README.md, session 23).

Prints medians per stage (validate, compile, SHACL, export, render, search index, swap), total
wall time and peak memory (the memory run's PSS, and the timed runs' ru_maxrss bound) of
the cold builds, the rebuild after one edit, the peak PSS of each phase (cold build, rebuild,
query library), and the growth exponent of the cold total between the two largest sizes (1.0 is
linear).

``--against TREE`` (a checkout of another commit, such as a ``git worktree``) runs that tree's
package and templates and this one's in turn, run by run, so that both see the same state of the
machine, and prints the medians of each and their ratio (this tree / the other).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {src!r})
from pathlib import Path
from evidence.cache import BuildCache
from evidence.config import load_config
from evidence.pipeline import build, compile_checked, load_and_validate
from evidence.library import load_library
from evidence.query import run_query
config = load_config(Path({root!r}))
cache = Path({cache!r})
def phase(name):  # read by the parent's memory sampler, so that each phase has its own peak
    Path({phase!r}).write_text(name)
phase("cold build")
t = time.perf_counter()
report = build(config, Path({out!r}), templates=Path({templates!r}), cache=BuildCache(cache))
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
case = sorted(config.kb_dir.glob("*.yaml"))[len(list(config.kb_dir.glob("*.yaml"))) // 2]
original = case.read_bytes()
try:
    case.write_bytes(original.replace(b"title: ", b"title: Edited, ", 1))
    phase("rebuild")
    t = time.perf_counter()
    again = build(config, Path({out!r}), templates=Path({templates!r}), cache=BuildCache(cache))
    rebuild = time.perf_counter() - t
    # A second edit of the same case: the rebuild after the first one, as a curator's edit-build
    # loop sees it. (Until session 7 the first rebuild also packed the cache's entries.)
    case.write_bytes(original.replace(b"title: ", b"title: Edited again, ", 1))
    t = time.perf_counter()
    third = build(config, Path({out!r}), templates=Path({templates!r}), cache=BuildCache(cache))
    rebuild2 = time.perf_counter() - t
    if {profile!r}:  # one more edit and rebuild, under cProfile (not timed: the profiler slows it)
        import cProfile
        phase("profiled rebuild")  # its own peak, not the rebuild's
        case.write_bytes(original.replace(b"title: ", b"title: Profiled, ", 1))
        profiler = cProfile.Profile()
        profiler.enable()
        build(config, Path({out!r}), templates=Path({templates!r}), cache=BuildCache(cache))
        profiler.disable()
        profiler.dump_stats({profile!r})
finally:
    case.write_bytes(original)
phase("query library")
compiled = compile_checked(load_and_validate(config, cache=BuildCache(cache)), cache=BuildCache(cache))
compiled.store()
t = time.perf_counter()
for q in load_library(Path({queries!r})):
    run_query(compiled, q.text)
queries = time.perf_counter() - t
print(json.dumps({{"timings": {{**report.timings, "query library": queries}}, "wall": wall, "peak_mb": peak / 1024, "quads": report.quads,
                  "cases": report.cases, "rebuild": rebuild, "rebuild_timings": again.timings,
                  "rebuild2": rebuild2, "rebuild2_timings": third.timings}}))
"""


# How often (seconds) a memory run's child is sampled.
SAMPLE_EVERY = 0.1


def _tree(pid: int) -> list[int]:
    """``pid`` and every process under it."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def _pss_kb(pid: int) -> int:
    """The proportional set size of a process: its own pages, plus its share of pages it shares
    with others (a forked worker shares most of its parent's)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_once(root: Path, tree: Path = ROOT, profile: Path | None = None, kept: list[Path] | None = None, sample: bool = False) -> dict:
    """One child process: cold build, rebuild, query library, with the package and templates of
    ``tree``. With ``sample`` (a memory run), its memory is sampled every SAMPLE_EVERY seconds as
    the sum of the proportional set sizes of the child and its workers: the memory the build
    really holds at that moment (ru_maxrss of parent plus child counts shared pages twice). A
    sample costs the build time (it reads every page table), so a timed run is not sampled. With
    ``profile``, one more rebuild after an edit is profiled (cProfile, the build's own process)
    into that file; it is not in the timings.

    The run's folder (site, cache) is deleted when it ends, or, with ``kept``, added to that list
    for the caller to delete after the last run (see :func:`_delete`)."""
    with contextlib.ExitStack() as stack:
        tmp = tempfile.mkdtemp(prefix="evidence-bench-")
        if kept is None:
            stack.callback(shutil.rmtree, tmp, True)
        else:
            kept.append(Path(tmp))
        phase_file = Path(tmp) / "phase"
        code = CHILD.format(src=str(tree / "src"), root=str(root), out=str(Path(tmp) / "_site"), templates=str(tree / "site_templates"),
                            cache=str(Path(tmp) / "cache"), queries=str(ROOT / "kb" / "queries"), phase=str(phase_file),
                            profile=str(profile.resolve()) if profile else "")
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            child = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=err, text=True)
            stack.callback(child.wait)  # stopped before its folder is deleted (callbacks run last first)
            stack.callback(child.kill)  # a no-op once it has ended
            peak = 0
            peaks: dict[str, int] = {}
            while sample and child.poll() is None:
                now = sum(_pss_kb(p) for p in _tree(child.pid))
                try:
                    name = phase_file.read_text() or "start"
                except OSError:
                    name = "start"
                peaks[name] = max(peaks.get(name, 0), now)
                peak = max(peak, now)
                time.sleep(SAMPLE_EVERY)
            child.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if child.returncode != 0:
            raise SystemExit(f"build failed on {root}:\n{stderr[-3000:]}")
        return {**json.loads(stdout.strip().splitlines()[-1]), "pss_mb": peak / 1024, "pss_phases": {k: v / 1024 for k, v in peaks.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100, 1000])
    ap.add_argument("--large", action="store_true", help="add 10,000 cases")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--against", type=Path, help="another checkout to compare with, run by run")
    ap.add_argument("--profile", type=Path, metavar="FILE",
                    help="profile one more rebuild after an edit, at the largest size, in the first run, into FILE (cProfile), "
                         "and print its 25 costliest functions")
    ap.add_argument("--delete-each-run", action="store_true",
                    help="delete each run's folder as soon as it ends, as until session 19: the next run's cold build then "
                         "creates its files just after 100,000 were deleted (see bench/README.md, 'File creation after a "
                         "mass deletion'); by default every run's folder is kept until the last run ends (3.3 GB a run at "
                         "10,000 cases)")
    args = ap.parse_args(argv)
    kept: list[Path] | None = None if args.delete_each_run else []
    # SIGTERM (a `timeout`, say) unwinds like Ctrl-C, so that the runs' folders are deleted.
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        return _main(args, ap, kept)
    finally:
        _delete(kept or [])


def _delete(folders: list[Path]) -> None:
    """Delete the runs' folders, once every run has ended.

    On this project's machines (ext4 without a journal), the kernel does not reuse an inode for a
    minute (five if its table block is not yet written) after it is freed, and each new file's
    allocation scans past the recently freed ones: after a run's folder (about 100,000 files at
    10,000 cases) was deleted, creating a file took 0.74 ms instead of 0.02 ms, and the next
    cold build at 1,000 cases spent 2.7 s more in export and render (measured in session 19).
    Deleting each run's folder as it ended charged that to the next run, which a build on a
    fresh clone or a CI machine never pays."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _main(args: argparse.Namespace, ap: argparse.ArgumentParser, kept: list[Path] | None) -> int:
    import synth

    if args.against and args.profile:
        ap.error("--profile profiles this tree's rebuild: run it without --against")
    if args.against:
        return compare(args.against.resolve(), sorted(set(args.sizes + ([10000] if args.large else []))), args.runs, args.seed, kept)

    sizes = sorted(set(args.sizes + ([10000] if args.large else [])))
    rows = []
    rebuilds = []
    phase_peaks: list[tuple[int, dict[str, float]]] = []
    for n in sizes:
        out = ROOT / "bench" / "out" / f"synth-{n}-seed{args.seed}"
        synth.generate(out, n, args.seed)
        runs = [run_once(out, profile=args.profile if (n == sizes[-1] and i == 0) else None, kept=kept) for i in range(args.runs)]
        memory = run_once(out, kept=kept, sample=True)  # its times are not used (see the module's docstring)
        stages = sorted({k for r in runs for k in r["timings"]})
        med = {k: statistics.median(r["timings"].get(k, 0.0) for r in runs) for k in stages}
        rows.append((n, runs[0]["quads"], med, statistics.median(r["wall"] for r in runs), max(r["peak_mb"] for r in [*runs, memory]),
                     memory["pss_phases"].get("cold build", 0)))
        phase_peaks.append((n, {k: memory["pss_phases"].get(k, 0) for k in ("cold build", "rebuild", "query library")}))
        rebuilds.append((n, "first", statistics.median(r["rebuild"] for r in runs),
                         {k: statistics.median(r["rebuild_timings"].get(k, 0.0) for r in runs) for k in runs[0]["rebuild_timings"]}))
        rebuilds.append((n, "second", statistics.median(r["rebuild2"] for r in runs),
                         {k: statistics.median(r["rebuild2_timings"].get(k, 0.0) for r in runs) for k in runs[0]["rebuild2_timings"]}))
        print(f"  {n:,} cases done", file=sys.stderr, flush=True)
    stages = sorted({k for _, _, med, _, _, _ in rows for k in med})
    print(f"## cold evidence build (empty cache), medians of {args.runs} runs (seconds); peak memory is the memory run's (PSS) or the largest run's\n")
    print("peak PSS: the most the child and its workers held at once during the memory run's cold build (sum of proportional set sizes,")
    print(f"sampled every {SAMPLE_EVERY} s; the timed runs are not sampled); maxrss bound: the child's peak resident size plus its largest")
    print("worker's, over the whole child, in any run")
    print("(shared pages counted twice; it includes the query library, see the last table).\n")
    print("| cases | quads | " + " | ".join(stages) + " | total wall | peak PSS MB | maxrss bound MB |")
    print("| ---: | ---: | " + " | ".join("---:" for _ in stages) + " | ---: | ---: | ---: |")
    for n, quads, med, wall, peak, pss in rows:
        print(f"| {n:,} | {quads:,} | " + " | ".join(f"{med.get(k, 0):.2f}" for k in stages) + f" | {wall:.2f} | {pss:,.0f} | {peak:,.0f} |")
    print("\n## rebuild after editing one case, with the build cache (medians, seconds)\n")
    print("first: the first rebuild after the cold build;")
    print("second: the case edited again and built again, as in a curator's edit-build loop.\n")
    print("| cases | rebuild | wall | stages |")
    print("| ---: | --- | ---: | --- |")
    for n, which, wall, stages_ in rebuilds:
        print(f"| {n:,} | {which} | {wall:.2f} | " + ", ".join(f"{k} {v:.2f}" for k, v in stages_.items()) + " |")
    print(f"\n## peak PSS of each phase of the child (MB, the memory run's, sampled every {SAMPLE_EVERY} s)\n")
    print("| cases | cold build | rebuild after one edit | query library (validate, compile and store again, then the queries) |")
    print("| ---: | ---: | ---: | ---: |")
    for n, peaks in phase_peaks:
        print(f"| {n:,} | {peaks['cold build']:,.0f} | {peaks['rebuild']:,.0f} | {peaks['query library']:,.0f} |")
    if len(rows) >= 2:
        (n1, _, _, w1, _, _), (n2, _, _, w2, _, _) = rows[-2], rows[-1]
        print(f"\ngrowth exponent of total wall time from {n1:,} to {n2:,} cases: {math.log(w2 / w1) / math.log(n2 / n1):.2f} (1.0 = linear)")
    if args.profile:
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(str(args.profile), stream=text).sort_stats("tottime").print_stats(25)
        print(f"\n## a rebuild after one edit at {sizes[-1]:,} cases, under cProfile ({args.profile}): the 25 costliest functions by own time\n")
        print("```\n" + text.getvalue().strip() + "\n```")
    return 0


def compare(other: Path, sizes: list[int], runs: int, seed: int, kept: list[Path] | None = None) -> int:
    """Interleaved A/B: the other tree's run, then this tree's, ``runs`` times per size; medians of
    the cold build and its stages, of both rebuilds and the second one's stages; then one memory
    run of each tree, for the peak PSS."""
    import synth

    print(f"## A/B, interleaved: {other} (A) against {ROOT} (B), medians of {runs} timed runs each (seconds); memory from one more run "
          f"of each, sampled every {SAMPLE_EVERY} s\n")
    print("| cases | measure | A | B | B / A |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for n in sizes:
        out = ROOT / "bench" / "out" / f"synth-{n}-seed{seed}"
        synth.generate(out, n, seed)
        results: dict[str, list[dict]] = {"A": [], "B": []}
        for _ in range(runs):
            results["A"].append(run_once(out, other, kept=kept))
            results["B"].append(run_once(out, ROOT, kept=kept))
        memory = {"A": run_once(out, other, kept=kept, sample=True), "B": run_once(out, ROOT, kept=kept, sample=True)}
        cold = sorted({k for r in results["B"] for k in r["timings"]})
        rows = [("cold build", lambda r: r["wall"])]
        rows += [(f"cold: {k}", lambda r, k=k: r["timings"].get(k, 0.0)) for k in cold]
        rows += [("rebuild after one edit (first)", lambda r: r["rebuild"]), ("rebuild after one edit (second)", lambda r: r["rebuild2"])]
        stages = sorted({k for r in results["B"] for k in r["rebuild2_timings"]})
        rows += [(f"second rebuild: {k}", lambda r, k=k: r["rebuild2_timings"].get(k, 0.0)) for k in stages]
        for name, get in rows:
            a, b = (statistics.median(get(r) for r in results[v]) for v in ("A", "B"))
            print(f"| {n:,} | {name} | {a:.2f} | {b:.2f} | {b / a if a else float('nan'):.2f} |")
        for phase in ("cold build", "rebuild", "query library"):  # as in the main table: the memory run's
            a, b = (memory[v]["pss_phases"].get(phase, 0) for v in ("A", "B"))
            print(f"| {n:,} | peak PSS MB of the {phase} phase (memory run) | {a:,.0f} | {b:,.0f} | {b / a if a else float('nan'):.2f} |")
        print(f"  {n:,} cases done", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
