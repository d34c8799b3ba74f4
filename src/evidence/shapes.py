"""The ontology (labels and comments of every ``ev:`` term) and the SHACL shapes, both
generated from :mod:`evidence.ontology`, and SHACL validation of a compiled graph with pyshacl."""

from __future__ import annotations

import pyoxigraph as ox

from .errors import CompileError
from .namespaces import STANDARD, Namespaces
from .ontology import CLASSES, INDIVIDUALS, PROPERTIES

__all__ = ["ontology_triples", "shape_triples", "validate_shapes"]

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
