"""The whole pipeline in order: load -> validate -> compile -> check shapes -> export -> render.

``build`` writes into a temporary folder beside the output and swaps it in only when every stage
has succeeded, so a failed or interrupted build never leaves a half-written site.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyoxigraph as ox

from .cache import BuildCache
from .cases import facts_of
from .compile import Compiled, compile_kb
from .config import Config
from .errors import RenderError, ValidationError
from .export import FORMATS, Finishing, write_exports
from .folders import SITE_MARKER, SITE_MARKER_TEXT, check_out, exchange, left_behind, lock_folder, unlock_folder
from .interrupts import deferred
from .outputs import Outputs, discard_tree, relative_name
from .perf import freeze_heap, frozen_heap, gc_paused, settle_heap
from .schemafiles import write_schemas
from .shapes import ontology_triples, shape_triples, validate_compiled
from .validate import Kb, validate_kb

__all__ = ["BuildReport", "load_and_validate", "compile_checked", "compiled_with_cache", "build", "shapes_turtle", "ontology_turtle"]

log = logging.getLogger("evidence")

_DOWNLOADS = [
    (FORMATS["ttl"][0], "the whole graph, Turtle (gzip)"),
    (FORMATS["nt"][0], "the whole graph, N-Triples (gzip)"),
    (FORMATS["nq"][0], "every named graph, N-Quads (gzip)"),
    (FORMATS["trig"][0], "every named graph (one per kb file), TriG (gzip)"),
    (FORMATS["jsonld"][0], "every named graph, JSON-LD (gzip)"),
    ("context.jsonld", "the JSON-LD context"),
    (FORMATS["graphml"][0], "the evidence network, GraphML (Cytoscape, Gephi)"),
    ("ontology.ttl", "the project vocabulary (ev:), with a label and comment for every term"),
    ("shapes.ttl", "SHACL shapes that the graph conforms to"),
    ("schema/case.schema.json", "JSON Schema of a case file"),
    ("schema/source.schema.json", "JSON Schema of a source file"),
]


@dataclass
class BuildReport:
    out: Path
    cases: int = 0
    patients: int = 0
    quads: int = 0
    reused: int = 0  # output files shared with the previous build (hard links) because their content did not change
    timings: dict[str, float] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)  # every file of the site, relative to ``out``, sorted

    @property
    def files(self) -> list[Path]:
        """Every file of the site (made on request: 60,000 paths at 10,000 cases)."""
        return [self.out / rel for rel in self.written]


def load_and_validate(config: Config, paths: list[Path] | None = None, cache: BuildCache | None = None) -> Kb:
    """Validate; raise ValidationError with every diagnostic if there is any error."""
    kb = validate_kb(config, paths, cache)
    if not kb.ok:
        n = sum(1 for d in kb.diagnostics if d.level == "error")
        raise ValidationError(f"{n} error(s) in the kb; nothing was built", kb.diagnostics)
    return kb


def _turtle(triples: list[ox.Triple], prefixes: dict[str, str]) -> str:
    from .export import _sort_prefix_header

    triples = sorted(triples, key=lambda t: (str(t.subject), str(t.predicate), str(t.object)))
    return _sort_prefix_header(ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=prefixes)).decode("utf-8")


def shapes_turtle(compiled: Compiled) -> str:
    prefixes = {**compiled.ns.prefixes(), "sh": "http://www.w3.org/ns/shacl#", "evs": compiled.ns.shapes}
    return _turtle(shape_triples(compiled.ns), prefixes)


def ontology_turtle(compiled: Compiled) -> str:
    prefixes = {**compiled.ns.prefixes(), "owl": "http://www.w3.org/2002/07/owl#"}
    return _turtle(ontology_triples(compiled.ns), prefixes)


def compile_checked(kb: Kb, timings: dict[str, float] | None = None, cache: BuildCache | None = None, freeze: bool = False) -> Compiled:
    """Compile and validate the result against the SHACL shapes (CompileError on a violation).

    With ``freeze`` (a build, which holds the compiled parts to its end), the parts are moved out
    of the collector's sight (perf.freeze_heap) before it runs again: the first collection after
    compile_kb walked them all (0.3 s of a 10,000-case rebuild)."""
    timings = timings if timings is not None else {}
    t = time.perf_counter()
    with gc_paused():
        compiled = compile_kb(kb, cache)
        if freeze:
            freeze_heap()
    timings["compile"] = time.perf_counter() - t
    t = time.perf_counter()
    validate_compiled(compiled, shapes_turtle(compiled), cache=cache)
    timings["shacl"] = time.perf_counter() - t
    return compiled


def _validated(config: Config, cache: BuildCache) -> Kb:
    """:func:`load_and_validate`, its models then frozen (perf.freeze_heap) before the collector
    runs again: they live until the caller ends, and the first collection after validate_kb
    walked them all (about 1 s of a 10,000-case rebuild). A case the build cache has stays a
    pickle until its model is asked for (evidence.cases): the site model reads its facts
    (evidence.site_facts), and a page rendered again reads the models it shows."""
    with gc_paused():
        kb = load_and_validate(config, cache=cache)
        freeze_heap()
    return kb


def compiled_with_cache(config: Config) -> Compiled:
    """Validate, compile and check the kb, through the build cache of ``config``'s project (see
    :mod:`evidence.cache`; ``EVIDENCE_CACHE=off`` turns it off), as ``evidence export``,
    ``evidence query`` and ``evidence serve`` without a built graph need it: at 10,000 cases the
    three stages took 43.8 s each time without the cache; with it, once they have run, 1.7-2.5 s:
    the cases' models are not read back (see :mod:`evidence.cases`), and the collector is kept
    off the rest as a build keeps it (5.3-5.5 s with the models read back and walked)."""
    cache = BuildCache.for_root(config.root)
    try:
        with frozen_heap():
            return compile_checked(_validated(config, cache), cache=cache, freeze=True)
    finally:
        cache.tidy()  # what it made is kept; the compiled chunks it names stay readable (see evidence.spool)


def build(config: Config, out: Path, templates: Path | None = None, cache: BuildCache | None = None) -> BuildReport:
    """Validate, compile, check, export and render into ``out``, atomically.

    ``cache`` (default: ``.cache/build`` under the project root, see :mod:`evidence.cache`) keeps
    what each stage made from each file, keyed by content, so a rebuild works only on what changed.
    """
    cache = cache if cache is not None else BuildCache.for_root(config.root)
    locks: list[int | None] = []
    try:
        with frozen_heap():
            return _build(config, out, templates, cache, locks)
    finally:
        for fd in locks:
            unlock_folder(fd)
        cache.close()  # what a failed build made is kept (a successful one has pruned already)


def _build(config: Config, out: Path, templates: Path | None, cache: BuildCache, locks: list[int | None]) -> BuildReport:
    from .render import render_site

    out = out.resolve()
    # Checked first: a build replaces its output folder whole (see folders.check_out).
    keep = {"the project folder": config.root, "the kb folder": config.kb_dir, "the build cache": cache.folder,
            "the source texts folder": config.texts_dir()}
    refused = check_out(out, keep, lambda: set(Outputs.load(out, cache).previous))
    if refused:
        raise RenderError(refused)
    report = BuildReport(out=out)
    # A build killed between the two renames of its swap left the site moved aside: put back at
    # once, before anything can fail (a kb that no longer validates left the site missing).
    leftovers = []
    for left, kind in left_behind(out):
        if kind == "old" and not out.exists():
            log.warning("restoring %s from %s, where a build that was killed had moved it", out, left)
            left.rename(out)
        else:
            leftovers.append(left)
    t = time.perf_counter()
    kb = _validated(config, cache)
    report.timings["validate"] = time.perf_counter() - t
    compiled = compile_checked(kb, report.timings, cache, freeze=True)
    report.cases = len(kb.cases)
    report.patients = sum(len(facts_of(kb.cases, cid).patients) for cid in kb.cases)  # no model read back (evidence.cases)
    report.quads = compiled.quad_count()

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RenderError(f"cannot make the folder {out.parent} for the site: {exc.strerror or exc}; check the path and that you may write there") from None
    for left in leftovers:  # a site moved aside is back in place already (see above)
        log.info("removing %s, left by a build that was killed", left)
        discard_tree(left, cache)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    with deferred():  # made and locked whole (a descriptor left open would hold the lock)
        try:
            tmp.mkdir()
        except OSError as exc:
            raise RenderError(f"cannot write the site beside {out} (its new folder {tmp.name}): {exc.strerror or exc}; "
                              "check that you may write in that folder and that the disk has room") from None
        # Held until build() ends, or this process and the workers it forks (see folders.left_behind).
        # Waited for: another build checking whether the folder is left behind holds it a moment.
        locks.append(lock_folder(tmp, wait=True))
    outputs = Outputs.load(out, cache)
    try:
        # The whole-graph files and the GraphML are finished while the site is rendered (see
        # export.Finishing): leaving `writing` waits for them, or stops them on an error.
        with Finishing() as writing:
            # Unchanged files are linked by a process of their own (evidence.linker), waited for
            # once everything else is finished, before the new folder is walked.
            writing.stack.enter_context(outputs.linking(tmp))
            t = time.perf_counter()
            cases_dir = tmp / "cases"
            cases_dir.mkdir()
            graph_files = {compiled.ns.graph("case", cid): cases_dir / cid for cid in kb.cases}
            names = write_exports(compiled, tmp, cache, graph_files, outputs, finish=writing)  # relative to tmp
            files: list[Path] = []
            (tmp / "ontology.ttl").write_text(ontology_turtle(compiled), encoding="utf-8")
            (tmp / "shapes.ttl").write_text(shapes_turtle(compiled), encoding="utf-8")
            outputs.link_or_write(tmp / SITE_MARKER, SITE_MARKER, SITE_MARKER_TEXT)  # what the next build looks for (folders.check_out)
            files += [tmp / "ontology.ttl", tmp / "shapes.ttl", tmp / SITE_MARKER]
            files += write_schemas(tmp / "schema")
            names += [relative_name(f, tmp) for f in files]
            report.timings["export"] = time.perf_counter() - t
            t = time.perf_counter()
            downloads = [{"href": name, "name": name, "description": desc} for name, desc in _DOWNLOADS]
            site_timings: dict[str, float] = {}
            # The models the pages read back (evidence.site_facts.Ref) live until the build ends:
            # out of the collector's sight, as the others are. Walked, they made the collections
            # after the render of a 10,000-case rebuild take 1.7 s. They are frozen once the
            # render's own objects are gone (perf.settle_heap), and the collector stays paused
            # until then: run in between, it walked the render's garbage first. The site model is
            # frozen as soon as it is made, and freed by reference counting (render_site).
            with gc_paused():
                names += render_site(kb, compiled, templates or (config.root / "site_templates"), tmp, downloads, timings=site_timings,
                                     outputs=outputs, existing=list(names), freeze=True)
                settle_heap()
            report.timings["search index"] = site_timings.get("search index", 0.0)
            report.timings["render"] = time.perf_counter() - t - report.timings["search index"]
            t = time.perf_counter()
        report.timings["export"] += time.perf_counter() - t  # the copies that were still going on
        # Files with the same content as the previous build's become links to them, so that
        # deleting the old tree frees only what changed: on a disk that discards freed blocks (as
        # this project's machines do), deleting a 1,000-case site took 21 s.
        t = time.perf_counter()
        report.reused = outputs.finish(tmp)
    except BaseException:
        # Moved into the cache's trash and deleted by a process of its own (discard_tree): an
        # instant rename, held whole, so a second Ctrl-C cannot leave it half-deleted (an rmtree
        # here, cut short, left the unfinished folder beside the site).
        with deferred():
            moved = discard_tree(tmp, cache, here=False)
        if not moved:  # no cache folder to move it into: deleted here, where a Ctrl-C may stop it (the next build ends the job)
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    # The swap and its record, whole: a Ctrl-C or SIGTERM waits for them (and is raised after, the
    # new site in place and recorded, the old one on its way out).
    with deferred():
        locks.append(lock_folder(out) if out.exists() else None)  # the previous site, while it is moved aside
        try:
            # One atomic exchange where the system has it: the previous site is then at the new
            # one's temporary name (still locked, and removed as a killed build's unfinished site
            # if this process ends before it does); else two renames.
            if out.exists() and exchange(tmp, out):
                old = tmp
            else:
                if out.exists():
                    out.rename(old)
                tmp.rename(out)
        except BaseException:  # the second rename failed: the previous site goes back
            if old.exists() and not out.exists():
                old.rename(out)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        outputs.save()
        report.timings["swap"] = time.perf_counter() - t
        if old.exists():
            discard_tree(old, cache)  # deleted by a process of its own: the build does not wait for it
    cache.prune()
    report.written = sorted(names)
    assert set(FORMATS) <= {"ttl", "nt", "nq", "trig", "jsonld", "graphml"}
    return report
