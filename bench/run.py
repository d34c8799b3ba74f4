"""Benchmark of the build stages on the founding kb and on synthetic kbs.

    cd /work/main
    .venv/bin/python bench/run.py                      # founding kb + 1,000 synthetic cases, 3 runs
    .venv/bin/python bench/run.py --large              # ... + 10,000 synthetic cases
    .venv/bin/python bench/run.py --runs 5 --seed 2    # more runs, another synthetic kb
    .venv/bin/python bench/run.py --profile            # + cProfile of validate and compile (first synthetic kb)
    .venv/bin/python bench/run.py --skip dataset       # leave out a step (yaml, validate, compile, turtle, export, dataset)
    .venv/bin/python bench/run.py --no-gc              # time every step with the garbage collector paused

Synthetic kbs are written by ``bench/synth.py`` to ``bench/out/synth-<cases>-seed<seed>/`` (git
ignores ``bench/out/``) and reused while the generator, the vocabulary and the arguments are
unchanged. Each step is timed ``--runs`` times; the table shows the median in seconds and, in
brackets, the time per case relative to the founding kb (see bench/README.md).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import os
import pstats
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import pyoxigraph as ox  # noqa: E402

import synth  # noqa: E402
from evidence.config import SOURCE_TEXTS_ENV, load_config  # noqa: E402
from evidence.load import read_kb  # noqa: E402
from evidence.validate import validate_kb  # noqa: E402

try:
    from evidence.compile import compile_kb
except ImportError as exc:  # the compile stage is young; say so rather than guess
    compile_kb = None  # type: ignore[assignment]
    COMPILE_MISSING = f"evidence.compile.compile_kb: {exc}"
else:
    COMPILE_MISSING = ""

STEPS = ["yaml", "validate", "compile", "turtle", "export", "dataset"]
HEADINGS = {
    "yaml": "YAML read s",
    "validate": "YAML + validate s",
    "compile": "compile s",
    "turtle": "Turtle (pyoxigraph) s",
    "export": "export.serialize ttl s",
    "dataset": "rdflib Dataset s",
}


@dataclass
class Result:
    name: str
    root: Path
    cases: int = 0
    patients: int = 0
    quads: int | None = None
    unique_quads: int | None = None
    turtle_bytes: int | None = None
    yaml_bytes: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # step -> why it has no time
    notes: list[str] = field(default_factory=list)
    max_rss_mb: float = 0.0

    def median(self, step: str) -> float | None:
        t = self.times.get(step)
        return statistics.median(t) if t else None


PAUSE_GC = False  # set by --no-gc: time every step with the garbage collector paused


def _timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    """Run ``fn`` ``runs`` times; the times, and the last value (earlier ones are freed first)."""
    times: list[float] = []
    value: Any = None
    for _ in range(runs):
        value = None
        gc.collect()
        if PAUSE_GC:
            gc.disable()
        try:
            t0 = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return times, value


def _max_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024


def _turtle(compiled: Any) -> Callable[[], bytes]:
    serialize = getattr(ox, "serialize", None)
    fmt = getattr(getattr(ox, "RdfFormat", None), "TURTLE", None)
    if serialize is None or fmt is None:
        raise AttributeError("pyoxigraph.serialize or pyoxigraph.RdfFormat.TURTLE is missing in pyoxigraph " + getattr(ox, "__version__", "?"))
    prefixes = compiled.ns.prefixes() if hasattr(compiled, "ns") and hasattr(compiled.ns, "prefixes") else None

    def run() -> bytes:
        # Turtle holds triples: the graph name of each quad is dropped here, as the brief asks.
        return serialize([q.triple for q in compiled.quads], format=fmt, prefixes=prefixes)

    return run


def bench_kb(name: str, root: Path, runs: int, skip: set[str]) -> Result:
    """Time every step on the kb at ``root``."""
    res = Result(name=name, root=root)
    config = load_config(root)
    res.yaml_bytes = sum(p.stat().st_size for p in config.kb_dir.rglob("*.yaml"))
    if "yaml" not in skip:
        res.times["yaml"], _ = _timed(lambda: read_kb(config.kb_dir, config.root), runs)
    if "validate" in skip:
        res.notes.append("validate skipped: it is run once anyway, to have a kb to compile")
        times, kb = _timed(lambda: validate_kb(config), 1)
    else:
        times, kb = _timed(lambda: validate_kb(config), runs)
        res.times["validate"] = times
    res.cases = len(kb.cases)
    res.patients = sum(len(c.patients) for c in kb.cases.values())
    errors = [d for d in kb.diagnostics if d.level == "error"]
    warnings = [d for d in kb.diagnostics if d.level != "error"]
    if warnings:
        res.notes.append(f"{len(warnings)} warning(s), first: {warnings[0].path}:{warnings[0].line}: {warnings[0].message}")
    if errors:
        res.notes.append(f"{len(errors)} error(s), first: {errors[0].path}:{errors[0].line}: {errors[0].message}")
        for step in ("compile", "turtle", "dataset"):
            res.problems[step] = "kb has validation errors"
        res.max_rss_mb = _max_rss_mb()
        return res
    compiled = None
    if compile_kb is None:
        for step in ("compile", "turtle", "dataset"):
            res.problems[step] = "missing: " + COMPILE_MISSING
    else:
        try:
            times, compiled = _timed(lambda: compile_kb(kb), 1 if "compile" in skip else runs)
            if "compile" not in skip:
                res.times["compile"] = times
            res.quads = len(compiled.quads)
            res.unique_quads = len(set(compiled.quads))
        except Exception as exc:  # noqa: BLE001 - report any failure of the stage, keep going
            res.problems["compile"] = f"{type(exc).__name__}: {exc}"
            res.notes.append(traceback.format_exc(limit=3))
    if compiled is not None and "turtle" not in skip:
        try:
            fn = _turtle(compiled)
            times, out = _timed(fn, runs)
            res.times["turtle"] = times
            res.turtle_bytes = len(out)
            del out
        except Exception as exc:  # noqa: BLE001
            res.problems["turtle"] = f"{type(exc).__name__}: {exc}"
    if compiled is not None and "export" not in skip:
        try:
            from evidence.export import serialize as export_serialize
        except ImportError as exc:
            res.problems["export"] = f"missing: evidence.export.serialize ({exc})"
        else:
            try:
                times, _ = _timed(lambda: export_serialize(compiled, "ttl"), runs)
                res.times["export"] = times
            except Exception as exc:  # noqa: BLE001
                res.problems["export"] = f"{type(exc).__name__}: {exc}"
    if compiled is not None and "dataset" not in skip:
        if not hasattr(compiled, "dataset"):
            res.problems["dataset"] = "missing: Compiled.dataset()"
        else:
            try:
                times, _ = _timed(lambda: compiled.dataset(), runs)
                res.times["dataset"] = times
            except Exception as exc:  # noqa: BLE001
                res.problems["dataset"] = f"{type(exc).__name__}: {exc}"
    for step in skip:
        res.problems.setdefault(step, "skipped")
    compiled = kb = None  # free them before the next kb is read (the lambdas above are done)
    gc.collect()
    res.max_rss_mb = _max_rss_mb()
    return res


# ----------------------------------------------------------------------------- synthetic kbs

def _stamp(cases: int, seed: int) -> str:
    """What a synthetic kb depends on: the generator, the schema, the vocabulary, the arguments."""
    h = hashlib.sha256(f"{cases}:{seed}".encode())
    for p in [ROOT / "bench" / "synth.py", ROOT / "src" / "evidence" / "schema.py", *sorted((ROOT / "kb" / "vocabulary").glob("*.yaml")),
              *sorted((ROOT / "kb" / "sources").glob("*.yaml"))]:
        h.update(p.read_bytes())
    return h.hexdigest()


def synthetic(workdir: Path, cases: int, seed: int, fresh: bool) -> tuple[Path, str]:
    """The folder of a synthetic kb, generated unless an identical one is there; and what was done."""
    out = workdir / f"synth-{cases}-seed{seed}"
    stamp_file = out / ".bench-stamp"
    stamp = _stamp(cases, seed)
    if not fresh and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return out, "reused"
    t0 = time.perf_counter()
    synth.generate(out, cases, seed)
    stamp_file.write_text(stamp + "\n")
    return out, f"generated in {time.perf_counter() - t0:.1f} s"


# ----------------------------------------------------------------------------- report

def _fmt_s(t: float) -> str:
    if t >= 100:
        return f"{t:.0f}"
    if t >= 10:
        return f"{t:.1f}"
    if t >= 0.1:
        return f"{t:.2f}"
    return f"{t:.4f}"


def table(results: list[Result], base: Result) -> str:
    """The Markdown table: medians in seconds, (time per case relative to the founding kb)."""
    cols = ["kb", "cases", "patients", "quads", *[HEADINGS[s] for s in STEPS]]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(cols) - 1)) + " |"]
    for r in results:
        cells = [r.name, f"{r.cases:,}", f"{r.patients:,}", f"{r.quads:,}" if r.quads is not None else "n/a"]
        for step in STEPS:
            m, b = r.median(step), base.median(step)
            if m is None:
                cells.append("n/a")
                continue
            ratio = (m / r.cases) / (b / base.cases) if b and r.cases and base.cases else None
            cells.append(f"{_fmt_s(m)} (×{ratio:.2f})" if ratio is not None else _fmt_s(m))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spread(results: list[Result]) -> str:
    cols = ["kb", *[HEADINGS[s].removesuffix(" s") + " min–max s" for s in STEPS]]
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join(["---"] + ["---:"] * (len(cols) - 1)) + " |"]
    for r in results:
        cells = [r.name]
        for step in STEPS:
            t = r.times.get(step)
            cells.append(f"{_fmt_s(min(t))}–{_fmt_s(max(t))}" if t else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _top(prof: cProfile.Profile, title: str, top: int) -> str:
    out = []
    for sort in ("cumulative", "tottime"):
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort)
        st.print_stats(top)
        text = buf.getvalue()
        body = text[text.find("   ncalls"):] if "   ncalls" in text else text
        out.append(f"\n### {title}, top {top} by {sort} ({st.total_tt:.2f} s under the profiler)\n\n```\n{body.rstrip()}\n```\n")
    return "".join(out)


def profile(root: Path, top: int) -> str:
    """cProfile of validate and of compile on the kb at ``root``: top functions by cumulative and own time."""
    config = load_config(root)
    prof = cProfile.Profile()
    prof.enable()
    kb = validate_kb(config)
    prof.disable()
    text = _top(prof, f"validate_kb ({root.name})", top)
    if compile_kb is None:
        return text + f"\n### compile_kb: missing ({COMPILE_MISSING})\n"
    if not kb.ok:
        return text + "\n### compile_kb: not profiled, the kb has validation errors\n"
    prof = cProfile.Profile()
    prof.enable()
    compile_kb(kb)
    prof.disable()
    return text + _top(prof, f"compile_kb ({root.name})", top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="timed runs per step; the median is reported (default 3, at least 3 advised)")
    ap.add_argument("--cases", type=int, default=1000, help="cases in the synthetic kb (default 1000)")
    ap.add_argument("--large", action="store_true", help="also benchmark a 10,000-case synthetic kb")
    ap.add_argument("--seed", type=int, default=1, help="seed of the synthetic kbs (default 1)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "bench" / "out", help="where synthetic kbs are kept (default bench/out)")
    ap.add_argument("--fresh", action="store_true", help="regenerate the synthetic kbs even if identical ones are there")
    ap.add_argument("--skip", action="append", default=[], choices=STEPS, help="leave a step out (repeatable)")
    ap.add_argument("--no-gc", action="store_true", help="pause the garbage collector while a step is timed (shows what GC costs)")
    ap.add_argument("--profile", action="store_true", help="print cProfile top functions of validate and compile on the first synthetic kb")
    ap.add_argument("--top", type=int, default=10, help="functions to show per profile (default 10)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    skip = set(args.skip)
    global PAUSE_GC
    PAUSE_GC = args.no_gc

    if os.environ.get(SOURCE_TEXTS_ENV):
        print(f"note: {SOURCE_TEXTS_ENV} is set; every kb, synthetic ones too, reads source texts from {os.environ[SOURCE_TEXTS_ENV]}", file=sys.stderr)
    sizes = [args.cases] + ([10_000] if args.large and args.cases != 10_000 else [])
    kbs: list[tuple[str, Path]] = [("founding", ROOT)]
    prep: list[str] = []
    for n in sizes:
        path, how = synthetic(args.workdir, n, args.seed, args.fresh)
        kbs.append((f"synthetic {n:,}", path))
        prep.append(f"- synthetic {n:,}: {path} ({how})")

    results = []
    for name, root in kbs:
        print(f"timing {name} ({root}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        results.append(bench_kb(name, root, args.runs, skip))
        print(f"  done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    base = results[0]
    gc_note = ", garbage collector paused" if args.no_gc else ""
    print(f"## evidence build benchmark ({args.runs} runs per step{gc_note}, medians in seconds; (×r) = time per case / founding kb's time per case)\n")
    print(table(results, base))
    print("\nSpread over the runs (the machine drifts; compare ratios from one run):\n")
    print(spread(results))
    print("\nSizes and notes:\n")
    print(f"- python {sys.version.split()[0]}, pyoxigraph {getattr(ox, '__version__', '?')}, libyaml {'yes' if getattr(__import__('yaml'), '__with_libyaml__', False) else 'no'}, {os.cpu_count()} cpus")
    print("\n".join(prep))
    for r in results:
        extra = []
        if r.quads is not None:
            extra.append(f"{r.quads / max(r.cases, 1):,.0f} quads/case, {r.unique_quads:,} distinct quads")
        if r.turtle_bytes is not None:
            extra.append(f"Turtle {r.turtle_bytes / 1e6:.1f} MB")
        print(f"- {r.name}: YAML {r.yaml_bytes / 1e6:.1f} MB; {'; '.join(extra) or 'not compiled'}; peak RSS so far {r.max_rss_mb:,.0f} MB")
        for step, why in sorted(r.problems.items()):
            print(f"  - {HEADINGS[step]}: {why}")
        for note in r.notes:
            print("  - " + note.strip().replace("\n", "\n    "))
    if args.profile and len(kbs) > 1:
        print("\n## Profiles\n")
        print(profile(kbs[1][1], args.top))
    return 1 if any(why != "skipped" for r in results for why in r.problems.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
