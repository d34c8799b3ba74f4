"""The query library: every query documented, and its exact rows on the founding kb.

The expected rows are golden files, tests/data/queries/<name>.csv, reviewed by hand. After a
deliberate change to the kb or a query, refresh them with
``EVIDENCE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_library.py`` and review the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyoxigraph as ox
import pytest

from evidence.errors import QueryError
from evidence.library import load_library
from evidence.query import bind_values, format_result, run_query, with_prefixes

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "queries"
LIBRARY = load_library(ROOT / "kb" / "queries")
NAMES = [q.name for q in LIBRARY]

# A parameter value per query whose filtered result must be a non-empty part of the whole.
EXAMPLES = {
    "adverse-events-by-drug": {"drug": ox.Literal("ruxolitinib")},
    "claims": {"case": ox.Literal("briand-2019")},
    "dechallenge-rechallenge": {"drug": ox.Literal("ruxolitinib")},
    "drug-targets": {"drug": ox.Literal("ruxolitinib")},
    "drugs-by-gene": {"gene": ox.Literal("TREX1")},
    "drugs-by-variant": {"hgvs": ox.Literal("NM_033629.6:c.52G>A")},
    "evidence-by-drug-condition": {"drug": ox.Literal("ruxolitinib"), "condition": ox.Literal("chilblain lupus 1")},
    "gaps": {"case": ox.Literal("wenzel-2016")},
    "outcomes-by-measure": {"measure": ox.Literal("RCLASI")},
    "patients-by-drug": {"drug": ox.Literal("baricitinib")},
    "regimens-by-drug": {"drug": ox.Literal("baricitinib")},
    "secondary-source-facts": {"case": ox.Literal("wenzel-2016")},
}


def test_library_has_at_least_12_documented_queries():
    assert len(LIBRARY) >= 12
    for q in LIBRARY:
        assert q.title and q.question.endswith("?"), q.name


@pytest.mark.parametrize("q", LIBRARY, ids=NAMES)
def test_parameters_are_selected_variables(q):
    head = re.sub(r"#[^\n]*", "", q.text).split("WHERE", 1)[0]
    for p in q.params:
        assert re.search(rf"\?{p.name}\b", head), f"{q.name}: parameter {p.name} is not in the SELECT clause"


@pytest.mark.parametrize("q", LIBRARY, ids=NAMES)
def test_exact_rows_on_the_founding_kb(q, compiled):
    text = format_result(run_query(compiled, q.text), "csv")
    path = GOLDEN / f"{q.name}.csv"
    if os.environ.get("EVIDENCE_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8", newline="")
    assert path.is_file(), f"no golden file {path}; create it with EVIDENCE_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_bytes().decode("utf-8"), f"{q.name}: rows differ from {path.name}"
    assert text.count("\n") >= 2, f"{q.name} returns no row on the founding kb"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_parameter_narrows_the_result(name, compiled):
    q = next(q for q in LIBRARY if q.name == name)
    whole = run_query(compiled, q.text)
    part = run_query(compiled, q.text, EXAMPLES[name])
    assert 0 < len(part.rows) <= len(whole.rows)
    for row in part.rows:
        for var, term in EXAMPLES[name].items():
            assert row[var] == term
    # The same binding through VALUES (what a remote endpoint gets) gives the same rows.
    via_values = run_query(compiled, bind_values(with_prefixes(q.text, compiled.ns.prefixes()), EXAMPLES[name]))
    assert [tuple(map(str, r.values())) for r in via_values.rows] == [tuple(map(str, r.values())) for r in part.rows]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_misspelt_parameter_is_refused_for_a_remote_endpoint_as_locally(name, compiled):
    """Locally a name the query does not select is an error; through VALUES (what a remote endpoint
    gets) it filtered nothing, so a typo returned the whole answer as if it were the narrowed one."""
    q = next(q for q in LIBRARY if q.name == name)
    typo = {f"{var}e": term for var, term in EXAMPLES[name].items()}
    with pytest.raises(QueryError, match="is not a variable that the query selects") as local:
        run_query(compiled, q.text, typo)
    with pytest.raises(QueryError, match="is not a variable that the query selects") as remote:
        bind_values(with_prefixes(q.text, compiled.ns.prefixes()), typo)
    for said in (str(local.value), str(remote.value)):  # each names a misspelt one (of two, either may come first)
        assert any(f"parameter '{name}'" in said for name in typo), said


@pytest.mark.parametrize("query", [
    "SELECT ?c WHERE { ?c ?p ?o } VALUES ?c { <https://w3id.org/evidence-kb/case/a#b> }",  # '#' in an IRI was cut as a comment
    "SELECT ?c WHERE { ?c ?p ?o }\nvalues (?c) {\n  (\"}\") # a brace in a string\n}\n# the end\n",
    "SELECT ?c WHERE { ?c ?p ?o } VALUES ?c { <https://w3id.org/evidence-kb/case/a> } # VALUES ?x { }",
])
def test_a_query_that_ends_with_values_takes_no_parameter_remotely(query):
    """A second VALUES clause would be a syntax error at the endpoint: bind_values says why instead.
    It read the query with its comments cut at every '#', an IRI's fragment included."""
    with pytest.raises(QueryError, match="already ends with a VALUES clause"):
        bind_values(query, {"c": ox.Literal("x")})


