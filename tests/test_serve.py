"""`evidence serve`: a real server process, spoken to over HTTP.

Two servers per session: one with the default settings, and one with tight limits (--timeout 1,
--max-results 5) and the plain query form (--no-yasgui). Each is ``python -m evidence serve`` on a
free port over the session's build, and is always terminated.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pyoxigraph as ox
import pytest

from evidence.errors import QueryError
from evidence.library import load_library
from evidence.query import run_query
from evidence.serve_process import ServeProcess
from evidence.serve_protocol import SELECT_OFFERS, choose_formats, looks_like_update, negotiate, parse_accept, uses_service
from evidence.serve_vendor import YASGUI_VERSION, install_yasgui

ROOT = Path(__file__).resolve().parents[1]
CI = os.environ.get("CI", "").lower() == "true"

CASES = "SELECT ?case ?title WHERE { ?case a ev:CaseReport ; dcterms:title ?title } ORDER BY ?case"
HEAVY = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"  # a cross join: ~1e9 rows for 1,000 quads


class Server(ServeProcess):
    """``python -m evidence serve`` on the repository's kb, on a free port."""

    def __init__(self, site: Path, *args: str, log: Path, env: dict[str, str] | None = None):
        super().__init__(ROOT, site, *args, log=log, env=env)


def http(url: str, data: bytes | str | dict | None = None, headers: dict[str, str] | None = None, method: str | None = None,
         timeout: float = 60.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body); 4xx and 5xx are returned, not raised."""
    headers = dict(headers or {})
    if isinstance(data, dict):
        data = urlencode(data)
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    if isinstance(data, str):
        data = data.encode("utf-8")
    req = Request(url, data=data, headers=headers, method=method)
    try:
        with urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except HTTPError as err:
        with err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def triples(body: bytes, fmt: ox.RdfFormat) -> set[ox.Triple]:
    return {ox.Triple(q.subject, q.predicate, q.object) for q in ox.parse(body, format=fmt)}


def ground(ts: set[ox.Triple]) -> set[ox.Triple]:
    """The triples without blank nodes (two parses name blank nodes differently)."""
    return {t for t in ts if not isinstance(t.subject, ox.BlankNode) and not isinstance(t.object, ox.BlankNode)}


def sparql_get(server: Server, query: str, headers: dict[str, str] | None = None, **params: str) -> tuple[int, dict[str, str], bytes]:
    return http(f"{server.url}/sparql?{urlencode({'query': query, **params})}", headers=headers)


def sparql_post(server: Server, query: str, headers: dict[str, str] | None = None, **params: str) -> tuple[int, dict[str, str], bytes]:
    return http(f"{server.url}/sparql", {"query": query, **params}, headers=headers)


@pytest.fixture(scope="session")
def server(site, tmp_path_factory):
    srv = Server(site, log=tmp_path_factory.mktemp("serve") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def limited(site, tmp_path_factory):
    srv = Server(site, "--timeout", "1", "--max-results", "5", "--workers", "2", "--no-yasgui", "--forwarded-allow-ips", "127.0.0.1",
                 log=tmp_path_factory.mktemp("serve-limited") / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def library(config):
    return load_library(config.kb_dir / "queries")


# -- the command line ------------------------------------------------------------------------------

def test_help_says_what_it_serves_and_its_limits():
    r = subprocess.run([sys.executable, "-m", "evidence", "serve", "--help"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 0, r.stderr
    for text in ("read-only", "127.0.0.1", "--host", "--port", "--site", "--timeout", "--max-results", "--workers", "/sparql", "/query",
                 "SERVICE", "503", "413"):
        assert text in r.stdout, text


@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "http"], ["--timeout", "-1"], ["--timeout", "nan"], ["--timeout", "inf"],
                                  ["--max-results", "0"], ["--workers", "x"],
                                  ["--forwarded-allow-ips", "*"], ["--forwarded-allow-ips", "0.0.0.0/0"], ["--forwarded-allow-ips", "::/0"],
                                  ["--forwarded-allow-ips", "proxy.example"],
                                  ["--forwarded-allow-ips", "10.0.0.1/8"], ["--forwarded-allow-ips", "127.0.0.1,"]])
def test_bad_arguments_exit_2(args):
    r = subprocess.run([sys.executable, "-m", "evidence", "serve", *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 2, r.stderr
    assert "expected" in r.stderr


def test_sigterm_stops_cleanly_and_leaves_no_temporary_files(site, tmp_path):
    """A site without the N-Quads download: the server compiles the kb into a temporary folder.
    SIGTERM (what ``docker stop`` or systemd sends) must shut it down gracefully, remove that
    folder, and still end the process by the signal, as uvicorn intends."""
    bare = tmp_path / "site"
    shutil.copytree(site, bare, ignore=shutil.ignore_patterns("evidence.nq*"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    srv = Server(bare, "--workers", "1", "--no-yasgui", log=tmp_path / "server.log", env={"TMPDIR": str(scratch)})
    try:
        assert "compiling the kb" in srv.log_text()
        assert list(scratch.iterdir()), "the compiled kb should be in the temporary folder while serving"
        status, _, body = sparql_get(srv, CASES)
        assert status == 200 and json.loads(body)["results"]["bindings"]
    finally:
        srv.stop()
    assert srv.proc.returncode == -signal.SIGTERM, srv.log_text()
    assert "Application shutdown complete" in srv.log_text()
    assert list(scratch.iterdir()) == []


def test_a_query_still_running_at_sigterm_is_answered_not_cut_off(site, tmp_path):
    """uvicorn cancelled what was still running 5 s into a shutdown: a query of the 10 s limit got
    a 500 and a traceback in the log. The shutdown now waits for the time limit."""
    srv = Server(site, "--timeout", "7", "--workers", "1", "--no-yasgui", log=tmp_path / "server.log")
    got: dict = {}

    def run_heavy():
        got["reply"] = sparql_post(srv, HEAVY)

    thread = threading.Thread(target=run_heavy)
    try:
        thread.start()
        time.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        thread.join(30)
    finally:
        srv.stop()
    status, _, body = got["reply"]
    assert status == 503 and body.decode().startswith("the query exceeded the 7 s time limit"), (status, body[:200])
    assert "CancelledError" not in srv.log_text() and "Exception in ASGI application" not in srv.log_text()


def test_a_host_header_that_makes_no_address_is_400(limited):
    """The service description names the endpoint by the Host header: one that makes no IRI was
    answered with a 500."""
    from http.client import HTTPConnection
    from urllib.parse import urlsplit

    where = urlsplit(limited.url)
    for host in ("%zz", "%", "a%2"):
        conn = HTTPConnection(where.hostname, where.port, timeout=30)
        conn.putrequest("GET", "/sparql", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        reply = conn.getresponse()
        assert reply.status == 400, (host, reply.status)
        conn.close()



def test_the_query_pages_scripts_are_404_where_they_are_not_installed(site, tmp_path):
    from evidence.serve_vendor import CACHE_ENV

    srv = Server(site, "--workers", "1", "--no-yasgui", log=tmp_path / "server.log", env={CACHE_ENV: str(tmp_path / "no-vendor")})
    try:
        for path in ("/vendor/yasgui/yasgui.min.js", "/vendor/yasgui/LICENSES.txt"):
            assert http(f"{srv.url}{path}")[0] == 404, path
        assert http(f"{srv.url}/query")[0] == 200  # the plain form
    finally:
        srv.stop()
    assert "Exception in ASGI application" not in srv.log_text()


def test_a_query_that_starts_with_a_byte_order_mark_is_read(server):
    status, _, body = http(f"{server.url}/sparql", "\ufeffASK { ?c a ev:CaseReport }".encode("utf-8"), {"Content-Type": "application/sparql-query"})
    assert status == 200 and json.loads(body)["boolean"] is True


def test_binds_loopback_by_default(server):
    assert f"Uvicorn running on http://127.0.0.1:{server.port}" in server.log_text()
    # From another address of this machine, nothing listens.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = s.getsockname()[0]
        except OSError:
            address = None
    if address and not address.startswith("127."):
        with pytest.raises(OSError), socket.create_connection((address, server.port), timeout=3):
            pass


# -- the protocol ---------------------------------------------------------------------------------

def test_get_and_both_posts_give_identical_select_results(server):
    get = sparql_get(server, CASES)
    form = sparql_post(server, CASES)
    direct = http(f"{server.url}/sparql", CASES, {"Content-Type": "application/sparql-query"})
    assert get[0] == form[0] == direct[0] == 200
    assert get[2] == form[2] == direct[2]
    assert get[1]["content-type"].startswith("application/sparql-results+json")
    data = json.loads(get[2])
    assert data["head"]["vars"] == ["case", "title"]
    assert [b["case"]["value"].rsplit("/", 1)[1] for b in data["results"]["bindings"]] == ["briand-2019", "wenzel-2016", "zimmermann-2019"]


def _rows(fmt: str, body: bytes) -> list[list[str]]:
    if fmt == "json":
        data = json.loads(body)
        return [[b[v]["value"] for v in data["head"]["vars"]] for b in data["results"]["bindings"]]
    if fmt == "xml":
        ns = {"r": "http://www.w3.org/2005/sparql-results#"}
        root = ET.fromstring(body)
        return [[b[0].text or "" for b in r.findall("r:binding", ns)] for r in root.findall("r:results/r:result", ns)]
    if fmt == "csv":
        return list(csv.reader(io.StringIO(body.decode("utf-8"))))[1:]
    lines = body.decode("utf-8").splitlines()[1:]
    return [[c.strip("<>").split('"')[1] if c.startswith('"') else c.strip("<>") for c in ln.split("\t")] for ln in lines]


@pytest.mark.parametrize("fmt, accept, media_type", [
    ("json", "application/sparql-results+json", "application/sparql-results+json"),
    ("xml", "application/sparql-results+xml", "application/sparql-results+xml"),
    ("csv", "text/csv", "text/csv"),
    ("tsv", "text/tab-separated-values", "text/tab-separated-values"),
])
def test_select_results_by_accept_and_by_format(server, fmt, accept, media_type):
    expected = _rows("json", sparql_get(server, CASES)[2])
    status, headers, body = sparql_post(server, CASES, {"Accept": accept})
    assert status == 200, body
    assert headers["content-type"].startswith(media_type)
    assert _rows(fmt, body) == expected
    status, headers, body2 = sparql_get(server, CASES, format=fmt)
    assert status == 200 and headers["content-type"].startswith(media_type)
    assert body2 == body


def test_accept_with_quality_values(server):
    status, headers, _ = sparql_get(server, CASES, {"Accept": "application/sparql-results+json;q=0.5, text/csv;q=0.9, */*;q=0.1"})
    assert status == 200 and headers["content-type"].startswith("text/csv")


def test_ask(server):
    status, headers, body = sparql_get(server, "ASK { ?c a ev:CaseReport }")
    assert status == 200 and json.loads(body) == {"head": {}, "boolean": True}
    status, _, body = sparql_get(server, "ASK { ?c a ev:CaseReport }", {"Accept": "application/sparql-results+xml"})
    assert status == 200 and b"<boolean>true</boolean>" in body


def test_construct_as_turtle_and_jsonld(server):
    query = "CONSTRUCT { ?c a ev:CaseReport ; dcterms:title ?t } WHERE { ?c a ev:CaseReport ; dcterms:title ?t }"
    status, headers, ttl = sparql_post(server, query)
    assert status == 200 and headers["content-type"].startswith("text/turtle")
    assert b"@prefix ev:" in ttl
    status, headers, jsonld = sparql_post(server, query, {"Accept": "application/ld+json"})
    assert status == 200 and headers["content-type"].startswith("application/ld+json")
    json.loads(jsonld)
    as_ttl = triples(ttl, ox.RdfFormat.TURTLE)
    as_jsonld = triples(jsonld, ox.RdfFormat.JSON_LD)
    assert len(as_ttl) == 6 and as_ttl == as_jsonld
    for accept, fmt in (("application/n-triples", ox.RdfFormat.N_TRIPLES), ("application/rdf+xml", ox.RdfFormat.RDF_XML)):
        status, _, body = sparql_post(server, query, {"Accept": accept})
        assert status == 200 and triples(body, fmt) == as_ttl


def test_describe(server):
    status, headers, body = sparql_get(server, "DESCRIBE <https://w3id.org/evidence-kb/case/wenzel-2016>")
    assert status == 200 and headers["content-type"].startswith("text/turtle")
    assert any(t.predicate.value.endswith("hasPatient") for t in triples(body, ox.RdfFormat.TURTLE))


def test_protocol_dataset_parameters(server):
    graph = "https://w3id.org/evidence-kb/graph/case/wenzel-2016"
    status, _, body = sparql_get(server, "SELECT ?c WHERE { ?c a ev:CaseReport }", **{"default-graph-uri": graph})
    assert status == 200
    assert [b["c"]["value"] for b in json.loads(body)["results"]["bindings"]] == ["https://w3id.org/evidence-kb/case/wenzel-2016"]


def _count(server: Server, query: str, **params: str) -> int:
    status, _, body = sparql_get(server, query, **params)
    assert status == 200, body
    return int(json.loads(body)["results"]["bindings"][0]["n"]["value"])


def test_the_dataset_is_the_querys_own_from_clauses_or_the_protocols(server, compiled):
    """A query's FROM names its default graph (it was replaced by the union of every graph, so a
    count FROM one case counted the whole kb); default-graph-uri and named-graph-uri make the
    dataset whole, each an empty set where not given (as the SPARQL protocol has it); and with
    neither, the default graph is the union of all graphs."""
    graph = "https://w3id.org/evidence-kb/graph/case/briand-2019"
    in_graph = sum(1 for q in compiled.quads if q.graph_name.value == graph)
    assert 0 < in_graph < len(compiled.quads)
    every = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"
    named = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }"
    assert _count(server, every) == len(compiled.quads)
    assert _count(server, f"SELECT (COUNT(*) AS ?n) FROM <{graph}> WHERE {{ ?s ?p ?o }}") == in_graph
    assert _count(server, f"SELECT (COUNT(*) AS ?n) FROM NAMED <{graph}> WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}") == in_graph
    assert _count(server, 'SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o FILTER(?o != "from") }') > in_graph  # the word in a string is no FROM
    assert _count(server, 'SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o FILTER(?o != "x"@from) }') == len(compiled.quads)  # nor a language tag
    assert _count(server, "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o FILTER(?p != ev:a\\'b) } # ' FROM") == len(compiled.quads)  # nor an escape
    # SPARQL's name characters beyond Python's \\w, and an IRI with an escape (its # is no comment):
    for name_from in ("BIND(1 AS ?x\u00b7from)", "FILTER(?o != ev:a\u00b7FROM)", "FILTER(?o != ev:e\u0301FROM)", "FILTER(?o != <urn:x\\u0041/FROM>)"):
        assert _count(server, f"SELECT (COUNT(*) AS ?n) WHERE {{ ?s ?p ?o {name_from} }}") == len(compiled.quads), name_from
    assert _count(server, f"SELECT (COUNT(*) AS ?n) (<urn:x\\u0041#> AS ?i) FROM <{graph}> WHERE {{ ?s ?p ?o }}") == in_graph
    assert _count(server, every, **{"default-graph-uri": graph}) == in_graph
    assert _count(server, named, **{"default-graph-uri": graph}) == 0
    assert _count(server, every, **{"named-graph-uri": graph}) == 0
    assert _count(server, named, **{"named-graph-uri": graph}) == in_graph


def test_service_description(server):
    status, headers, body = http(f"{server.url}/sparql")
    assert status == 200 and headers["content-type"].startswith("text/turtle")
    sd_triples = triples(body, ox.RdfFormat.TURTLE)
    sd = "http://www.w3.org/ns/sparql-service-description#"
    endpoint = ox.NamedNode(f"{server.url}/sparql")
    assert ox.Triple(endpoint, ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"), ox.NamedNode(sd + "Service")) in sd_triples
    assert ox.Triple(endpoint, ox.NamedNode(sd + "feature"), ox.NamedNode(sd + "UnionDefaultGraph")) in sd_triples
    names = {t.object.value for t in sd_triples if t.predicate.value == sd + "name"}
    assert "https://w3id.org/evidence-kb/graph/case/wenzel-2016" in names
    status, headers, body = http(f"{server.url}/sparql", headers={"Accept": "application/ld+json"})
    assert status == 200 and headers["content-type"].startswith("application/ld+json")
    as_jsonld = triples(body, ox.RdfFormat.JSON_LD)
    assert len(as_jsonld) == len(sd_triples) and ground(as_jsonld) == ground(sd_triples)


def test_cors(server):
    status, headers, _ = sparql_get(server, CASES, {"Origin": "https://example.org"})
    assert status == 200 and headers["access-control-allow-origin"] == "*"
    status, headers, _ = http(f"{server.url}/sparql", method="OPTIONS", headers={
        "Origin": "https://example.org", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert status == 200
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize("how", ["get update=", "post update=", "application/sparql-update", "INSERT as query=", "PUT", "DELETE"])
def test_updates_are_refused(server, how):
    update = "INSERT DATA { <https://example.org/a> <https://example.org/b> <https://example.org/c> }"
    if how == "get update=":
        status, _, body = http(f"{server.url}/sparql?{urlencode({'update': update})}")
    elif how == "post update=":
        status, _, body = http(f"{server.url}/sparql", {"update": update})
    elif how == "application/sparql-update":
        status, _, body = http(f"{server.url}/sparql", update, {"Content-Type": "application/sparql-update"})
    elif how == "INSERT as query=":
        status, _, body = sparql_post(server, update)
    else:
        status, _, body = http(f"{server.url}/sparql", update, {"Content-Type": "application/sparql-update"}, method=how)
    assert status in (403, 405), body
    assert b"read-only" in body
    # ... and nothing changed.
    assert json.loads(sparql_get(server, "ASK { <https://example.org/a> ?p ?o }")[2])["boolean"] is False


def test_malformed_query_names_line_and_column(server, compiled):
    query = "SELECT ?s\nWHERE {\n  ?s ?p \n}"
    status, headers, body = sparql_post(server, query)
    assert status == 400 and headers["content-type"].startswith("text/plain")
    assert "Accept" in headers.get("vary", "")  # the same address answers an HTML page to a browser
    assert body.decode().startswith("line 4, column 2: SPARQL syntax error: expected")
    with pytest.raises(QueryError) as local:  # the words of `evidence query`
        run_query(compiled, query)
    assert body.decode() == local.value.message + "\n"
    status, _, body = sparql_get(server, "SELECT * WHERE {\n  ?s foo:bar ?o }")
    assert status == 400
    assert body.decode().startswith("line 2, column ") and "unknown prefix 'foo:'" in body.decode()


@pytest.mark.parametrize("query", [
    "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }",
    "SELECT * WHERE { service silent <http://127.0.0.1:9/sparql> { ?s ?p ?o } }",
    "SELECT * WHERE { VALUES ?e { <http://127.0.0.1:9/> } SERVICE ?e { ?s ?p ?o } }",
])
def test_service_is_refused(server, query):
    status, _, body = sparql_post(server, query)
    assert status == 400 and b"SERVICE" in body and b"no requests" in body


def test_client_errors_are_4xx(server):
    assert http(f"{server.url}/sparql", {"query": ""})[0] == 400
    assert http(f"{server.url}/sparql", {"nothing": "x"})[0] == 400
    assert http(f"{server.url}/sparql?query=ASK%7B%7D&query=ASK%7B%7D")[0] == 400
    assert http(f"{server.url}/sparql", "ASK {}", {"Content-Type": "text/plain"})[0] == 415
    for status, _headers, body in (http(f"{server.url}/sparql", b"query=%FF%FE", {"Content-Type": "application/x-www-form-urlencoded"}),
                                   http(f"{server.url}/sparql?query=%FF%FE")):
        assert status == 400 and b"is not UTF-8 once percent-decoded" in body, body
    assert sparql_get(server, CASES, {"Accept": "image/png"})[0] == 406
    assert sparql_get(server, "CONSTRUCT WHERE { ?s ?p ?o }", {"Accept": "text/csv"})[0] == 406
    assert sparql_get(server, CASES, format="yaml")[0] == 400
    assert sparql_get(server, CASES, **{"default-graph-uri": "not an iri"})[0] == 400
    status, _, body = sparql_post(server, "SELECT * WHERE " + "{" * 5000 + "}" * 5000)  # the engine's stack would overflow
    assert status == 400 and b"more than 1000 levels deep" in body
    status, _, body = http(f"{server.url}/sparql", {"query": "ASK {} #" + "x" * (1 << 20)})
    assert status == 413 and b"larger than" in body
    status, _, body = http(f"{server.url}/sparql?{urlencode({'query': 'ASK {} #' + 'x' * (1 << 20)})}")
    assert status == 414 and b"POST" in body


# -- the limits -----------------------------------------------------------------------------------

def _workers_of(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"serve_worker.py" in cmdline:
            out.append(int(p.name))
    return out


def test_timeout_stops_the_query_and_the_server_keeps_serving(limited):
    before = _workers_of(limited.proc.pid) if Path("/proc").is_dir() else []
    heavy: dict = {}

    def run_heavy():
        t = time.perf_counter()
        heavy["reply"] = sparql_post(limited, HEAVY)
        heavy["seconds"] = time.perf_counter() - t

    thread = threading.Thread(target=run_heavy)
    thread.start()
    time.sleep(0.3)
    # While the heavy query runs, another worker answers.
    t = time.perf_counter()
    status, _, body = sparql_get(limited, "ASK { ?c a ev:CaseReport }")
    assert status == 200 and json.loads(body)["boolean"] is True
    assert time.perf_counter() - t < 0.9 and thread.is_alive()
    thread.join(30)
    status, headers, body = heavy["reply"]
    assert status == 503, body
    assert headers["content-type"].startswith("text/plain")
    assert body.decode().startswith("the query exceeded the 1 s time limit and was stopped; add LIMIT or narrow it")
    assert heavy["seconds"] < 5
    # Right after, the same server answers a simple query correctly.
    status, _, body = sparql_get(limited, CASES.replace("?case ?title", "?case"), format="csv")
    assert status == 200
    assert body.decode().splitlines() == ["case"] + [f"https://w3id.org/evidence-kb/case/{c}" for c in ("briand-2019", "wenzel-2016", "zimmermann-2019")]
    # The stopped worker was killed and replaced: as many workers as before, none of them the old one's twin.
    deadline = time.monotonic() + 20
    while "started a fresh query worker" not in limited.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "started a fresh query worker" in limited.log_text()
    if before:
        after = _workers_of(limited.proc.pid)
        assert len(after) == len(before) == 2 and set(after) != set(before)


def _query_from(server: Server, source: str, query: str, timeout: float = 60.0, forwarded_for: str | None = None) -> tuple[int, float]:
    """POST a query from the loopback address ``source`` (each stands for a client of its own),
    as a proxy would if ``forwarded_for`` is given; (status, seconds)."""
    import http.client
    from urllib.parse import urlsplit

    where = urlsplit(server.url)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=timeout, source_address=(source, 0))
    t = time.perf_counter()
    try:
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/sparql-results+json"}
        if forwarded_for is not None:
            headers["X-Forwarded-For"] = forwarded_for
        conn.request("POST", "/sparql", urlencode({"query": query}), headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - t
    finally:
        conn.close()


@pytest.mark.skipif(sys.platform != "linux", reason="clients on 127.0.0.2 and 127.0.0.3 (Linux routes all of 127/8 to loopback)")
def test_a_client_with_many_slow_queries_holds_up_its_own_not_anothers(limited):
    """Two workers, a 1 s limit. One client sends six queries that each run past it; a quick query
    from another client, sent while four of them wait, gets the first worker that comes free, not
    a place behind them. Every slow query still gets its 503, in three rounds of two."""
    slow: list[tuple[int, float]] = []
    threads = [threading.Thread(target=lambda: slow.append(_query_from(limited, "127.0.0.2", HEAVY))) for _ in range(6)]
    for th in threads:
        th.start()
        time.sleep(0.05)
    time.sleep(0.3)
    status, seconds = _query_from(limited, "127.0.0.3", "ASK { ?c a ev:CaseReport }")
    for th in threads:
        th.join(60)
    assert status == 200
    # Measured: 0.48 s; first come, first served, it waited 2.56 s (behind four slow queries).
    assert seconds < 2.0, f"the quick query waited {seconds:.2f} s behind the other client's slow ones"
    assert sorted(st for st, _ in slow) == [503] * 6
    assert max(sec for _, sec in slow) > 2.5  # they did queue behind each other: three rounds of two
    _settle(limited)


def _settle(server: Server) -> None:
    """Wait until the workers replaced after a time limit are back."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _query_from(server, "127.0.0.1", "ASK {}")[1] > 0.5:
        time.sleep(0.2)


