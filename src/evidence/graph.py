"""The evidence network derived from the RDF graph (:class:`Network`; as networkx, :func:`evidence_graph`).

Nodes are the entities that matter to a reader (cases, patients, drugs, genes, variants,
diseases, outcome measures, outcomes, adverse-event terms, sources); edges come from SPARQL, IRI
to IRI only (building from every literal costs twice as much and adds nothing a network view
needs, see PERFORMANCE.md). Each kb file's edges are queried from its own graphs when it is
compiled (:func:`network_fragment`), so that a rebuild puts the network together from what did
not change instead of loading and querying the whole graph.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import networkx as nx
import pyoxigraph as ox

from .namespaces import STANDARD
from .perf import gc_paused

if TYPE_CHECKING:
    from .compile import Compiled
    from .namespaces import Namespaces

__all__ = ["Network", "evidence_network", "evidence_graph", "forget_evidence_graph", "related_cases", "case_entities", "Fragment", "Named", "network_fragment", "case_scope", "network_from_fragments",
           "GRAPHML_HEAD", "GRAPHML_TAIL", "graphml_piece", "case_graphml", "common_graphml"]

# (subject kind, edge label, object kind, SPARQL pattern binding ?s ?o)
_EDGES: list[tuple[str, str, str, str]] = [
    ("case", "has patient", "patient", "?s ev:hasPatient ?o"),
    ("case", "condition", "disease", "?s ev:condition ?o"),
    ("case", "primary source", "source", "?s ev:primarySource ?o"),
    ("case", "secondary source", "source", "?s ev:secondarySource ?o"),
    ("patient", "diagnosis", "disease", "?s ev:diagnosis ?o"),
    ("patient", "carries", "variant", "?s ev:hasGenotype/ev:variant ?o"),
    ("patient", "genotype at", "gene", "?s ev:hasGenotype/ev:gene ?o"),
    ("variant", "in gene", "gene", "?s a ev:Variant ; ev:gene ?o"),
    ("patient", "treated with", "drug", "?s ev:hasTreatment/ev:drug ?o"),
    ("patient", "has outcome", "outcome", "?s ev:hasOutcome ?o"),
    ("outcome", "measured by", "measure", "?s a ev:Outcome ; ev:measure ?o"),
    ("outcome", "after", "drug", "?s a ev:Outcome ; ev:treatment/ev:drug ?o"),
    ("patient", "adverse event", "phenotype", "?s ev:hasAdverseEvent/ev:term ?o"),
    ("drug", "targets", "gene", "?s a ev:Drug ; ev:target ?o"),
]

# Every edge pattern in one query, ?e naming which; and every node's label, ?r ranking it (an
# rdfs:label before a title before a local id).
_FRAGMENT_EDGES = "SELECT ?e ?s ?o WHERE { " + " UNION ".join(
    f"{{ {pattern} BIND({i} AS ?e) }}" for i, (_, _, _, pattern) in enumerate(_EDGES)) + " }"
_FRAGMENT_LABELS = (
    "SELECT ?r ?s ?l WHERE { { ?s rdfs:label ?l BIND(0 AS ?r) } UNION { ?s dcterms:title ?l BIND(1 AS ?r) } "
    "UNION { ?s ev:localId ?l BIND(2 AS ?r) } }"
)
_PREFIXES = {"rdfs": "http://www.w3.org/2000/01/rdf-schema#", "dcterms": "http://purl.org/dc/terms/"}
_RDF = STANDARD["rdf"]


_NO_KIND = 1 << 30  # the kind rank of an IRI that no edge of a fragment reaches (one it only labels)
_NO_LABEL = (3, "")  # the label rank and label of an IRI that nothing labels (ranks: see _FRAGMENT_LABELS)
Named = tuple[str, int, int, str]  # (IRI, kind rank, label rank, label): the best a fragment says of an IRI


@dataclass(frozen=True)
class Fragment:
    """What some named graphs add to the evidence network: the IRIs they name, each with the best
    kind and label they give it, and the edges, each once. Made by :meth:`of`.

    A kb file's fragment is made with its part (see :class:`evidence.compile.Part`) and kept in
    the build cache with it, so the network of a rebuilt kb is put together from fragments, never
    queried from the whole graph again. No edge pattern joins triples of two files (a file states
    everything about its own nodes, and the shared facts of the variants it names), so the
    fragments together give the network of the whole graph; tests/test_graph.py checks it.

    A node's kind is the first edge pattern that reaches it (``2 * index`` as a subject, ``2 *
    index + 1`` as an object: the smallest rank wins) and its label the best-ranked, smallest one,
    so what several fragments say of one IRI is the least of what each says. A case file's
    fragment has a ``scope``, the case's IRI: the IRIs under it (the case, its patients, their
    outcomes) are ``own``, named by no other file, so their kind and label are final here and the
    network takes them as they are; the ``others`` (drugs, genes, sources ...) are merged across
    fragments (:func:`network_from_fragments`). At 10,000 cases that merge went over 340,000
    edges and 200,000 labels, 1.05 s of every build; nine in ten nodes are a case's own.
    """

    own: tuple[Named, ...] = ()  # the IRIs under the scope, in IRI order
    others: tuple[Named, ...] = ()  # every other IRI named, in IRI order
    own_edges: tuple[tuple[str, str, str], ...] = ()  # (subject, object, label) from an own IRI, sorted
    other_edges: tuple[tuple[str, str, str], ...] = ()  # the other edges, sorted
    scope: str = ""
    # SHA-256 of everything above but the own IRIs' labels (a case's title, a patient's id): what
    # the network view of a large kb is made from (site_pages.SitePages.network). Set by of().
    shape: bytes = b""

    @classmethod
    def of(cls, edges: Iterable[tuple[int, str, str]] = (), labels: Iterable[tuple[str, int, str]] = (), scope: str = "") -> Fragment:
        """The fragment that some edges ((index in _EDGES, subject, object)) and labels ((IRI,
        rank, label)) make; the IRIs under ``scope`` (it, or it followed by ``/``) are its own."""
        kinds: dict[str, int] = {}
        for e, s, o in edges:
            if kinds.get(s, _NO_KIND) > 2 * e:
                kinds[s] = 2 * e
            if kinds.get(o, _NO_KIND) > 2 * e + 1:
                kinds[o] = 2 * e + 1
        best: dict[str, tuple[int, str]] = {}
        for iri, rank, label in labels:
            if (rank, label) < best.get(iri, _NO_LABEL):
                best[iri] = (rank, label)
        inside = scope + "/"
        own: list[Named] = []
        others: list[Named] = []
        for iri in sorted(kinds.keys() | best.keys()):
            named = (iri, kinds.get(iri, _NO_KIND), *best.get(iri, _NO_LABEL))
            (own if scope and (iri == scope or iri.startswith(inside)) else others).append(named)
        mine = {n[0] for n in own}
        lines = sorted({(s, o, _EDGES[e][1]) for e, s, o in edges})
        own_edges, other_edges = tuple(e for e in lines if e[0] in mine), tuple(e for e in lines if e[0] not in mine)
        shape = hashlib.sha256(repr((scope, [n[:2] for n in own], others, own_edges, other_edges)).encode("utf-8")).digest()
        return cls(tuple(own), tuple(others), own_edges, other_edges, scope, shape)


def case_scope(ns: Namespaces, graph: str) -> str:
    """The scope of a file's fragment (see :class:`Fragment`): the case's IRI for a case file's
    graph, none for another graph."""
    prefix = ns.graph("case") + "/"
    return ns.case(graph[len(prefix):]) if graph.startswith(prefix) else ""


def network_fragment(nquads: bytes, ev: str, scope: str = "") -> Fragment:
    """The fragment of the graphs in ``nquads`` (N-Quads, every quad in a named graph); the IRIs
    under ``scope`` are its own (see :class:`Fragment`).

    Only the lines whose predicate the two queries read are loaded (:func:`_read_predicates`):
    any other triple cannot change their answers. That is about 30% of a case file's bytes, and
    with ``Store.load`` (``bulk_load`` is made for large data and costs more per call) a
    fragment took 0.57 of the time (measured ad hoc on the 2,002 files of 1,000 synthetic cases:
    0.94 s against 1.65 s)."""
    if not nquads:
        return Fragment(scope=scope)
    read = _read_predicates(ev)
    # An N-Quads line is `subject predicate object graph .`; neither an IRI nor a blank node
    # holds a space, so the predicate is the second word.
    lines = [line for line in nquads.split(b"\n") if (words := line.split(b" ", 2))[1:2] and words[1] in read]
    store = ox.Store()
    store.load(b"\n".join(lines), format=ox.RdfFormat.N_QUADS)
    prefixes = {**_PREFIXES, "ev": ev}
    edges = [(int(r["e"].value), r["s"].value, r["o"].value)
             for r in store.query(_FRAGMENT_EDGES, prefixes=prefixes, use_default_graph_as_union=True)]
    labels = [(r["s"].value, int(r["r"].value), r["l"].value)
              for r in store.query(_FRAGMENT_LABELS, prefixes=prefixes, use_default_graph_as_union=True)]
    return Fragment.of(edges, labels, scope)


@functools.lru_cache(maxsize=8)
def _read_predicates(ev: str) -> frozenset[bytes]:
    """Every predicate that the fragment's queries name, as it stands in N-Quads (``<IRI>``):
    each ``prefix:name`` and ``<IRI>`` of their text, and rdf:type for ``a``. A prefix that is
    not declared is a KeyError here, not a predicate silently left out."""
    prefixes = {**_PREFIXES, "ev": ev, "rdf": _RDF}
    text = _FRAGMENT_EDGES + " " + _FRAGMENT_LABELS
    iris = {prefixes[p] + name for p, name in re.findall(r"(?<![\w<])([a-z]+):(\w+)", text)}
    iris |= set(re.findall(r"<([^<>\s]+)>", text))
    if re.search(r"\sa\s", text):
        iris.add(_RDF + "type")
    return frozenset(f"<{iri}>".encode() for iri in iris)


class Network:
    """The evidence network as the build reads it: every node's kind and label, and the edges,
    read-only. Nodes are in IRI order and edges in (subject, object, label) order, which is the
    order networkx gives for the graph :meth:`to_networkx` makes (``evidence_graph``).

    The build walks this, not a networkx graph: putting 100,000 nodes and 323,000 edges into a
    ``MultiDiGraph`` took about half of a 10,000-case rebuild's 2 s for the network, and walking
    its edge views was slower than walking lists."""

    __slots__ = ("nodes", "edges", "scoped", "_out")

    def __init__(self, nodes: dict[str, tuple[str, str]], edges: list[tuple[str, str, str]], scoped: bool = True):
        self.nodes = nodes  # IRI -> (kind, label), in IRI order
        self.edges = edges  # (subject, object, label), sorted, each once
        # Whether every fragment's own nodes were its alone (see Fragment): then a case file's
        # nodes and edges are those of its fragment (case_graphml).
        self.scoped = scoped
        out: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        for e in edges:
            out[e[0]].append(e)
        self._out = dict(out)

    def __len__(self) -> int:
        return len(self.nodes)

    def label(self, iri: str) -> str:
        return self.nodes[iri][1]

    def out(self, iri: str) -> list[tuple[str, str, str]]:
        """The edges (subject, object, label) that start at ``iri``, in (object, label) order."""
        return self._out.get(iri, [])

    def of_kind(self, kind: str) -> list[str]:
        """The nodes of one kind, in IRI order."""
        return [iri for iri, (k, _l) in self.nodes.items() if k == kind]

    def to_networkx(self) -> nx.MultiDiGraph:
        """The same network as a networkx multigraph: ``kind`` and ``label`` on every node, the
        label as each edge's key and as its ``label``."""
        with gc_paused():
            g = nx.MultiDiGraph(name="evidence")
            for iri, (kind, label) in self.nodes.items():
                g.add_node(iri, kind=kind, label=label)
            for s, o, label in self.edges:
                g.add_edge(s, o, key=label, label=label)
        return g


