"""The site in a real browser: Playwright for Python driving Debian's chromium.

The built site is served from a local HTTP server under a sub-path (``/evidence/``) and also
opened from ``file://``. Every test fails on a console error, an uncaught exception, a failed
request or a request to any host but the local server. axe-core (from the npm registry, installed
on first use into the git-ignored ``.cache/``) checks every page type for serious and critical
accessibility violations. Screenshots of each page type go to ``tests/artifacts/``.

On a developer's machine without chromium these tests skip and say how to install it; in CI
(``CI=true``) they must run, and fail instead of skipping.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CACHE = ROOT / ".cache" / "test-browser"
CHROMIUM = os.environ.get("EVIDENCE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
AXE_VERSION = "4.10.3"
INSTALL_HINT = "install it with: apt-get update && apt-get install -y chromium (as root), then pip install -e '.[test]'"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM}; {INSTALL_HINT}"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"the playwright package is not installed; {INSTALL_HINT}"
    return None


def _need(what: str | None) -> None:
    if what:
        if IN_CI:
            pytest.fail(f"browser tests must run in CI: {what}")
        pytest.skip(what)


# ------------------------------------------------------------------------------------ fixtures

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def served(site, tmp_path_factory):
    """The site at http://127.0.0.1:PORT/evidence/ (a sub-path, as on a static host)."""
    _need(_missing())
    docroot = tmp_path_factory.mktemp("docroot")
    (docroot / "evidence").symlink_to(site, target_is_directory=True)
    handler = functools.partial(_Quiet, directory=str(docroot))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/evidence/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    _need(_missing())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