def _quick_behind_slow(server: Server, slow_from: tuple[str, str], quick_from: tuple[str, str]) -> float:
    """Six slow queries from one (address, X-Forwarded-For), then a quick one from another while
    four of them wait: the seconds the quick one took."""
    slow: list[tuple[int, float]] = []
    threads = [threading.Thread(target=lambda: slow.append(_query_from(server, slow_from[0], HEAVY, forwarded_for=slow_from[1])))
               for _ in range(6)]
    for th in threads:
        th.start()
        time.sleep(0.05)
    time.sleep(0.3)
    status, seconds = _query_from(server, quick_from[0], "ASK { ?c a ev:CaseReport }", forwarded_for=quick_from[1])
    for th in threads:
        th.join(60)
    assert status == 200 and sorted(st for st, _ in slow) == [503] * 6
    _settle(server)
    return seconds


def test_a_trusted_ipv4_proxy_is_trusted_when_it_comes_in_as_ipv6():
    """Listening on ``::``, the server sees an IPv4 proxy as ``::ffff:a.b.c.d``: uvicorn's own
    check of the trusted addresses must take it for the proxy named, and no other address."""
    from uvicorn.middleware.proxy_headers import _TrustedHosts

    from evidence.serve import trusted_proxies

    trusted = _TrustedHosts(trusted_proxies("127.0.0.1,10.1.0.0/16,::1"))
    for client in ("127.0.0.1", "::ffff:127.0.0.1", "10.1.2.3", "::ffff:10.1.2.3", "::1"):
        assert client in trusted, client
    for client in ("127.0.0.2", "::ffff:127.0.0.2", "10.2.0.1", "::ffff:10.2.0.1", "::2", "192.0.2.1"):
        assert client not in trusted, client


