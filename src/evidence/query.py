"""Stage 4: SPARQL over the compiled graph, answered by pyoxigraph (rdflib's engine is 100 to
1,000 times slower on joins, see PERFORMANCE.md).

The default graph is the union of every named graph, and the project's prefixes (``ev:``,
``rdfs:``, ``dcterms:``...) are predeclared. Parameters are bound as RDF terms through
pyoxigraph's substitutions, never pasted into the query text.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .compile import Compiled
from .errors import QueryError
from .serve_worker import dataset, ends_with_values, query_variables

__all__ = [
    "QueryResult",
    "explain_syntax_error",
    "run_query",
    "refuse_service",
    "run_remote",
    "read_query",
    "format_result",
    "with_prefixes",
    "bind_values",
    "RESULT_FORMATS",
    "GRAPH_FORMATS",
]

RESULT_FORMATS = ("table", "csv", "tsv", "json", "xml")
GRAPH_FORMATS = ("ttl", "nt", "jsonld")


@dataclass
class QueryResult:
    kind: str  # "select" | "ask" | "graph"
    variables: list[str]
    rows: list[dict[str, Any]]  # pyoxigraph terms (or None) by variable
    boolean: bool | None = None
    triples: list[ox.Triple] | None = None


def read_query(text_or_path: str) -> str:
    """A query string, or the contents of a ``.rq`` file."""
    if text_or_path.endswith(".rq") or ("\n" not in text_or_path and Path(text_or_path).suffix == ".rq"):
        p = Path(text_or_path)
        if not p.is_file():
            raise QueryError(f"query file not found: {text_or_path}")
        return p.read_text(encoding="utf-8")
    return text_or_path


_PREFIX_WINDOW = 200  # characters of a query line searched for an unknown prefix's name (see explain_syntax_error)


def explain_syntax_error(query: str, message: str, prefixes: dict[str, str]) -> str:
    """A parser error in words: line and column, and for an unknown prefix, which one; then the
    line itself with a caret under that column.

    The column is where Oxigraph's parser stopped, which is at the end of the token it could not
    use or after it (``SELEC ?x`` stops at the end of the line): the caret says so, and the
    mistake is read on the line shown, at or before the caret."""
    m = re.match(r"error at (\d+):(\d+)", message)
    if not m:
        return message
    line, col = int(m.group(1)), int(m.group(2))
    lines = query.split("\n")  # as the parser counts lines (str.splitlines also splits at \r, \f, U+2028 ...)
    text_line = lines[line - 1].removesuffix("\r") if 0 < line <= len(lines) else ""
    if "Prefix not found" in message:
        # A window around the column: a search over the whole line took time in the square of its
        # length (9 s for 40,000 characters, in the server's event loop). A prefix is a short name.
        before = text_line[max(0, col - 1 - _PREFIX_WINDOW) : col - 1]
        pm = re.search(r"([A-Za-z][\w.-]*)?:$", before) or re.search(r"([A-Za-z][\w.-]*)?:", text_line[max(0, col - 21) : col - 1 + _PREFIX_WINDOW])
        name = (pm.group(1) or "") if pm else "?"
        head = (f"line {line}, column {col}: unknown prefix '{name}:'; declare it with PREFIX {name}: <...>, "
                f"or use one of the predeclared prefixes: {', '.join(sorted(prefixes))}")
    else:
        said = (message[m.end():].lstrip(": ").splitlines() or [""])[0]  # a bare position says nothing more
        head = f"line {line}, column {col}: SPARQL syntax error" + (f": {said}" if said else "")
    return head + _caret(text_line, col) if 0 < line <= len(lines) else head


_SHOWN = 72  # code points of a long query line shown around the caret (a line of wide ones shows twice as wide)


def _blank(ch: str) -> str:
    """What stands under ``ch`` in the line below it: a tab, or as many spaces as it is wide."""
    if ch == "\t":
        return "\t"
    if unicodedata.category(ch) in ("Mn", "Me"):  # a mark drawn on the character before it
        return ""
    return "  " if unicodedata.east_asian_width(ch) in ("W", "F") else " "


def _caret(text: str, col: int) -> str:
    """The query's line (a window of it, if long) and a caret under ``col`` (1-based); characters
    that would not print are shown as U+FFFD, so that the caret stays under its column. The caret
    is placed by display width, as a terminal or a monospace box shows the line: a wide character
    (CJK, most emoji) takes two places, a combining mark none."""
    at = max(0, min(col - 1, len(text)))
    start = max(0, at - _SHOWN // 2) if len(text) > _SHOWN else 0
    shown = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in text[start:start + _SHOWN])
    lead = "".join(_blank(ch) for ch in shown[: at - start])
    dots = "..." if start else ""
    return f"\n  {dots}{shown}\n  {' ' * len(dots)}{lead}^ where the parser stopped (the mistake is at or before it)"


def refuse_service(query: str) -> None:
    """Raise QueryError if the query may use SERVICE (see :func:`run_query`)."""
    from .serve_protocol import uses_service

    if uses_service(query):
        raise QueryError("SERVICE (federated query) is not allowed: the query would make this machine fetch from another server; "
                         "`evidence query --allow-service` permits it for a query you run yourself (the check is on the word, "
                         "so write a string or IRI that contains 'service' another way)")


def run_query(compiled: Compiled, query: str, params: dict[str, ox.NamedNode | ox.Literal] | None = None, store: ox.Store | None = None,
              allow_service: bool = False) -> QueryResult:
    """Run a SPARQL query over the union of all graphs (or, with FROM, over the graphs it names).

    SERVICE (federated query) is refused unless ``allow_service``: pyoxigraph answers it with an
    HTTP request to any address the query names, and a query can come from a contribution (the
    library in kb/queries is run by every build, in CI too).
    """
    query = query.removeprefix("\ufeff")  # a byte-order mark, as some editors start a saved .rq file
    if not allow_service:
        refuse_service(query)
    store = store or compiled.store()
    prefixes = compiled.ns.prefixes()
    subs = {ox.Variable(k): v for k, v in (params or {}).items()}
    try:
        res = store.query(query, prefixes=prefixes, substitutions=subs or None, **dataset(query))
    except SyntaxError as exc:
        raise QueryError(explain_syntax_error(query, str(exc), prefixes)) from None
    except (OSError, ValueError, RuntimeError) as exc:
        m = re.search(r"does not contains? variable \?(\w+) in its SELECT projection", str(exc))
        if m:
            raise QueryError(f"parameter '{m.group(1)}' is not a variable that the query selects; "
                             "a parameter binds one of the SELECT variables (see the query's header)") from None
        raise QueryError(f"the query failed: {exc}") from None
    if isinstance(res, (bool, ox.QueryBoolean)):  # pyoxigraph 0.5 answers ASK with a QueryBoolean
        return QueryResult("ask", [], [], boolean=bool(res))
    if isinstance(res, ox.QuerySolutions):
        variables = [v.value for v in res.variables]
        rows = [{v: sol[v] for v in variables} for sol in res]
        return QueryResult("select", variables, rows)
    triples = list(res)
    return QueryResult("graph", [], [], triples=triples)


def _text(term: Any) -> str:
    if term is None:
        return ""
    if isinstance(term, ox.Literal):
        return term.value
    return term.value if hasattr(term, "value") else str(term)


def _json_term(term: Any) -> dict[str, str] | None:
    if term is None:
        return None
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    out = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
    elif term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        out["datatype"] = term.datatype.value
    return out


def _tsv_term(term: Any) -> str:
    """SPARQL 1.1 TSV encodes terms in Turtle/N-Triples syntax."""
    return "" if term is None else str(term)


def _xml(result: QueryResult) -> str:
    from xml.etree import ElementTree as ET

    ns = "http://www.w3.org/2005/sparql-results#"
    root = ET.Element("sparql", xmlns=ns)
    head = ET.SubElement(root, "head")
    if result.kind == "ask":
        ET.SubElement(root, "boolean").text = "true" if result.boolean else "false"
    else:
        for v in result.variables:
            ET.SubElement(head, "variable", name=v)
        results = ET.SubElement(root, "results")
        for row in result.rows:
            r = ET.SubElement(results, "result")
            for v in result.variables:
                t = row[v]
                if t is None:
                    continue
                b = ET.SubElement(r, "binding", name=v)
                if isinstance(t, ox.NamedNode):
                    ET.SubElement(b, "uri").text = t.value
                elif isinstance(t, ox.BlankNode):
                    ET.SubElement(b, "bnode").text = t.value
                else:
                    attrs = {}
                    if t.language:
                        attrs["xml:lang"] = t.language
                    elif t.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
                        attrs["datatype"] = t.datatype.value
                    ET.SubElement(b, "literal", attrs).text = t.value
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def format_result(result: QueryResult, fmt: str = "table", prefixes: dict[str, str] | None = None) -> str:
    """Render a result: for SELECT and ASK an aligned table, CSV, TSV, SPARQL 1.1 Results JSON or
    XML; for CONSTRUCT and DESCRIBE Turtle (the default), N-Triples or JSON-LD."""
    if result.kind == "graph":
        rdf = {"ttl": ox.RdfFormat.TURTLE, "table": ox.RdfFormat.TURTLE, "nt": ox.RdfFormat.N_TRIPLES, "jsonld": ox.RdfFormat.JSON_LD}.get(fmt)
        if rdf is None:
            raise QueryError(f"a CONSTRUCT or DESCRIBE result is a graph: use --format ttl, nt or jsonld, not {fmt}")
        triples = sorted(result.triples or [], key=lambda t: (t.subject.value, t.predicate.value, t.object.value))
        return ox.serialize(triples, format=rdf, prefixes=(prefixes or {}) if rdf != ox.RdfFormat.N_TRIPLES else None).decode("utf-8")
    if fmt in GRAPH_FORMATS:
        raise QueryError(f"--format {fmt} is for CONSTRUCT and DESCRIBE; a {result.kind.upper()} result takes table, csv, tsv, json or xml")
    if fmt == "xml":
        return _xml(result)
    if result.kind == "ask":
        if fmt == "json":
            return json.dumps({"head": {}, "boolean": result.boolean}, indent=1) + "\n"
        return ("true" if result.boolean else "false") + "\n"
    if fmt == "tsv":
        lines = ["\t".join(f"?{v}" for v in result.variables)]
        lines += ["\t".join(_tsv_term(r[v]) for v in result.variables) for r in result.rows]
        return "\n".join(lines) + "\n"
    if fmt == "json":
        bindings = [{v: _json_term(r[v]) for v in result.variables if r[v] is not None} for r in result.rows]
        return json.dumps({"head": {"vars": result.variables}, "results": {"bindings": bindings}}, indent=1, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(result.variables)
        for r in result.rows:
            w.writerow([_text(r[v]) for v in result.variables])
        return buf.getvalue()
    if fmt != "table":
        raise QueryError(f"unknown result format '{fmt}'; expected one of {', '.join(RESULT_FORMATS + GRAPH_FORMATS)}")
    short = _shortener(prefixes or {})
    cells = [[short(r[v]) for v in result.variables] for r in result.rows]
    widths = [max([len(v)] + [len(c[i]) for c in cells]) for i, v in enumerate(result.variables)]
    lines = [" | ".join(v.ljust(w) for v, w in zip(result.variables, widths)), "-+-".join("-" * w for w in widths)]
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _shortener(prefixes: dict[str, str]):
    items = sorted(prefixes.items(), key=lambda kv: -len(kv[1]))

    def short(term: Any) -> str:
        if isinstance(term, ox.NamedNode):
            for p, iri in items:
                if term.value.startswith(iri) and re.fullmatch(r"[\w.-]*", term.value[len(iri):]):
                    return f"{p}:{term.value[len(iri):]}"
            return term.value
        return _text(term)

    return short


_PREFIX_DECL = re.compile(r"^\s*PREFIX\s+([A-Za-z][\w.-]*)?:", re.IGNORECASE | re.MULTILINE)


def with_prefixes(query: str, prefixes: dict[str, str]) -> str:
    """The query with PREFIX declarations for the predeclared prefixes it does not declare itself,
    so that a library query runs unchanged on any SPARQL endpoint."""
    declared = {m.group(1) or "" for m in _PREFIX_DECL.finditer(query)}
    head = "".join(f"PREFIX {p}: <{iri}>\n" for p, iri in sorted(prefixes.items()) if p not in declared)
    return head + query


def bind_values(query: str, params: dict[str, ox.NamedNode | ox.Literal]) -> str:
    """Bind parameters for a remote endpoint with a trailing VALUES clause.

    The values are RDF terms written by pyoxigraph's own serialiser (escaped N-Triples syntax),
    joined with the query's solutions like pyoxigraph's substitutions locally: user text never
    becomes query syntax.
    """
    if not params:
        return query
    if ends_with_values(query):
        raise QueryError("the query already ends with a VALUES clause; it cannot take --param on a remote endpoint")
    names = sorted(params)
    for n in names:
        if not re.fullmatch(r"\w+", n):
            raise QueryError(f"parameter name {n!r}: letters, digits and _ only")
    # As locally (run_query): a name the query does not select is an error, not a VALUES that
    # filters nothing (a misspelt --param returned the unfiltered answer as if filtered).
    # A SELECT binds what it selects (anything, for SELECT *); an ASK, CONSTRUCT or DESCRIBE, a
    # variable it names (outside strings, IRIs and comments; a subquery's SELECT is not the query's).
    form, variables, selected = query_variables(query)
    known = variables if selected is None else selected
    for n in names:
        if n not in known:
            raise QueryError(f"parameter '{n}' is not a variable that the query selects; "
                             "a parameter binds one of the SELECT variables (see the query's header)")
    return f"{query.rstrip()}\nVALUES ({' '.join('?' + n for n in names)}) {{ ({' '.join(str(params[n]) for n in names)}) }}\n"


def _term_from_json(b: dict[str, str]) -> ox.NamedNode | ox.Literal | ox.BlankNode:
    kind = b.get("type")
    if kind == "uri":
        return ox.NamedNode(b["value"])
    if kind == "bnode":
        return ox.BlankNode(b["value"])
    if "xml:lang" in b:
        return ox.Literal(b["value"], language=b["xml:lang"])
    if "datatype" in b:
        return ox.Literal(b["value"], datatype=ox.NamedNode(b["datatype"]))
    return ox.Literal(b["value"])


def run_remote(endpoint: str, query: str, prefixes: dict[str, str], params: dict[str, ox.NamedNode | ox.Literal] | None = None, timeout: float = 60.0) -> QueryResult:
    """Run a query on a SPARQL 1.1 Protocol endpoint (POST, form-encoded), parse the answer."""
    import urllib.error
    import urllib.parse
    import urllib.request

    if not endpoint.startswith(("http://", "https://")):
        raise QueryError(f"--endpoint must be an http(s) URL, found {endpoint!r}")
    text = bind_values(with_prefixes(query, prefixes), params or {})
    data = urllib.parse.urlencode({"query": text}).encode("utf-8")
    req = urllib.request.Request(endpoint, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/sparql-results+json, text/turtle;q=0.9, application/n-triples;q=0.8",
        "User-Agent": "evidence (SPARQL client)",
    })
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
            body = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", errors="replace").strip()[:500]
        raise QueryError(f"the endpoint {endpoint} answered HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise QueryError(f"cannot reach the endpoint {endpoint}: {getattr(exc, 'reason', exc)}") from None
    if ctype in ("application/sparql-results+json", "application/json"):
        doc = json.loads(body)
        if "boolean" in doc:
            return QueryResult("ask", [], [], boolean=bool(doc["boolean"]))
        variables = list(doc["head"].get("vars", []))
        rows = [{v: (_term_from_json(b[v]) if v in b else None) for v in variables} for b in doc["results"]["bindings"]]
        return QueryResult("select", variables, rows)
    fmt = ox.RdfFormat.from_media_type(ctype)
    if fmt is None:
        raise QueryError(f"the endpoint {endpoint} answered with an unexpected content type {ctype!r}")
    triples = [ox.Triple(t.subject, t.predicate, t.object) for t in ox.parse(body, format=fmt)]
    return QueryResult("graph", [], [], triples=triples)