def evidence_network(compiled: Compiled) -> Network:
    """The evidence network of a compiled graph (:class:`Network`), made once per compiled graph
    from the network fragments of its parts and of its other graphs (the GraphML export and the
    site both use it)."""
    made = compiled.views.get("evidence_network")
    if made is None:
        made = compiled.views["evidence_network"] = network_from_fragments(_fragments(compiled))
    return made


def evidence_graph(compiled: Compiled) -> nx.MultiDiGraph:
    """The evidence network as a networkx graph, with ``kind`` and ``label`` on every node and
    ``label`` on edges (for analysis with networkx; the build itself reads :func:`evidence_network`).

    Made once per compiled graph; treat it as read-only, or copy it first.
    """
    made = compiled.views.get("evidence_graph")
    if made is None:
        made = compiled.views["evidence_graph"] = evidence_network(compiled).to_networkx()
    return made


def forget_evidence_graph(compiled: Compiled) -> None:
    """Drop the networks made by :func:`evidence_network` and :func:`evidence_graph` (they are
    made again if asked for)."""
    compiled.views.pop("evidence_graph", None)
    compiled.views.pop("evidence_network", None)


def _fragments(compiled: Compiled) -> list[Fragment]:
    ev = compiled.ns.ev
    frags = [p.network if p.network is not None else network_fragment(compiled.chunks.get(g, b"") + p.shared, ev, case_scope(compiled.ns, g))
             for g, p in compiled.parts.items()]
    # The graphs no file owns: the vocabulary and the ontology. The shared graph is what the parts
    # add to it, and each part's fragment was made with its own share; a graph made without parts
    # (Compiled.from_quads) has only its chunks, the shared one included.
    own = set(compiled.parts) | ({compiled.ns.graph("shared")} if compiled.parts else set())
    rest = b"".join(compiled.chunks[g] for g in sorted(compiled.chunks) if g not in own)
    frags.append(network_fragment(rest, ev))
    return frags


