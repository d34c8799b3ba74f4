"""``evidence serve``: a read-only SPARQL 1.1 Protocol endpoint over the compiled graph, the built
site and a query page, on one port.

::

    /sparql           the endpoint: GET ?query=, POST form (query=) or application/sparql-query;
                      results by Accept (or format=); without a query, the service description
    /query            a query page: YASGUI with the query library as tabs, or a plain form
    /vendor/yasgui/   YASGUI's files and licences, installed with npm on first use (serve_vendor)
    /                 the built site (static files; index.html for folders)

Starlette is the HTTP layer and uvicorn the server. Queries are answered by pyoxigraph in worker
processes (:mod:`evidence.serve_pool`), so that a query past the time limit can be stopped by
killing its worker while the server goes on answering others. Content negotiation and the service
description are in :mod:`evidence.serve_protocol`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import secrets
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pyoxigraph as ox

from .library import LibraryQuery, load_library
from .query import explain_syntax_error
from .serve_pool import PoolBusy, QueryTimeout, WorkerFailed, WorkerPool
from .serve_protocol import (
    GRAPH_OFFERS,
    MAX_NESTING,
    MEDIA_TYPES,
    SD_FORMATS,
    SD_PREFIXES,
    Choice,
    choose_formats,
    looks_like_update,
    negotiate,
    nesting_depth,
    service_description,
    uses_service,
)
from .serve_vendor import LICENSES, YASGUI_VERSION, install_yasgui, vendor_folder, yasgui_ready

__all__ = ["Settings", "add_commands", "cmd_serve", "create_app", "default_workers", "serve", "trusted_proxies"]

log = logging.getLogger("evidence.serve")

ALLOW = "GET, HEAD, POST, OPTIONS"
READ_ONLY = ("this endpoint is read-only: SPARQL Update is not accepted (no update=, no application/sparql-update). "
             "To change the graph, edit the kb files and rebuild.")
NO_SERVICE = ("SERVICE (federated query) is not allowed: this endpoint answers from its own graph only and makes no requests "
              "to other servers. (The check is on the word: if 'service' is only part of a string or IRI, write it another way, "
              "e.g. CONCAT(\"serv\", \"ice\").)")
RESULT_FORMAT_CHOICES = [("html", "a table (HTML)"), ("json", "SPARQL JSON"), ("xml", "SPARQL XML"), ("csv", "CSV"), ("tsv", "TSV"),
                         ("turtle", "Turtle (CONSTRUCT, DESCRIBE)"), ("jsonld", "JSON-LD (CONSTRUCT, DESCRIBE)")]


def default_workers() -> int:
    """Two at least (one slow query must not hold up the rest), at most four, one a core."""
    return max(2, min(4, os.cpu_count() or 2))


@dataclass
class Settings:
    """What the server needs: where the data and pages are, where to listen, and the limits."""

    root: Path
    site: Path
    nquads: Path
    prefixes: dict[str, str]
    templates: Path | None
    library: list[LibraryQuery] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    timeout: float = 10.0
    max_results: int = 10000
    workers: int = 2
    yasgui: bool = True
    vendor: Path | None = None
    max_body: int = 1 << 20
    # Proxies whose X-Forwarded-For names the client (comma-separated addresses or networks);
    # None: the header is ignored, and the client is the address that connects.
    forwarded_allow_ips: str | None = None


class _Problem(Exception):
    """A request the endpoint will not answer: an HTTP status and a message for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# -- the HTTP layer ------------------------------------------------------------------------------

