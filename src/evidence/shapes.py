"""The ontology (labels and comments of every ``ev:`` term) and the SHACL shapes, both
generated from :mod:`evidence.ontology`, and SHACL validation of a compiled graph with pyshacl."""

from __future__ import annotations

import pyoxigraph as ox

from .errors import CompileError
from .namespaces import STANDARD, Namespaces
from .ontology import CLASSES, INDIVIDUALS, PROPERTIES

__all__ = ["ontology_triples", "shape_triples", "validate_shapes", "validate_compiled"]

_RDF = STANDARD["rdf"]
_RDFS = STANDARD["rdfs"]
_OWL = STANDARD["owl"]
_SH = STANDARD["sh"]
_XSD = STANDARD["xsd"]
_SCHEMA = STANDARD["schema"]


def _n(iri: str) -> ox.NamedNode:
    return ox.NamedNode(iri)


def _expand(ns: Namespaces, name: str) -> str:
    if name.startswith("xsd:"):
        return _XSD + name[4:]
    if name.startswith("rdfs:"):
        return _RDFS + name[5:]
    if name.startswith("rdf:"):
        return _RDF + name[4:]
    return ns.ev + name


def ontology_triples(ns: Namespaces) -> list[ox.Triple]:
    """The project vocabulary as OWL/RDFS, with a label and a comment for every term."""
    t: list[ox.Triple] = []
    onto = _n(ns.ev)
    t.append(ox.Triple(onto, _n(_RDF + "type"), _n(_OWL + "Ontology")))
    t.append(ox.Triple(onto, _n(_RDFS + "label"), ox.Literal("evidence project vocabulary")))
    t.append(ox.Triple(onto, _n(_RDFS + "comment"), ox.Literal("Classes and properties of the evidence knowledge base graph.")))
    for name, (label, comment) in sorted(CLASSES.items()):
        c = _n(ns.ev + name)
        t += [
            ox.Triple(c, _n(_RDF + "type"), _n(_OWL + "Class")),
            ox.Triple(c, _n(_RDFS + "label"), ox.Literal(label, language="en")),
            ox.Triple(c, _n(_RDFS + "comment"), ox.Literal(comment, language="en")),
            ox.Triple(c, _n(_RDFS + "isDefinedBy"), onto),
        ]
    for p in sorted(PROPERTIES, key=lambda p: p.name):
        node = _n(ns.ev + p.name)
        literal = p.range.startswith("xsd:")
        t += [
            ox.Triple(node, _n(_RDF + "type"), _n(_OWL + ("DatatypeProperty" if literal else "ObjectProperty"))),
            ox.Triple(node, _n(_RDFS + "label"), ox.Literal(p.label, language="en")),
            ox.Triple(node, _n(_RDFS + "comment"), ox.Literal(p.comment, language="en")),
            ox.Triple(node, _n(_RDFS + "isDefinedBy"), onto),
            ox.Triple(node, _n(_SCHEMA + "rangeIncludes"), _n(_expand(ns, p.range))),
        ]
        # schema:domainIncludes, not rdfs:domain: several domains must not mean their intersection.
        for d in p.domain:
            t.append(ox.Triple(node, _n(_SCHEMA + "domainIncludes"), _n(ns.ev + d)))
    for name, (label, comment) in sorted(INDIVIDUALS.items()):
        i = _n(ns.ev + name)
        t += [
            ox.Triple(i, _n(_RDF + "type"), _n(_OWL + "NamedIndividual")),
            ox.Triple(i, _n(_RDFS + "label"), ox.Literal(label, language="en")),
            ox.Triple(i, _n(_RDFS + "comment"), ox.Literal(comment, language="en")),
        ]
    return t


