"""pyoxigraph terms to rdflib: the project's graph API is rdflib."""

from __future__ import annotations

from collections.abc import Iterable

import pyoxigraph as ox
from rdflib import Dataset, Graph, Literal, URIRef

__all__ = ["to_rdflib_term", "to_rdflib_dataset", "to_rdflib_graph"]


def to_rdflib_term(t):
    if isinstance(t, ox.NamedNode):
        return URIRef(t.value)
    if isinstance(t, ox.Literal):
        if t.language:
            return Literal(t.value, lang=t.language)
        dt = t.datatype.value
        if dt == "http://www.w3.org/2001/XMLSchema#string":
            return Literal(t.value)
        return Literal(t.value, datatype=URIRef(dt))
    raise TypeError(f"unexpected term {t!r}")


def to_rdflib_dataset(quads: Iterable[ox.Quad], prefixes: dict[str, str]) -> Dataset:
    ds = Dataset()
    for k, v in prefixes.items():
        ds.bind(k, v)
    graphs: dict[str, Graph] = {}
    for q in quads:
        g = q.graph_name.value if isinstance(q.graph_name, ox.NamedNode) else ""
        if g not in graphs:
            graphs[g] = ds.graph(URIRef(g)) if g else ds.default_graph
        graphs[g].add((to_rdflib_term(q.subject), to_rdflib_term(q.predicate), to_rdflib_term(q.object)))
    return ds


def to_rdflib_graph(quads: Iterable[ox.Quad], prefixes: dict[str, str]) -> Graph:
    g = Graph()
    for k, v in prefixes.items():
        g.bind(k, v)
    for q in quads:
        g.add((to_rdflib_term(q.subject), to_rdflib_term(q.predicate), to_rdflib_term(q.object)))
    return g
