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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .compile import Compiled
from .errors import QueryError

__all__ = ["QueryResult", "run_query", "read_query", "format_result", "RESULT_FORMATS"]

RESULT_FORMATS = ("table", "csv", "tsv", "json")


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


def _prefix_error(query: str, message: str, prefixes: dict[str, str]) -> str:
    m = re.match(r"error at (\d+):(\d+)", message)
    if m and "Prefix not found" in message:
        line, col = int(m.group(1)), int(m.group(2))
        text_line = query.splitlines()[line - 1] if line - 1 < len(query.splitlines()) else ""
        before = text_line[: col - 1]
        pm = re.search(r"([A-Za-z][\w.-]*)?:$", before) or re.search(r"([A-Za-z][\w.-]*)?:", text_line[col - 1 - 20 if col > 20 else 0 :])
        name = (pm.group(1) or "") if pm else "?"
        return (f"line {line}, column {col}: unknown prefix '{name}:'; declare it with PREFIX {name}: <...>, "
                f"or use one of the predeclared prefixes: {', '.join(sorted(prefixes))}")
    if m:
        return f"line {m.group(1)}, column {m.group(2)}: SPARQL syntax error: {message[m.end():].lstrip(': ').splitlines()[0]}"
    return message


def run_query(compiled: Compiled, query: str, params: dict[str, ox.NamedNode | ox.Literal] | None = None, store: ox.Store | None = None) -> QueryResult:
    """Run a SPARQL query over the union of all graphs."""
    store = store or compiled.store()
    prefixes = compiled.ns.prefixes()
    subs = {ox.Variable(k): v for k, v in (params or {}).items()}
    try:
        res = store.query(query, prefixes=prefixes, use_default_graph_as_union=True, substitutions=subs or None)
    except SyntaxError as exc:
        raise QueryError(_prefix_error(query, str(exc), prefixes)) from None
    except (OSError, ValueError, RuntimeError) as exc:
        m = re.search(r"does not contains? variable \?(\w+) in its SELECT projection", str(exc))
        if m:
            raise QueryError(f"parameter '{m.group(1)}' is not a variable that the query selects; "
                             "a parameter binds one of the SELECT variables (see the query's header)") from None
        raise QueryError(f"the query failed: {exc}") from None
    if isinstance(res, bool):
        return QueryResult("ask", [], [], boolean=res)
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


def format_result(result: QueryResult, fmt: str = "table", prefixes: dict[str, str] | None = None) -> str:
    """Render a result as an aligned table, CSV, TSV or SPARQL 1.1 Results JSON."""
    if result.kind == "ask":
        if fmt == "json":
            return json.dumps({"head": {}, "boolean": result.boolean}, indent=1) + "\n"
        return ("true" if result.boolean else "false") + "\n"
    if result.kind == "graph":
        return ox.serialize(result.triples or [], format=ox.RdfFormat.TURTLE, prefixes=prefixes or {}).decode("utf-8")
    if fmt == "json":
        bindings = [{v: _json_term(r[v]) for v in result.variables if r[v] is not None} for r in result.rows]
        return json.dumps({"head": {"vars": result.variables}, "results": {"bindings": bindings}}, indent=1, ensure_ascii=False) + "\n"
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        w.writerow(result.variables)
        for r in result.rows:
            w.writerow([_text(r[v]) for v in result.variables])
        return buf.getvalue()
    if fmt != "table":
        raise QueryError(f"unknown result format '{fmt}'; expected one of {', '.join(RESULT_FORMATS)}")
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
