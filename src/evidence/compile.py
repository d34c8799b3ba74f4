"""Stage 3: compile a validated kb into RDF quads, one named graph per file.

Each record adds its own triples through one builder with one namespace table. The quads are
pyoxigraph terms, the fast engine for queries and serialisation (see PERFORMANCE.md); the rdflib
Dataset, the project's graph API, is made from them on demand (:meth:`Compiled.dataset`).
Every node has an IRI (no blank nodes), so that exports are stable and byte-identical.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import pyoxigraph as ox

from . import schema as S
from .cache import BuildCache, code_digest, digest
from .errors import CompileError
from .graph import Fragment, case_scope, network_fragment
from .namespaces import PRIMARY_PREFIX, STANDARD, Namespaces, curie_to_iri
from .ontology import CLASSES, PROPERTIES
from .perf import gc_paused, parallel_imap
from .spool import Spool
from .validate import Kb

__all__ = ["Compiled", "Part", "compile_kb", "compile_key", "compile_context", "canonical_nquads", "concept_iri", "term_iri"]

XSD = STANDARD["xsd"]
RDF_TYPE = ox.NamedNode(STANDARD["rdf"] + "type")
_KNOWN_PROPS = {p.name for p in PROPERTIES}

_SOURCE_CLASS = {
    "journal article": "JournalArticle",
    "letter": "Letter",
    "case report": "CaseReport",
    "case series": "CaseReport",
    "commentary": "Comment",
    "conference abstract": "ConferenceAbstract",
}


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", value).strip("_") or "x"


def concept_iri(ns: Namespaces, scheme: str, value: str) -> str:
    """The IRI of a value of a fixed list: ``ev:Response_complete``."""
    return f"{ns.ev}{scheme}_{_slug(value)}"


def term_iri(ns: Namespaces, kind: str, key: str, term: S.VocabTerm) -> str:
    """A vocabulary term's IRI: its standard identifier's IRI, or a local one."""
    for prefix in PRIMARY_PREFIX.get(kind, ()):
        for curie in term.identifiers:
            if curie.split(":", 1)[0] == prefix:
                return curie_to_iri(curie)
    return ns.term(kind, key)


_WEEKS = re.compile(r"(\d+)W")
_DAYS = re.compile(r"(\d+)D")


def xsd_duration(iso: str) -> str:
    """An ISO 8601 duration as an xsd:duration: weeks, which XML Schema has no field for, become
    days (a week is exactly 7 days), so P6W is written P42D and P1M2W is P1M14D."""
    weeks = _WEEKS.search(iso)
    if not weeks:
        return iso
    days = 7 * int(weeks.group(1))
    rest = iso[: weeks.start()] + iso[weeks.end():]
    d = _DAYS.search(rest.split("T", 1)[0])
    if d:
        days += int(d.group(1))
        rest = rest[: d.start()] + rest[d.end():]
    date, _, time = rest.partition("T")
    return f"{date}{days}D" + (f"T{time}" if time else "")


def canonical_nquads(quads: Iterable[ox.Quad]) -> bytes:
    """N-Quads, one distinct line per quad, lines sorted: the same quads give the same bytes."""
    return _merge(ox.serialize(quads, format=ox.RdfFormat.N_QUADS))


@dataclass(frozen=True)
class Part:
    """What one kb file compiles to: its own named graph, and what it adds to the shared ones.

    Parts are made one file at a time, so a file that did not change keeps its part (see
    :mod:`evidence.cache`), and the whole graph is the parts put together. In
    :attr:`Compiled.parts` a part's ``nquads`` is empty: its chunk is in :attr:`Compiled.chunks`.
    """

    graph: str  # the IRI of the file's named graph
    nquads: bytes  # its own graph, canonical N-Quads (emptied in Compiled.parts: the chunk is in Compiled.chunks)
    shared: bytes = b""  # quads it adds to the shared graph (variants, curators), canonical
    concepts: tuple[tuple[str, str, str], ...] = ()  # (iri, scheme, label) of the concepts it uses
    sources: tuple[str, ...] = ()  # the sources it cites
    claims: tuple[tuple[str, int], ...] = ()  # (source, how many of its claims cite it), by source
    network: Fragment | None = None  # its piece of the evidence network (graph.network_fragment)
    sha: bytes = b""  # SHA-256 of ``nquads`` (see Compiled.chunk_digests)
    lines: int = 0  # quads in ``nquads``


_NO_PART = Part(graph="", nquads=b"")
STORE_BATCH = 1 << 26  # bytes of N-Quads loaded into the store at once (see Compiled.store)


@dataclass
class Compiled:
    """The compiled kb: one canonical N-Quads chunk per named graph, and views made from them.

    The whole graph is ``nquads()``: the chunks in graph order, each sorted by line. Nothing holds
    one Python object per quad unless asked to (``quads``); the store and every export are made
    from the bytes in Rust.
    """

    ns: Namespaces
    # graph IRI -> canonical N-Quads: a Spool (the bytes in a temporary file) from compile_kb
    chunks: Mapping[str, bytes] = field(default_factory=dict)
    parts: dict[str, Part] = field(default_factory=dict)  # graph IRI -> the part of a kb file, its chunk in ``chunks``
    concepts: dict[str, tuple[str, str]] = field(default_factory=dict)  # iri -> (scheme, label)
    term_iris: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, key) -> iri
    views: dict[str, Any] = field(default_factory=dict, repr=False)  # views made once (graph.evidence_graph)
    _store: ox.Store | None = None
    _quads: list[ox.Quad] | None = None

    @classmethod
    def from_quads(cls, ns: Namespaces, quads: Iterable[ox.Quad], **views: Any) -> Compiled:
        """A compiled graph made of given quads (a test that breaks a graph on purpose uses it)."""
        by_graph: dict[str, list[ox.Quad]] = {}
        for q in quads:
            by_graph.setdefault(q.graph_name.value, []).append(q)
        return cls(ns=ns, chunks={g: canonical_nquads(qs) for g, qs in sorted(by_graph.items())}, **views)

    def graphs(self) -> list[str]:
        return sorted(self.chunks)

    def nquads(self) -> bytes:
        """Every quad, canonical: graphs in IRI order, lines sorted within each graph."""
        return b"".join(self.chunks[g] for g in self.graphs())

    def chunk_digests(self) -> dict[str, bytes]:
        """Graph IRI -> SHA-256 of its chunk, worked out once (the SHACL units and the export
        pieces are both keyed by it; hashing every chunk twice read 1 GB more at 10,000 cases)."""
        made = self.views.get("chunk_digests")
        if made is None:
            made = self.views["chunk_digests"] = {g: self._part_of(g).sha or hashlib.sha256(self.chunks[g]).digest() for g in self.chunks}
        return made

    def quad_count(self) -> int:
        return sum(self._part_of(g).lines or self.chunks[g].count(b"\n") for g in self.chunks)

    def _part_of(self, graph: str) -> Part:
        """The part whose chunk is ``graph``'s, or an empty one (the graphs made of many files)."""
        return self.parts.get(graph) or _NO_PART

    @property
    def quads(self) -> list[ox.Quad]:
        """Every quad as pyoxigraph objects, in canonical order (made on first use)."""
        if self._quads is None:
            self._quads = list(ox.parse(self.nquads(), format=ox.RdfFormat.N_QUADS))
        return self._quads

    def sorted_quads(self) -> list[ox.Quad]:
        """Quads in one canonical order: by graph, then by their N-Quads line."""
        return self.quads

    def store(self) -> ox.Store:
        """An in-memory pyoxigraph store of every quad (the fast SPARQL engine)."""
        if self._store is None:
            st = ox.Store()
            # In batches of about 64 MB: the whole graph in one bytes object was a transient
            # copy of every chunk (1 GB at 10,000 cases). Lenient: the chunks are pyoxigraph's own
            # canonical N-Quads, so checking every IRI again is wasted (at 10,000 cases, 17.7 s
            # instead of 19.7-20.6 s, two loads each).
            batch: list[bytes] = []
            size = 0
            for g in self.graphs():
                batch.append(self.chunks[g])
                size += len(batch[-1])
                if size >= STORE_BATCH:
                    st.bulk_load(b"".join(batch), format=ox.RdfFormat.N_QUADS, lenient=True)
                    batch, size = [], 0
            if batch:
                st.bulk_load(b"".join(batch), format=ox.RdfFormat.N_QUADS, lenient=True)
            self._store = st
        return self._store

    def dataset(self):
        """The graph as an rdflib ``Dataset`` with one named graph per kb file."""
        from .rdflib_bridge import to_rdflib_dataset

        return to_rdflib_dataset(self.sorted_quads(), self.ns.prefixes())

    def union_graph(self):
        """All triples in one rdflib ``Graph`` (what SHACL validates)."""
        from .rdflib_bridge import to_rdflib_graph

        return to_rdflib_graph(self.sorted_quads(), self.ns.prefixes())


