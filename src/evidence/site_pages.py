"""Every page of the site, in order: what each template is given, and where it is written."""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import re
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from jinja2 import Environment, TemplateSyntaxError

from . import schema as S
from .cache import code_digest, digest
from .errors import QueryError, RenderError, os_error_text
from .export import DUMPS, FORMATS
from .graph import evidence_network, forget_evidence_graph
from .library_run import LibraryAnswers
from .perf import freeze_heap, parallel_imap, trim_heap
from .site_docs import fixed_lists, format_docs
from .site_facts import REF_TYPES, CaseRef
from .site_format import NR, citation_text, human_bytes, json_script, short_citation
from .site_graph import graph_view, shows_cases
from .site_jsonld import case_jsonld, dcat_void_jsonld, home_jsonld
from .site_memo import UNIT_KINDS, Page, PageMemo, Unit, check_enabled, names_index, units_named
from .site_model import ENTITY_KINDS, EVIDENCE_COLUMNS, RESPONSE_ORDER, Exposure, SiteModel, search_text
from .site_related import all_related, related_view
from .site_search import WORDS_BUNDLE, SearchIndex, Shard, shards, titles_script
from .site_timeline import timeline

__all__ = ["SitePages", "NAV", "MEDIA_TYPES"]

log = logging.getLogger("evidence")

NAV = [
    ("index.html", "Home", "home"),
    ("cases.html", "Cases", "cases"),
    ("evidence.html", "Evidence table", "evidence"),
    ("drugs.html", "Drugs", "drugs"),
    ("genes.html", "Genes", "genes"),
    ("diseases.html", "Conditions", "diseases"),
    ("graph.html", "Network", "graph"),
    ("queries.html", "Queries", "queries"),
    ("downloads.html", "Downloads", "downloads"),
    ("docs/format.html", "Docs", "docs"),
    ("search.html", "Search", "search"),
]

MEDIA_TYPES = {
    ".ttl": "text/turtle", ".nt": "application/n-triples", ".nq": "application/n-quads", ".trig": "application/trig",
    ".jsonld": "application/ld+json", ".graphml": "application/graphml+xml", ".json": "application/json",
    ".schema.json": "application/schema+json",
    ".csv": "text/csv", ".rq": "application/sparql-query", ".yaml": "application/yaml", ".txt": "text/plain",
}
RDF_FILES = {FORMATS[fmt][0] for fmt in DUMPS}
_SHORT_DOWNLOADS = (FORMATS["ttl"][0], FORMATS["jsonld"][0], "evidence.csv", FORMATS["graphml"][0], "shapes.ttl", "ontology.ttl")


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _csv_cell(value: str) -> str:
    """Cells that a spreadsheet would run as a formula get a leading apostrophe."""
    if value[:1] in ("=", "+", "@", "\t", "\r") or (value[:1] == "-" and not _NUMBER.match(value)):
        return "'" + value
    return value


PAGE_ROWS = 250  # rows of a long list per page: the rest go on numbered pages (see SitePages.paged)
EVIDENCE_ROWS = 1000  # rows of the evidence table per page (see SitePages.evidence)
LIST_ROWS = 500  # rows of a list of cases, drugs, sources ... per page (see SitePages.lists)


_ROW_HASH = 16  # bytes of a row's hash, in the keys of the evidence table's pages


@dataclasses.dataclass(frozen=True)
class _CaseRows:
    """What the evidence table needs of one case besides its rows (see SitePages.evidence)."""

    cid: str
    n_patient: int
    n_cohort: int
    patient_hashes: bytes  # _ROW_HASH bytes per row
    cohort_hashes: bytes
    filters: tuple[tuple[str, tuple[str, ...]], ...]  # (filter, its values in the case's rows)
    patient_csv: str
    cohort_csv: str


@dataclasses.dataclass
class Paged:
    """One page of a long list: its rows, where they start, and every page of the list."""

    items: list
    total: int
    start: int  # the index of the first row in the whole list
    page: int  # 1-based
    urls: list[str]  # root-relative: the list on its entity page (with its anchor), then the numbered pages