def create_app(settings: Settings):
    """The Starlette application (workers start in its lifespan)."""
    from jinja2 import TemplateNotFound
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from .render import environment

    class SiteFiles(StaticFiles):
        """The site's files. A gzip download (evidence.ttl.gz ...) is sent as application/gzip:
        Python's mimetypes names what is inside (text/turtle), and with nosniff and no
        Content-Encoding a client would take the gzip bytes for Turtle."""

        def file_response(self, full_path, *args: Any, **kwargs: Any) -> Response:
            response = super().file_response(full_path, *args, **kwargs)
            if str(full_path).endswith(".gz"):
                response.headers["content-type"] = "application/gzip"
            return response

    class VendorFiles(StaticFiles):
        """YASGUI's files, once installed: until then (--no-yasgui, no npm, offline, or still
        installing) every address under /vendor/yasgui/ is 404, where Starlette answered 500 for
        a folder that is not there."""

        async def check_config(self) -> None:
            if os.path.isdir(str(self.directory)):
                await super().check_config()

        async def get_response(self, path: str, scope: Any) -> Response:
            if not os.path.isdir(str(self.directory)):
                return PlainTextResponse("not found: the query page's scripts are not installed here", status_code=404)
            return await super().get_response(path, scope)

    state: dict[str, Any] = {"pool": None, "vendor": "not installed"}
    vendor = settings.vendor or vendor_folder(settings.root)
    env = environment(settings.templates) if settings.templates else None

    def install() -> None:
        state["vendor"] = "npm is installing it"
        reason = install_yasgui(vendor)
        state["vendor"] = reason
        if reason:
            log.warning("the query page uses the plain form: %s", reason)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        pool = WorkerPool(settings.nquads, settings.prefixes, settings.workers, settings.timeout)
        await pool.start()
        state["pool"] = pool
        if settings.yasgui and not yasgui_ready(vendor):
            threading.Thread(target=install, name="yasgui-install", daemon=True).start()
        log.info("serving http://%s:%d/ : the site at /, SPARQL at /sparql, a query page at /query (%d workers, %g s time limit, "
                 "at most %d results)", _host_for_url(settings.host), settings.port, settings.workers, settings.timeout, settings.max_results)
        try:
            yield
        finally:
            await pool.close()

    def text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status, headers=headers)

    def yasgui_info() -> dict[str, str] | None:
        if not settings.yasgui or not yasgui_ready(vendor):
            return None
        return {"js": "/vendor/yasgui/yasgui.min.js", "css": "/vendor/yasgui/yasgui.min.css", "license": f"/vendor/yasgui/{LICENSES}",
                "version": YASGUI_VERSION}

    def page(status: int = 200, *, interactive: bool, query: str | None = None, result: dict | None = None,
             error: str | None = None, headers: dict[str, str] | None = None) -> Response:
        if env is None:
            return text(404, "no query page: site_templates/query.html was not found")
        try:
            template = env.get_template("query.html")
        except TemplateNotFound:
            return text(404, f"no query page: {settings.templates}/query.html was not found")
        nonce = secrets.token_urlsafe(16)
        yasgui = yasgui_info() if interactive else None
        unavailable = None
        if interactive and yasgui is None:
            unavailable = "it was turned off with --no-yasgui" if not settings.yasgui else f"YASGUI {YASGUI_VERSION}: {state['vendor']}"
        library = [{"name": q.name, "title": q.title, "question": q.question, "text": q.text,
                    "params": [{"name": p.name, "description": p.description} for p in q.params],
                    "rows": min(24, q.text.count("\n") + 2)} for q in settings.library]
        first = settings.library[0].text if settings.library else "SELECT ?class (COUNT(?s) AS ?n)\nWHERE { ?s a ?class }\nGROUP BY ?class\nORDER BY DESC(?n)\n"
        html = template.render(
            endpoint="/sparql", timeout=f"{settings.timeout:g}", max_results=settings.max_results, prefixes=sorted(settings.prefixes),
            yasgui=yasgui, unavailable=unavailable, library=library, query=query if query is not None else first,
            result_formats=RESULT_FORMAT_CHOICES, chosen_format="html", result=result, error=error, nonce=nonce,
            page_data={"endpoint": "/sparql", "queries": [{"name": q["name"], "title": q["title"], "text": _with_prefixes(q["text"], settings.prefixes)}
                                                          for q in library]},
        )
        csp = (f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "font-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
        return HTMLResponse(html, status_code=status, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store", **(headers or {})})

    async def query_page(request: Request) -> Response:
        return page(interactive=True)

    async def sparql(request: Request) -> Response:
        if request.method in ("PUT", "DELETE", "PATCH"):
            return text(405, READ_ONLY, {"Allow": ALLOW})
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": ALLOW})
        try:
            params = await _request_params(request, settings.max_body)
        except _Problem as p:
            return text(p.status, p.message, p.headers)
        queries = params.get("query", [])
        if not queries:
            if request.method == "POST":
                return text(400, "no query: send query=... (GET, or a form POST) or a query in an application/sparql-query body")
            return description(request, params)
        if len(queries) > 1:
            return text(400, "more than one query= parameter; send one query per request")
        try:
            choice = choose_formats(request.headers.get("accept"), (params.get("format") or [None])[-1])
        except ValueError as exc:
            return text(400, str(exc))
        html = choice.select == "html" or choice.graph == "html"
        try:
            return await evaluate(queries[0], params, choice, request.client.host if request.client else "")
        except _Problem as p:
            # The same address answers HTML or text by Accept (Vary); a 503's Retry-After either way.
            headers = {**(p.headers or {}), "Vary": "Accept"}
            if html:
                return page(p.status, interactive=False, query=queries[0], error=p.message, headers=headers)
            return text(p.status, p.message, headers)

    def description(request: Request, params: dict[str, list[str]]) -> Response:
        fmt_param = (params.get("format") or [None])[-1]
        if fmt_param:
            try:
                fmt = choose_formats(None, fmt_param).graph
            except ValueError as exc:
                return text(400, str(exc))
        else:
            fmt = negotiate(request.headers.get("accept"), GRAPH_OFFERS, (*SD_FORMATS, "html"))
        if fmt == "html":
            return RedirectResponse("/query", status_code=303)
        if fmt not in SD_FORMATS:
            return text(406, f"the service description is available as {', '.join(MEDIA_TYPES[f].split(';')[0] for f in SD_FORMATS)}")
        pool = state["pool"]
        endpoint = str(request.url.replace(query="", fragment=""))  # its address as the client named it (the Host header)
        try:
            ox.NamedNode(endpoint)
        except ValueError:
            return text(400, f"the request's Host header does not make an address ({endpoint!r} is not an IRI); send the server's host and port")
        triples = service_description(endpoint, settings.prefixes, pool.info.get("graphs", {}) if pool else {}, settings.timeout,
                                      settings.max_results)
        formats = {"turtle": ox.RdfFormat.TURTLE, "jsonld": ox.RdfFormat.JSON_LD, "ntriples": ox.RdfFormat.N_TRIPLES, "rdfxml": ox.RdfFormat.RDF_XML}
        body = ox.serialize(triples, format=formats[fmt], prefixes=SD_PREFIXES if fmt in ("turtle", "rdfxml") else None)
        return Response(body, media_type=MEDIA_TYPES[fmt], headers={"Vary": "Accept"})

    async def evaluate(query: str, params: dict[str, list[str]], choice: Choice, client: str = "") -> Response:
        query = query.removeprefix("\ufeff")  # a byte-order mark, as some editors start a saved .rq file
        if not query.strip():
            raise _Problem(400, "the query is empty")
        if uses_service(query):
            raise _Problem(400, NO_SERVICE)
        if nesting_depth(query) > MAX_NESTING:
            raise _Problem(400, f"the query nests brackets more than {MAX_NESTING} levels deep; this endpoint does not evaluate it (the engine "
                                "would run out of stack)")
        job = {
            "query": query,
            "select": "json" if choice.select == "html" else choice.select,
            "graph": "turtle" if choice.graph == "html" else choice.graph,
            "max": settings.max_results,
            "default_graph": params.get("default-graph-uri", []),
            "named_graphs": params.get("named-graph-uri", []),
        }
        for iri in job["default_graph"] + job["named_graphs"]:
            try:
                ox.NamedNode(iri)
            except ValueError:
                raise _Problem(400, f"default-graph-uri and named-graph-uri must be IRIs; found {iri!r}") from None
        pool: WorkerPool = state["pool"]
        t = time.perf_counter()
        try:
            reply = await pool.run(job, client)  # waits in its client's turn when every worker is busy
        except QueryTimeout:
            log.info("query stopped after %g s", settings.timeout)
            raise _Problem(503, f"the query exceeded the {settings.timeout:g} s time limit and was stopped; add LIMIT or narrow it "
                                "(more specific patterns, fewer OPTIONALs)") from None
        except PoolBusy as exc:
            raise _Problem(503, f"{exc}; try again in a moment", {"Retry-After": "5"}) from None
        except WorkerFailed as exc:
            log.warning("%s", exc)
            if exc.crashed:  # a stack overflow in the engine: the query is too long or too deep for it
                raise _Problem(400, "the query engine crashed on this query (it ran out of stack: the query is probably too long or "
                                    "nested too deeply); simplify it") from None
            raise _Problem(503, "the query worker stopped while it answered (it may have run out of memory); a fresh worker is "
                                "starting: narrow the query or add LIMIT") from None
        status = reply.status
        if status == "syntax":
            message = explain_syntax_error(query, reply.header.get("message", ""), settings.prefixes)  # the wording of `evidence query`
            if looks_like_update(query):
                raise _Problem(403, f"{READ_ONLY} ({message})")
            raise _Problem(400, message)
        if status == "failed":
            raise _Problem(400, f"the query failed: {reply.header.get('message', '')}")
        if status == "too_many":
            what = "triples" if reply.header.get("kind") == "graph" else "rows"
            raise _Problem(413, f"the result has more than {settings.max_results} {what}, the limit of this endpoint; add LIMIT "
                                f"{settings.max_results} (or less), or narrow the query")
        if status == "not_acceptable":
            raise _Problem(406, _not_acceptable(reply.header.get("kind", "select"), choice))
        if status != "ok":
            log.error("query worker error: %s", reply.header)
            raise _Problem(500, f"internal error: {reply.header.get('message', status)}. This is a bug in evidence; please report it with the query.")
        log.debug("answered in %.3f s: %s rows", time.perf_counter() - t, reply.header.get("rows"))
        kind, fmt = reply.header["kind"], reply.header["format"]
        if choice.select == "html" and kind in ("select", "ask") or choice.graph == "html" and kind == "graph":
            return page(interactive=False, query=query, result=_html_result(kind, reply.body, settings.prefixes))
        return Response(reply.body, media_type=MEDIA_TYPES[fmt], headers={"Vary": "Accept"})

    routes = [
        Route("/sparql", sparql, methods=["GET", "POST", "OPTIONS", "PUT", "DELETE", "PATCH"]),
        Route("/query", query_page, methods=["GET"]),
        Mount("/vendor/yasgui", app=VendorFiles(directory=str(vendor), check_dir=False), name="vendor"),
        Mount("/", app=SiteFiles(directory=str(settings.site), html=True), name="site"),
    ]
    middleware = [
        Middleware(_SecurityHeaders),
        Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "HEAD", "POST", "OPTIONS"], allow_headers=["*"], max_age=86400),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


class _SecurityHeaders:
    """Adds ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if b"referrer-policy" not in names:
                    headers.append((b"referrer-policy", b"no-referrer"))
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, send_with_headers)


async def _read_body(request, limit: int) -> bytes:
    """The body, if it is at most ``limit`` bytes; else 413.

    A body somewhat over the limit is read to its end before the answer: a client that is still
    sending when the server closes the connection sees a reset instead of the message.
    """
    too_big = _Problem(413, f"the request body is larger than {limit // 1024} KiB; send a shorter query")
    drain = 16 * limit
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > drain:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > drain:
            raise too_big
    if size > limit:
        raise too_big
    return b"".join(chunks)


def _form(text: str, what: str) -> dict[str, list[str]]:
    """The fields of a URL-encoded form or query string, each percent-decoded as UTF-8: bytes that
    are not (%FF) are the client's error, not a query of replacement characters."""
    try:
        return parse_qs(text, keep_blank_values=True, max_num_fields=1000, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _Problem(400, f"{what} is not UTF-8 once percent-decoded; percent-encode the UTF-8 bytes of the query") from None
    except ValueError as exc:
        raise _Problem(400, f"cannot read {what}: {exc}") from None


async def _request_params(request, max_body: int) -> dict[str, list[str]]:
    """The protocol's parameters from the URL and, for a POST, the body; refuses updates."""
    if len(request.url.query) > max_body:
        raise _Problem(414, f"the URL is longer than {max_body // 1024} KiB; send the query in a POST body")
    params = _form(request.scope.get("query_string", b"").decode("latin-1"), "the URL's query string")
    if "update" in params:
        raise _Problem(403, READ_ONLY)
    if request.method != "POST":
        return params
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "application/sparql-update":
        raise _Problem(403, READ_ONLY)
    if ctype not in ("application/x-www-form-urlencoded", "application/sparql-query"):
        raise _Problem(415, f"unsupported Content-Type '{ctype or '(none)'}' for POST; send application/x-www-form-urlencoded (query=...) "
                            "or application/sparql-query", {"Accept-Post": "application/x-www-form-urlencoded, application/sparql-query"})
    body = await _read_body(request, max_body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Problem(400, "the request body is not UTF-8") from None
    if ctype == "application/sparql-query":
        if "query" in params:
            raise _Problem(400, "the query is both in the URL (query=) and in the body; send it once")
        params["query"] = [text]
        return params
    form = _form(text, "the form")
    if "update" in form:
        raise _Problem(403, READ_ONLY)
    for k, v in form.items():
        params.setdefault(k, []).extend(v)
    return params


def _not_acceptable(kind: str, choice: Choice) -> str:
    if kind == "graph":
        names = "text/turtle, application/n-triples, application/ld+json or application/rdf+xml (format=turtle|ntriples|jsonld|rdfxml)"
        return f"a CONSTRUCT or DESCRIBE query gives a graph; {choice.asked} names no graph format. Ask for {names}"
    names = ("application/sparql-results+json, application/sparql-results+xml, text/csv or text/tab-separated-values "
             "(format=json|xml|csv|tsv)")
    return f"a SELECT or ASK query gives a table; {choice.asked} names no results format. Ask for {names}"


def _with_prefixes(text: str, prefixes: dict[str, str]) -> str:
    """The query with PREFIX lines for the predeclared prefixes it uses, after its header comments.

    The endpoint does not need them, but YASGUI's editor marks an undeclared prefix as an error,
    and a query that declares its prefixes can be run anywhere.
    """
    declared = {m.lower() for m in re.findall(r"(?i)\bPREFIX\s+([\w.-]*):", text)}
    used = [p for p in sorted(prefixes) if p not in declared and re.search(rf"(?<![\w.-]){re.escape(p)}:", text)]
    lines = text.splitlines(keepends=True)
    head = 0
    while head < len(lines) and lines[head].lstrip().startswith("#"):
        head += 1
    return "".join(lines[:head]) + "".join(f"PREFIX {p}: <{prefixes[p]}>\n" for p in used) + "".join(lines[head:])


def _short(prefixes: dict[str, str]):
    items = sorted(prefixes.items(), key=lambda kv: -len(kv[1]))

    def short(iri: str) -> str:
        for p, ns in items:
            if iri.startswith(ns) and iri[len(ns):].replace("_", "").replace("-", "").replace(".", "").isalnum():
                return f"{p}:{iri[len(ns):]}"
        return iri

    return short


def _html_result(kind: str, body: bytes, prefixes: dict[str, str]) -> dict[str, Any]:
    if kind == "graph":
        text = body.decode("utf-8")
        return {"kind": "graph", "text": text, "count": sum(1 for _ in ox.parse(body, format=ox.RdfFormat.TURTLE))}
    data = json.loads(body)
    if kind == "ask":
        return {"kind": "ask", "boolean": bool(data.get("boolean"))}
    short = _short(prefixes)
    variables = data["head"]["vars"]

    def cell(term: dict | None) -> str:
        if term is None:
            return ""
        if term["type"] == "uri":
            return short(term["value"])
        if term["type"] == "bnode":
            return "_:" + term["value"]
        lang = term.get("xml:lang")
        return term["value"] + (f" @{lang}" if lang else "")

    rows = [[cell(b.get(v)) for v in variables] for b in data["results"]["bindings"]]
    return {"kind": "select", "vars": variables, "rows": rows, "count": len(rows)}


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# -- the command ---------------------------------------------------------------------------------

def _templates_folder(root: Path) -> Path | None:
    for folder in (root / "site_templates", Path(__file__).resolve().parents[2] / "site_templates"):
        if (folder / "query.html").is_file() and (folder / "index.html").is_file():
            return folder
    return None


def _stale(kb_dir: Path, nquads: Path) -> Path | None:
    """A kb file newer than the build's N-Quads, if there is one."""
    built = nquads.stat().st_mtime
    for p in kb_dir.rglob("*.yaml"):
        try:
            changed = p.stat().st_mtime
        except OSError:  # a link to nothing, or a loop: validate reports it
            continue
        if changed > built:
            return p
    return None


def _port_free(host: str, port: int) -> str | None:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"cannot resolve --host {host}: {exc}"
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as exc:
            return f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings) -> None:
    """Run the server until interrupted (Ctrl-C or SIGTERM)."""
    import uvicorn

    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_level="info", lifespan="on",
                            server_header=False, proxy_headers=settings.forwarded_allow_ips is not None,
                            forwarded_allow_ips=trusted_proxies(settings.forwarded_allow_ips) if settings.forwarded_allow_ips else "",
                            # Queries still running finish (or meet their time limit) before the
                            # server goes: cut off at 5 s, a 10-s query got a 500 and a traceback.
                            timeout_graceful_shutdown=max(5, int(settings.timeout) + 2),
                            h11_max_incomplete_event_size=settings.max_body)  # a long query may come by GET too
    uvicorn.Server(config).run()


def cmd_serve(args: argparse.Namespace) -> int:
    """``evidence serve``. On SIGTERM, uvicorn shuts down gracefully, then raises the signal again
    once its own handler is gone; :func:`evidence.cli.main`'s handler then unwinds this function,
    so that the temporary folder is removed (with Python's default, the process died at once and
    left it behind), and the process ends by SIGTERM as uvicorn means it to."""
    from .config import load_config
    from .namespaces import Namespaces

    config = load_config(args.root)
    site = Path(args.site).resolve() if args.site else config.root / "_site"
    templates = _templates_folder(config.root)
    if not site.exists():
        from .pipeline import build

        print(f"{site} does not exist: building it first", file=sys.stderr)
        report = build(config, site, templates=templates)
        print(f"built {site}: {report.cases} cases, {report.quads} quads", file=sys.stderr)
    if not site.is_dir():
        print(f"error: --site {site} is not a folder", file=sys.stderr)
        return 2
    problem = _port_free(args.host, args.port)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}, not only this machine: anyone who can reach port {args.port} can query the "
              "graph (read-only) and read the site", file=sys.stderr)
    logging.getLogger("evidence").setLevel(logging.INFO)
    if not logging.getLogger("evidence").handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logging.getLogger("evidence").addHandler(handler)
    with contextlib.ExitStack() as stack:
        from .export import FORMATS

        nquads = site / FORMATS["nq"][0]
        if not nquads.is_file() and (site / "evidence.nq").is_file():
            nquads = site / "evidence.nq"  # a site built before the downloads were gzip (session 9)
        if nquads.is_file():
            newer = _stale(config.kb_dir, nquads)
            if newer:
                print(f"warning: {newer} changed after {site} was built; the endpoint answers from the older build "
                      "(run `evidence build` to refresh it)", file=sys.stderr)
        else:
            from .export import serialize
            from .pipeline import compiled_with_cache

            print(f"{site} has no {nquads.name}: compiling the kb", file=sys.stderr)
            # only then a temporary folder, removed however the server stops (see cmd_serve)
            nquads = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evidence-serve-"))) / "evidence.nq"
            nquads.write_bytes(serialize(compiled_with_cache(config), "nq"))
        settings = Settings(
            root=config.root, site=site, nquads=nquads, prefixes=Namespaces(config.base_iri).prefixes(), templates=templates,
            library=load_library(config.kb_dir / "queries"), host=args.host, port=args.port, timeout=args.timeout,
            max_results=args.max_results, workers=args.workers, yasgui=not args.no_yasgui,
            forwarded_allow_ips=args.forwarded_allow_ips,
        )
        serve(settings)
    return 0


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, found {text!r}") from None
        if not value > 0 or not math.isfinite(value):  # nan compares false both ways; inf is no limit
            raise argparse.ArgumentTypeError(f"expected a positive number, found {text!r}")
        return value

    return parse