class _Builder:
    def __init__(self, kb: Kb, ns: Namespaces):
        self.kb = kb
        self.ns = ns
        self.out = Compiled(ns=ns)
        self.graph: ox.NamedNode | ox.DefaultGraph = ox.DefaultGraph()
        self.shared_graph = ox.NamedNode(ns.graph("shared"))
        self.quads: list[ox.Quad] = []  # the current file's own graph
        self.shared_quads: list[ox.Quad] = []  # what it adds to the shared graph
        self.used_concepts: dict[str, tuple[str, str]] = {}
        self.cited: set[str] = set()  # sources the current file points to
        self.claim_sources: dict[str, int] = defaultdict(int)  # the current file's claims, by the source each cites
        self._nodes: dict[str, ox.NamedNode] = {}
        self.case_sources: dict[str, str] = {}
        for kind, terms in kb.vocab.items():
            for key, term in terms.items():
                self.out.term_iris[(kind, key)] = term_iri(ns, kind, key, term)

    # -- terms -------------------------------------------------------------------------------
    def iri(self, value: str) -> ox.NamedNode:
        node = self._nodes.get(value)
        if node is None:
            node = self._nodes[value] = ox.NamedNode(value)
        return node

    def ev(self, name: str) -> ox.NamedNode:
        return self.iri(self.ns.ev + name)

    def std(self, curie: str) -> ox.NamedNode:
        prefix, local = curie.split(":", 1)
        return self.iri(STANDARD[prefix] + local)

    def concept(self, scheme: str, value: str) -> ox.NamedNode:
        iri = concept_iri(self.ns, scheme, value)
        self.used_concepts[iri] = (scheme, value)
        return self.iri(iri)

    def vocab(self, kind: str, key: str) -> ox.NamedNode:
        return self.iri(self.out.term_iris[(kind, key)])

    def any_term(self, key: str, kinds: tuple[str, ...]) -> ox.NamedNode:
        for kind in kinds:
            if (kind, key) in self.out.term_iris:
                return self.vocab(kind, key)
        raise CompileError(f"unknown vocabulary key {key!r}")

    # -- emitting ----------------------------------------------------------------------------
    def add(self, s: ox.NamedNode, p: ox.NamedNode, o: Any) -> None:
        if self.graph is self.shared_graph:
            self.shared_quads.append(ox.Quad(s, p, o, self.graph))
        else:
            self.quads.append(ox.Quad(s, p, o, self.graph))

    def shared(self, s: ox.NamedNode, p: ox.NamedNode, o: Any) -> None:
        """A triple about a node that several files mention (a variant, a curator): it goes into
        one shared graph, never into each file's graph, so that no triple stands in two graphs
        and a union default graph never counts it twice."""
        self.shared_quads.append(ox.Quad(s, p, o, self.shared_graph))

    def a(self, s: ox.NamedNode, cls: str) -> None:
        self.add(s, RDF_TYPE, self.ev(cls))

    def dt(self, name: str) -> ox.NamedNode:
        return self.iri(XSD + name)

    def lit(self, s: ox.NamedNode, p: str, value: Any, datatype: str | None = None) -> None:
        """``s ev:p value``; ``not reported`` becomes ``s ev:notReported ev:p``; None adds nothing."""
        if value is None:
            return
        pred = self.ev(p) if ":" not in p else self.std(p)
        if value == S.NOT_REPORTED:
            self.add(s, self.ev("notReported"), pred)
            return
        if isinstance(value, bool):
            self.add(s, pred, ox.Literal("true" if value else "false", datatype=self.dt("boolean")))
        elif isinstance(value, int) and datatype is None:
            self.add(s, pred, ox.Literal(str(value), datatype=self.dt("integer")))
        elif isinstance(value, float) or datatype == "decimal":
            self.add(s, pred, ox.Literal(S.number_text(value), datatype=self.dt("decimal")))
        elif datatype == "duration":
            self.add(s, pred, ox.Literal(xsd_duration(str(value)), datatype=self.dt(datatype)))
        elif datatype:
            self.add(s, pred, ox.Literal(str(value), datatype=self.dt(datatype)))
        else:
            self.add(s, pred, ox.Literal(str(value)))

    def link(self, s: ox.NamedNode, p: str, o: ox.NamedNode | str | None) -> None:
        if o is None:
            return
        pred = self.ev(p) if ":" not in p else self.std(p)
        if o == S.NOT_REPORTED:
            self.add(s, self.ev("notReported"), pred)
            return
        self.add(s, pred, o if isinstance(o, ox.NamedNode) else self.iri(o))

    def enum(self, s: ox.NamedNode, p: str, scheme: str, value: str | None) -> None:
        if value is None:
            return
        if value == S.NOT_REPORTED:
            self.add(s, self.ev("notReported"), self.ev(p))
            return
        self.add(s, self.ev(p), self.concept(scheme, value))

    def claims(self, record: ox.NamedNode, claims: list[S.Claim], case: ox.NamedNode | None = None, base: str | None = None) -> None:
        """Claims get IRIs under ``base`` (default: the record's IRI): always in our namespace."""
        for i, c in enumerate(claims, start=1):
            node = self.iri(f"{base or record.value}/claim/{i}")
            self.a(node, "Claim")
            self.add(node, RDF_TYPE, self.std("prov:Entity"))
            self.add(record, self.ev("supportedBy"), node)
            self.add(node, self.ev("about"), record)
            self.add(node, self.std("prov:wasDerivedFrom"), self.iri(self.ns.source(c.source)))
            self.cited.add(c.source)
            self.claim_sources[c.source] += 1
            self.lit(node, "locator", c.locator)
            self.lit(node, "quote", c.quote)
            self.lit(node, "rdfs:comment", c.note)
            if case is not None:
                self.add(node, self.ev("inCase"), case)
                if self.case_sources.get(c.source) == "secondary":
                    self.lit(node, "viaSecondarySource", True)

    def dose(self, s: ox.NamedNode, dose: S.Dose | str | None) -> None:
        if dose is None:
            return
        if dose == S.NOT_REPORTED:
            self.add(s, self.ev("notReported"), self.ev("doseValue"))
            return
        assert isinstance(dose, S.Dose)
        if dose.value is not None:
            self.lit(s, "doseValue", dose.value, "decimal")
            self.enum(s, "doseUnit", "Unit", dose.unit)
        else:
            self.add(s, self.ev("notReported"), self.ev("doseValue"))
        self.lit(s, "doseQualifier", dose.qualifier)

    # -- records -----------------------------------------------------------------------------
    def vocabulary(self) -> None:
        self.graph = self.iri(self.ns.graph("vocabulary"))
        classes = {"genes": "Gene", "drugs": "Drug", "diseases": "Disease", "phenotypes": "Phenotype", "measures": "OutcomeMeasure"}
        for kind in sorted(self.kb.vocab):
            for key, term in sorted(self.kb.vocab[kind].items()):
                node = self.vocab(kind, key)
                self.a(node, classes[kind])
                # A gene is known by its symbol; its full name stays as an alternative label.
                self.lit(node, "rdfs:label", term.symbol if isinstance(term, S.Gene) else term.label)
                if isinstance(term, S.Gene):
                    self.lit(node, "skos:altLabel", term.label)
                self.lit(node, "vocabularyKey", key)
                for syn in term.synonyms:
                    self.lit(node, "skos:altLabel", syn)
                self.lit(node, "dcterms:description", term.description)
                for curie in term.identifiers:
                    self.lit(node, "dcterms:identifier", curie)
                    iri = curie_to_iri(curie)
                    if iri != node.value:
                        self.link(node, "skos:exactMatch", iri)
                self.lit(node, "identifierProvenance", term.identifier_provenance)
                if isinstance(term, S.Gene):
                    self.lit(node, "symbol", term.symbol)
                if isinstance(term, S.Drug):
                    self.lit(node, "drugClass", term.drug_class)
                    self.claims(node, term.class_evidence, base=self.ns.term(kind, key) + "/class")
                    if term.targets == S.NOT_REPORTED:
                        self.add(node, self.ev("notReported"), self.ev("target"))
                    else:
                        for t in term.targets:
                            gene = self.vocab("genes", t.gene)
                            self.add(node, self.ev("target"), gene)
                            # The claim is about the drug-target link: a record of its own.
                            link = self.iri(f"{self.ns.term('drugs', key)}/target/{quote(t.gene, safe='')}")
                            self.claims(link, t.evidence)
                            self.add(link, self.ev("drug"), node)
                            self.add(link, self.ev("target"), gene)

    def source(self, s: S.Source) -> None:
        self.graph = self.iri(self.ns.graph("source", s.id))
        node = self.iri(self.ns.source(s.id))
        self.a(node, "Source")
        self.add(node, RDF_TYPE, self.std(f"fabio:{_SOURCE_CLASS[s.kind]}"))
        self.lit(node, "dcterms:title", s.title)
        self.lit(node, "authors", "; ".join(s.authors))
        for a in s.authors:
            self.lit(node, "dcterms:creator", a)
        self.lit(node, "authorsComplete", s.authors_complete)
        self.lit(node, "journal", s.journal)
        self.lit(node, "dcterms:publisher", s.publisher)
        self.lit(node, "year", str(s.year), "gYear")
        self.lit(node, "dcterms:issued", s.date.isoformat() if s.date else None, "date")
        self.lit(node, "bibo:volume", s.volume)
        self.lit(node, "bibo:issue", s.issue)
        self.lit(node, "bibo:pages", s.pages)
        self.lit(node, "bibo:doi", s.doi)
        self.lit(node, "bibo:pmid", s.pmid)
        self.lit(node, "fabio:hasPubMedCentralId", s.pmcid)
        if s.doi:
            self.link(node, "schema:sameAs", curie_to_iri(f"doi:{s.doi}"))
        if s.pmid:
            self.link(node, "schema:sameAs", curie_to_iri(f"pubmed:{s.pmid}"))
        if s.pmcid:
            self.link(node, "schema:sameAs", curie_to_iri(f"pmc:{s.pmcid}"))
        if s.url:
            self.link(node, "schema:url", s.url)
        self.lit(node, "schema:genre", s.kind)
        if s.reports_on:
            self.link(node, "reportsOn", self.ns.source(s.reports_on))
            self.cited.add(s.reports_on)
        self.lit(node, "textHeld", s.text_held)
        self.lit(node, "textFile", s.text_file)
        self.lit(node, "identifierNotes", s.identifier_notes)
        self.claims(node, s.citation_evidence)
        self.curation(node, s.curation)

    def curation(self, node: ox.NamedNode, c: S.Curation) -> None:
        for cur in c.curators:
            person = self.iri(self.ns.curator(cur.name, cur.orcid))
            self.add(node, self.std("prov:wasAttributedTo"), person)
            self.shared(person, RDF_TYPE, self.ev("Curator"))
            self.shared(person, RDF_TYPE, self.std("prov:Agent"))
            self.shared(person, self.std("schema:name"), ox.Literal(cur.name))
        self.lit(node, "dcterms:created", c.created.isoformat(), "date")
        if c.updated:
            self.lit(node, "dcterms:modified", c.updated.isoformat(), "date")
        self.lit(node, "curationNote", c.notes)

    def case(self, c: S.CaseReport) -> None:
        self.graph = self.iri(self.ns.graph("case", c.id))
        node = self.iri(self.ns.case(c.id))
        self.case_sources = {r.source: r.role for r in c.sources}
        self.a(node, "CaseReport")
        self.lit(node, "dcterms:title", c.title)
        for r in c.sources:
            self.link(node, "primarySource" if r.role == "primary" else "secondarySource", self.ns.source(r.source))
            self.cited.add(r.source)
        self.enum(node, "studyDesign", "StudyDesign", c.study_design)
        level = self.concept(f"EvidenceLevel_{c.evidence_level.scale}", c.evidence_level.level)
        self.add(node, self.ev("evidenceLevel"), level)
        self.shared(level, self.std("skos:inScheme"), self.concept("EvidenceScale", c.evidence_level.scale))
        self.lit(node, "evidenceLevelRationale", c.evidence_level.rationale)
        for k in c.conditions:
            self.link(node, "condition", self.vocab("diseases", k))
        self.claims(node, c.evidence, node)
        self.curation(node, c.curation)
        if c.cohort:
            self.cohort(node, c.cohort)
        for p in c.patients:
            self.patient(node, p)

    def cohort(self, case: ox.NamedNode, co: S.Cohort) -> None:
        node = self.iri(f"{case.value}/cohort")
        self.a(node, "Cohort")
        self.link(case, "hasCohort", node)
        self.link(node, "inCase", case)
        self.lit(node, "size", co.n)
        self.lit(node, "femaleCount", co.female)
        self.lit(node, "maleCount", co.male)
        if co.age:
            self.lit(node, "ageMean", co.age.mean, "decimal")
            self.lit(node, "ageSD", co.age.sd, "decimal")
            self.lit(node, "ageMedian", co.age.median, "decimal")
            self.lit(node, "ageMinimum", co.age.min, "decimal")
            self.lit(node, "ageMaximum", co.age.max, "decimal")
            self.lit(node, "ageUnit", co.age.unit)
        self.claims(node, co.evidence, case)
        for i, oc in enumerate(co.outcome_counts, start=1):
            n = self.iri(f"{node.value}/outcome-count/{i}")
            self.a(n, "OutcomeCount")
            self.link(node, "hasOutcomeCount", n)
            self.link(n, "inCase", case)
            self.link(n, "measure", self.vocab("measures", oc.measure))
            self.enum(n, "response", "Response", oc.response)
            self.enum(n, "direction", "Direction", oc.direction)
            self.lit(n, "patientCount", oc.patients)
            self.claims(n, oc.evidence, case)
        for i, ac in enumerate(co.adverse_event_counts, start=1):
            n = self.iri(f"{node.value}/adverse-event-count/{i}")
            self.a(n, "AdverseEventCount")
            self.link(node, "hasAdverseEventCount", n)
            self.link(n, "inCase", case)
            if ac.term:
                self.link(n, "term", self.vocab("phenotypes", ac.term))
            self.enum(n, "severity", "Severity", ac.severity)
            self.lit(n, "patientCount", ac.patients)
            self.claims(n, ac.evidence, case)

    def patient(self, case: ox.NamedNode, p: S.Patient) -> None:
        node = self.iri(f"{case.value}/patient/{p.id}")
        self.a(node, "Patient")
        self.link(case, "hasPatient", node)
        self.link(node, "inCase", case)
        self.lit(node, "localId", p.id)
        self.lit(node, "rdfs:label", p.label)
        if p.age == S.NOT_REPORTED:
            self.add(node, self.ev("notReported"), self.ev("ageValue"))
        else:
            assert isinstance(p.age, S.Age)
            self.lit(node, "ageValue", p.age.value, "decimal")
            self.lit(node, "ageMin", p.age.min, "decimal")
            self.lit(node, "ageMax", p.age.max, "decimal")
            self.lit(node, "ageCategory", p.age.category)
            self.lit(node, "ageUnit", p.age.unit)
            self.lit(node, "ageBasis", p.age.basis)
        self.enum(node, "sex", "Sex", p.sex)
        if p.genotype == S.NOT_REPORTED:
            self.add(node, self.ev("notReported"), self.ev("hasGenotype"))
        else:
            for i, g in enumerate(p.genotype, start=1):
                self.genotype(case, node, i, g)
        for k in p.diagnoses:
            self.link(node, "diagnosis", self.vocab("diseases", k))
        for k in p.comorbidities:
            self.link(node, "comorbidity", self.any_term(k, ("diseases", "phenotypes")))
        for f in p.findings:
            self.lit(node, "finding", f)
        for i, pt in enumerate(p.prior_treatments, start=1):
            n = self.iri(f"{node.value}/prior-treatment/{i}")
            self.a(n, "PriorTreatment")
            self.link(node, "hasPriorTreatment", n)
            self.link(n, "patient", node)
            self.link(n, "inCase", case)
            self.link(n, "drug", self.vocab("drugs", pt.drug))
            self.enum(n, "result", "Response", pt.result)
            self.claims(n, pt.evidence, case)
        self.claims(node, p.evidence, case)
        for t in p.treatments:
            self.treatment(case, node, t)
        for o in p.outcomes:
            self.outcome(case, node, o)
        for ae in p.adverse_events:
            n = self.iri(f"{node.value}/adverse-event/{ae.id}")
            self.a(n, "AdverseEvent")
            self.link(node, "hasAdverseEvent", n)
            self.link(n, "patient", node)
            self.link(n, "inCase", case)
            self.lit(n, "localId", ae.id)
            self.link(n, "term", self.vocab("phenotypes", ae.term))
            self.link(n, "treatment", f"{node.value}/treatment/{ae.treatment}")
            self.enum(n, "severity", "Severity", ae.severity)
            self.enum(n, "action", "Action", ae.action)
            self.claims(n, ae.evidence, case)

    def genotype(self, case: ox.NamedNode, patient: ox.NamedNode, i: int, g: S.Genotype) -> None:
        n = self.iri(f"{patient.value}/genotype/{i}")
        gene = self.vocab("genes", g.gene)
        self.a(n, "Genotype")
        self.link(patient, "hasGenotype", n)
        self.link(n, "patient", patient)
        self.link(n, "inCase", case)
        self.link(n, "gene", gene)
        if g.variant == S.NOT_REPORTED:
            self.add(n, self.ev("notReported"), self.ev("variant"))
        else:
            assert isinstance(g.variant, S.Variant)
            v = self.iri(self.ns.variant(g.variant.hgvs))
            self.link(n, "variant", v)
            # The variant node is shared by every patient who carries it (validate checks that
            # its facts agree across files).
            here = self.graph
            self.graph = self.shared_graph
            self.a(v, "Variant")
            self.link(v, "gene", gene)
            self.lit(v, "rdfs:label", f"{g.gene} {g.variant.hgvs}")
            self.lit(v, "hgvs", g.variant.hgvs)
            self.lit(v, "transcript", g.variant.hgvs.split(":", 1)[0])
            self.lit(v, "proteinChange", g.variant.protein)
            self.lit(v, "legacyName", g.variant.legacy_name)
            self.graph = here
            # How this case file knows the variant belongs to its genotype, not to the shared node.
            self.lit(n, "transcriptStatus", g.variant.transcript_status)
            self.lit(n, "proteinChangeStatus", g.variant.protein_status)
        self.enum(n, "zygosity", "Zygosity", g.zygosity)
        self.enum(n, "inheritance", "Inheritance", g.inheritance)
        self.enum(n, "mechanism", "Mechanism", g.mechanism)
        self.claims(n, g.evidence, case)

    def treatment(self, case: ox.NamedNode, patient: ox.NamedNode, t: S.Treatment) -> None:
        n = self.iri(f"{patient.value}/treatment/{t.id}")
        self.a(n, "Treatment")
        self.link(patient, "hasTreatment", n)
        self.link(n, "patient", patient)
        self.link(n, "inCase", case)
        self.lit(n, "localId", t.id)
        self.link(n, "drug", self.vocab("drugs", t.drug))
        self.link(n, "indication", t.indication if t.indication == S.NOT_REPORTED else self.vocab("diseases", t.indication))
        self.lit(n, "access", t.access)
        self.dose(n, t.dose)
        self.enum(n, "frequency", "Frequency", t.frequency)
        self.enum(n, "route", "Route", t.route)
        self.lit(n, "startDate", t.start.isoformat() if hasattr(t.start, "isoformat") else t.start, "date")
        self.lit(n, "duration", t.duration, "duration")
        self.claims(n, t.evidence, case)
        kinds = [ph.kind for ph in t.phases]
        stopped_at = kinds.index("stopped") if "stopped" in kinds else -1
        if stopped_at >= 0:
            self.lit(n, "hasDechallenge", True)
            self.lit(n, "hasRechallenge", "restarted" in kinds[stopped_at + 1 :])
        prev: ox.NamedNode | None = None
        for order, ph in enumerate(t.phases, start=1):
            pn = self.iri(f"{n.value}/phase/{ph.id}")
            self.a(pn, "Phase")
            self.link(n, "hasPhase", pn)
            if order == 1:
                self.link(n, "firstPhase", pn)
            if prev is not None:
                self.link(prev, "nextPhase", pn)
            prev = pn
            self.link(pn, "treatment", n)
            self.link(pn, "inCase", case)
            self.lit(pn, "localId", ph.id)
            self.enum(pn, "phaseKind", "PhaseKind", ph.kind)
            self.lit(pn, "order", order)
            self.dose(pn, ph.dose)
            self.enum(pn, "frequency", "Frequency", ph.frequency)
            self.lit(pn, "duration", ph.duration, "duration")
            if ph.reason == S.NOT_REPORTED:
                self.add(pn, self.ev("notReported"), self.ev("reason"))
            elif isinstance(ph.reason, S.Reason):
                self.lit(pn, "reason", ph.reason.description)
                if ph.reason.adverse_event:
                    self.link(pn, "reasonAdverseEvent", f"{patient.value}/adverse-event/{ph.reason.adverse_event}")
            self.lit(pn, "followedBy", ph.followed_by)
            for oid in ph.outcomes:
                self.link(pn, "observedOutcome", f"{patient.value}/outcome/{oid}")
            self.claims(pn, ph.evidence, case)

    def outcome(self, case: ox.NamedNode, patient: ox.NamedNode, o: S.Outcome) -> None:
        n = self.iri(f"{patient.value}/outcome/{o.id}")
        self.a(n, "Outcome")
        self.link(patient, "hasOutcome", n)
        self.link(n, "patient", patient)
        self.link(n, "inCase", case)
        self.lit(n, "localId", o.id)
        self.link(n, "treatment", f"{patient.value}/treatment/{o.treatment}")
        self.link(n, "measure", self.vocab("measures", o.measure))
        self.lit(n, "timepoint", o.timepoint, "duration")
        if o.timepoint != S.NOT_REPORTED:
            self.lit(n, "timepointQualifier", o.timepoint_qualifier)
        for attr, pred in (("before", "valueBefore"), ("after", "valueAfter")):
            m = getattr(o, attr)
            if m == S.NOT_REPORTED:
                self.add(n, self.ev("notReported"), self.ev(pred))
            else:
                self.lit(n, pred, m.value, "decimal")
                self.lit(n, pred + "Unit", m.unit)
        self.enum(n, "direction", "Direction", o.direction)
        self.enum(n, "response", "Response", o.response)
        self.lit(n, "dcterms:description", o.description)
        self.claims(n, o.evidence, case)

    def ontology(self) -> None:
        """The project vocabulary in its own graph, so the data describes itself to a query."""
        from .shapes import ontology_triples

        self.graph = self.iri(self.ns.graph("ontology"))
        for t in ontology_triples(self.ns):
            self.add(t.subject, t.predicate, t.object)

    def concepts(self, concepts: dict[str, tuple[str, str]]) -> None:
        self.graph = self.iri(self.ns.graph("vocabulary"))
        for iri, (scheme, label) in sorted(concepts.items()):
            node = self.iri(iri)
            self.a(node, "Concept")
            self.lit(node, "rdfs:label", label)
            self.lit(node, "skos:notation", scheme)

    # -- parts -------------------------------------------------------------------------------
    def part(self, emit: Callable[[], None], network: bool = True) -> Part:
        """Run ``emit`` for one file and return its part (checked: no undefined ev: term), with
        its network fragment unless ``network`` is false (the vocabulary and the ontology, whose
        graphs are only whole once the concepts are in: see graph.evidence_graph)."""
        self.quads, self.shared_quads, self.used_concepts, self.cited, self.claim_sources = [], [], {}, set(), defaultdict(int)
        emit()
        assert isinstance(self.graph, ox.NamedNode)
        _check_terms(self.quads + self.shared_quads, self.ns)
        own, shared = canonical_nquads(self.quads), canonical_nquads(self.shared_quads)
        return Part(
            graph=self.graph.value,
            nquads=own,
            sha=hashlib.sha256(own).digest(),
            lines=own.count(b"\n"),
            shared=shared,
            network=network_fragment(own + shared, self.ns.ev, case_scope(self.ns, self.graph.value)) if network else None,
            concepts=tuple(sorted((iri, sc, label) for iri, (sc, label) in self.used_concepts.items())),
            sources=tuple(sorted(self.cited)),
            claims=tuple(sorted(self.claim_sources.items())),
        )


