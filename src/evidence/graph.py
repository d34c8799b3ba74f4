"""The evidence network: a networkx graph derived from the RDF graph.

Nodes are the entities that matter to a reader (cases, patients, drugs, genes, variants,
diseases, outcome measures, outcomes, adverse-event terms, sources); edges come from SPARQL over
the compiled store, IRI to IRI only (building from every literal costs twice as much and adds
nothing a network view needs, see PERFORMANCE.md).
"""

from __future__ import annotations

import io
from collections import defaultdict

import networkx as nx

from .compile import Compiled

__all__ = ["evidence_graph", "graphml_bytes", "related_cases", "case_entities", "EDGE_QUERY"]

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

EDGE_QUERY = "PREFIX ev: <{ev}>\nPREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\nSELECT ?s ?o WHERE {{ {pattern} }}"


def _labels(compiled: Compiled) -> dict[str, str]:
    q = (
        "PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\nPREFIX dcterms: <http://purl.org/dc/terms/>\n"
        f"PREFIX ev: <{compiled.ns.ev}>\n"
        "SELECT ?s ?l WHERE { { ?s rdfs:label ?l } UNION { ?s dcterms:title ?l } UNION { ?s ev:localId ?l FILTER NOT EXISTS { ?s rdfs:label ?x } } }"
    )
    out: dict[str, str] = {}
    for row in compiled.store().query(q, use_default_graph_as_union=True):
        out.setdefault(row["s"].value, row["l"].value)
    return out


def evidence_graph(compiled: Compiled) -> nx.MultiDiGraph:
    """The evidence network, with ``kind`` and ``label`` on every node and ``label`` on edges.

    Made once per compiled graph (the GraphML export and the site both use it); treat it as
    read-only, or copy it first.
    """
    made = compiled.views.get("evidence_graph")
    if made is None:
        made = compiled.views["evidence_graph"] = _evidence_graph(compiled)
    return made


def _evidence_graph(compiled: Compiled) -> nx.MultiDiGraph:
    store = compiled.store()
    labels = _labels(compiled)
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str]] = []
    for skind, label, okind, pattern in _EDGES:
        for row in store.query(EDGE_QUERY.format(ev=compiled.ns.ev, pattern=pattern), use_default_graph_as_union=True):
            s, o = row["s"].value, row["o"].value
            nodes.setdefault(s, skind)
            nodes.setdefault(o, okind)
            edges.append((s, o, label))
    g = nx.MultiDiGraph(name="evidence")
    for iri in sorted(nodes):  # sorted, so that GraphML output is byte-identical between builds
        g.add_node(iri, kind=nodes[iri], label=labels.get(iri, iri.rsplit("/", 1)[-1]))
    for s, o, label in sorted(set(edges)):
        g.add_edge(s, o, key=label, label=label)
    return g


def graphml_bytes(g: nx.MultiDiGraph) -> bytes:
    buf = io.BytesIO()
    nx.write_graphml(g, buf, encoding="utf-8", prettyprint=True)
    return buf.getvalue()


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