def _proxies(text: str) -> str:
    """``--forwarded-allow-ips``: IP addresses or networks, comma-separated, as uvicorn reads them
    (its ProxyHeadersMiddleware). uvicorn takes an entry that is not an address for a name that
    never matches, silently; here it is an error. ``*`` (trust any client) is refused: then any
    client could name itself another one in X-Forwarded-For and take the turns of many."""
    entries = [e.strip() for e in text.split(",")]
    if not text.strip() or any(not e for e in entries):
        raise argparse.ArgumentTypeError(f"expected IP addresses or networks separated by commas, found {text!r}")
    for entry in entries:
        if entry == "*":
            raise argparse.ArgumentTypeError("expected the addresses of your proxies (for example 127.0.0.1 or 10.0.0.0/8), found '*', "
                                             "which would let any client name itself another in X-Forwarded-For")
        try:
            network = ipaddress.ip_network(entry, strict="/" in entry)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an IP address or network (for example 127.0.0.1, ::1 or 10.0.0.0/8, "
                                             f"a network's host bits zero), found {entry!r}") from None
        if network.prefixlen == 0:
            raise argparse.ArgumentTypeError(f"expected the addresses of your proxies (for example 127.0.0.1 or 10.0.0.0/8), found "
                                             f"{entry!r}, every address, which would let any client name itself another in X-Forwarded-For")
    return ",".join(entries)