def compile_key(kb: Kb, kind: str, name: str, context: str | None = None) -> str | None:
    """The cache key of one file's part: its bytes, the vocabulary's IRIs, the base IRI and the
    code; None if the file's bytes are not known (it was not read from disk). ``context`` is
    :func:`compile_context` of the kb, worked out once for many files."""
    f = kb.files.get(f"{kind}:{name}")
    if f is None or not f.sha:
        return None
    return digest(context or compile_context(kb), kind, f.sha)


def compile_context(kb: Kb) -> str:
    """What every file's compile key covers: the code, the base IRI and the vocabulary."""
    return digest("compile", code_digest(), kb.config.base_iri, kb.vocab_digest)


def compile_kb(kb: Kb, cache: BuildCache | None = None) -> Compiled:
    """Compile a kb that passed validation. Raises :class:`CompileError` if it did not.

    Each source and case file becomes a :class:`Part` (taken from ``cache`` when its inputs did
    not change); the vocabulary, the concepts, the shared graph and the ontology are made from
    the parts.
    """
    if not kb.ok:
        raise CompileError("the kb has validation errors; run `evidence validate` first", kb.diagnostics)
    ns = Namespaces(kb.config.base_iri)
    b = _Builder(kb, ns)
    cache = cache or BuildCache(None)
    parts: dict[str, Part] = {}
    context = compile_context(kb) if cache.enabled else None
    with gc_paused():
        # A record names its model's mapping: a case's model is read back from the build cache
        # only if its part is compiled (see evidence.cases).
        records = [("source", sid, b.source, kb.sources) for sid in sorted(kb.sources)]
        records += [("case", cid, b.case, kb.cases) for cid in sorted(kb.cases)]
        made: list[Part | None] = []
        keys: list[str | None] = []
        spool = _PartSpool()
        for kind, name, _emit, _record in records:
            key = compile_key(kb, kind, name, context) if context else None
            made.append(_cached_part(cache, key, spool) if key else None)
            keys.append(key)
        # What the cache did not have is compiled in forked workers: each file's part depends on
        # nothing but the file and the kb, so the parts are the same made anywhere.
        todo = [i for i, part in enumerate(made) if part is None]
        for i, part in zip(todo, parallel_imap(_compile_record, todo, shared=(b, records)), strict=True):
            where = None
            if keys[i]:
                cache.put("compile", keys[i], replace(part, nquads=b""))
                where = cache.put_raw("compile", keys[i] + _CHUNK, part.nquads)
            made[i] = spool.keep(part, where)
        for part in made:
            assert part is not None
            parts[part.graph] = part
        vocabulary = b.part(b.vocabulary, network=False)
        concepts = dict(sorted({iri: (sc, label) for p in [vocabulary, *parts.values()] for iri, sc, label in p.concepts}.items()))
        b.concepts(concepts)
        concept_quads = canonical_nquads(b.quads)
        b.quads = []
        ontology = b.part(b.ontology, network=False)
    out = b.out
    out.parts = parts
    out.concepts = concepts
    spool.add(vocabulary.graph, _merge(vocabulary.nquads, concept_quads))
    spool.add(ontology.graph, ontology.nquads)
    shared = _merge(vocabulary.shared, *(p.shared for p in parts.values()))
    if shared:
        spool.add(ns.graph("shared"), shared)
    spool.chunks.sort()
    out.chunks = spool.chunks
    return out