class Watch:
    """Console errors, page errors, failed requests and requests that leave the allowed origin."""

    def __init__(self, allowed: str):
        self.allowed = allowed
        self.problems: list[str] = []
        self.requests: list[str] = []

    def attach(self, context) -> None:
        def route(r):
            url = r.request.url
            self.requests.append(url)
            if url.startswith(self.allowed) or url.startswith(("blob:", "data:")):
                r.continue_()
            else:
                self.problems.append(f"request to another place: {url}")
                r.abort()

        context.route("**/*", route)
        context.on("page", self.page)
        context.set_default_timeout(15_000)

    def page(self, page) -> None:
        page.on("console", lambda m: m.type in ("error", "warning") and self.problems.append(f"console {m.type}: {m.text} ({page.url})"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e} ({page.url})"))
        # net::ERR_ABORTED is a request cut short by leaving the page (or by the route above,
        # which records it itself); any other failure is a problem.
        page.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED" and self.problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


@pytest.fixture
def http_page(browser, served):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    watch = Watch(served)
    watch.attach(context)
    page = context.new_page()
    yield page, served, watch
    context.close()
    watch.check()


@pytest.fixture
def file_page(browser, site):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    base = site.resolve().as_uri() + "/"
    watch = Watch(base)
    watch.attach(context)
    page = context.new_page()
    yield page, base, watch
    context.close()
    watch.check()


def shot(page, name: str, full: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)


# ------------------------------------------------------------------------------------ journeys

def test_home_to_drug_to_case_to_source_under_a_sub_path(http_page):
    page, base, watch = http_page
    page.goto(base + "index.html")
    assert page.title().startswith("Home")
    shot(page, "home")
    page.locator("section", has=page.locator("#section_matrix")).locator("a", has_text="ruxolitinib").first.click()
    page.wait_for_url(base + "drugs/ruxolitinib.html")
    assert page.locator("h1").inner_text() == "ruxolitinib"
    shot(page, "drug")
    page.locator("table a", has_text="wenzel-2016").first.click()
    page.wait_for_url("**/cases/wenzel-2016.html#patient-P1-T1")
    assert "Dechallenge and rechallenge" in page.locator(".callout").first.inner_text()
    shot(page, "case")
    page.locator(".source-card a", has_text="about this source").first.click()
    page.wait_for_url(base + "sources/wenzel-2016.html")
    assert "JAK 1/2 inhibitor ruxolitinib" in page.locator("h1").inner_text()
    shot(page, "source")
    for url in watch.requests:
        assert urlparse(url).netloc == urlparse(base).netloc or url.startswith(("blob:", "data:")), url


def test_evidence_table_filters_sorts_and_downloads_csv(http_page):
    page, base, _watch = http_page
    page.goto(base + "evidence.html")
    rows = page.locator("table.evidence-table tbody tr")
    total = rows.count()
    assert total >= 9
    assert page.locator("#filters").is_visible()
    page.select_option("select[data-filter=drug]", "ruxolitinib")
    assert page.locator("#shown-count").inner_text() == "4"
    page.select_option("select[data-filter=response]", "complete")
    visible = page.locator("table.evidence-table tbody tr:visible")
    assert visible.count() == 1 and "wenzel-2016" in visible.first.inner_text()
    assert "drug=ruxolitinib" in page.url and "response=complete" in page.url
    shot(page, "evidence-table-filtered")
    with page.expect_download() as dl:
        page.click("#csv-filtered")
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    lines = text.strip().splitlines()
    assert len(lines) == 2 and "wenzel-2016" in lines[1] and "complete" in lines[1]
    page.click("button[type=reset]")
    page.wait_for_function(f"document.getElementById('shown-count').textContent === '{total}'")
    page.fill("[data-filter-text]", "thrombocytopenia")
    assert int(page.locator("#shown-count").inner_text()) >= 1
    page.fill("[data-filter-text]", "")
    # sort by drug, then back
    header = page.locator("table.evidence-table thead th", has_text="Drug").locator("button")
    header.click()
    assert page.locator("table.evidence-table thead th[aria-sort=ascending]").count() == 1
    first = page.locator("table.evidence-table tbody tr").first.inner_text()
    assert "baricitinib" in first
    header.click()
    assert "ruxolitinib" in page.locator("table.evidence-table tbody tr").first.inner_text()
    shot(page, "evidence-table")


def test_filters_come_from_the_address(http_page):
    page, base, _watch = http_page
    page.goto(base + "evidence.html?gene=TREX1&response=not+reported")
    assert page.locator("select[data-filter=gene]").input_value() == "TREX1"
    assert int(page.locator("#shown-count").inner_text()) >= 1


def test_search_finds_and_links_to_pages(http_page):
    page, base, _watch = http_page
    page.goto(base + "search.html")
    page.fill("#q", "thrombocytopenia")
    page.keyboard.press("Enter")
    results = page.locator("#search-results li a")
    results.first.wait_for()
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any(h.endswith("/evidence/cases/wenzel-2016.html") for h in hrefs), hrefs
    assert all(h.startswith(base) for h in hrefs), hrefs
    assert page.locator("#search-mode").is_hidden()
    shot(page, "search")
    page.locator("#search-results li a", has_text="Ruxolitinib reduced").first.click()
    page.wait_for_url(base + "cases/wenzel-2016.html")
    # the home page's search box leads to the same results
    page.goto(base + "index.html")
    page.fill("#home-q", "baricitinib")
    page.click(".search-box button")
    page.wait_for_url("**/search.html?q=baricitinib")
    page.locator("#search-results li a").first.wait_for()
    assert "zimmermann-2019" in page.content()


def test_search_for_a_variant_as_written_finds_its_page_first(http_page):
    """Pagefind cuts c.52G>A into pieces: the search matched pages holding a lone "c" and missed the
    variant's own page. The pages whose titles hold a notation as written now come first."""
    page, base, _watch = http_page
    for q in ("c.52G>A", "TREX1 c.52G>A", "NM_033629.6:c.52G>A", "p.(Asp18Asn)"):
        page.goto(base + "search.html")
        page.fill("#q", q)
        page.keyboard.press("Enter")
        results = page.locator("#search-results li a")
        results.first.wait_for()
        assert results.first.get_attribute("href") == base + "variants/NM_033629.6_c.52G_A.html", (q, page.content()[:500])
    page.goto(base + "search.html")
    page.fill("#q", "thrombocytopenia")  # a plain word: Pagefind alone, with its excerpts
    page.keyboard.press("Enter")
    page.locator("#search-results li p.excerpt").first.wait_for()


def _build_and_serve(config, docroot: Path, module, **settings):
    """Build the founding kb into docroot/evidence with ``module``'s settings changed, and serve it."""
    from evidence.cache import BuildCache
    from evidence.pipeline import build

    saved = {k: getattr(module, k) for k in settings}
    for k, v in settings.items():
        setattr(module, k, v)
    try:
        build(config, docroot / "evidence", cache=BuildCache(None))
    finally:
        for k, v in saved.items():
            setattr(module, k, v)
    handler = functools.partial(_Quiet, directory=str(docroot))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/evidence/"


@pytest.fixture(scope="module")
def served_sharded(config, tmp_path_factory):
    """The founding kb built with its search index in bundles of 4 documents, served like ``served``."""
    _need(_missing())
    import evidence.site_search as site_search

    docroot = tmp_path_factory.mktemp("sharded")
    server, url = _build_and_serve(config, docroot, site_search, SHARD_DOCS=4)
    assert len(list((docroot / "evidence").glob("pagefind-*"))) >= 2  # bundles besides pagefind/
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served_paged(config, tmp_path_factory):
    """The founding kb built with its evidence table on pages of 3 rows and its lists on pages of
    one row, served like ``served``."""
    _need(_missing())
    import evidence.site_pages as site_pages

    docroot = tmp_path_factory.mktemp("paged")
    server, url = _build_and_serve(config, docroot, site_pages, EVIDENCE_ROWS=3, LIST_ROWS=1)
    assert (docroot / "evidence" / "evidence" / "2.html").is_file()
    assert (docroot / "evidence" / "cases-3.html").is_file()
    try:
        yield url, docroot / "evidence"
    finally:
        server.shutdown()
        server.server_close()


def test_filters_of_a_paged_evidence_table_search_every_page(browser, served, served_paged):
    """A large evidence table is on several pages; a filter set on any of them finds the rows of
    every page (the same rows as the one-page table), and their links still lead to the cases."""
    base, folder = served_paged
    one_page = {}
    context = browser.new_context()
    page = context.new_page()
    for drug in ("baricitinib", "ruxolitinib"):
        page.goto(served + "evidence.html?drug=" + drug)
        one_page[drug] = sorted(r.inner_text() for r in page.locator("table.evidence-table tbody tr:visible").all())
        assert one_page[drug]
    context.close()
    context = browser.new_context()
    watch = Watch(base)
    watch.attach(context)
    page = context.new_page()
    for start in ("evidence.html", "evidence/2.html"):
        page.goto(base + start)
        assert page.locator("table.evidence-table tbody tr:visible").count() == 3
        assert page.locator("nav.pager").first.is_visible()
        for drug in ("baricitinib", "ruxolitinib"):
            page.goto(base + start + "?drug=" + drug)
            visible = page.locator("table.evidence-table tbody tr:visible")
            page.locator("#filter-scope").wait_for(state="hidden")
            assert sorted(r.inner_text() for r in visible.all()) == one_page[drug], (start, drug)
            assert page.locator("#shown-count").inner_text() == str(len(one_page[drug]))
            # links of rows fetched from another page are made absolute: they lead to the cases
            hrefs = [a.evaluate("a => a.href") for a in visible.locator("a[href*='cases/']").all()]
            assert hrefs and all(h.startswith(base + "cases/") for h in hrefs), hrefs
    # a row fetched from another page links to its case
    page.goto(base + "evidence/2.html?drug=baricitinib")
    page.locator("#filter-scope").wait_for(state="hidden")
    link = page.locator("table.evidence-table tbody tr:visible a[href*='cases/zimmermann-2019.html']").first
    link.click()
    page.wait_for_url(base + "cases/zimmermann-2019.html*")
    context.close()
    watch.check()
    # opened from a file, the filters say that they search this page only
    context = browser.new_context()
    page = context.new_page()
    page.goto(folder.resolve().as_uri() + "/evidence.html?drug=baricitinib")
    page.locator("#filter-scope", has_text="this page only").wait_for()
    context.close()


def test_sorting_a_paged_list_sorts_the_rows_of_every_page(browser, served_paged):
    """The list of cases is on pages of one row here: sorting a column on any page fetches the
    other pages and orders every row, whose links still lead to their cases; opened from a file,
    the sort orders this page's rows only and says so."""
    base, folder = served_paged
    context = browser.new_context()
    watch = Watch(base)
    watch.attach(context)
    page = context.new_page()
    for start in ("cases.html", "cases-2.html", "cases-3.html"):
        page.goto(base + start)
        rows = page.locator("table.sortable tbody tr")
        assert rows.count() == 1 and page.locator("nav.pager").first.is_visible()
        page.locator("table.sortable thead th", has_text="Case report").locator("button").click()
        page.locator("table.sortable[data-sorted]").wait_for()
        ids = [r.inner_text() for r in page.locator("table.sortable tbody tr th .small").all()]
        assert ids == ["zimmermann-2019", "briand-2019", "wenzel-2016"], (start, ids)  # by title: "Baricitinib", "Ruxolitinib on", "... reduced"
        assert page.locator("nav.pager:visible").count() == 0
        assert "Every page of the list is shown here: 3 rows." in page.locator(".sort-scope").inner_text()
        hrefs = [a.evaluate("a => a.href") for a in rows.locator("th a").all()]
        assert sorted(hrefs) == [base + f"cases/{c}.html" for c in ("briand-2019", "wenzel-2016", "zimmermann-2019")], hrefs
        page.locator("table.sortable thead th", has_text="Case report").locator("button").click()  # descending
        page.wait_for_function("document.querySelector('table.sortable thead th[aria-sort=descending]') !== null")
        assert [r.inner_text() for r in page.locator("table.sortable tbody tr th .small").all()] == list(reversed(ids))
    page.goto(base + "cases-2.html")
    page.locator("table.sortable thead th", has_text="Curated").locator("button").click()
    page.locator("table.sortable[data-sorted]").wait_for()
    page.locator("table.sortable tbody tr th a").first.click()
    page.wait_for_url(base + "cases/*.html")
    context.close()
    watch.check()
    context = browser.new_context()
    page = context.new_page()
    page.goto(folder.resolve().as_uri() + "/cases-2.html")
    page.locator("table.sortable thead th", has_text="Case report").locator("button").click()
    page.locator(".sort-scope", has_text="this page only").wait_for()
    assert page.locator("table.sortable tbody tr").count() == 1
    context.close()


def _search_hrefs(page, base: str, q: str) -> tuple[str, list[str]]:
    """The search page's status ("N results." ...) and the addresses of the results it shows."""
    page.goto(base + "search.html?q=" + quote(q))
    status = page.locator("#search-status", has_text="result")  # "N results." or "No results.", never "Searching…"
    status.wait_for()
    return status.inner_text(), sorted(a.get_attribute("href")[len(base):] for a in page.locator("#search-results li a").all())


# Searches whose answers differ between a one-bundle index and a split one without the words bundle
# (site_search.words_pages): rare words that most bundles lack (Pagefind would answer there with a
# shorter word: "compassionate" found the pages holding the "c" of "c.52G>A"), stems, parts of
# identifiers, numbers, prefixes, words that no page holds, several words, a quoted phrase.
SPLIT_QUERIES = ["ruxolitinib", "TREX1", "baricitinib", "compassionate", "responsiveness", "discontinuation", "discontinued",
                 "DB08877", "6440279", "PMC6440279", "18", "Bank", "rux", "52G>A", "c.52G", "interferon", "interferonopathy",
                 "xyzzy", "compassionate ruxolitinib", "chilblain lupus", '"chilblain lupus"', "zzz ruxolitinib",
                 # words as Pagefind reads the pages indexed as they are (table cells joined, the nav left out)
                 "frequencyd", "fieldreq", "home", "Frequency"]


def _kb_words(config, n: int) -> list[str]:
    """``n`` words of the founding kb's case files, spread over the alphabet, and a 4-letter start of each."""
    import re

    found = sorted({w for f in sorted(config.kb_dir.glob("*.yaml")) for w in re.findall(r"[A-Za-z]{6,}", f.read_text(encoding="utf-8"))})
    picked = found[:: max(1, len(found) // n)][:n]
    return picked + sorted({w[:4] for w in picked})


def test_search_over_many_bundles_finds_what_one_bundle_finds(browser, served, served_sharded, config):
    """A large site's index is split into bundles that the search page merges (site_search.shards):
    the merged search finds the same pages as the one-bundle index of the same kb, for rare words
    as for common ones (the words bundle keeps the bundles without the word out)."""
    queries = SPLIT_QUERIES + _kb_words(config, 12)
    found = {}
    for base in (served, served_sharded):
        context = browser.new_context()
        watch = Watch(base)
        watch.attach(context)
        page = context.new_page()
        found[base] = {q: _search_hrefs(page, base, q) for q in queries}
        context.close()
        watch.check()
    differ = {q: (found[served][q], found[served_sharded][q]) for q in queries if found[served][q] != found[served_sharded][q]}
    assert not differ, differ
    assert all(len(found[served][q][1]) > 2 for q in ("ruxolitinib", "TREX1", "baricitinib")), found[served]
    assert found[served]["xyzzy"] == ("No results.", []) and found[served]["compassionate"][1], found[served]


def test_search_over_many_bundles_without_the_words_map_still_finds_every_page(browser, served, served_sharded):
    """If the words bundle's bundles.json cannot be loaded, every bundle is searched: a rare word
    may find more pages, never fewer."""
    found = {}
    for base in (served, served_sharded):
        context = browser.new_context()
        if base == served_sharded:
            context.route("**/bundles.json", lambda route: route.abort())
        page = context.new_page()
        found[base] = {q: _search_hrefs(page, base, q)[1] for q in ("ruxolitinib", "compassionate")}
        context.close()
    for q, hrefs in found[served].items():
        assert hrefs and set(hrefs) <= set(found[served_sharded][q]), (q, hrefs, found[served_sharded][q])


def test_a_download_opens(http_page):
    page, base, _watch = http_page
    page.goto(base + "downloads.html")
    shot(page, "downloads")
    with page.expect_download() as dl:
        page.locator("a[href='evidence.ttl.gz']").click()
    text = gzip.decompress(Path(dl.value.path()).read_bytes()).decode("utf-8")
    assert text.startswith("@prefix") and "wenzel-2016" in text
    resp = page.request.get(base + "cases/wenzel-2016.jsonld")
    assert resp.ok and json.loads(resp.text())


def test_graph_view_highlights_neighbours(http_page):
    page, base, _watch = http_page
    page.goto(base + "graph.html")
    assert page.locator("#graph-tools").is_visible()
    node = page.locator("svg#graph a.node[data-kind=drug]", has_text="ruxolitinib").first
    node.focus()
    assert "graph focus" in (page.locator("svg#graph").get_attribute("class") or "") or "focus" in page.locator("svg#graph").get_attribute("class")
    assert "neighbour" in page.locator("#graph-status").inner_text()
    assert page.locator("svg#graph .node.hl").count() >= 2
    shot(page, "graph")
    page.locator("input[data-kind=source]").uncheck()
    assert page.locator("svg#graph .node.kind-source.off").count() >= 1
    node.click()
    page.wait_for_url(base + "drugs/ruxolitinib.html")


def test_every_page_type_from_file_urls_with_the_offline_search(file_page):
    page, base, watch = file_page
    for rel in ("index.html", "cases/wenzel-2016.html", "drugs/baricitinib.html", "genes/TREX1.html", "evidence.html", "graph.html",
                "queries.html", "docs/format.html", "downloads.html"):
        page.goto(base + rel)
        assert page.locator("main h1").count() == 1, rel
    page.goto(base + "index.html")
    page.locator("section", has=page.locator("#section_newest")).locator("a", has_text="Baricitinib 4 mg").click()
    page.wait_for_url(base + "cases/zimmermann-2019.html")
    page.goto(base + "search.html")
    page.locator("#search-mode").wait_for()
    assert "Opened from a file" in page.locator("#search-mode").inner_text()
    page.fill("#q", "ruxolitinib")
    page.keyboard.press("Enter")
    page.locator("#search-results li a").first.wait_for()
    hrefs = [a.get_attribute("href") for a in page.locator("#search-results li a").all()]
    assert any(h == base + "drugs/ruxolitinib.html" for h in hrefs), hrefs
    shot(page, "search-file-url")
    assert all(u.startswith(base) for u in watch.requests)


def test_readable_on_a_phone(browser, served):
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True)
    watch = Watch(served)
    watch.attach(context)
    page = context.new_page()
    try:
        for rel, name in (("index.html", "phone-home"), ("cases/wenzel-2016.html", "phone-case"), ("evidence.html", "phone-evidence"),
                          ("drugs/ruxolitinib.html", "phone-drug"), ("graph.html", "phone-graph")):
            page.goto(served + rel)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, f"{rel} is {width} px wide on a 375 px phone"
            size = page.evaluate("parseFloat(getComputedStyle(document.querySelector('main p')).fontSize)")
            assert size >= 14, (rel, size)
            shot(page, name, full=False)
    finally:
        context.close()
    watch.check()


def test_print_css_hides_navigation_and_prints_links(http_page):
    page, base, _watch = http_page
    page.goto(base + "cases/wenzel-2016.html")
    page.emulate_media(media="print")
    assert page.evaluate("getComputedStyle(document.querySelector('.site-header nav')).display") == "none"
    after = page.evaluate("getComputedStyle(document.querySelector('a.ext[href^=\"http\"]') || document.body, '::after').content")
    assert after in ("none", "normal") or "http" in after
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.pdf(path=str(ARTIFACTS / "case-print.pdf"))
    shot(page, "case-print")
    assert (ARTIFACTS / "case-print.pdf").stat().st_size > 10_000


# ------------------------------------------------------------------------------------ accessibility

def _axe() -> str:
    """axe-core from the npm registry, installed once into the git-ignored .cache/."""
    path = CACHE / "node_modules" / "axe-core" / "axe.min.js"
    if not path.is_file():
        npm = shutil.which("npm")
        if not npm:
            _need("npm is not installed (apt-get install -y npm): it installs axe-core from the npm registry")
        CACHE.mkdir(parents=True, exist_ok=True)
        (CACHE / ".gitignore").write_text("*\n")
        r = subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund", "--no-save", "--loglevel=error",
                            f"axe-core@{AXE_VERSION}"], capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not path.is_file():
            _need(f"could not install axe-core@{AXE_VERSION} from the npm registry: {r.stderr.strip()[-500:]}")
    return path.read_text(encoding="utf-8")


AXE_PAGES = ["index.html", "cases/wenzel-2016.html", "cases/zimmermann-2019.html", "cases/briand-2019.html", "drugs/ruxolitinib.html",
             "drugs/baricitinib.html", "genes/TREX1.html", "variants/NM_033629.6_c.52G_A.html", "diseases/chilblain-lupus.html",
             "measures/pain-vas.html", "phenotypes/thrombocytopenia.html", "sources/heymann-2016.html", "cases.html", "drugs.html",
             "sources.html", "evidence.html", "graph.html", "queries.html", "downloads.html", "docs/format.html", "docs/vocabulary.html",
             "contributors.html", "search.html", "licences/index.html"]


def test_axe_finds_no_serious_or_critical_violation(browser, served):
    source = _axe()
    # axe is injected by the test, not served by the site: the page's CSP would refuse it.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    watch = Watch(served)
    watch.attach(context)
    page = context.new_page()
    found: dict[str, list[str]] = {}
    try:
        for rel in AXE_PAGES:
            page.goto(served + rel)
            if rel == "search.html":
                page.fill("#q", "ruxolitinib")
                page.keyboard.press("Enter")
                page.locator("#search-results li").first.wait_for()
            page.evaluate(source)
            result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            bad = [f"{v['id']} ({v['impact']}): {v['help']} e.g. {v['nodes'][0]['target']}"
                   for v in result["violations"] if v.get("impact") in ("serious", "critical")]
            if bad:
                found[rel] = bad
    finally:
        context.close()
    watch.check()
    assert not found, json.dumps(found, indent=1)