@pytest.mark.skipif(sys.platform != "linux", reason="a client on 127.0.0.2 (Linux routes all of 127/8 to loopback)")
def test_behind_a_trusted_proxy_the_client_is_the_one_it_names(limited):
    """The server trusts X-Forwarded-For from 127.0.0.1 only (--forwarded-allow-ips). Through that
    proxy, two clients have turns of their own; from any other address the header is ignored, so a
    client cannot name itself another to jump the queue."""
    through_proxy = _quick_behind_slow(limited, ("127.0.0.1", "198.51.100.7"), ("127.0.0.1", "198.51.100.8"))
    assert through_proxy < 2.0, f"through the proxy, the quick query waited {through_proxy:.2f} s behind another client's slow ones"
    forged = _quick_behind_slow(limited, ("127.0.0.2", "198.51.100.7"), ("127.0.0.2", "198.51.100.8"))
    assert forged > 2.0, f"a forged X-Forwarded-For from an untrusted address got a turn of its own ({forged:.2f} s)"


def test_result_cap(limited):
    status, headers, body = sparql_get(limited, "SELECT ?s WHERE { ?s ?p ?o }")
    assert status == 413 and headers["content-type"].startswith("text/plain")
    assert body.decode().startswith("the result has more than 5 rows, the limit of this endpoint; add LIMIT")
    status, _, body = sparql_get(limited, "CONSTRUCT WHERE { ?s ?p ?o }")
    assert status == 413 and b"more than 5 triples" in body
    status, _, body = sparql_get(limited, "SELECT ?s WHERE { ?s ?p ?o } LIMIT 5")
    assert status == 200 and len(json.loads(body)["results"]["bindings"]) == 5


