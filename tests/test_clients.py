"""Real SPARQL clients against `evidence serve`: SPARQLWrapper and rdflib's SPARQLStore ask every
query of the library and get the rows that `evidence.query.run_query` gives on the compiled kb."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.plugins.stores.sparqlstore import SPARQLStore
from SPARQLWrapper import JSON, POST, XML, SPARQLWrapper

from evidence.library import load_library
from evidence.query import run_query

from .test_serve import Server

XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
LIBRARY = load_library(Path(__file__).resolve().parents[1] / "kb" / "queries")


@pytest.fixture(scope="session")
def endpoint(site, tmp_path_factory):
    srv = Server(site, log=tmp_path_factory.mktemp("serve-clients") / "server.log")
    yield f"{srv.url}/sparql"
    srv.stop()


# Every term as (kind, lexical value, language or datatype); blank node labels are not compared.
def _ox(term) -> tuple | None:
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        return ("uri", term.value, None)
    if isinstance(term, ox.BlankNode):
        return ("bnode", None, None)
    if term.language:
        return ("literal", term.value, "@" + term.language)
    return ("literal", term.value, None if term.datatype.value == XSD_STRING else term.datatype.value)


def _json(term: dict | None) -> tuple | None:
    if term is None:
        return None
    if term["type"] == "uri":
        return ("uri", term["value"], None)
    if term["type"] == "bnode":
        return ("bnode", None, None)
    if "xml:lang" in term:
        return ("literal", term["value"], "@" + term["xml:lang"])
    dt = term.get("datatype")
    return ("literal", term["value"], None if dt in (None, XSD_STRING) else dt)


def _rdflib(term) -> tuple | None:
    if term is None:
        return None
    if isinstance(term, URIRef):
        return ("uri", str(term), None)
    if isinstance(term, BNode):
        return ("bnode", None, None)
    assert isinstance(term, Literal)
    if term.language:
        return ("literal", str(term), "@" + term.language)
    dt = str(term.datatype) if term.datatype else None
    return ("literal", str(term), None if dt in (None, XSD_STRING) else dt)


def _local(compiled, text: str) -> tuple[list[str], list[tuple]]:
    result = run_query(compiled, text)
    assert result.kind == "select", "the library holds SELECT queries; compare other kinds here when one is added"
    return result.variables, sorted((tuple(_ox(r[v]) for v in result.variables) for r in result.rows), key=repr)


def test_library_is_not_empty():
    assert LIBRARY, "kb/queries/ holds no query"


@pytest.mark.parametrize("query", LIBRARY, ids=[q.name for q in LIBRARY])
def test_sparqlwrapper_json_get(endpoint, compiled, query):
    variables, expected = _local(compiled, query.text)
    client = SPARQLWrapper(endpoint)
    client.setQuery(query.text)
    client.setReturnFormat(JSON)
    data = client.query().convert()
    assert data["head"]["vars"] == variables
    rows = sorted((tuple(_json(b.get(v)) for v in variables) for b in data["results"]["bindings"]), key=repr)
    assert rows == expected


@pytest.mark.parametrize("query", LIBRARY, ids=[q.name for q in LIBRARY])
def test_sparqlwrapper_xml_post(endpoint, compiled, query):
    variables, expected = _local(compiled, query.text)
    client = SPARQLWrapper(endpoint)
    client.setQuery(query.text)
    client.setMethod(POST)
    client.setReturnFormat(XML)
    doc = client.query().convert()  # an xml.dom.minidom Document
    ns = "http://www.w3.org/2005/sparql-results#"
    assert [v.getAttribute("name") for v in doc.getElementsByTagNameNS(ns, "variable")] == variables
    rows = []
    for result in doc.getElementsByTagNameNS(ns, "result"):
        bound = {}
        for b in result.getElementsByTagNameNS(ns, "binding"):
            node = next(n for n in b.childNodes if n.nodeType == n.ELEMENT_NODE)
            value = "".join(t.data for t in node.childNodes if t.nodeType == t.TEXT_NODE)
            if node.localName == "uri":
                bound[b.getAttribute("name")] = ("uri", value, None)
            elif node.localName == "bnode":
                bound[b.getAttribute("name")] = ("bnode", None, None)
            else:
                lang = node.getAttributeNS("http://www.w3.org/XML/1998/namespace", "lang")
                dt = node.getAttribute("datatype") or None
                bound[b.getAttribute("name")] = ("literal", value, "@" + lang if lang else (None if dt in (None, XSD_STRING) else dt))
        rows.append(tuple(bound.get(v) for v in variables))
    assert sorted(rows, key=repr) == expected


def test_sparqlwrapper_construct_turtle(endpoint, compiled):
    query = "CONSTRUCT { ?c a ev:CaseReport } WHERE { ?c a ev:CaseReport }"
    client = SPARQLWrapper(endpoint)
    client.setQuery(query)
    client.setReturnFormat("turtle")
    body = client.query().convert()
    got = {ox.Triple(q.subject, q.predicate, q.object) for q in ox.parse(body, format=ox.RdfFormat.TURTLE)}
    assert got == set(run_query(compiled, query).triples or [])


@pytest.mark.parametrize("query", LIBRARY, ids=[q.name for q in LIBRARY])
def test_rdflib_sparqlstore(endpoint, compiled, query):
    variables, expected = _local(compiled, query.text)
    graph = Graph(SPARQLStore(query_endpoint=endpoint))
    try:
        result = graph.query(query.text)
        assert [str(v) for v in result.vars] == variables
        rows = sorted((tuple(_rdflib(row[v]) for v in result.vars) for row in result), key=repr)
    finally:
        graph.close()
    assert rows == expected