def network_from_fragments(fragments: list[Fragment]) -> Network:
    """The network the fragments make together: a node's kind comes from the first edge pattern
    (subject before object) that reaches it, its label is the best-ranked, smallest one.

    Made with the collector paused (perf.gc_paused): at 10,000 cases it is a million tuples that
    all stay alive, and the collections they set off walked the compiled parts made since the
    models were frozen."""
    with gc_paused():
        return Network(*_resolve(fragments))


def _resolve(fragments: list[Fragment]) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str]], bool]:
    """The nodes (IRI -> (kind, label)) and edges (subject, object, label) that the fragments make
    together, both sorted: a node's kind comes from the first edge pattern (subject before
    object) that reaches it, its label is the best-ranked, smallest one; and whether each
    fragment's own nodes were its alone.

    What a fragment names as its own is taken as it is, unless another fragment names it too
    (two files with one scope, or an edge into another file's case): then everything is merged."""
    own: list[Named] = []
    own_edges: list[tuple[str, str, str]] = []
    for f in fragments:
        own += f.own
        own_edges += f.own_edges
    mine = {n[0] for n in own}
    merged = _merge((f.others for f in fragments), (f.other_edges for f in fragments), mine) if len(mine) == len(own) else None
    scoped = merged is not None
    if merged is None:  # not as their scopes say: merge what every fragment names
        merged = _merge([own] + [f.others for f in fragments], [own_edges] + [f.other_edges for f in fragments], set())
        assert merged is not None
        own, own_edges = [], []
    best, other_edges = merged
    named = own + [(iri, k, r, label) for iri, (k, r, label) in best.items()]
    named.sort()  # in IRI order, so that the GraphML is byte-identical between builds
    edges = own_edges + list(other_edges)
    edges.sort()
    return _nodes(named), edges, scoped