# -- the site and the query page --------------------------------------------------------------------

def test_site_is_served(server, site):
    status, headers, body = http(f"{server.url}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert body == (site / "index.html").read_bytes()
    status, gz_headers, body = http(f"{server.url}/evidence.ttl.gz")
    assert status == 200 and body == (site / "evidence.ttl.gz").read_bytes()
    assert gz_headers["content-type"] == "application/gzip" and "content-encoding" not in gz_headers
    assert http(f"{server.url}/no-such-page.html")[0] == 404
    assert http(f"{server.url}/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert headers.get("x-content-type-options") == "nosniff"


def _assert_local_only(html: str) -> None:
    """No script, style, image or form on the page points to another host."""
    import re

    for attr, url in re.findall(r'\b(src|href|action)="([^"]*)"', html):
        if attr == "href" and url.startswith(("http://", "https://")):
            continue  # a link the reader may follow is not a request the page makes
        assert not url.startswith(("http:", "https:", "//")), f'{attr}="{url}"'


def _settled_query_page(server: Server) -> str:
    """The query page once npm has installed YASGUI, or has failed to."""
    deadline = time.monotonic() + 300
    while True:
        status, headers, body = http(f"{server.url}/query")
        html = body.decode()
        if "npm is installing it" not in html or time.monotonic() > deadline:
            return html
        time.sleep(0.5)


def test_query_page(server, library):
    html = _settled_query_page(server)
    status, headers, _ = http(f"{server.url}/query")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in headers["content-security-policy"] and "connect-src 'self'" in headers["content-security-policy"]
    _assert_local_only(html)
    data = json.loads(html.split('<script type="application/json" id="library-data">', 1)[1].split("</script>", 1)[0])
    assert [q["name"] for q in data["queries"]] == [q.name for q in library]
    assert data["endpoint"] == "/sparql"
    for q in library:
        assert f'id="q-{q.name}"' in html  # the plain form's copy, for a browser without JavaScript
    assert '<form method="post" action="/sparql">' in html
    if '<script src="/vendor/yasgui/yasgui.min.js"' in html:
        for name, media_type in (("yasgui.min.js", "javascript"), ("yasgui.min.css", "text/css"), ("LICENSES.txt", "text/plain")):
            status, headers, body = http(f"{server.url}/vendor/yasgui/{name}")
            assert status == 200 and media_type in headers["content-type"], name
        assert b"@zazuko/yasgui " + YASGUI_VERSION.encode() in body and b"MIT" in body
    else:
        assert shutil.which("npm") is None or "not available" in html
        assert not CI or shutil.which("npm") is None, "in CI, npm should have installed YASGUI:\n" + server.log_text()


def test_plain_form_works_without_yasgui(limited, library):
    status, headers, body = http(f"{limited.url}/query")
    html = body.decode()
    assert status == 200 and "yasgui.min.js" not in html and "turned off with --no-yasgui" in html
    _assert_local_only(html)
    # What the form sends: the query and format=html, and a browser's Accept header.
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    status, headers, body = http(f"{limited.url}/sparql", {"query": CASES, "format": "html"}, {"Accept": accept})
    assert status == 200 and headers["content-type"].startswith("text/html")
    page = body.decode()
    assert "<th scope=\"col\">case</th>" in page and "3 rows." in page
    # A browser without format= gets HTML too; an error comes back on the page, with its status.
    status, headers, body = http(f"{limited.url}/sparql", {"query": "SELECT * WHERE { ?s ?p }"}, {"Accept": accept})
    assert status == 400 and headers["content-type"].startswith("text/html") and "line 1, column" in body.decode()
    # Markup in a query or a result is escaped.
    status, _, body = http(f"{limited.url}/sparql", {"query": 'SELECT ?x WHERE { BIND("<script>alert(1)</script>" AS ?x) }', "format": "html"})
    assert status == 200 and b"<script>alert(1)" not in body and b"&lt;script&gt;alert(1)" in body


def test_browser_runs_a_library_query_without_leaving_the_machine(server, library):
    """YASGUI in Chromium: every library query is a tab, a query runs, and every request stays local."""
    html = _settled_query_page(server)
    if "yasgui.min.js" not in html:
        if CI:
            pytest.fail("YASGUI was not installed:\n" + server.log_text())
        pytest.skip("YASGUI is not installed (no npm, or offline)")
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"))), None)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        if CI:
            pytest.fail("the browser test needs playwright and chromium")
        pytest.skip("no chromium or playwright")
    requests, problems = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: m.type == "error" and problems.append(m.text))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{server.url}/query")
            page.wait_for_selector("body[data-yasgui=ready]", timeout=20000)
            tabs = [t.split("\n")[0].strip() for t in page.locator(".yasgui .tabsList .tab").all_inner_texts()]
            assert tabs == [q.name for q in library]
            assert page.locator("#plain").is_hidden()
            page.locator(".tabPanel.active .yasqe_queryButton").click()
            page.wait_for_selector(".tabPanel.active .yasr table tbody tr", timeout=20000)
            assert page.locator(".tabPanel.active .yasr table tbody tr").count() >= 1
        finally:
            browser.close()
    assert requests and all(u.startswith(server.url + "/") for u in requests), requests
    assert f"{server.url}/sparql" in requests
    assert not problems, problems


# -- the parts, without a server ------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("SELECT * WHERE { SERVICE <http://x/> { ?s ?p ?o } }", True),
    ("select * where { service<http://x/>{?s ?p ?o} }", True),
    ("SELECT * WHERE { \\u0053ERVICE <http://x/> { ?s ?p ?o } }", True),
    ("SELECT * WHERE { ?s ?p ?o FILTER(?x<1)SERVICE?e#>\n{ } }", True),
    ('SELECT * WHERE { ?s ?p "customer service" }', True),  # deliberately coarse
    ('SELECT * WHERE { ?s ?p """\n# no comment\n""" . SERVICE <http://x/> { } }', True),
    ("# title: what the health service reported\nSELECT * WHERE { ?s ?p ?o }", False),
    ("SELECT * WHERE {\n  # SERVICE <http://x/> { }\n  ?s ?p ?o }", True),  # a comment after code: coarse, as a string
    # A line starting with # inside a long string is text, and code may follow the string on it:
    # leaving out every such line let this SERVICE through (the server fetched the address).
    ("SELECT * WHERE { BIND('''\n# ''' AS ?x) SERVICE <http://127.0.0.1:8790/internal> { ?s ?p ?o } }", True),
    ("# the header may say service\r\n\r\n  # service, again\nSELECT * WHERE { ?s ?p ?o }", False),
    ("SELECT * WHERE {\n\\u0023 SERVICE <http://x/> { } }", True),
    ("SELECT * WHERE {\n# a comment\rSERVICE <http://x/> { } }", True),
    ("SELECT ?service WHERE { ?s ?p ?service }", False),
    ("SELECT ?customerService WHERE { ?s ?p ?customerService }", False),
    ("SELECT * WHERE { ?s ?p 1SERVICE <http://127.0.0.1:8799/x> { ?a ?b ?c } }", True),  # pyoxigraph reads `1 SERVICE`
    # ... and it finds the keyword with no boundary after it either (each made the server fetch):
    ("PREFIX x: <http://127.0.0.1:8799/> SELECT * WHERE { SERVICEx:b { ?s ?p ?o } }", True),
    ("SELECT * WHERE { SERVICESILENT<http://127.0.0.1:8799/c> { ?s ?p ?o } }", True),
    ("SELECT * WHERE { servicex:lg { ?s ?p ?o } }", True),
    ("SELECT * WHERE { ?s ?p 1SERVICEx:atg { } }", True),
    ("SELECT $service WHERE { ?s ?p $service }", False),
    ("SELECT * WHERE { ?s ev:services ?o }", True),  # coarse: a name that holds the word (no term of the kb does)
])
def test_uses_service(text, expected):
    assert uses_service(text) is expected