def trusted_proxies(entries: str) -> str:
    """What uvicorn is given for ``--forwarded-allow-ips``: each entry, and for an IPv4 one its
    IPv4-mapped IPv6 form too. A server listening on ``::`` takes IPv4 connections as well, and
    sees such a proxy as ``::ffff:127.0.0.1``, which uvicorn does not match with ``127.0.0.1``: the
    header would be ignored, and every client behind the proxy would share one turn again."""
    out: list[str] = []
    for entry in entries.split(","):
        out.append(entry)
        network = ipaddress.ip_network(entry, strict=False)
        if network.version == 4:
            mapped = ipaddress.IPv6Address(f"::ffff:{network.network_address}")
            out.append(str(mapped) if "/" not in entry else f"{mapped}/{96 + network.prefixlen}")
    return ",".join(out)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, found {text!r}")
    return int(text)


DESCRIPTION = """\
Serve the compiled graph as a read-only SPARQL 1.1 Protocol endpoint, with the built site and a
query page, on one port:

  /sparql   GET ?query=..., POST query=... (form) or an application/sparql-query body; results
            by Accept or format=: SPARQL JSON (default), XML, CSV or TSV for SELECT and ASK;
            Turtle (default), N-Triples, JSON-LD or RDF/XML for CONSTRUCT and DESCRIBE. Without
            a query: the service description. CORS is open (Access-Control-Allow-Origin: *).
  /query    a query page with every query of kb/queries/ as a tab (YASGUI, installed once from
            the npm registry into .cache/vendor/; a plain form if npm is not available)
  /         the site (--site)

The default graph is the union of the named graphs (unless a query names its own with FROM, or the
request with default-graph-uri or named-graph-uri), and the prefixes of `evidence query` are
predeclared. Read-only: SPARQL Update is refused (403), and so is SERVICE: the server makes no
requests to other hosts. It listens on 127.0.0.1, this machine only, unless --host says otherwise.
Behind a reverse proxy, --forwarded-allow-ips names the proxies whose X-Forwarded-For is trusted.

Limits: each query runs in a worker process (--workers) and is stopped after --timeout seconds
(HTTP 503, and the worker is replaced); a result with more than --max-results rows or triples is
refused (HTTP 413); a request body may be at most 1 MiB. The graph is the site's evidence.nq.gz
(if the site has none, the kb is compiled); a missing site is built first."""