def _nodes(named: Iterable[Named]) -> dict[str, tuple[str, str]]:
    """The nodes (IRI -> (kind, label)) among some IRIs, in their order: those an edge reaches."""
    nodes = {}
    for iri, kind, rank, label in named:
        if kind < _NO_KIND:
            edge = _EDGES[kind // 2]
            nodes[iri] = (edge[2] if kind % 2 else edge[0], label if rank < _NO_LABEL[0] else iri.rsplit("/", 1)[-1])
    return nodes


def _merge(named: Iterable[Iterable[Named]], edges: Iterable[Iterable[tuple[str, str, str]]],
           mine: set[str]) -> tuple[dict[str, tuple[int, int, str]], set[tuple[str, str, str]]] | None:
    """The least kind and label that the ``named`` entries give each IRI, and the ``edges`` each
    once; None if one of those IRIs is in ``mine`` (a fragment's own)."""
    best: dict[str, tuple[int, int, str]] = {}
    for entries in named:
        for iri, kind, rank, label in entries:
            got = best.get(iri)
            if got is None:
                if iri in mine:
                    return None
                best[iri] = (kind, rank, label)
            elif kind < got[0] or (rank, label) < got[1:]:
                best[iri] = (min(kind, got[0]), *min((rank, label), got[1:]))
    lines: set[tuple[str, str, str]] = set()
    for group in edges:
        lines.update(group)
    return best, lines


# The GraphML file: GRAPHML_HEAD, pieces of nodes and edges, GRAPHML_TAIL. The keys are those
# networkx declares for this network (it reads the file back as the same graph, tested).
GRAPHML_HEAD = (
    b"<?xml version='1.0' encoding='utf-8'?>\n"
    b'<graphml xmlns="http://graphml.graphdrawing.org/xmlns" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    b'xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n'
    b'<key id="d3" for="edge" attr.name="label" attr.type="string"/>\n'
    b'<key id="d2" for="node" attr.name="label" attr.type="string"/>\n'
    b'<key id="d1" for="node" attr.name="kind" attr.type="string"/>\n'
    b'<key id="d0" for="graph" attr.name="name" attr.type="string"/>\n'
    b'<graph edgedefault="directed"><data key="d0">evidence</data>\n'
)
GRAPHML_TAIL = b"</graph></graphml>\n"
# What XML 1.0 cannot hold (a validated kb has none of these; a graph from elsewhere might).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml(text: str) -> str:
    """Element text: a carriage return as a character reference (a parser reads a bare one as a
    line break), as networkx's lxml writer wrote it."""
    return escape(_NOT_XML.sub("\ufffd", text), {"\r": "&#13;"})


def _attr(text: str) -> str:
    """An attribute value: also quotes, line breaks and tabs as references (a parser reads them
    as spaces)."""
    return escape(_NOT_XML.sub("\ufffd", text), {'"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"})


def graphml_piece(nodes: Iterable[tuple[str, tuple[str, str]]], edges: Iterable[tuple[str, str, str]]) -> bytes:
    """GraphML elements of some nodes ((IRI, (kind, label))) and edges ((subject, object, label)),
    to stand between GRAPHML_HEAD and GRAPHML_TAIL. Each edge has its label as id, as networkx
    writes a multigraph's edge keys (GraphML allows nodes and edges in any order)."""
    out = [f'<node id="{_attr(iri)}">\n  <data key="d1">{_xml(kind)}</data>\n  <data key="d2">{_xml(label)}</data>\n</node>\n'
           for iri, (kind, label) in nodes]
    out += [f'<edge source="{_attr(s)}" target="{_attr(o)}" id="{_attr(label)}">\n  <data key="d3">{_xml(label)}</data>\n</edge>\n'
            for s, o, label in edges]
    return "".join(out).encode("utf-8")


def case_graphml(fragment: Fragment, case_iri: str) -> bytes:
    """The GraphML piece of one case file: the nodes under the case's IRI (the case, its
    patients, their outcomes) and the edges that start from them, all of them in the case's own
    fragment. No other file's edges reach these nodes, so their kind and label are the ones of
    the whole network (tests/test_graph.py checks it); when one does, the network is not
    ``scoped`` and the GraphML is written whole from it instead (export._graphml_pieces)."""
    if fragment.scope != case_iri:
        raise ValueError(f"the fragment of {fragment.scope or 'no case'} is not the fragment of {case_iri}")
    return graphml_piece(_nodes(fragment.own).items(), fragment.own_edges)


def common_graphml(net: Network, case_prefix: str) -> bytes:
    """The GraphML piece of what is under no case's IRI (drugs, genes, variants, diseases,
    measures, phenotypes, sources) and the edges that start there, from the whole network."""
    common = [iri for iri in net.nodes if not iri.startswith(case_prefix)]  # in IRI order
    edges = [e for iri in common for e in net.out(iri)]  # a few, not every edge of every case; sorted, as common is
    nodes = net.nodes
    return graphml_piece(((iri, nodes[iri]) for iri in common), edges)


def case_entities(g: nx.MultiDiGraph, case: str) -> set[str]:
    """The drugs, genes, variants and diseases a case reaches (directly or through a patient)."""
    found: set[str] = set()
    for _, x in g.out_edges(case):
        kind = g.nodes[x]["kind"]
        if kind == "disease":
            found.add(x)
        elif kind == "patient":
            found.update(y for _, y in g.out_edges(x) if g.nodes[y]["kind"] in ("drug", "gene", "variant", "disease"))
    return found


def related_cases(g: nx.MultiDiGraph, case_iri: str, limit: int = 10) -> list[tuple[str, float, list[str]]]:
    """Cases that share drugs, genes, variants or diseases with ``case_iri``, best first.

    Returns (case IRI, Jaccard similarity of the shared entities, labels of what they share).
    Only cases reached through a shared entity are compared, and each case's entities are worked
    out once: the cost follows the neighbourhood, not the size of the kb.
    """
    if case_iri not in g:
        return []
    mine = case_entities(g, case_iri)
    candidates: set[str] = set()
    for e in mine:  # entity <- patient <- case, or entity <- case
        for p in g.predecessors(e):
            kind = g.nodes[p]["kind"]
            if kind == "case":
                candidates.add(p)
            elif kind == "patient":
                candidates.update(c for c in g.predecessors(p) if g.nodes[c]["kind"] == "case")
    candidates.discard(case_iri)
    scores: dict[str, tuple[float, list[str]]] = {}
    for other in candidates:
        theirs = case_entities(g, other)
        shared = mine & theirs
        if shared:
            scores[other] = (len(shared) / len(mine | theirs), sorted(g.nodes[x]["label"] for x in shared))
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1][0], kv[0]))
    return [(iri, score, what) for iri, (score, what) in ranked[:limit]]


def degree_by_kind(g: nx.MultiDiGraph) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for _, d in g.nodes(data=True):
        counts[d["kind"]] += 1
    return dict(sorted(counts.items()))