def shape_triples(ns: Namespaces) -> list[ox.Triple]:
    """One sh:NodeShape per class, one property shape per (class, property), all with IRIs."""
    t: list[ox.Triple] = []
    sh = _SH
    integer = _XSD + "integer"
    for cname in sorted(CLASSES):
        props = [p for p in PROPERTIES if cname in p.domain]
        shape = _n(f"{ns.shapes}{cname}")
        t += [
            ox.Triple(shape, _n(_RDF + "type"), _n(sh + "NodeShape")),
            ox.Triple(shape, _n(sh + "targetClass"), _n(ns.ev + cname)),
            ox.Triple(shape, _n(_RDFS + "label"), ox.Literal(f"Shape of {CLASSES[cname][0]}")),
        ]
        for p in sorted(props, key=lambda p: p.name):
            ps = _n(f"{ns.shapes}{cname}-{p.name}")
            t += [
                ox.Triple(shape, _n(sh + "property"), ps),
                ox.Triple(ps, _n(sh + "path"), _n(ns.ev + p.name)),
                ox.Triple(ps, _n(sh + "name"), ox.Literal(p.label)),
            ]
            if p.range.startswith("xsd:"):
                t.append(ox.Triple(ps, _n(sh + "datatype"), _n(_expand(ns, p.range))))
            elif p.range in CLASSES:
                t.append(ox.Triple(ps, _n(sh + "class"), _n(ns.ev + p.range)))
            else:
                t.append(ox.Triple(ps, _n(sh + "nodeKind"), _n(sh + "IRI")))
            if p.required:
                t.append(ox.Triple(ps, _n(sh + "minCount"), ox.Literal("1", datatype=_n(integer))))
            if p.single:
                t.append(ox.Triple(ps, _n(sh + "maxCount"), ox.Literal("1", datatype=_n(integer))))
    return t


def validate_shapes(data_graph, shapes_turtle: str) -> None:
    """Validate an rdflib graph against the shapes; raise CompileError listing violations."""
    from pyshacl import validate
    from rdflib import Graph

    shapes = Graph().parse(data=shapes_turtle, format="turtle")
    conforms, report_graph, report_text = validate(data_graph, shacl_graph=shapes, inference="none", advanced=False, allow_warnings=True)
    if conforms:
        return
    lines = [ln for ln in str(report_text).splitlines() if ln.strip()]
    raise CompileError("the compiled graph violates its SHACL shapes:\n" + "\n".join(lines[:80]))


# Below this many case graphs one process is quicker than forking workers.
PARALLEL_FROM = 200


# The partitions, set before the workers fork so that they inherit them instead of receiving
# millions of pickled quads (which cost more than the validation saved).
_PARTS: list = []


def _partition_report(args: tuple) -> str | None:
    """In a worker: validate one partition; None if it conforms, else the report text."""
    index, shapes_turtle, prefixes = args
    quads = _PARTS[index]
    from .perf import gc_paused
    from .rdflib_bridge import to_rdflib_graph

    with gc_paused():
        graph = to_rdflib_graph(quads, prefixes)
    try:
        validate_shapes(graph, shapes_turtle)
    except CompileError as exc:
        return exc.message
    return None


def validate_compiled(compiled, shapes_turtle: str, workers: int | None = None, cache=None) -> None:
    """Validate the compiled graph against the shapes, in parallel on large kbs.

    A shape looks at a node and the nodes it points to. Every node of a case lives in that case's
    graph; what a case points to outside it (sources, vocabulary terms, variants, curators,
    concepts, the ontology) lives in the other graphs. So the case graphs are split among the
    workers and every worker also gets all the other graphs: each partition is validated whole.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor

    from .perf import gc_paused
    from .rdflib_bridge import to_rdflib_graph

    case_prefix = compiled.ns.graph("case", "")
    by_graph: dict[str, list] = {}
    for q in compiled.quads:
        by_graph.setdefault(q.graph_name.value, []).append(q)
    cases = sorted(g for g in by_graph if g.startswith(case_prefix))
    common = [q for g, qs in by_graph.items() if not g.startswith(case_prefix) for q in qs]
    workers = workers or os.cpu_count() or 1
    prefixes = compiled.ns.prefixes()
    if workers < 2 or len(cases) < PARALLEL_FROM:
        with gc_paused():
            graph = to_rdflib_graph(compiled.quads, prefixes)
        validate_shapes(graph, shapes_turtle)
        return
    parts = [common + [q for g in cases[i::workers] for q in by_graph[g]] for i in range(workers)]
    import multiprocessing

    global _PARTS
    _PARTS = parts
    try:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
            reports = list(pool.map(_partition_report, [(i, shapes_turtle, prefixes) for i in range(len(parts))]))
    finally:
        _PARTS = []
    failed = [r for r in reports if r]
    if failed:
        raise CompileError("\n".join(failed))
