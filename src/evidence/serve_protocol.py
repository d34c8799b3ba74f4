"""The SPARQL 1.1 Protocol details of ``evidence serve``: content negotiation, the ``format``
parameter, what the endpoint refuses before evaluating a query, and its service description.

Nothing here does I/O: the HTTP layer is in :mod:`evidence.serve`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyoxigraph as ox

__all__ = [
    "SELECT_OFFERS",
    "GRAPH_OFFERS",
    "MEDIA_TYPES",
    "FORMAT_NAMES",
    "Choice",
    "parse_accept",
    "negotiate",
    "choose_formats",
    "uses_service",
    "looks_like_update",
    "nesting_depth",
    "MAX_NESTING",
    "service_description",
    "SD_FORMATS",
]

# (media type, format name), in the order the server prefers them when the client has no
# preference. The first of each list is the default: SPARQL JSON for SELECT and ASK, Turtle for
# CONSTRUCT and DESCRIBE. text/html is last, so it is chosen only when a browser asks for it.
SELECT_OFFERS: list[tuple[str, str]] = [
    ("application/sparql-results+json", "json"),
    ("application/sparql-results+xml", "xml"),
    ("text/csv", "csv"),
    ("text/tab-separated-values", "tsv"),
    ("application/json", "json"),
    ("application/xml", "xml"),
    ("text/xml", "xml"),
    ("text/html", "html"),
]
GRAPH_OFFERS: list[tuple[str, str]] = [
    ("text/turtle", "turtle"),
    ("application/n-triples", "ntriples"),
    ("application/ld+json", "jsonld"),
    ("application/rdf+xml", "rdfxml"),
    ("application/x-turtle", "turtle"),
    ("text/n3", "turtle"),  # Turtle is a subset of N3
    ("application/json", "jsonld"),
    ("application/xml", "rdfxml"),
    ("text/plain", "ntriples"),
    ("text/html", "html"),
]
# The service description has no HTML form: a browser is sent to the query page instead.
SD_FORMATS = ("turtle", "jsonld", "ntriples", "rdfxml")

# The Content-Type of each format's responses.
MEDIA_TYPES: dict[str, str] = {
    "json": "application/sparql-results+json",
    "xml": "application/sparql-results+xml",
    "csv": "text/csv; charset=utf-8",
    "tsv": "text/tab-separated-values; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "turtle": "text/turtle; charset=utf-8",
    "ntriples": "application/n-triples",
    "jsonld": "application/ld+json",
    "rdfxml": "application/rdf+xml",
}

# ``format=`` values (as Virtuoso and SPARQLWrapper send them): name -> (SELECT/ASK format,
# CONSTRUCT/DESCRIBE format). ``xml`` and ``json`` mean RDF/XML and JSON-LD for graph results.
FORMAT_NAMES: dict[str, tuple[str | None, str | None]] = {
    "json": ("json", "jsonld"),
    "srj": ("json", None),
    "xml": ("xml", "rdfxml"),
    "srx": ("xml", None),
    "csv": ("csv", None),
    "tsv": ("tsv", None),
    "html": ("html", "html"),
    "turtle": (None, "turtle"),
    "ttl": (None, "turtle"),
    "n3": (None, "turtle"),
    "ntriples": (None, "ntriples"),
    "n-triples": (None, "ntriples"),
    "nt": (None, "ntriples"),
    "jsonld": (None, "jsonld"),
    "json-ld": (None, "jsonld"),
    "rdfxml": (None, "rdfxml"),
    "rdf+xml": (None, "rdfxml"),
    "rdf/xml": (None, "rdfxml"),
    "rdf": (None, "rdfxml"),
}


@dataclass(frozen=True)
class Choice:
    """The formats a request asked for: one for a SELECT/ASK result, one for a graph result.

    None means that the client accepts no format for that kind of result (HTTP 406).
    """

    select: str | None
    graph: str | None
    asked: str  # what the client sent (the Accept header or the format parameter), for messages


def parse_accept(header: str | None) -> list[tuple[str, str, float]]:
    """``Accept`` as (type, subtype, q) triples; an empty or absent header accepts anything."""
    if not header or not header.strip():
        return [("*", "*", 1.0)]
    out = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        mt = fields[0].lower()
        if "/" not in mt:
            if mt == "*":
                mt = "*/*"
            else:
                continue
        typ, _, sub = mt.partition("/")
        q = 1.0
        for f in fields[1:]:
            k, _, v = f.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(v.strip())))
                except ValueError:
                    q = 0.0
        out.append((typ.strip(), sub.strip(), q))
    return out


def _quality(ranges: list[tuple[str, str, float]], media_type: str) -> float:
    typ, _, sub = media_type.partition("/")
    best, spec = 0.0, -1
    for rt, rs, q in ranges:
        if rt == typ and rs == sub:
            s = 2
        elif rt == typ and rs == "*":
            s = 1
        elif rt == "*" and rs == "*":
            s = 0
        else:
            continue
        if s > spec:
            best, spec = q, s
    return best


def negotiate(accept: str | None, offers: list[tuple[str, str]], allowed: tuple[str, ...] | None = None) -> str | None:
    """The best format of ``offers`` for an Accept header (ties go to the server's order)."""
    ranges = parse_accept(accept)
    best, best_q = None, 0.0
    for media_type, name in offers:
        if allowed is not None and name not in allowed:
            continue
        q = _quality(ranges, media_type)
        if q > best_q:
            best, best_q = name, q
    return best


def choose_formats(accept: str | None, format_param: str | None) -> Choice:
    """The formats for a query request; ``format=`` (a name or a media type) wins over Accept.

    Raises ValueError with the known names for an unknown ``format`` value.
    """
    if format_param:
        key = format_param.strip().lower()
        if key in FORMAT_NAMES:
            select, graph = FORMAT_NAMES[key]
            return Choice(select, graph, f"format={format_param}")
        mt = key.split(";")[0].strip()
        select = next((n for m, n in SELECT_OFFERS if m == mt), None)
        graph = next((n for m, n in GRAPH_OFFERS if m == mt), None)
        if select is None and graph is None:
            raise ValueError(f"unknown format '{format_param}'; use one of {', '.join(sorted(FORMAT_NAMES))}, or a media type such as text/csv")
        return Choice(select, graph, f"format={format_param}")
    return Choice(negotiate(accept, SELECT_OFFERS), negotiate(accept, GRAPH_OFFERS), f"Accept: {accept}")


_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
# The header: the comment and blank lines before anything else, which no string can hold (a
# string opens only after code). A comment ends at CR or LF (the grammar's EOL). A line that
# starts with # further down may be inside a long string ('''...'''), with code after the string's
# end on the same line: it is scanned like the rest.
_HEADER = re.compile(r"(?:[ \t]*(?:#[^\r\n]*)?(?:\r\n|\r|\n))*")
# The keyword, anywhere else: in a string or an IRI too. Telling those apart needs the whole
# SPARQL grammar (``<`` opens an IRI or compares, ``#`` after code starts a comment or sits in an
# IRI), and a scanner that guessed wrong would let a SERVICE through. Variables (?service) are safe.
# Each word, with the ? or $ of a variable: a word that holds SERVICE anywhere is taken for the
# keyword unless it is a variable's name. pyoxigraph finds the keyword with no word boundary on
# either side: it reads ?s ?p 1SERVICE <...> { } as a triple ending in 1 then a SERVICE clause, and
# SERVICEx:b { }, SERVICESILENT<...> { } as SERVICE. (One pass over the words: a pattern that looked
# around each SERVICE could take time in the square of a long word.)
_WORDS = re.compile(r"[?$]?\w+")


def _unescape(m: re.Match) -> str:
    code = int(m.group(1) or m.group(2), 16)
    return chr(code) if code < 0x110000 else ""


def uses_service(query: str) -> bool:
    """True if the text may contain the SERVICE keyword (federated query).

    pyoxigraph answers SERVICE by making an HTTP request from the server, to any host and port
    named in the query, so the endpoint refuses such queries. The check is deliberately coarse:
    a false alarm costs a rephrased string; a miss would let anyone who can reach the endpoint
    make requests from this machine. The header (the comment lines the query starts with) is left
    out, so a query's description may say "service"; a comment after the first line of code that
    says it is a false alarm. (Leaving out every line that starts with # let a SERVICE through:
    inside a long string such a line is text, and code may follow the string on that line.)
    """
    text = _ESCAPE.sub(_unescape, query[_HEADER.match(query).end():])
    return any(w[0] not in "?$" and "SERVICE" in w.upper() for w in _WORDS.findall(text))


MAX_NESTING = 1000
_BRACKETS = re.compile(r"[{}()\[\]]")


def nesting_depth(query: str) -> int:
    """How deep brackets of any kind nest in the text (strings and comments too: an upper bound)."""
    depth = deepest = 0
    for m in _BRACKETS.finditer(query):
        if m.group() in "{([":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


# One blank character a time (not \s+: a run of them could be split in exponentially many ways
# before a failed match, and 30 spaces held the server for seconds).
_UPDATE = re.compile(
    r"^(?:\s|#[^\n]*(?:\n|$)|(?:PREFIX)\s+[\w.-]*:\s*<[^>]*>|BASE\s*<[^>]*>)*"
    r"(INSERT|DELETE|LOAD|CLEAR|CREATE|DROP|COPY|MOVE|ADD|WITH)\b",
    re.IGNORECASE,
)


def looks_like_update(query: str) -> bool:
    """True if the text starts, after its prologue, with a SPARQL Update keyword."""
    return bool(_UPDATE.match(query))


_SD = "http://www.w3.org/ns/sparql-service-description#"
_FORMATS = "http://www.w3.org/ns/formats/"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RDFS = "http://www.w3.org/2000/01/rdf-schema#"
_VOID = "http://rdfs.org/ns/void#"
_DCT = "http://purl.org/dc/terms/"
_SH = "http://www.w3.org/ns/shacl#"
_XSD = "http://www.w3.org/2001/XMLSchema#"
SD_PREFIXES = {"sd": _SD, "formats": _FORMATS, "rdfs": _RDFS, "void": _VOID, "dcterms": _DCT, "sh": _SH, "xsd": _XSD}


def service_description(endpoint: str, prefixes: dict[str, str], graphs: dict[str, int], timeout: float, max_results: int) -> list[ox.Triple]:
    """The SPARQL 1.1 Service Description of the endpoint (``sd:Service``), as triples."""
    def n(iri: str) -> ox.NamedNode:
        return ox.NamedNode(iri)

    a = n(_RDF + "type")
    svc = n(endpoint)
    out = [
        ox.Triple(svc, a, n(_SD + "Service")),
        ox.Triple(svc, n(_SD + "endpoint"), svc),
        ox.Triple(svc, n(_SD + "supportedLanguage"), n(_SD + "SPARQL11Query")),
        ox.Triple(svc, n(_SD + "feature"), n(_SD + "UnionDefaultGraph")),
        ox.Triple(svc, n(_SD + "defaultEntailmentRegime"), n("http://www.w3.org/ns/entailment/Simple")),
        ox.Triple(svc, n(_DCT + "title"), ox.Literal("evidence: a read-only SPARQL endpoint over the knowledge base")),
        ox.Triple(svc, n(_RDFS + "comment"), ox.Literal(
            "Read-only SPARQL 1.1 Query (no Update, no SERVICE). The default graph is the union of the named graphs, one per kb file, "
            "unless the query names its dataset (FROM, FROM NAMED) or the request does (default-graph-uri, named-graph-uri). "
            f"A query is stopped after {timeout:g} s; a result may have at most {max_results} rows or triples. "
            f"Predeclared prefixes: {', '.join(p + ':' for p in sorted(prefixes))}.")),
    ]
    # The W3C's format IRIs (https://www.w3.org/ns/formats/).
    for name in ("SPARQL_Results_JSON", "SPARQL_Results_XML", "SPARQL_Results_CSV", "SPARQL_Results_TSV", "Turtle", "N-Triples", "JSON-LD", "RDF_XML"):
        out.append(ox.Triple(svc, n(_SD + "resultFormat"), n(_FORMATS + name)))
    declarations = []
    for p, iri in sorted(prefixes.items()):
        decl = ox.BlankNode(f"prefix_{p}")
        out.append(ox.Triple(svc, n(_SH + "declare"), decl))
        declarations += [
            ox.Triple(decl, n(_SH + "prefix"), ox.Literal(p)),
            ox.Triple(decl, n(_SH + "namespace"), ox.Literal(iri, datatype=n(_XSD + "anyURI"))),
        ]
    ds, dg = ox.BlankNode("dataset"), ox.BlankNode("defaultGraph")
    out.append(ox.Triple(svc, n(_SD + "defaultDataset"), ds))
    out += declarations
    out += [
        ox.Triple(ds, a, n(_SD + "Dataset")),
        ox.Triple(ds, n(_SD + "defaultGraph"), dg),
    ]
    named = sorted(graphs.items())
    out += [ox.Triple(ds, n(_SD + "namedGraph"), ox.BlankNode(f"ng{i}")) for i in range(len(named))]
    out += [ox.Triple(dg, a, n(_SD + "Graph")), ox.Triple(dg, n(_RDFS + "comment"), ox.Literal("the union of every named graph"))]
    for i, (g, count) in enumerate(named):
        ng, gr = ox.BlankNode(f"ng{i}"), ox.BlankNode(f"g{i}")
        out += [
            ox.Triple(ng, a, n(_SD + "NamedGraph")),
            ox.Triple(ng, n(_SD + "name"), n(g)),
            ox.Triple(ng, n(_SD + "graph"), gr),
            ox.Triple(gr, a, n(_SD + "Graph")),
            ox.Triple(gr, n(_VOID + "triples"), ox.Literal(str(count), datatype=n(_XSD + "integer"))),
        ]
    return out