def test_looks_like_update():
    assert looks_like_update("PREFIX ex: <http://x/>\n# add\nINSERT DATA { ex:a ex:b ex:c }")
    assert looks_like_update("DROP ALL")
    assert looks_like_update(" \t\n  DROP ALL")
    assert not looks_like_update("SELECT * WHERE { ?s ?p ?o }")


def test_the_checks_on_a_malformed_query_take_time_in_proportion_to_it():
    """Both run in the server's own loop on every syntax error: a run of 30 spaces before a word
    held the update check for seconds (each space doubled it), a long name before an unknown
    prefix held the error's explanation for 9 s at 40,000 characters. A megabyte, the largest
    body the endpoint takes, now takes a fraction of a second."""
    import time

    from evidence.query import explain_syntax_error
    from evidence.serve_worker import declares_dataset

    t = time.perf_counter()
    assert not looks_like_update(" " * 1_000_000 + "x")
    for text in ("'" + "\\'" * 500_000, "'" * 3 + "\\'" * 300_000, "?" + "a" * 1_000_000, "1" + "a" * 1_000_000, "@" + "a-" * 300_000,
                 "a." * 500_000, "a-." * 330_000, "x:" + "a." * 500_000):  # 64 KB of "a." took 2.4 s
        query = "SELECT * { ?s ?p " + text + " }"
        assert not declares_dataset(query)  # 64 KB of escaped quotes in an open string took 12 s
        uses_service(query)
    line = "SELECT * { " + "a" * 1_000_000 + ":b ?p ?o }"
    said = explain_syntax_error(line, f"error at 1:{len('SELECT * { ') + 1_000_000 + 2}: Prefix not found", {"ev": "x"})
    assert time.perf_counter() - t < 2, "a check on a malformed query is not linear"
    assert said.startswith("line 1, column") and "unknown prefix 'aaa" in said