EPILOG = """\
examples:
  evidence serve                                  # http://127.0.0.1:8000/
  curl -G http://127.0.0.1:8000/sparql --data-urlencode 'query=SELECT * WHERE { ?s a ev:CaseReport }'
  curl http://127.0.0.1:8000/sparql -H 'Accept: text/csv' --data-urlencode 'query=SELECT ...'
  curl http://127.0.0.1:8000/sparql -H 'Content-Type: application/sparql-query' --data-binary @kb/queries/drugs-by-gene.rq"""


def add_commands(sub) -> None:
    """Register ``evidence serve`` (called by :func:`evidence.cli.parser`)."""
    p = sub.add_parser("serve", help="serve the graph as a read-only SPARQL endpoint, with the site and a query page",
                       description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--site", metavar="DIR", help="the built site to serve at / and query (default: _site, built first with `evidence build` if missing)")
    p.add_argument("--timeout", type=_positive(float), default=10.0, metavar="SECONDS",
                   help="stop a query after this many seconds, killing its worker (default: 10)")
    p.add_argument("--max-results", type=_positive(int), default=10000, metavar="N", help="refuse a result of more than N rows or triples (default: 10000)")
    p.add_argument("--workers", type=_positive(int), default=default_workers(), metavar="N",
                   help=f"worker processes, each holding the graph: how many queries run at once (default: {default_workers()})")
    p.add_argument("--forwarded-allow-ips", type=_proxies, metavar="ADDRS",
                   help="behind a reverse proxy: the proxies' addresses or networks (comma-separated), whose X-Forwarded-For "
                        "header names the client, for the per-client turns of the workers and the log (default: none; the "
                        "header is ignored and the client is the address that connects)")
    p.add_argument("--no-yasgui", action="store_true", help="serve the plain query form; never run npm")
    p.set_defaults(func=cmd_serve)