@pytest.mark.parametrize("query", [
    "SELECT ?c WHERE { VALUES ?c { <https://w3id.org/evidence-kb/case/a> } ?c ?p ?o }",  # inside the pattern
    "SELECT ?c WHERE { ?c ?p \"VALUES ?c { 1 }\" }",
    "SELECT ?c WHERE { ?c ?p ?o } # VALUES ?c { 1 }",
    "SELECT ?c WHERE { ?c ?p ?o } VALUES ?c { 1 } LIMIT 1",  # not the end (and not SPARQL either: the endpoint says so)
])
def test_values_elsewhere_does_not_stop_a_parameter(query):
    assert bind_values(query, {"c": ox.Literal("x")}).rstrip().endswith('VALUES (?c) { ("x") }')


def test_a_parameter_of_an_ask_query_is_bound_for_a_remote_endpoint(compiled):
    """bind_values checked the names against a SELECT clause only, and so refused every ASK."""
    ask = "ASK { ?c a ev:CaseReport ; dcterms:title ?t }"
    bound = bind_values(with_prefixes(ask, compiled.ns.prefixes()), {"c": ox.NamedNode("https://w3id.org/evidence-kb/case/wenzel-2016")})
    assert run_query(compiled, bound).boolean is True
    with pytest.raises(QueryError, match="parameter 'cc' is not a variable"):
        bind_values(ask, {"cc": ox.Literal("x")})
    # A subquery's SELECT is not the query's; a name in a string is no variable.
    sub = "ASK { ?c a ev:CaseReport . { SELECT ?c WHERE { ?c dcterms:title ?t } } }"
    assert bind_values(sub, {"c": ox.Literal("x")}).rstrip().endswith('VALUES (?c) { ("x") }')
    with pytest.raises(QueryError, match="parameter 'dd' is not a variable"):
        bind_values('ASK { ?c ?p ?d FILTER(?d != "?dd") }', {"dd": ox.Literal("x")})
    with pytest.raises(QueryError, match="parameter 'cc' is not a variable"):
        bind_values("CONSTRUCT { ?c ?p ?o } WHERE { ?c ?p ?o BIND(2 * 3 AS ?n) }", {"cc": ox.Literal("x")})
    assert "VALUES (?n)" in bind_values("SELECT ?c (COUNT(*) AS ?n) WHERE { ?c ?p ?o } GROUP BY ?c", {"n": ox.Literal("1")})
    with pytest.raises(QueryError, match="parameter 'o' is not a variable"):  # used, not selected
        bind_values("SELECT ?c (COUNT(*) AS ?n) WHERE { ?c ?p ?o } GROUP BY ?c", {"o": ox.Literal("1")})


def test_every_parametrised_query_has_an_example():
    assert {q.name for q in LIBRARY if q.params} == set(EXAMPLES)


def test_core_questions(compiled):
    """The three questions of the core issue, through the library."""
    lib = {q.name: q for q in LIBRARY}
    drugs = run_query(compiled, lib["drugs-by-gene"].text, {"gene": ox.Literal("TREX1")})
    assert sorted(r["drugLabel"].value for r in drugs.rows) == ["baricitinib", "ruxolitinib"]
    reg = run_query(compiled, lib["regimens-by-drug"].text, {"drug": ox.Literal("baricitinib")})
    assert {(r["dose"].value, r["unit"].value, r["frequency"].value, r["duration"].value) for r in reg.rows} == {("4", "mg", "daily", "P3M")}
    tl = run_query(compiled, lib["complete-response-timeline"].text)
    assert [r["phase"].value for r in tl.rows] == ["start", "dose reduced", "stopped", "restarted"]