def test_negotiation():
    assert parse_accept(None) == [("*", "*", 1.0)]
    assert negotiate(None, SELECT_OFFERS) == "json"
    assert negotiate("*/*", SELECT_OFFERS) == "json"
    assert negotiate("text/*", SELECT_OFFERS) == "csv"
    assert negotiate("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", SELECT_OFFERS) == "html"
    assert negotiate("application/sparql-results+json;q=0, */*", SELECT_OFFERS) == "xml"
    assert negotiate("image/png", SELECT_OFFERS) is None
    # SPARQLWrapper's format=xml means RDF/XML for a CONSTRUCT.
    assert (choose_formats(None, "xml").select, choose_formats(None, "xml").graph) == ("xml", "rdfxml")
    assert choose_formats("text/csv", "application/sparql-results+json").select == "json"
    with pytest.raises(ValueError, match="unknown format"):
        choose_formats(None, "yaml")


def _fake_npm(folder: Path, body: str) -> None:
    folder.mkdir()
    npm = folder / "npm"
    npm.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script stands in for npm")
def test_install_yasgui_with_npm(tmp_path, monkeypatch):
    _fake_npm(tmp_path / "bin", """
while [ $# -gt 0 ]; do if [ "$1" = "--prefix" ]; then shift; P="$1"; fi; shift; done
M="$P/node_modules"
mkdir -p "$M/@zazuko/yasgui/build" "$M/codemirror"
echo 'window.Yasgui = {};' > "$M/@zazuko/yasgui/build/yasgui.min.js"
echo '.yasgui {}' > "$M/@zazuko/yasgui/build/yasgui.min.css"
echo '{"name": "@zazuko/yasgui", "version": "4.6.2", "license": "MIT", "homepage": "https://github.com/rdfjs/Yasgui"}' > "$M/@zazuko/yasgui/package.json"
echo '{"name": "codemirror", "version": "5.65.0", "license": "MIT"}' > "$M/codemirror/package.json"
echo 'MIT License, Copyright (C) by Marijn Haverbeke' > "$M/codemirror/LICENSE"
""")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    folder = tmp_path / "vendor" / f"yasgui-{YASGUI_VERSION}"
    assert install_yasgui(folder) is None
    assert (folder / "yasgui.min.js").read_text() == "window.Yasgui = {};\n"
    licences = (folder / "LICENSES.txt").read_text()
    assert "@zazuko/yasgui 4.6.2: MIT" in licences and "ships no licence file; see https://github.com/rdfjs/Yasgui" in licences
    assert "codemirror 5.65.0: MIT" in licences and "Copyright (C) by Marijn Haverbeke" in licences
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # the work folder is gone
    assert install_yasgui(folder) is None  # installed already: npm is not run again


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shell script stands in for npm")
def test_install_yasgui_without_npm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert install_yasgui(tmp_path / "v" / "yasgui") == "npm is not installed"
    _fake_npm(tmp_path / "bin", "echo 'npm error code E404' >&2\nexit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin")
    reason = install_yasgui(tmp_path / "v" / "yasgui")
    assert reason and "failed" in reason and "E404" in reason
    assert not (tmp_path / "v" / "yasgui").exists()


@pytest.mark.parametrize("raw", [
    b"POST /sparql HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /sparql HTTP/1.1\r\nHost: x\r\nContent-Type: application/sparql-query\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nASK {}\r\n0\r\n\r\n",
    b"POST /sparql HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /sparql?query=ASK%7B%7D HTTP/1.1\r\nHost: x\r\nBad Header Name: y\r\n\r\n",
], ids=["length-not-a-number", "chunk-size-not-hex", "length-and-chunked", "no-request-line", "space-in-a-header-name"])
def test_a_malformed_request_on_the_wire_gets_a_4xx_never_a_5xx(server, raw):
    """What a browser or urllib never sends, written to the socket as it is: the answer is a 4xx,
    never a 5xx, and the server goes on serving."""
    from urllib.parse import urlsplit

    where = urlsplit(server.url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = answer.split(b"\r\n", 1)[0]
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", status), status
    assert sparql_get(server, "ASK {}")[0] == 200