_CHUNK = "/chunk"  # a part's chunk is kept beside it in the cache, under its key and this


def _cached_part(cache: BuildCache, key: str, spool: _PartSpool) -> Part | None:
    """The part the cache has under ``key``, its chunk named in the spool where it is in the
    cache's pack, without being read (at 10,000 cases the chunks are 1.2 GB, which a rebuild
    read, unpickled and wrote into the spool again); None if either is missing."""
    part = cache.get("compile", key)
    if not isinstance(part, Part) or part.nquads:
        return None
    where = cache.raw_range("compile", key + _CHUNK)
    return part if where is not None and spool.refer(part, where) else None


class _PartSpool:
    """compile_kb's parts as they arrive: each file's chunk goes into a :class:`Spool` (or is named
    there where the build cache keeps it) and the part is kept without it, so the process never
    holds every chunk at once (1 GB at 10,000 cases).
    A spool that cannot be written (no space in the temporary folder) is a CompileError."""

    def __init__(self) -> None:
        try:
            self.chunks = Spool()
        except OSError as e:
            raise self._error(e) from None

    def keep(self, part: Part, where: tuple[int, int, int, int] | None = None) -> Part:
        """The part without its chunk, which goes into the spool: named where it is (``where``,
        in the build cache's pack, so that a cold build does not write every chunk twice), or
        written."""
        if not (where is not None and self.refer(part, where)) and part.nquads:
            self.add(part.graph, part.nquads)
        return replace(part, nquads=b"")

    def refer(self, part: Part, where: tuple[int, int, int, int]) -> bool:
        """Name the part's chunk where it is, (descriptor, offset, length, CRC-32); False if it cannot be
        (a file cut short). An empty chunk is not named, as it is not written."""
        try:
            if where[2]:
                self.chunks.add_ref(part.graph, *where)
            return True
        except OSError:
            return False

    def add(self, graph: str, chunk: bytes) -> None:
        try:
            self.chunks.add(graph, chunk)
        except OSError as e:
            raise self._error(e) from None

    @staticmethod
    def _error(e: OSError) -> CompileError:
        import tempfile

        return CompileError(f"cannot keep the compiled graph in a temporary file in {tempfile.gettempdir()} "
                            f"({type(e).__name__}: {e}); free space there, or point TMPDIR at a folder with room "
                            "(about 100 KB per case)")


def _compile_record(job: tuple[_Builder, list[tuple[str, str, Callable[[Any], None], Any]]], i: int) -> Part:
    b, records = job
    _kind, name, emit, models = records[i]
    record = models[name]
    return b.part(lambda: emit(record))


def _merge(*chunks: bytes) -> bytes:
    """Canonical N-Quads chunks put together into one (distinct lines, sorted)."""
    lines = {ln for c in chunks for ln in c.splitlines()}
    return b"\n".join(sorted(lines)) + b"\n" if lines else b""


def _check_terms(quads: list[ox.Quad], ns: Namespaces) -> None:
    """Every ev: property used is defined in the ontology table (catches a typo in the compiler)."""
    used = {p.value[len(ns.ev):] for p in {q.predicate for q in quads} if p.value.startswith(ns.ev)}
    unknown = sorted(used - _KNOWN_PROPS - set(CLASSES))
    if unknown:
        raise CompileError(f"the compiler used undefined properties: {', '.join(unknown)}")