class SitePages:
    # Pages indexed as they are, written after the search page: the query library waits for the
    # library's answers (a worker, see library_run), and is written as soon as they are in.
    LATE_COPIES = ("queries.html",)

    def __init__(self, kb, compiled, env: Environment, templates: Path, writer, downloads: list[dict], timings: dict[str, float],
                 library: LibraryAnswers, search: bool = False):
        self.kb = kb
        self.library_answers = library
        self.compiled = compiled
        self.env = env
        self.templates = templates
        self.writer = writer
        self.out: Path = writer.out
        self.base_downloads = downloads
        self.timings = timings
        # The related cases come from the network alone, so they are ranked first, before the
        # site model, the render's largest allocation, is made.
        self.net = evidence_network(compiled)
        self.rank_related()
        t = time.perf_counter()
        parts = ((cid, compiled.parts.get(compiled.ns.graph("case", cid))) for cid in kb.cases)
        self.m = SiteModel(kb, compiled.ns, compiled.term_iris, claim_counts={cid: dict(p.claims) for cid, p in parts if p is not None})
        self.timings["site model"] = time.perf_counter() - t
        cov = self.m.coverage()
        what = ", ".join(f"{c}s" for c in cov["classes"]) if cov["classes"] else ", ".join(self.m.label("drugs", d) for d in cov["drugs"])
        where = ", ".join(self.m.label("diseases", k) for k in cov["conditions"])
        self.site_name = "evidence"
        self.description = f"Curated evidence from published case reports: {what} in {where}." if cov["drugs"] else "Curated evidence from published case reports."
        from .render import safe_href
        from .site_html import Ui

        env.globals.update(
            m=self.m, ui=Ui(self.m, safe_href), site_name=self.site_name, site_description=self.description, nav=NAV, base_iri=kb.config.base_iri,
            n_files=len(kb.files), repository=kb.config.repository or "", levels=self.m.levels,
        )
        self._templates: dict[str, Any] = {}
        self._deferred: list[tuple[str, str, dict[str, Any], str | None]] | None = None
        # What every page shows besides its own data: a page's cache key starts with it.
        settings = [f"{f.name}={getattr(kb.config, f.name)}" for f in dataclasses.fields(kb.config) if f.name != "root"]
        self.pages_key = digest("pages", code_digest(p for p in sorted(templates.rglob("*")) if p.is_file()), self.site_name,
                                self.description, str(len(kb.files)), *settings, kb.vocab_digest, json.dumps(self.m.levels, sort_keys=True))
        self._search_pages: dict[str, tuple[str, str]] = {}  # path -> (kind, key) of a page the search index knows by key
        self._lookup_time = 0.0  # spent looking up (or working out) those pages' words: the render's, not Pagefind's
        self.search_copies: dict[str, str] = {}  # pages indexed as they are
        self.search_shards: list[Shard] = []  # the bundles of the search index (made by search())
        self.make_index = search  # start the search index in search() (render_site waits for it, or stops it)
        self.index: SearchIndex | None = None  # the search index in the making (started by search())
        self.late_copies: set[str] = set()  # pages of LATE_COPIES the search index still waits for
        self._shared: str | None = None  # see _shared_key
        self._made_rows: dict[str, tuple[list, list]] = {}  # evidence-table rows made by this build (see _case_summary)
        self._pages = 0  # pages handed to page() so far
        self._recording: list[Page] | None = None  # the pages of the unit being made (see _record)
        self._skip: set[str] | frozenset[str] = frozenset()
        self._dry = False
        self._memo: PageMemo | None | bool = False  # see _page_memo (False: not read yet)
        self.frozen = False  # render_site's freeze: within perf.frozen_heap, what lives on may be frozen (see run_deferred)

    # ------------------------------------------------------------------------------ plumbing
    def page(self, rel: str, template: str, origin: str, cache_key: str | None = None, **ctx: Any) -> None:
        """Render a page (or defer it, see :meth:`run_deferred`). ``cache_key`` (for any page but
        one of LATE_COPIES) is a hash of everything the page shows: when the previous build
        rendered it from the same key, its file is linked instead (see :mod:`evidence.outputs`),
        and a page indexed as it is goes to the search index as that file has it."""
        if self._recording is not None:  # a unit's pages (see entities)
            self._recording.append((rel, template, origin, cache_key))
            if self._dry or rel in self._skip:
                return
        ctx.setdefault("root", "../" * rel.count("/"))
        ctx.setdefault("indexed", False)
        self._pages += 1
        if self.index is not None and self._pages % POLL_EVERY == 0:  # within a long step too (see POLL_EVERY)
            self.index.poll()
        if self._deferred is not None:  # rendered later, by run_deferred, maybe in parallel
            path = self.writer.claim(rel, origin)
            if cache_key is not None and self.writer.outputs.link(path, rel, cache_key, later=True):
                self.writer.files.append(rel)
                return
            self._deferred.append((rel, template, ctx, cache_key))
            return
        # A page indexed as it is (not a deferred one: its words come from the model, see search())
        # must be known when its bundle of the index is made.
        if ctx["indexed"] and self.index is not None and rel not in self.late_copies:
            raise RenderError(f"{rel} is to be indexed for search, but is written after the search page: write it before "
                              "(SitePages.write_all), or name it in LATE_COPIES")
        if cache_key is not None and rel not in self.late_copies:  # linked from the previous build, or written under its key
            path = self.writer.claim(rel, origin)
            if self.writer.outputs.link(path, rel, cache_key, later=True):
                if ctx["indexed"]:  # the search index reads the page: the previous build's, checked by link()
                    self.search_copies[rel] = (self.writer.outputs.out / rel).read_text(encoding="utf-8")
            else:
                html = self.render(rel, template, ctx)
                if ctx["indexed"]:
                    self.search_copies[rel] = html
                self.writer.emit(rel, html.encode("utf-8"), cache_key, try_link=False)
            self.writer.files.append(rel)
            return
        html = self.render(rel, template, ctx)
        if ctx["indexed"]:
            self.search_copies[rel] = html
            if rel in self.late_copies:
                self._late_copy(rel, html)
        self.writer.text(rel, html, origin)

    def render(self, rel: str, template: str, ctx: dict[str, Any]) -> str:
        try:
            tpl = self._templates.get(template)
            if tpl is None:
                tpl = self._templates[template] = self.env.get_template(template)
            lazy = ctx.get("lazy")
            if lazy is not None:  # the rest of the context, computed where the page is rendered
                # (not handed to the template: a rendered context is in cycles of Jinja2's own,
                # and through this bound method they held the render, and so the whole kb)
                ctx = {**{k: v for k, v in ctx.items() if k != "lazy"}, **lazy()}
            return tpl.render(**ctx)
        except RenderError:
            raise
        except TemplateSyntaxError as exc:  # an error in a template's text (an unknown filter is one too): where it is
            where = Path(exc.filename) if exc.filename else self.templates / template
            raise RenderError(f"{where}:{exc.lineno}: {exc.message} (while rendering {rel}); fix the template") from None
        except Exception as exc:  # a template bug: say which page and template
            raise RenderError(f"cannot render {rel} from {template}: {type(exc).__name__}: {exc}") from exc

    def run_deferred(self) -> None:
        """Render the deferred pages: in forked worker processes when there are many of them
        (each page depends on nothing but the model, so the output is the same)."""
        jobs, self._deferred = self._deferred or [], None
        workers = min(WORKERS, len(jobs) // PAGES_PER_WORKER)  # below 2: one by one, here
        # Small tasks, taken one at a time, so that each worker is soon replaced by a fresh fork
        # (perf.RENEW_AFTER): a worker's memory grows with the pages it renders. Taken four at a
        # time (imap's default here), each worker rendered a quarter of a 10,000-case site.
        chunks = _guided(len(jobs), max(50, len(jobs) // (max(workers, 1) * 32)), max(workers, 1))
        if workers > 1 and len(jobs) >= TRIM_FROM:
            # Pages of most cases (a cold build, a template or a setting changed). What the workers
            # can read for themselves is not held here, where each worker would copy it as it
            # touched it. The models of cached cases are read back where their pages are rendered:
            # each page reads the models of the cases it shows (a case page its own; the lists show
            # facts, evidence.site_facts), about once each (10,303 reads of 10,000 models in a full
            # render); read back here first, they raised a 10,000-case full render's peak from
            # 1,412-1,422 MB to 1,730-1,753 MB. The evidence table's rows made by this build (a
            # cold build: every case's) are read from the build cache, where _case_rows put them
            # (made again without a cache).
            self._made_rows = {}
            trim_heap()
            if self.frozen:
                # What this build made since the site model was frozen (the case pages' related
                # cases and keys, the page memo, the deferred pages' contexts) out of the collector's
                # sight too: ad hoc, at 10,000 cases, a cold build's peak fell from 1,905-1,924 MB
                # (three runs) to about 1,867 MB with it.
                freeze_heap()
        if workers > 1 and self.index is not None:  # no Pagefind beside the workers (their memory): the bundle made ahead is finished first
            self.index.finish_ahead()
        for error in parallel_imap(_render_chunk, chunks, workers=max(workers, 1), minimum=1, shared=(self, jobs), chunksize=1):
            if error:
                raise RenderError(error)
        for rel, _t, _c, key in jobs:
            self.writer.files.append(rel)
            if key is not None:
                self.writer.outputs.keys[rel] = key

    def write_all(self) -> None:
        # The search page comes early: what it indexes is known from the model and the pages
        # indexed as they are (docs, contributors; the query library, which waits for the
        # library's answers, follows in LATE_COPIES), so Pagefind can run while the other pages
        # render: the bundles an edit remakes at once, many more once the render workers are done.
        # The network page comes first: the network is dropped after it (300 MB at 10,000 cases).
        steps = [
            ("assets", self.assets), ("graph", self.network), ("docs", self.docs), ("contributors", self.contributors),
            ("search page", self.search), ("cases", self.cases), ("entities", self.entities), ("evidence table", self.evidence),
            ("lists", self.lists), ("queries", self.queries), ("downloads", self.downloads), ("home", self.home),
        ]
        # The query library's page is written as soon as its answers are in (at once for a kb
        # without queries): the words bundle of the search index waits for its bundle, and at
        # 10,000 cases, written in its place after the lists, it kept a rebuild waiting 2.4 s
        # for Pagefind after the last page.
        queries_done = False
        for name, step in steps:
            if name == "queries" and queries_done:
                continue
            t = time.perf_counter()
            if name == "cases":
                self._deferred = []
            step()
            if name == "lists":
                self.run_deferred()
                if self.index is not None:  # the render workers are done: the other bundles, if held
                    self.index.start()
            self.timings[f"site {name}"] = time.perf_counter() - t
            queries_done = queries_done or name == "queries"
            if not queries_done and self.late_copies and self.library_answers.ready():
                t = time.perf_counter()
                self._early(self.queries)
                queries_done = True
                self.timings["site queries"] = time.perf_counter() - t
            if self.index is not None:  # the bundles made by now are recorded; the words bundle may start
                self.index.poll()
        if self.late_copies:  # a late page was not written: its bundle would be missing from the index
            raise RenderError(f"the search index waits for {', '.join(sorted(self.late_copies))}, which no step wrote (SitePages.LATE_COPIES)")

    def _early(self, step: Callable[[], None]) -> None:
        """Run ``step`` now, its pages rendered here even between the steps whose pages are
        deferred (:meth:`run_deferred`): a page indexed as it is must be written to be indexed."""
        deferred, self._deferred = self._deferred, None
        try:
            step()
        finally:
            self._deferred = deferred

    # ------------------------------------------------------------------------------ assets
    def assets(self) -> None:
        static = self.templates / "static"
        for p in sorted(static.rglob("*")) if static.is_dir() else []:
            if p.is_file():
                self.writer.data(f"static/{p.relative_to(static).as_posix()}", p.read_bytes(), "the site's own assets")
        lic = self.templates / "licences"
        names = []
        for p in sorted(lic.glob("*.txt")) if lic.is_dir() else []:
            self.writer.data(f"licences/{p.name}", p.read_bytes(), "licences")
            names.append(p.name)
        self.page("licences/index.html", "licences.html", "licences", title="Licences", page_kind="licences", names=names)
        # The vocabulary files, as curated, and as one JSON document.
        vocab_dir = self.kb.config.kb_dir / "vocabulary"
        for p in sorted(vocab_dir.glob("*.yaml")):
            self.writer.data(f"vocabulary/{p.name}", p.read_bytes(), "vocabulary downloads")
        vocab = {kind: {k: t.model_dump(mode="json", exclude_none=True) for k, t in sorted(terms.items())} for kind, terms in sorted(self.kb.vocab.items())}
        self.writer.text("vocabulary.json", json.dumps(vocab, indent=1, sort_keys=True, ensure_ascii=False) + "\n", "vocabulary downloads")

    # ------------------------------------------------------------------------------ network
    def rank_related(self) -> None:
        """Rank every case's related cases on the network. The previous build's answer is kept,
        so that only the lists an edit can change are ranked again (exact:
        site_related.related_scores); one entry per code version, replaced each build."""
        t = time.perf_counter()
        cache, state_key = self.writer.outputs.cache, digest("related", code_digest(), str(RELATED_LIMIT))
        previous = cache.get("related", state_key) if cache is not None else None
        valid = isinstance(previous, tuple) and len(previous) == 3 and all(isinstance(x, dict) for x in previous[:2]) and isinstance(previous[2], str)
        self.related, state = all_related(self.net, RELATED_LIMIT, previous=previous[:2] if valid else None)
        # The previous scores and the tag of the build that made them; this build's tag, which the
        # memo of the pages notes beside the case pages' keys made with these scores (_memo_case_key).
        self._related_before = (previous[1] if valid else {}, previous[2] if valid else "", secrets.token_hex(8))
        if cache is not None:
            cache.put("related", state_key, (*state, self._related_before[2]))
        self.timings["site related cases"] = time.perf_counter() - t

    def network(self) -> None:
        m = self.m
        self.case_titles = {m.ns.case(cid): m.facts[cid].title for cid in m.case_ids}
        self.page("graph.html", "graph.html", "the network view", cache_key=self._graph_key(), title="Evidence network", page_kind="graph",
                  lazy=self._graph_context)
        # Nothing after this page reads the network: at 10,000 cases it was 300 MB that every
        # render worker would fork with.
        forget_evidence_graph(self.compiled)
        del self.net

    def _graph_context(self) -> dict[str, Any]:
        m = self.m
        labels: dict[str, tuple[str, str]] = {}
        for iri, (kind, key) in m.iri_entity.items():
            if kind == "cases":
                labels[iri] = (key, m.facts[key].title)
            elif kind == "sources":
                labels[iri] = (short_citation(m.kb.sources[key]), citation_text(m.kb.sources[key]))
            else:
                labels[iri] = (m.label(kind, key), m.label(kind, key))
        view = graph_view(self.net, m.iri_url, labels)
        return {"view": view, "paths": view.paths(), "adjacency": view.adjacency(), "kinds": sorted({n.kind for n in view.nodes})}

    def _graph_key(self) -> str | None:
        """The network view's key when it shows the entities only (more than MAX_CASES cases):
        every file's network fragment without its own nodes' labels (Fragment.shape), and the
        entities' labels and pages; what every page shows is in ``pages_key`` (the vocabulary,
        and so the graphs no file owns, among it). None with the cases in the view (their titles
        are in it) or a part without a fragment: the view is made again. At 10,000 cases making
        it took about 0.5 s of every rebuild, and a case's title, the most common edit, does not
        change it."""
        m = self.m
        parts = self.compiled.parts
        if shows_cases(self.net) or any(p.network is None or not p.network.shape for p in parts.values()):
            return None
        entities = sorted((iri, kind, key, m.label(kind, key), m.iri_url.get(iri, "")) for iri, (kind, key) in m.iri_entity.items()
                          if kind not in ("cases", "sources"))
        return "page:" + digest(self.pages_key, "graph", repr(entities), *(p.network.shape for _g, p in sorted(parts.items())))

    # ------------------------------------------------------------------------------ cases
    def cases(self) -> None:
        """The case pages, each from its key: the memo's (see :meth:`_memo_case_key`) when no
        change touches the page, else worked out (:meth:`_case_key`)."""
        m = self.m
        check = check_enabled()
        keys: dict[str, str] = {}
        worked = 0
        for cid in m.case_ids:
            title = m.facts[cid].title
            key = self._memo_case_key(cid)
            if key is not None and check and key != self._case_key(cid):
                raise RenderError(f"the memo of the pages is stale for the page of case {cid}: "
                                  "this is a bug in evidence.site_memo; build once with EVIDENCE_CACHE=off, and report it")
            if key is None:
                worked += 1
                key = self._case_key(cid)
            keys[cid] = key
            self.page(m.url("cases", cid), "case.html", f"case {cid}", cache_key=key, title=title,
                      description=f"Case report {cid}: {title}", page_kind="cases", indexed=True, lazy=functools.partial(self._case_context, cid))
        log.debug("case pages: %d of %d keys worked out (evidence.site_memo)", worked, len(keys))
        memo = self._page_memo()
        if memo is not None:
            memo.case_keys = keys

    def _case_key(self, cid: str) -> str:
        """Everything a case page shows: the case file, the files of the sources it cites (and of
        those they retell), the related cases (titles, and the labels of what they share), and
        what every page shows (the settings of evidence.toml, the vocabulary, the templates and
        the code among it). tests/test_cache.py checks that an edit of each remakes the page."""
        m = self.m
        sids = {sid for sid, _role in m.facts[cid].sources}  # every claim cites one of these (rule claim-source)
        sids |= {s.reports_on for s in (m.kb.sources.get(x) for x in list(sids)) if s is not None and s.reports_on}
        files = [(f.display, f.sha) for f in (m.kb.files.get(k) for k in [f"case:{cid}", *(f"source:{x}" for x in sorted(sids))]) if f is not None]
        related = related_view(self.related.get(m.ns.case(cid), []), m.iri_url, self.case_titles)
        return "page:" + digest(self.pages_key, cid, repr(sorted(sids)), repr(files), repr(related))

    def _case_context(self, cid: str) -> dict[str, Any]:
        m = self.m
        ns = m.ns
        c = m.kb.cases[cid]
        exposures: dict[str, list] = defaultdict(list)
        timelines: dict[str, dict] = {}
        course = {"dechallenge": False, "rechallenge": False, "dechallenge_anchor": "", "rechallenge_anchor": ""}
        for e in m.case_exposures(c):
            exposures[e.patient.id].append(e)
            if e.treatment.phases:
                tl = timelines[e.anchor] = timeline(e, m.label)
                if tl["rechallenge"] and not course["rechallenge"]:
                    course.update(rechallenge=True, rechallenge_anchor=f"{e.anchor}-course")
                if tl["dechallenge"] and not course["dechallenge"]:
                    course.update(dechallenge=True, dechallenge_anchor=f"{e.anchor}-course")
            else:
                timelines[e.anchor] = {}
        sources = [(ref, m.kb.sources[ref.source]) for ref in c.sources]
        iri = ns.case(cid)
        term_iris = self.compiled.term_iris
        about: list[dict[str, Any]] = []
        for d in m.case_drugs(c):
            about.append({"@type": "Drug", "name": m.label("drugs", d), **_same_as(term_iris.get(("drugs", d)))})
        for k in c.conditions:
            about.append({"@type": "MedicalCondition", "name": m.label("diseases", k), **_same_as(term_iris.get(("diseases", k)))})
        for gk in m.case_genes(c):
            about.append({"@type": "Gene", "name": m.label("genes", gk), **_same_as(term_iris.get(("genes", gk)))})
        jsonld = case_jsonld(c, iri, m.kb.config.base_iri, [s for _, s in sources], about, [(f"{cid}.ttl", "text/turtle"), (f"{cid}.jsonld", "application/ld+json")])
        primary = m.primary_source(c)
        curators = ", ".join(cur.name for cur in c.curation.curators)
        cite = (f"{self.site_name}: {c.title}. Curated case record {cid}, by {curators}; created {c.curation.created.isoformat()}"
                + (f", updated {c.curation.updated.isoformat()}" if c.curation.updated else "") + f". {iri}"
                + (f". Based on: {citation_text(primary)}" if primary else ""))
        f = m.kb.files.get(f"case:{cid}")
        return dict(
            c=c, sources=sources, exposures=exposures, timelines=timelines, course=course,
            outcome_of={p.id: {o.id: o for o in p.outcomes} for p in c.patients},
            drug_of={p.id: {t.id: t.drug for t in p.treatments} for p in c.patients},
            only_secondary=m.case_only_secondary(c), secondary=m.secondary_sources(c),
            related=related_view(self.related.get(iri, []), m.iri_url, self.case_titles),
            jsonld=json_script(jsonld), iri=iri, cite_text=cite, edit_url=m.edit_url(c),
            case_file=f.display if f else f"{m.kb.config.kb}/{cid}.yaml",
        )

    # ------------------------------------------------------------------------------ entities
    def entities(self) -> None:
        """The entity and source pages, unit by unit (see :mod:`evidence.site_memo`): a unit no
        change touches is linked from the previous build under the keys the memo holds; the
        others are worked out, and the memo is brought up to date."""
        m = self.m
        memo = self._page_memo()
        check = check_enabled()
        made: dict[Unit, tuple[Page, ...]] = {}
        worked = 0
        units = {"drugs": self._drug_unit, "genes": self._gene_unit, "variants": self._variant_unit, "diseases": self._disease_unit,
                 "measures": self._measure_unit, "phenotypes": self._phenotype_unit, "sources": self._source_unit}
        for kind in UNIT_KINDS:
            make = units[kind]
            for key in m.pages(kind):
                unit = (kind, key)
                pages = memo.clean(unit) if memo is not None else None
                if pages is not None and check:
                    self._check_unit(unit, pages, make)
                linked = self._link_unit(pages) if pages is not None else set()
                if pages is None or len(linked) < len(pages):  # worked out (the pages linked already skipped)
                    worked += 1
                    pages = self._record(functools.partial(make, key), skip=linked)
                if pages is not None:
                    made[unit] = pages
        log.debug("entity pages: %d of %d units worked out (evidence.site_memo)", worked, sum(len(m.pages(k)) for k in UNIT_KINDS))
        if memo is not None:
            memo.units = made
            memo.save(self.writer.outputs.cache)

    def _source_unit(self, sid: str) -> None:
        m = self.m
        s = m.kb.sources[sid]
        cases, claims, retold_by = m.cases_citing.get(sid, []), m.claims_citing.get(sid, 0), m.reported_by.get(sid, [])
        self.page(m.url("sources", sid), "source.html", f"source {sid}", cache_key=self._source_key(s, cases, claims, retold_by),
                  title=short_citation(s), description=citation_text(s), page_kind="sources", indexed=True, s=s, cases=cases,
                  claims=claims, retold_by=retold_by)

    def _drug_unit(self, key: str) -> None:
        m = self.m
        exps = m.by_drug.get(key, [])
        doses: dict[str, int] = defaultdict(int)
        outcomes: dict[tuple[str, str], int] = defaultdict(int)
        aes: dict[str, int] = defaultdict(int)
        for e in exps:
            doses[e.regimen] += 1
            for o in e.outcomes:
                outcomes[(o.measure, o.response)] += 1
            for a in e.adverse_events:
                aes[a.term] += 1
        rel, label = m.url("drugs", key), m.label("drugs", key)
        exps_page = self.paged(rel, "patients", "exposures", exps, ("drugs", "Drugs", label), f"Patients treated with {label}", "Patients treated")
        # The page shows the list's first rows (exps_page) and counts: its key holds those, not
        # every row (see _context_key), as the page holds nothing else of them.
        cohort = self.paged(rel, "cohort", "cohort-cases", m.cohorts.get(("drugs", key), []), ("drugs", "Drugs", label), "",
                            "Cohort-level figures")
        self.entity_page(rel, "drug.html", f"drug {key}", title=label, page_kind="drugs", indexed=True, cohort=cohort,
                  key=key, t=m.term("drugs", key), n_exps=len(exps), n_exp_cases=len({e.case.id for e in exps}), exps_page=exps_page,
                  doses=sorted(doses.items(), key=lambda kv: (-kv[1], kv[0])),
                  outcomes=sorted(outcomes.items(), key=lambda kv: (m.label("measures", kv[0][0]).lower(), RESPONSE_ORDER.index(kv[0][1]))),
                  aes=sorted(aes.items()), prior=m.prior.get(key, []))

    def _gene_unit(self, key: str) -> None:
        m = self.m
        carriers = m.genotyped.get(key, [])
        variants = sorted((h, v["protein"] or "", len(v["carriers"])) for h, v in m.variants.items() if v["gene"] == key)
        drugs: dict[str, set] = defaultdict(set)
        for c, p, _g in carriers:
            for drug in m.patient_drugs[(c.id, p.id)]:
                drugs[drug].add((c.id, p.id))
        rel, label = m.url("genes", key), m.label("genes", key)
        carriers_page = self.paged(rel, "patients", "carriers", carriers, ("genes", "Genes", label), f"Patients genotyped at {label}",
                                   f"Patients with a genotype at {label}")
        cohort = self.paged(rel, "cohort", "cohort-cases", m.cohorts.get(("genes", key), []), ("genes", "Genes", label), "",
                            "Cohort-level figures")
        self.entity_page(rel, "gene.html", f"gene {key}", title=label, page_kind="genes", indexed=True, cohort=cohort,
                  key=key, t=m.term("genes", key), n_carriers=len(carriers), carriers_page=carriers_page, variants=variants,
                  drugs=sorted(((d, len(ps)) for d, ps in drugs.items()), key=lambda x: (-x[1], x[0])),
                  targeted_by=m.targeted_by.get(key, []))

    def _variant_unit(self, hgvs: str) -> None:
        m = self.m
        v = m.variants[hgvs]
        self.entity_page(m.url("variants", hgvs), "variant.html", f"variant {hgvs}", title=m.label("variants", hgvs), page_kind="variants", indexed=True,
                  v=v, hgvs=hgvs, iri=m.ns.variant(hgvs))

    def _disease_unit(self, key: str) -> None:
        m = self.m
        treated = [e for e in m.exposures if key in e.conditions] if len(m.exposures) < 5000 else self._by_condition().get(key, [])
        rel, label = m.url("diseases", key), m.label("diseases", key)
        parent = ("diseases", "Conditions", label)
        self.entity_page(rel, "disease.html", f"condition {key}", title=label, page_kind="diseases", indexed=True, key=key, t=m.term("diseases", key),
                  cases=self.paged(rel, "cases", "cases", m.case_conditions.get(key, []), parent, "", "Case reports about it"),
                  diagnosed=self.paged(rel, "diagnosed", "patients", m.diagnosed.get(key, []), parent, "", "Patients diagnosed with it"),
                  comorbid=self.paged(rel, "comorbid", "patients", m.comorbid.get(key, []), parent, "", "As a comorbidity"),
                  treated=self.paged(rel, "treated", "exposures", treated, parent, f"Treatments for {label}", "Treatments for it", show_drug=True),
                  cohort=self.paged(rel, "cohort", "cohort-cases", m.cohorts.get(("diseases", key), []), parent, "", "Cohort-level figures"),
                  drug_summary=_drug_summary(treated))

    def _measure_unit(self, key: str) -> None:
        m = self.m
        rel, label = m.url("measures", key), m.label("measures", key)
        self.entity_page(rel, "measure.html", f"measure {key}", title=label, page_kind="measures", indexed=True, key=key, t=m.term("measures", key),
                  outcomes=self.paged(rel, "outcomes", "outcomes", m.outcomes_by_measure.get(key, []), ("measures", "Outcome measures", label),
                                      f"Outcomes measured by {label}", "Outcomes recorded with it"),
                  cohort=self.paged(rel, "cohort", "cohort-outcomes", m.cohort_outcomes.get(key, []), ("measures", "Outcome measures", label), "",
                                    "Cohort-level counts"))

    def _phenotype_unit(self, key: str) -> None:
        m = self.m
        rel, label = m.url("phenotypes", key), m.label("phenotypes", key)
        parent = ("phenotypes", "Phenotypes and adverse events", label)
        self.entity_page(rel, "phenotype.html", f"phenotype {key}", title=label, page_kind="phenotypes", indexed=True, key=key, t=m.term("phenotypes", key),
                  events=self.paged(rel, "adverse-events", "events", m.ae_by_term.get(key, []), parent, f"Adverse events: {label}", "As an adverse event"),
                  cohort=self.paged(rel, "cohort", "cohort-events", m.cohort_aes.get(key, []), parent, "", "Cohort-level counts"),
                  comorbid=self.paged(rel, "comorbid", "patients", m.comorbid.get(key, []), parent, "", "As a comorbidity"))

    def _page_memo(self) -> PageMemo | None:
        """The memo of the entity and case pages (:mod:`evidence.site_memo`), its changed units
        found, read once; a new one (every page worked out) when the last build's is missing or
        was made in another context; None without a build cache, or when a case file's bytes are
        not known."""
        if self._memo is False:
            self._memo = self._read_memo()
        return self._memo  # type: ignore[return-value]

    def _read_memo(self) -> PageMemo | None:
        m, cache = self.m, self.writer.outputs.cache
        if cache is None or not cache.enabled:
            return None
        shas = {cid: f.sha if (f := m.kb.files.get(f"case:{cid}")) is not None else "" for cid in m.case_ids}
        if not all(shas.values()):
            return None
        context = digest("entity pages", self.pages_key, self._shared_key())
        index = names_index(m.urls())
        memo = PageMemo.load(cache, context)
        if memo is None:
            memo = PageMemo(context, {}, {cid: (sha, frozenset(units_named(m.facts[cid], index))) for cid, sha in shas.items()})
        else:
            memo.changed(shas, lambda cid: units_named(m.facts[cid], index))
            if memo.related != self._related_before[1]:  # its case keys were made with other related cases
                memo.case_keys = {}
        memo.related = self._related_before[2]
        return memo

    def _memo_case_key(self, cid: str) -> str | None:
        """A case page's key from the memo (see PageMemo.case_key), if its related cases are
        the ones, with the scores, that the memo's key was made with, and none of them changed."""
        memo = self._page_memo()
        key = memo.case_key(cid) if memo is not None else None
        if key is None:
            return None
        iri = self.m.ns.case(cid)
        now, before = self.related.scores.get(iri), self._related_before[0].get(iri)
        if now is None or (now is not before and now != before):
            return None
        edited, case_of = memo.edited, self.m.iri_entity
        return None if any(case_of.get(b, ("", ""))[1] in edited for b, _s in now) else key

    def _record(self, make: Callable[[], None], skip: set[str] | frozenset[str] = frozenset(), dry: bool = False) -> tuple[Page, ...] | None:
        """Run ``make`` (a unit's pages), and return the pages it made, with their keys (None if
        one has no key: it cannot be linked by one). ``skip``: pages linked already; ``dry``:
        the pages are only recorded, not written."""
        self._recording, self._skip, self._dry = [], skip, dry
        try:
            make()
            pages = self._recording
        finally:
            self._recording, self._skip, self._dry = None, frozenset(), False
        return None if any(key is None for *_rest, key in pages) else tuple(pages)  # type: ignore[misc]

    def _link_unit(self, pages: tuple[Page, ...]) -> set[str]:
        """Link a unit's pages from the previous build under their keys, in order, until one
        cannot be (the previous build has another file there): the pages linked."""
        linked: set[str] = set()
        outputs = self.writer.outputs
        for rel, _template, origin, key in pages:
            path = self.writer.claim(rel, origin)
            if not outputs.link(path, rel, key, later=True):
                self.writer.unclaim(rel)
                break
            self.writer.files.append(rel)
            linked.add(rel)
        return linked

    def _check_unit(self, unit: Unit, pages: tuple[Page, ...], make: Callable[[str], None]) -> None:
        """With ``EVIDENCE_CHECK_MEMO`` set: the unit's pages worked out, which must be the memo's."""
        found = self._record(functools.partial(make, unit[1]), dry=True)
        if found != pages:
            got = {rel: key for rel, _t, _o, key in found or ()}
            held = {rel: key for rel, _t, _o, key in pages}
            diff = sorted(rel for rel in got.keys() | held.keys() if got.get(rel) != held.get(rel))
            raise RenderError(f"the memo of the pages is stale for the {unit[0]} page '{unit[1]}' ({', '.join(diff[:5])}): "
                              "this is a bug in evidence.site_memo; build once with EVIDENCE_CACHE=off, and report it")

    def entity_page(self, rel: str, template: str, origin: str, **ctx: Any) -> None:
        """A drug, gene, variant, condition, measure or phenotype page, made from a key over what
        it shows (see :meth:`_context_key`): an edit of a case remakes the pages that list it, not
        the 440 entity pages of a 10,000-case kb."""
        self.page(rel, template, origin, cache_key=self._context_key(rel, template, ctx), **ctx)

    def _context_key(self, rel: str, template: str, ctx: dict[str, Any]) -> str:
        """A key over a page's context: its values as text, where each case record (an exposure, a
        case, or a row beside its case) stands as its case's id and the hash of the case's file;
        the vocabulary, templates and settings are in ``pages_key``; what a page may show of
        other files (source citations, variant names) is in :meth:`_shared_key`."""
        return "page:" + digest(self.pages_key, self._shared_key(), rel, template, self._rows_text(ctx))

    def _shared_key(self) -> str:
        """What any entity page may show of files other than the cases it lists: a claim's source
        (its citation, and whether it retells another), and a variant's name (gene and protein
        change, taken from its first carrier). Worked out once."""
        if self._shared is None:
            m = self.m
            sources = sorted((f.display, f.sha) for k, f in m.kb.files.items() if k.startswith("source:"))
            variants = sorted((h, v["gene"], v["protein"] or "", v["legacy"] or "") for h, v in m.variants.items())
            self._shared = digest("entity pages", repr(sources), repr(variants))
        return self._shared

    def paged(self, rel: str, anchor: str, name: str, items: list, parent: tuple[str, str, str], label: str, heading: str,
              show_drug: bool = False) -> Paged:
        """The first ``PAGE_ROWS`` rows of a long list, for the entity page at ``rel``; the rest go
        on numbered pages (``drugs/ruxolitinib/patients-2.html``), linked from the list's pager.

        At 10,000 cases a drug's page listed every patient given it (12 MB). A numbered page is
        made from a key over the rows it shows (each row's case file), its place in the list and
        what every page shows, so an edit remakes only the pages that show a row of the edited
        case (or whose rows moved). ``parent`` is (kind, list title, entity title)."""
        chunks = _split(items, PAGE_ROWS)
        base = rel[: -len(".html")]
        urls = [f"{rel}#{anchor}"] + [f"{base}/{anchor}-{k}.html" for k in range(2, len(chunks) + 1)]
        kind, list_title, title = parent
        for k in range(2, len(chunks) + 1):
            pg = Paged(chunks[k - 1], len(items), (k - 1) * PAGE_ROWS, k, urls)
            at = urls[k - 1]
            key = "page:" + digest(self.pages_key, at, name, label, heading, repr(parent), str(show_drug), repr(urls), str(pg.start),
                                   str(pg.total), self._rows_text(pg.items))
            self.page(at, "rows.html", f"page {k} of the list '{heading}' of {rel}", cache_key=key, title=f"{title}: {heading.lower()}, page {k}",
                      page_kind=kind, pg=pg, name=name, label=label, heading=heading, parent=(f"{kind}.html", list_title, rel, title),
                      show_drug=show_drug)
        return Paged(chunks[0], len(items), 0, 1, urls)

    def _rows_text(self, rows: Any) -> str:
        """What some rows of a long list (or a page's whole context) are, as text for a key: each
        row's case, patient, treatment, outcome ... ids (see :func:`_fingerprint`), then the id
        and file hash of every case they come from. A row shows nothing but its case's facts and
        vocabulary labels, so the file's hash stands for everything the rows show, and within a
        case the ids (for a record without one, such as a genotype or a cohort-level count, its
        place in the list) tell the rows apart."""
        out: list[str] = []
        cases: dict[str, None] = {}
        _fingerprint(rows, out, cases)
        files = self.m.kb.files
        shas = [f.sha if (f := files.get(f"case:{cid}")) is not None else "" for cid in cases]
        return "".join(out) + "\0" + " ".join(cases) + "\0" + " ".join(shas)

    def _source_key(self, s: S.Source, cases: list, claims: int, retold_by: list[str]) -> str:
        """Everything a source page shows: its file, the files of the sources it retells, is
        retold by or cites for its own facts, and the cases citing it (id, title, role)."""
        m = self.m
        sids = sorted({s.id, *([s.reports_on] if s.reports_on else []), *retold_by, *(c.source for c in s.citation_evidence)})
        files = [(f.display, f.sha) for f in (m.kb.files.get(f"source:{x}") for x in sids) if f is not None]
        citing = [(c.id, c.title, role) for c, role in cases]
        return "page:" + digest(self.pages_key, "source", repr(sids), repr(files), repr(citing), str(claims))

    def _by_condition(self) -> dict[str, list]:
        if not hasattr(self, "_cond"):
            d: dict[str, list] = defaultdict(list)
            for e in self.m.exposures:
                for k in e.conditions:
                    d[k].append(e)
            self._cond = d
        return self._cond

    def lists(self) -> None:
        m = self.m
        for kind, (one, many) in ENTITY_KINDS.items():
            keys = m.pages(kind)
            rows = []
            for key in keys:
                rows.append(self._list_row(kind, key))
            headers = {"cases": ["Case report", "Design", "Evidence", "Patients", "Drugs", "Conditions", "Curated"],
                       "drugs": ["Drug", "Class", "Patients treated", "Identifiers"],
                       "genes": ["Gene", "Name", "Patients genotyped", "Variants"],
                       "variants": ["Variant", "Protein", "Gene", "Carriers"],
                       "diseases": ["Condition", "Cases", "Patients diagnosed", "Identifiers"],
                       "measures": ["Outcome measure", "Outcomes recorded", "Description"],
                       "phenotypes": ["Term", "Adverse events", "As comorbidity", "Identifiers"],
                       "sources": ["Source", "Title", "Kind", "Cases", "Identifiers"]}[kind]
            if kind == "cases":
                rows.sort(key=lambda r: r["sort"])
            # A long list is on pages of LIST_ROWS rows (cases.html, cases-2.html ...): at 10,000
            # cases the one page was 3 MB. Sorting a column of a paged list sorts every page's rows
            # (static/site.js fetches the others). Each page is made from a key over what it shows,
            # so an edit remakes only the pages whose rows changed.
            chunks = _split(rows, LIST_ROWS)
            urls = [f"{kind}.html"] + [f"{kind}-{k}.html" for k in range(2, len(chunks) + 1)]
            title = many[:1].upper() + many[1:]
            shared = digest(self.pages_key, "list", kind, repr(headers), repr(urls), str(len(rows)))
            for k, chunk in enumerate(chunks, start=1):
                pg = Paged(chunk, len(rows), (k - 1) * LIST_ROWS, k, urls)
                key = "page:" + digest(shared, str(k), repr([(r["url"], r["label"], r["sub"], r["cells"]) for r in chunk]))
                self.page(urls[k - 1], "list.html", f"page {k} of the list of {many}", cache_key=key,
                          title=title if k == 1 else f"{title}, page {k}", page_kind=kind, headers=headers, rows=chunk, pg=pg, kind=kind,
                          one=one, many=many, page_rows=LIST_ROWS)

    def _list_row(self, kind: str, key: str) -> dict[str, Any]:
        m = self.m
        cells: list[Any]
        if kind == "cases":
            sf = m.facts[key]
            cells = [sf.design, f"{sf.level[0].upper()} {sf.level[1]}", str(sf.n_patients()),
                     ", ".join(m.label("drugs", d) for d in sf.drugs()), ", ".join(m.label("diseases", k) for k in sf.conditions),
                     sf.date.isoformat()]
            return {"url": m.url(kind, key), "label": sf.title, "sub": key, "cells": cells, "sort": (key,)}
        if kind == "drugs":
            t = m.term(kind, key)
            cells = [getattr(t, "drug_class", None) or "", str(len({(e.case.id, e.patient.id) for e in m.by_drug.get(key, [])})), ", ".join(t.identifiers) if t else ""]
        elif kind == "genes":
            t = m.term(kind, key)
            cells = [t.label if t else "", str(len(m.genotyped.get(key, []))), str(sum(1 for v in m.variants.values() if v["gene"] == key))]
        elif kind == "variants":
            v = m.variants[key]
            cells = [v["protein"] or "", m.label("genes", v["gene"]), str(len(v["carriers"]))]
        elif kind == "diseases":
            t = m.term(kind, key)
            cells = [str(len(m.case_conditions.get(key, []))), str(len(m.diagnosed.get(key, []))), ", ".join(t.identifiers) if t else ""]
        elif kind == "measures":
            t = m.term(kind, key)
            cells = [str(len(m.outcomes_by_measure.get(key, [])) + len(m.cohort_outcomes.get(key, []))), (t.description or "") if t else ""]
        elif kind == "phenotypes":
            t = m.term(kind, key)
            cells = [str(len(m.ae_by_term.get(key, []))), str(len(m.comorbid.get(key, []))), ", ".join(t.identifiers) if t else ""]
        else:
            s = m.kb.sources[key]
            ids = [x for x in (f"doi:{s.doi}" if s.doi else "", f"PMID {s.pmid}" if s.pmid else "", s.pmcid or "") if x]
            cells = [s.title, s.kind, str(len(m.cases_citing.get(key, []))), ", ".join(ids)]
        return {"url": m.url(kind, key), "label": m.label(kind, key), "sub": "", "cells": cells, "sort": (m.label(kind, key).lower(), key)}

    # ------------------------------------------------------------------------------ evidence table
    def evidence(self) -> None:
        """The evidence table (evidence.html, evidence/2.html ...) and evidence.csv, put together
        from each case's summary (:meth:`_case_summary`): a page whose rows did not change is
        linked from the previous build, and only the cases on a page that is rendered have their
        rows read (at 10,000 cases, reading every case's rows and hashing the table took 2 s of
        a rebuild after one edit)."""
        m = self.m
        context = digest("evidence rows", code_digest(), m.kb.vocab_digest)
        per_case = [self._case_summary(cid, context) for cid in m.case_ids]
        columns = EVIDENCE_COLUMNS
        self.writer.text("evidence.csv", "".join([_csv_text([["scope", *columns]]), *(s.patient_csv for s in per_case),
                                                  *(s.cohort_csv for s in per_case)]), "the evidence table CSV")
        found: dict[str, set[str]] = defaultdict(set)
        for s in per_case:
            for f, vals in s.filters:
                found[f].update(vals)
        options: dict[str, list[str]] = {}
        for f in ("drug", "gene", "condition", "response", "level"):
            vals = sorted(found.get(f, ()), key=lambda v: (v == NR, v.lower()))
            if f == "response":
                order = [*RESPONSE_ORDER, "not graded", "no outcome recorded"]
                vals = sorted(vals, key=lambda v: order.index(v) if v in order else 99)
            options[f] = vals
        # Every row of the table in order (every case's patient rows, then every case's cohort
        # rows) as (case, scope, its place in the case's rows), and each row's hash.
        where = [(s.cid, "patient", i) for s in per_case for i in range(s.n_patient)] + [(s.cid, "cohort", i) for s in per_case for i in range(s.n_cohort)]
        hashes = b"".join([s.patient_hashes for s in per_case] + [s.cohort_hashes for s in per_case])
        n_rows, n_patient_rows = len(where), sum(s.n_patient for s in per_case)
        # The table on pages of EVIDENCE_ROWS rows (evidence.html, evidence/2.html ...): the first
        # page's filters search every page (static/evidence.js fetches the others when a filter is
        # set). Each page is made from a key over the rows it shows (their hashes), so an edit
        # remakes only the pages whose rows changed.
        n_pages = max(1, -(-n_rows // EVIDENCE_ROWS))
        urls = ["evidence.html"] + [f"evidence/{k}.html" for k in range(2, n_pages + 1)]
        shared = digest(self.pages_key, json.dumps(columns), json.dumps(options, sort_keys=True), repr(urls), str(n_rows), str(n_patient_rows))
        for k in range(1, n_pages + 1):
            start, end = (k - 1) * EVIDENCE_ROWS, min(k * EVIDENCE_ROWS, n_rows)
            key = "page:" + digest(shared, str(k), hashes[start * _ROW_HASH:end * _ROW_HASH])
            self.page(urls[k - 1], "evidence.html", f"page {k} of the evidence table", cache_key=key,
                      title="Evidence table" if k == 1 else f"Evidence table, page {k}", page_kind="evidence",
                      columns=columns, options=options, n_rows=n_rows, n_patient_rows=n_patient_rows, page_rows=EVIDENCE_ROWS,
                      lazy=functools.partial(self._evidence_page_rows, where[start:end], Paged([], n_rows, start, k, urls), context))

    def _evidence_page_rows(self, where: list[tuple[str, str, int]], pg: Paged, context: str) -> dict[str, Any]:
        """The rows of one page of the evidence table, read where the page is rendered."""
        rows: dict[str, tuple[list, list]] = {}
        for cid, _scope, _i in where:
            if cid not in rows:
                rows[cid] = self._made_rows.get(cid) or self._case_rows(cid, context)
        chunk = [rows[cid][0 if scope == "patient" else 1][i] for cid, scope, i in where]
        return {"rows": chunk, "pg": dataclasses.replace(pg, items=chunk)}

    def _case_summary(self, cid: str, context: str) -> _CaseRows:
        """What the evidence table needs of a case besides its rows: their number, hashes, filter
        values and CSV lines, kept in the build cache under the case's file, the vocabulary and
        the code (``context``); its rows are kept beside it (:meth:`_case_rows`)."""
        def make() -> _CaseRows:
            rows = self._made_rows[cid] = self._case_rows(cid, context)  # a page will show them: not read back
            return self._summarise_rows(cid, *rows)

        key = self._files_key(context, [f"case:{cid}"])
        if key is not None:  # the rows are read only for a page that is rendered, and kept for the next build
            self.writer.outputs.cache.touch("evidence-rows", key)
        return self._cached("evidence-summary", key, make, lambda got: isinstance(got, _CaseRows))

    @staticmethod
    def _summarise_rows(cid: str, patient: list, cohort: list) -> _CaseRows:
        def hashes(rows: list) -> bytes:
            return b"".join(hashlib.sha256(repr((r.scope, r.cells, r.links, r.filters, sorted(r.nr))).encode("utf-8")).digest()[:_ROW_HASH]
                            for r in rows)

        filters: dict[str, set[str]] = defaultdict(set)
        for r in (*patient, *cohort):
            for f, vals in r.filters.items():
                filters[f].update(vals)
        lines = [_csv_text([[r.scope, *(_csv_cell(r.cells.get(c, "")) for c in EVIDENCE_COLUMNS)] for r in part]) for part in (patient, cohort)]
        return _CaseRows(cid, len(patient), len(cohort), hashes(patient), hashes(cohort),
                         tuple((f, tuple(sorted(v))) for f, v in sorted(filters.items())), lines[0], lines[1])

    def _case_rows(self, cid: str, context: str) -> tuple[list, list]:
        """A case's rows of the evidence table (patient rows, cohort rows), kept in the build cache
        under the case's file, the vocabulary and the code (``context``)."""
        return self._cached("evidence-rows", self._files_key(context, [f"case:{cid}"]), lambda: self.m.case_evidence_rows(cid),
                            lambda got: isinstance(got, tuple) and len(got) == 2)

    def _search_key(self, kind: str, key: str, context: str) -> str | None:
        """The build-cache key of a case's or a source's (title, words) for the search index: its
        file, the files of the sources a case cites, the vocabulary and the code (``context``).
        None for a page of another kind, without a cache, or when a file's bytes are not known."""
        if kind not in ("cases", "sources"):
            return None
        names = [f"case:{key}", *(f"source:{sid}" for sid, _role in self.m.facts[key].sources)] if kind == "cases" else [f"source:{key}"]
        return self._files_key(context, names)

    def _search_text(self, kind: str, key: str, text_key: str | None) -> tuple[str, str]:
        """A page's (title, words) for the search index (site_model.search_text), kept in the
        build cache under ``text_key`` (:meth:`_search_key`): at 10,000 cases working them out
        took about 1.2 s of every build, most of it walking the cases for their quotes."""
        return self._cached("search-text", text_key, lambda: search_text(self.m, kind, key),
                            lambda got: isinstance(got, tuple) and len(got) == 2 and all(isinstance(x, str) for x in got))

    def _search_lookup(self, path: str, text_key: str) -> tuple[str, str]:
        """(title, words) of a page that a search bundle knows by key (site_search.Shard.known)."""
        t = time.perf_counter()
        kind, key = self._search_pages[path]
        found = self._search_text(kind, key, text_key)
        self._lookup_time += time.perf_counter() - t
        return found

    def _cached(self, stage: str, key: str | None, make: Callable[[], Any], valid: Callable[[Any], bool]) -> Any:
        """What ``make`` makes from some kb files, kept in the build cache's ``stage`` under ``key``
        (:meth:`_files_key`); made without the cache when there is none or the key is None (a
        file's bytes are not known)."""
        cache = self.writer.outputs.cache
        if key is None or cache is None:
            return make()
        got = cache.get(stage, key)
        if valid(got):
            return got
        made = make()
        cache.put(stage, key, made)
        return made

    def _files_key(self, context: str, files: list[str]) -> str | None:
        """The key of what is made from some kb files (see :meth:`_cached`); None without a cache,
        or when a file's bytes are not known."""
        found = [self.m.kb.files.get(n) for n in files]
        if self.writer.outputs.cache is None or any(f is None or not f.sha for f in found):
            return None
        return digest(context, *(f"{n}\0{f.sha}" for n, f in zip(files, found)))  # type: ignore[union-attr]

    # ------------------------------------------------------------------------------ query library
    def queries(self) -> None:
        m = self.m
        prefixes = m.ns.prefixes()
        shown = []
        for q, res in self.library_answers.result():
            if isinstance(res, QueryError):
                raise RenderError(f"{q.path}: the library query failed: {res.message}")
            self.writer.data(f"queries/{q.name}.rq", q.path.read_bytes(), f"query {q.name}")
            rows: list[list[dict[str, str]]] = []
            csv_buf = io.StringIO()
            cw = csv.writer(csv_buf, lineterminator="\n")
            if res.kind == "select":
                cw.writerow(res.variables)
                for r in res.rows:
                    cw.writerow([_csv_cell(_term_text(r[v])) for v in res.variables])
                    if len(rows) < 500:
                        rows.append([self._cell(r[v], prefixes) for v in res.variables])
                self.writer.text(f"queries/{q.name}.csv", csv_buf.getvalue(), f"query {q.name} results")
            shown.append({"q": q, "res": res, "rows": rows, "total": len(res.rows), "csv": f"queries/{q.name}.csv" if res.kind == "select" else ""})
        self.library = shown
        self.page("queries.html", "queries.html", "the query library", title="Query library", page_kind="queries", indexed=True,
                  queries=shown, prefixes=sorted(prefixes.items()))

    def _cell(self, term: Any, prefixes: dict[str, str]) -> dict[str, str]:
        if term is None:
            return {"text": "", "url": "", "ext": ""}
        if isinstance(term, ox.NamedNode):
            iri = term.value
            if iri in self.m.iri_url:
                kind, key = self.m.iri_entity[iri]
                return {"text": self.m.label(kind, key) if kind not in ("cases", "sources") else key, "url": self.m.iri_url[iri], "ext": ""}
            for p, base in sorted(prefixes.items(), key=lambda kv: -len(kv[1])):
                if iri.startswith(base):
                    return {"text": f"{p}:{iri[len(base):]}", "url": "", "ext": iri}
            return {"text": iri, "url": "", "ext": iri}
        return {"text": _term_text(term), "url": "", "ext": ""}

    # ------------------------------------------------------------------------------ docs
    def docs(self) -> None:
        m = self.m
        vocab = []
        for kind in S.VOCABULARY_KINDS:
            terms = sorted(self.kb.vocab.get(kind, {}).items(), key=lambda kv: kv[0].lower())
            vocab.append((kind, terms))
        self.page("docs/format.html", "docs_format.html", "the format docs", title="The case format", page_kind="docs", indexed=True,
                  models=format_docs(), lists=fixed_lists())
        self.page("docs/vocabulary.html", "docs_vocabulary.html", "the vocabulary docs", title="Vocabulary", page_kind="docs", indexed=True,
                  vocab=vocab, lists=fixed_lists(), concepts=sorted(m.levels.items()))

    def contributors(self) -> None:
        """Keyed by what it shows (the curators, with the ids and dates of what they curated): a
        case's title, or anything but its curation, leaves it as it was. At 10,000 cases
        rendering it took 0.2 s of every rebuild."""
        people = self.m.contributors()
        key = "page:" + digest(self.pages_key, "contributors", repr(people))
        self.page("contributors.html", "contributors.html", "the contributors page", cache_key=key, title="Contributors",
                  page_kind="contributors", indexed=True, people=people)

    # ------------------------------------------------------------------------------ downloads
    def download_list(self) -> list[dict[str, Any]]:
        known = {d["href"]: d for d in self.base_downloads}
        extra = [
            ("evidence.csv", "the evidence table: every patient x treatment x outcome, and the cohort-level counts, CSV"),
            ("vocabulary.json", "the vocabulary (genes, drugs, diseases, measures, phenotypes), JSON"),
        ]
        for name in sorted(p.name for p in (self.out / "schema").glob("*.json")):
            if f"schema/{name}" not in known:
                extra.append((f"schema/{name}", f"JSON Schema of {name.replace('.schema.json', '').replace('vocabulary-', 'kb/vocabulary/')} files"))
        for name in sorted(p.name for p in (self.out / "vocabulary").glob("*.yaml")):
            extra.append((f"vocabulary/{name}", f"kb/vocabulary/{name} as curated, YAML"))
        out = []
        for d in [*self.base_downloads, *({"href": h, "name": h, "description": t} for h, t in extra)]:
            p = self.out / d["href"]
            if not p.is_file():
                continue
            packed = p.suffix == ".gz"  # the media type of what is inside, and the compression (as DCAT has them)
            inner = Path(p.stem) if packed else p  # what is inside a .gz
            media = MEDIA_TYPES.get("".join(inner.suffixes[-2:]), MEDIA_TYPES.get(inner.suffix, "application/octet-stream"))
            size = p.stat().st_size
            out.append({**d, "media": media, "compress": "application/gzip" if packed else None, "size": human_bytes(size),
                        "bytes": size, "rdf": d["href"] in RDF_FILES})
        return out

    def downloads(self) -> None:
        self.all_downloads = self.download_list()
        case_files = [(cid, self.m.url("cases", cid)) for cid in self.m.case_ids[:5]]
        self.page("downloads.html", "downloads.html", "the downloads page", title="Downloads", page_kind="downloads",
                  downloads=self.all_downloads, queries=self.library, case_files=case_files, n_cases=len(self.m.case_ids))

    # ------------------------------------------------------------------------------ home, search
    def home(self) -> None:
        m = self.m
        cov = m.coverage()
        keywords = [m.label("drugs", d) for d in cov["drugs"]] + [m.label("diseases", k) for k in cov["conditions"]] + [m.label("genes", g) for g in cov["genes"]]
        curators = m.curators()
        modified = m.modified()
        mod = modified.isoformat() if modified else ""
        # No triple stands in two graphs (see export.chunk_exports): the N-Triples file has one line
        # per quad. Counted from the chunks, since the file may still be being written (outputs.Splice).
        triples = self.compiled.quad_count() if (self.out / FORMATS["nt"][0]).is_file() else None
        base = m.kb.config.base_iri
        schema_org = home_jsonld(self.site_name, self.description, base, self.all_downloads, keywords, curators, mod)
        dcat = dcat_void_jsonld(self.site_name, self.description, base, m.ns.ev, self.all_downloads, triples,
                                m.ns.case(m.case_ids[0]) if m.case_ids else None, mod)
        short = [d for d in self.all_downloads if d["href"] in _SHORT_DOWNLOADS]
        self.page("index.html", "index.html", "the home page", title="Home", page_kind="home", coverage=cov, counts=m.counts(),
                  matrix=m.matrix(), newest=m.newest(10), n_cases=len(m.case_ids), downloads_short=short,
                  jsonld_schema=json_script(schema_org), jsonld_dcat=json_script(dcat))

    def search(self) -> None:
        m = self.m
        entries: list[tuple[str, str, str]] = []
        for kind, (one, _many) in ENTITY_KINDS.items():
            for key in m.pages(kind):
                label = m.label(kind, key)
                if kind == "cases":
                    label = f"{m.facts[key].title} ({key})"
                elif kind == "sources":
                    label = citation_text(m.kb.sources[key])
                entries.append((label, one, m.url(kind, key) or ""))
        for href, text, _k in NAV:
            entries.append((text, "page", href))
        # The other pages a reader may look for by title: the lists NAV does not name, and the
        # pages linked from the footer and the docs (not the numbered pages of a long list).
        in_nav = {href for href, _t, _k in NAV}
        for kind, (_one, many) in ENTITY_KINDS.items():
            if f"{kind}.html" not in in_nav:
                entries.append((many[:1].upper() + many[1:], "list", f"{kind}.html"))
        entries += [("Vocabulary", "page", "docs/vocabulary.html"), ("Contributors", "page", "contributors.html"),
                    ("Licences", "page", "licences/index.html")]
        # A case's or source's words are known by their key in the build cache (see _search_key)
        # and looked up only for a bundle that Pagefind remakes; the others' are worked out here.
        context = digest("search text", code_digest(), m.kb.vocab_digest)
        docs: list[tuple[str, str, str, str]] = []
        known: dict[str, tuple[str, str]] = {}
        cache = self.writer.outputs.cache
        for kind, (one, _many) in ENTITY_KINDS.items():
            for key in m.pages(kind):
                path = m.url(kind, key) or ""
                text_key = self._search_key(kind, key, context)
                if text_key is None:
                    title, words = self._search_text(kind, key, None)
                    docs.append((path, title, one, words))
                else:
                    known[path] = (one, text_key)
                    self._search_pages[path] = (kind, key)
                    if cache is not None:
                        cache.touch("search-text", text_key)  # kept for the build that remakes its bundle
        self.writer.text("search-titles.js", titles_script(entries), "the search page")
        # The pages indexed as they are that are not written yet hold their place (the bundles are
        # split by path); a bundle holding one is indexed once it is written (_late_copy).
        self.late_copies = {rel for rel in self.LATE_COPIES if rel not in self.search_copies}
        self.search_shards = shards(docs, {**self.search_copies, **dict.fromkeys(self.late_copies, "")}, known=known)
        # More than one bundle: the words bundle names those a search is to look in (site_search.words_pages).
        words = WORDS_BUNDLE if len(self.search_shards) > 1 else ""
        self.page("search.html", "search.html", "the search page", title="Search", page_kind="search",
                  bundles=[sh.folder for sh in self.search_shards], words=words)
        if self.make_index:  # Pagefind runs while the other pages render
            t = time.perf_counter()
            for folder in [sh.folder for sh in self.search_shards] + ([words] if words else []):
                self.writer.claim(f"{folder}/pagefind.js", "the search index")
            ready = [sh for sh in self.search_shards if not self.late_copies & sh.copies.keys()]  # the others: _late_copy
            self.index = SearchIndex(ready, self.out, self.writer.outputs, self.pages_key, hold=True, lookup=self._search_lookup,
                                     bundles=len(self.search_shards))
            if len(self.index.todo) <= EARLY_BUNDLES:  # an edit's: Pagefind runs while the pages render
                self.index.start()
            else:  # one at a time, on the core this process leaves idle until the render workers start (SearchIndex.ahead)
                self.index.ahead()
            self.timings["search index"] = time.perf_counter() - t - self._lookup_time

    def _late_copy(self, rel: str, html: str) -> None:
        """A page of LATE_COPIES is written: its bundle is indexed once it waits for no other."""
        self.late_copies.discard(rel)
        holding = [sh for sh in self.search_shards if rel in sh.copies]
        for sh in holding:
            sh.copies[rel] = html
        ready = [sh for sh in holding if not self.late_copies & sh.copies.keys()]  # handed over once, with its last late page
        if ready and self.index is not None:
            self.index.add(ready)


RELATED_LIMIT = 10  # related cases listed on a case page
# Bundles of the search index that Pagefind makes while the pages render (an edit changes one or
# two). More (a cold build: every bundle) wait until the render workers are done: Pagefind's
# processes beside them raised a 10,000-case cold build's peak from 1,771 MB to 1,913 MB. Until
# the workers start, they are made one at a time, at a low priority (SearchIndex.ahead).
EARLY_BUNDLES = 2
# The search index is polled (SearchIndex.poll: the bundles Pagefind has finished are recorded and
# the words bundle started once every bundle's words are known) after each step of write_all and
# every this many pages within one: at 10,000 cases, polled after the steps only, the words bundle
# of a rebuild started when the entity pages were done, 1.1 s after it could have.
POLL_EVERY = 250
WORKERS = int(os.environ.get("EVIDENCE_SITE_WORKERS", "0")) or min(4, os.cpu_count() or 1)
PAGES_PER_WORKER = 200  # below this a worker process costs more than it saves
# From this many pages the workers live long enough to copy much of the build's memory, so the
# free heap is given back first (perf.trim_heap: 0.4 s at 10,000 cases, so not for a rebuild's few pages).
TRIM_FROM = 2000


def _guided(n: int, step: int, workers: int) -> list[tuple[int, int]]:
    """Bounds of the chunks of ``n`` jobs: ``step`` jobs each, then smaller as the end nears (a
    chunk is at most the jobs left over four chunks a worker, and at least an eighth of ``step``:
    each chunk is a task, and every few tasks a fresh fork), so that the workers end together:
    at 10,000 cases the last chunk of 390 pages kept one worker busy for about 1.5 s after the
    other had ended."""
    out, i = [], 0
    while i < n:
        size = step if workers < 2 else max(step // 8, 1, min(step, -(-(n - i) // (4 * workers))))
        out.append((i, min(i + size, n)))
        i += size
    return out


def _split(items: list, size: int) -> list[list]:
    """``items`` in pages of ``size``; an empty list is one empty page."""
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def _render_chunk(job: tuple[SitePages, list], bounds: tuple[int, int]) -> str:
    """Render and write pages [start, end) of the deferred jobs (in a forked worker, or here)."""
    pages, jobs = job
    try:
        for rel, template, ctx, key in jobs[bounds[0]:bounds[1]]:
            pages.writer.emit(rel, pages.render(rel, template, ctx).encode("utf-8"), key, try_link=key is None)  # a keyed page: page() tried
    except RenderError as exc:  # sent back as text: an exception may not survive pickling
        return exc.message
    except OSError as exc:  # a full disk, a folder that cannot be written: the file, and what to check
        return f"cannot write the site: {os_error_text(exc)}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def _fingerprint(x: Any, out: list[str], cases: dict[str, None]) -> None:
    """``x`` as text into ``out``, for a page's key; each case met is added to ``cases``. A record
    inside a case (a patient, genotype, outcome ...) stands as its kind and id (a genotype or a
    cohort-level count has none: its kind and place): in a page's context it is always beside
    its case or its exposure, whose file's hash the key holds. A
    vocabulary term is in the key through the vocabulary's digest. A value of another type is a
    TypeError: a page key that left something out would serve a stale page."""
    t = type(x)
    if t is Exposure:
        cases[x.case.id] = None
        out.append(x.ref)
    elif t is list or t is tuple:
        # A drug's list is 10,000 exposures, a gene's 10,000 rows of (case, patient, genotype):
        # the common items are written here, without a call each.
        out.append("(")
        for y in x:
            ty = type(y)
            if ty is Exposure:
                cases[y.case.id] = None
                out.append(y.ref)
            elif ty is tuple:
                out.append("(")
                for z in y:
                    tz = type(z)
                    prefix = _MODEL_TEXT.get(tz)
                    if prefix is None:
                        if tz is Exposure:  # (exposure, outcome), (exposure, adverse event): 100,000 calls saved at 10,000 cases
                            cases[z.case.id] = None
                            out.append(z.ref)
                        elif tz in REF_TYPES:  # (case, patient, genotype), (exposure, outcome ref) ...
                            out.append(z.fingerprint())
                        else:
                            _fingerprint(z, out, cases)
                    elif prefix == "C":
                        cases[z.id] = None
                        out.append("C" + z.id)
                    else:
                        out.append(prefix + str(z.__dict__.get("id", "")))
                out.append(")")
            else:
                _fingerprint(y, out, cases)
        out.append(")")
    elif x is None or t is str or t is int or t is float or t is bool:
        out.append(repr(x))
    elif t is CaseRef:
        cases[x.id] = None
        out.append(f"C{x.id}")
    elif t in REF_TYPES:  # a record of a case, without reading its model (evidence.site_facts)
        out.append(x.fingerprint())
    elif isinstance(x, S.CaseReport):
        cases[x.id] = None
        out.append(f"C{x.id}")
        _MODEL_TEXT.setdefault(t, "C")
    elif isinstance(x, S._Model):
        out.append(f"M{t.__name__}:{x.__dict__.get('id', '')}")
        _MODEL_TEXT.setdefault(t, f"M{t.__name__}:")
    elif isinstance(x, dict):
        out.append("{")
        for k, v in x.items():
            out.append(repr(k))
            _fingerprint(v, out, cases)
        out.append("}")
    elif isinstance(x, Paged):
        _fingerprint((x.items, x.total, x.start, x.page, x.urls), out, cases)
    elif isinstance(x, (str, int, float)):  # a subclass (an enum's value, Markup)
        out.append(repr(x))
    else:
        raise TypeError(f"a page's key cannot stand for a {t.__name__}")


_MODEL_TEXT: dict[type, str] = {CaseRef: "C"}  # a model class met by _fingerprint -> how its records begin ("C": a case); no other ref


def _csv_text(lines: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(lines)
    return buf.getvalue()


def _term_text(term: Any) -> str:
    if term is None:
        return ""
    return term.value if hasattr(term, "value") else str(term)


def _same_as(iri: str | None) -> dict[str, Any]:
    return {"sameAs": iri} if iri else {}


def _drug_summary(exps: list) -> list[tuple[str, int]]:
    d: dict[str, set] = defaultdict(set)
    for e in exps:
        d[e.treatment.drug].add((e.case.id, e.patient.id))
    return sorted(((k, len(v)) for k, v in d.items()), key=lambda kv: (-kv[1], kv[0]))
