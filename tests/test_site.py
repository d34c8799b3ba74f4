"""The site: every page type, what a clinician must be able to read on it, links and anchors that
resolve, well-formed and self-contained HTML, docs that cannot drift, and a deterministic build.

Checks shared with the security and browser tests (``parse_site``, ``check_links``) live here.
"""

from __future__ import annotations

import csv
import dataclasses
import filecmp
import gzip
import io
import json
import re
import shutil
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyoxigraph as ox
import pytest
from markupsafe import escape

from evidence import schema as S
from evidence.config import load_config
from evidence.errors import RenderError
from evidence.export import DUMPS, FORMATS, serialize
from evidence.graph import evidence_graph, evidence_network, related_cases
from evidence.library import load_library
from evidence.pipeline import build, compile_checked, load_and_validate
from evidence.render import SiteWriter, safe_href
from evidence.site_format import file_slug, human_duration
from evidence.site_related import all_related

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT.parent / "shared" / "seeds"

# Elements that never have an end tag.
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# SVG elements written self-closed.
SELF_CLOSED_OK = {"circle", "line", "rect", "path", "stop", "use", "polyline", "polygon", "ellipse"}


@dataclass
class Page:
    path: Path
    rel: str
    ids: list[str] = field(default_factory=list)
    links: list[tuple[str, str, str]] = field(default_factory=list)  # (tag, attribute, value)
    scripts: list[dict[str, str]] = field(default_factory=list)
    script_texts: list[tuple[dict[str, str], str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    event_attrs: list[str] = field(default_factory=list)
    title: str = ""
    lang: str = ""
    text: str = ""


class _Parser(HTMLParser):
    """A strict reader: tags must nest and close, ids must be unique, and every link is kept."""

    def __init__(self, page: Page):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.stack: list[tuple[str, int]] = []
        self.in_title = False
        self.in_script: dict[str, str] | None = None
        self.script_buf: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag, attrs):
        self._start(tag, attrs, closed=True)

    def _start(self, tag, attrs, closed):
        a = {k: (v or "") for k, v in attrs}
        line = self.getpos()[0]
        if len(a) != len(attrs):
            self.page.errors.append(f"line {line}: <{tag}> repeats an attribute")
        for k in a:
            if k.lower().startswith("on"):
                self.page.event_attrs.append(f"<{tag} {k}>")
        if "id" in a:
            self.page.ids.append(a["id"])
        for attr in ("href", "src", "action", "xlink:href", "data", "formaction", "poster"):
            if attr in a:
                self.page.links.append((tag, attr, a[attr]))
        if tag == "html":
            self.page.lang = a.get("lang", "")
        if tag == "title" and not self.stack_has("svg"):
            self.in_title = True
        if tag == "script":
            self.page.scripts.append(a)
            self.in_script = a
            self.script_buf = []
        if tag in VOID or (closed and tag in SELF_CLOSED_OK):
            return
        if closed:
            self.page.errors.append(f"line {line}: <{tag}/> is not a void element")
            return
        self.stack.append((tag, line))

    def stack_has(self, tag):
        return any(t == tag for t, _ in self.stack)

    def handle_endtag(self, tag):
        line = self.getpos()[0]
        if tag in VOID:
            self.page.errors.append(f"line {line}: </{tag}> closes a void element")
            return
        if not self.stack:
            self.page.errors.append(f"line {line}: </{tag}> closes nothing")
            return
        open_tag, open_line = self.stack.pop()
        if open_tag != tag:
            self.page.errors.append(f"line {line}: </{tag}> closes <{open_tag}> opened on line {open_line}")
        if tag == "title":
            self.in_title = False
        if tag == "script" and self.in_script is not None:
            self.page.script_texts.append((self.in_script, "".join(self.script_buf)))
            self.in_script = None

    def handle_data(self, data):
        if self.in_title:
            self.page.title += data
        if self.in_script is not None:
            self.script_buf.append(data)
        else:
            self.text.append(data)

    def close(self):
        super().close()
        for tag, line in self.stack:
            self.page.errors.append(f"<{tag}> opened on line {line} is never closed")
        self.page.text = " ".join(self.text)


def parse_page(path: Path, site: Path) -> Page:
    page = Page(path, path.relative_to(site).as_posix())
    p = _Parser(page)
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return page


def parse_site(site: Path) -> dict[str, Page]:
    return {p.relative_to(site).as_posix(): parse_page(p, site) for p in sorted(site.rglob("*.html")) if "pagefind" not in p.parts}


def check_links(site: Path, pages: dict[str, Page]) -> list[str]:
    """Every internal link and anchor resolves; nothing is loaded from another host."""
    problems: list[str] = []
    for rel, page in pages.items():
        for tag, attr, value in page.links:
            url = urlparse(value)
            if url.scheme in ("http", "https"):
                if tag != "a" or attr != "href":
                    problems.append(f"{rel}: <{tag} {attr}> loads {value} from another host")
                continue
            if url.scheme or value.startswith("//"):
                problems.append(f"{rel}: <{tag} {attr}={value!r}> has a scheme other than http(s)")
                continue
            if value.startswith("/"):
                problems.append(f"{rel}: <{tag} {attr}={value!r}> is root-absolute; it breaks under a sub-path and from file://")
                continue
            target = (page.path.parent / unquote(url.path)).resolve() if url.path else page.path
            if not str(target).startswith(str(site.resolve())):
                problems.append(f"{rel}: {value} leaves the site")
                continue
            if url.path and target.is_dir():
                problems.append(f"{rel}: {value} is a folder; from file:// a folder link shows a listing, link the file")
                continue
            if not target.is_file():
                problems.append(f"{rel}: {value} -> no such file")
                continue
            if url.fragment:
                trel = target.relative_to(site.resolve()).as_posix()
                tpage = pages.get(trel)
                if tpage is None:
                    problems.append(f"{rel}: {value} has an anchor into a file that is not a page")
                elif unquote(url.fragment) not in tpage.ids:
                    problems.append(f"{rel}: {value} -> no element with id {url.fragment!r} in {trel}")
    return problems


# ------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def pages(site) -> dict[str, Page]:
    return parse_site(site)


def html(site: Path, rel: str) -> str:
    return (site / rel).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------ structure

def test_every_page_type_is_written(site, kb):
    expected = ["index.html", "cases.html", "evidence.html", "evidence.csv", "graph.html", "queries.html", "downloads.html", "contributors.html",
                "docs/format.html", "docs/vocabulary.html", "search.html", "search-titles.js", "pagefind/pagefind.js", "static/site.css",
                "static/site.js", "licences/pagefind.txt", "drugs.html", "genes.html", "variants.html", "diseases.html", "measures.html",
                "phenotypes.html", "sources.html"]
    for rel in expected:
        assert (site / rel).is_file(), rel
    for cid in kb.cases:
        for ext in ("html", "ttl", "jsonld"):
            assert (site / "cases" / f"{cid}.{ext}").is_file()
    for sid in kb.sources:
        assert (site / "sources" / f"{sid}.html").is_file()
    for kind in ("drugs", "genes", "diseases", "measures", "phenotypes"):
        for key in kb.vocab[kind]:
            assert (site / kind / f"{file_slug(key)}.html").is_file(), (kind, key)
    assert (site / "variants" / "NM_033629.6_c.52G_A.html").is_file()


def test_pages_are_well_formed_with_unique_ids_titles_and_a_language(pages):
    assert len(pages) > 40
    for rel, page in pages.items():
        assert not page.errors, (rel, page.errors[:5])
        dup = sorted({i for i in page.ids if page.ids.count(i) > 1})
        assert not dup, (rel, dup)
        assert page.lang == "en", rel
        assert page.title.strip(), rel
        assert not page.event_attrs, (rel, page.event_attrs)


def test_every_internal_link_and_anchor_resolves(site, pages):
    problems = check_links(site, pages)
    assert not problems, "\n".join(problems[:30])


def test_nothing_is_fetched_from_elsewhere(site, pages):
    for rel, page in pages.items():
        for s in page.scripts:
            src = s.get("src", "")
            assert not src or not urlparse(src).scheme, (rel, src)
            if not src:
                assert s.get("type") == "application/ld+json", f"{rel}: an inline script that is not JSON-LD"
    for p in (site / "static").rglob("*"):
        text = p.read_text(encoding="utf-8").replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, never fetched
        assert not re.search(r"https?://", text), f"{p.name} names an outside address"
        assert "@import" not in text and "url(" not in text, p.name
    for rel, page in pages.items():
        csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html(page.path.parent, page.path.name))
        assert csp and "default-src 'self'" in csp.group(1), rel


def test_links_to_other_sites_are_http_only(pages):
    for rel, page in pages.items():
        for _tag, _attr, value in page.links:
            scheme = urlparse(value).scheme
            assert scheme in ("", "http", "https"), (rel, value)


# ------------------------------------------------------------------------------------ home

def test_home_counts_matrix_newest_downloads_and_dataset_description(site, pages):
    text = html(site, "index.html")
    page = pages["index.html"]
    for label in ("publications", "case reports", "patients", "drugs given", "genes"):
        assert label in text
    assert re.search(r'<span class="count">4</span> <span class="count-label">publications', text)
    assert re.search(r'<span class="count">5</span> <span class="count-label">patients', text)
    # The evidence matrix: baricitinib in familial chilblain lupus with TREX1, 3 patients, and the
    # cohort-level pain counts beside it; ruxolitinib with a complete response and thrombocytopenia.
    matrix = text.split('id="section_matrix"')[1].split("</table>")[0]
    assert "baricitinib" in matrix and "familial chilblain lupus" in matrix and "TREX1" in matrix
    assert "1 complete (pain visual analogue scale)" in matrix and "2 partial (pain visual analogue scale)" in matrix
    assert 'resp-complete">1<' in matrix and "thrombocytopenia" in matrix
    # Newest additions, each case anchored by its id, with DOI and PubMed links.
    for cid in ("zimmermann-2019", "briand-2019", "wenzel-2016"):
        assert f'id="{cid}"' in text
    assert 'href="https://doi.org/10.1001/jamadermatol.2018.5077"' in text
    assert 'href="https://pubmed.ncbi.nlm.nih.gov/30673078/"' in text
    blocks = [json.loads(t) for a, t in page.script_texts if a.get("type") == "application/ld+json"]
    schema_org = next(b for b in blocks if b.get("@context") == "https://schema.org/")
    assert schema_org["@type"] == "Dataset" and schema_org["distribution"]
    formats = {d["contentUrl"]: d["encodingFormat"] for d in schema_org["distribution"]}
    assert formats["evidence.ttl.gz"] == "application/gzip" and formats["shapes.ttl"] == "text/turtle"
    assert all(not urlparse(d["contentUrl"]).scheme for d in schema_org["distribution"])
    dcat = next(b for b in blocks if "dcat" in b.get("@context", {}))
    ds = dcat["@graph"][0]
    assert "dcat:Dataset" in ds["@type"] and "void:Dataset" in ds["@type"]
    assert ds["void:triples"] == gzip.decompress((site / "evidence.nt.gz").read_bytes()).count(b"\n")
    assert {"evidence.ttl.gz", "evidence.nt.gz"} <= {d["@id"] for d in ds["void:dataDump"]}
    dumps = {d["dcat:downloadURL"]["@id"]: d for d in ds["dcat:distribution"]}
    assert dumps["evidence.ttl.gz"]["dcat:mediaType"] == "text/turtle"
    assert dumps["evidence.ttl.gz"]["dcat:compressFormat"] == "application/gzip"
    assert "dcat:compressFormat" not in dumps["evidence.graphml"]


# ------------------------------------------------------------------------------------ case pages

def test_wenzel_timeline_makes_the_dechallenge_and_rechallenge_obvious(site):
    text = html(site, "cases/wenzel-2016.html")
    assert "Dechallenge and rechallenge" in text
    steps = re.findall(r'<p class="phase-kind">.*?<strong>(\d)\. ([A-Za-z ]+)</strong>', text)
    assert steps == [("1", "Start"), ("2", "Dose reduced"), ("3", "Stopped"), ("4", "Restarted")]
    # reduced because of thrombocytopenia, linked to the adverse event record
    assert 'thrombocytopenia (adverse event <a href="#patient-P1-AE1">AE1</a>)' in text
    assert 'id="patient-P1-AE1"' in text
    assert "full dose" in text and "complete remission of her lesions within 4 months" in text
    assert "worse after the stop, improved after the restart (complete response)" in text
    assert '<span class="resp resp-complete">complete</span>' in text
    # the picture has a title that says the course in words
    assert re.search(r"<title id=\"[^\"]+\">Timeline of ruxolitinib: 1\. start .*2\. dose reduced.*3\. stopped.*4\. restarted", text)


def test_a_fact_known_only_through_a_secondary_source_is_marked(site):
    wenzel = html(site, "cases/wenzel-2016.html")
    assert "Known only through a secondary source." in wenzel
    assert wenzel.count("claim-secondary") >= 10
    zimmermann = html(site, "cases/zimmermann-2019.html")
    assert "claim-secondary" not in zimmermann and "Known only through a secondary source" not in zimmermann


def test_case_page_citation_identifiers_claims_cite_correct_data_and_related(site, config):
    text = html(site, "cases/zimmermann-2019.html")
    assert "Zimmermann N, et al. Assessment of Clinical Response" in text
    for href in ("https://doi.org/10.1001/jamadermatol.2018.5077", "https://pubmed.ncbi.nlm.nih.gov/30673078/",
                 "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC6440279/"):
        assert f'href="{href}"' in text
    assert "CIVIC C" in text
    # claims: locator and quote
    assert "Abstract, Interventions" in text and "Doses of baricitinib, 4 mg, were administered daily for 3 months." in text
    # cohort-level figures
    assert 'id="cohort"' in text and "mean 51; SD 24" in text and "1 of 3 patients" in text
    # how to cite, suggest a correction, the case's own data, curators, related cases
    assert 'id="cite-text"' in text and "https://w3id.org/evidence-kb/case/zimmermann-2019" in text
    edit = f'{config.repository}/edit/{config.branch}/kb/zimmermann-2019.yaml'
    assert f'href="{edit}"' in text
    assert 'href="zimmermann-2019.ttl"' in text and 'href="zimmermann-2019.jsonld"' in text
    assert "evidence founding team" in text
    related = text.split('id="related"')[1]
    assert "briand-2019.html" in related and "TREX1" in related


def test_not_reported_is_shown_and_distinct_from_nothing_recorded(site):
    text = html(site, "cases/zimmermann-2019.html")
    patients = text.split('id="patients"')[1].split("</table>")[0]
    # Age and sex are "not reported" by the source for each of the 3 patients.
    assert patients.count('<span class="nr">not reported</span>') >= 6
    wenzel = html(site, "cases/wenzel-2016.html")
    # Nothing recorded (no gene: the genotype is not reported) is drawn as absent, not as "not reported".
    glance = wenzel.split('id="glance"')[1].split("</dl>")[0]
    assert '<dt>Genes</dt><dd><span class="absent">—<span class="vh"> none recorded</span></span></dd>' in glance
    assert "nr" in (site / "static" / "site.css").read_text() and ".absent" in (site / "static" / "site.css").read_text()


def test_case_jsonld_is_valid_and_describes_the_record(site, pages):
    page = pages["cases/zimmermann-2019.html"]
    doc = next(json.loads(t) for a, t in page.script_texts if a.get("type") == "application/ld+json")
    assert doc["@type"] == "Dataset" and doc["@id"].endswith("/case/zimmermann-2019")
    article = doc["isBasedOn"][0]
    assert "https://doi.org/10.1001/jamadermatol.2018.5077" in article["sameAs"]
    assert {a["@type"] for a in doc["about"]} >= {"Drug", "MedicalCondition", "Gene"}


def test_related_cases_on_the_page_match_graph_related_cases(site, compiled):
    g = evidence_graph(compiled)
    fast, _state = all_related(evidence_network(compiled))
    for cid in ("zimmermann-2019", "briand-2019", "wenzel-2016"):
        iri = compiled.ns.case(cid)
        assert fast[iri] == related_cases(g, iri)


def test_fast_related_cases_agree_on_a_synthetic_kb(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    synth.generate(tmp_path / "kb60", 60, seed=3)
    kb = load_and_validate(load_config(tmp_path / "kb60"))
    compiled = compile_checked(kb)
    g = evidence_graph(compiled)
    for common_size in (48, 2):  # the grouping is exact whatever the split into common and rare
        fast, _state = all_related(evidence_network(compiled), common_size=common_size)
        for cid in sorted(kb.cases):
            iri = compiled.ns.case(cid)
            assert fast[iri] == related_cases(g, iri), cid


@pytest.mark.parametrize("size", [0, 40])
def test_claim_counts_kept_with_the_compiled_parts_are_the_claims_of_the_cases(tmp_path, kb, size):
    """A source page counts the claims that cite it. The site model takes each case's counts from
    its compiled part (made with the part, so a rebuild does not walk 10,000 cases' models): they
    equal the claims found by walking the case's models, for the founding kb (size 0) and a
    synthetic one, and a case left out of the counts is walked."""
    import sys

    from evidence.site_model import SiteModel

    if size:
        sys.path.insert(0, str(ROOT / "bench"))
        import synth

        synth.generate(tmp_path / "kb", size, seed=7)
        kb = load_and_validate(load_config(tmp_path / "kb"))
    compiled = compile_checked(kb)
    walked = SiteModel(kb, compiled.ns, compiled.term_iris)
    counts = {cid: dict(compiled.parts[compiled.ns.graph("case", cid)].claims) for cid in kb.cases}
    for cid, c in kb.cases.items():
        by_source: dict[str, int] = {}
        for claim in walked.claims(c):
            by_source[claim.source] = by_source.get(claim.source, 0) + 1
        assert counts[cid] == by_source, cid
    assert sum(n for per in counts.values() for n in per.values()) > len(kb.cases)
    first = sorted(kb.cases)[0]
    given = SiteModel(kb, compiled.ns, compiled.term_iris, claim_counts={k: v for k, v in counts.items() if k != first})
    assert {k: v for k, v in given.claims_citing.items() if v} == {k: v for k, v in walked.claims_citing.items() if v} != {}


# ------------------------------------------------------------------------------------ entity pages

def test_drug_page_targets_with_sources_identifiers_patients_doses(site):
    text = html(site, "drugs/ruxolitinib.html")
    assert "JAK1" in text and "JAK2" in text and "the JAK1/2 inhibitor ruxolitinib" in text
    assert 'href="http://purl.obolibrary.org/obo/CHEBI_66919"' in text and "DrugBank:DB08877" in text
    assert "briand-2019" in text and "wenzel-2016" in text
    assert "../cases/wenzel-2016.html#patient-P1-T1" in text
    assert "rechallenge" in text
    bari = html(site, "drugs/baricitinib.html")
    assert "4 mg, daily, route not reported, for 3 months" in bari and "(3 treatments)" in bari  # what is not reported is named
    assert "dose not reported, frequency not reported, route not reported, duration not reported" in text
    assert '<span class="nr">route not reported</span>' in bari  # and in each row's regimen
    assert "Targets: <span class=\"nr\">not reported</span>" in bari


def test_drug_condition_and_gene_pages_show_the_cohort_level_figures(site):
    """Baricitinib's only graded results and its one statement of harm are counts for the group of
    Zimmermann's three patients: the drug page, the condition page and the gene page show them
    (they showed 'response not reported' and 'none recorded at patient level' only)."""
    for rel in ("drugs/baricitinib.html", "diseases/familial-chilblain-lupus.html", "genes/TREX1.html"):
        text = re.sub(r"<[^>]+>", "", html(site, rel))
        assert "Cohort-level figures" in text, rel
        assert "zimmermann-2019: a group of 3 patients, given baricitinib" in text, rel
        assert "pain visual analogue scale: 1 of 3, response complete" in text and "pain visual analogue scale: 2 of 3, response partial" in text, rel
        assert "0 of 3 with severe adverse events of any kind" in text, rel
    assert 'see the <a href="#cohort">cohort-level figures</a>' in html(site, "drugs/baricitinib.html")
    assert "Cohort-level figures" not in html(site, "drugs/ruxolitinib.html")  # no cohort gave it


def test_gene_variant_disease_measure_phenotype_and_source_pages(site):
    gene = html(site, "genes/TREX1.html")
    assert "NM_033629.6:c.52G&gt;A" in gene and "HGNC:12269" in gene
    assert "JAK1" in html(site, "genes/JAK1.html") and "ruxolitinib" in html(site, "genes/JAK1.html")
    variant = html(site, "variants/NM_033629.6_c.52G_A.html")
    assert "p.(Asp18Asn)" in variant and "D18N" in variant and "heterozygous" in variant
    disease = html(site, "diseases/familial-chilblain-lupus.html")
    assert "MONDO:0018827" in disease and "baricitinib" in disease
    measure = html(site, "measures/pain-vas.html")
    assert "Cohort-level counts" in measure and "1 of 3 patients" in measure
    pheno = html(site, "phenotypes/thrombocytopenia.html")
    assert "wenzel-2016" in pheno and "dose reduced" in pheno and "HP:0001873" in pheno
    source = html(site, "sources/heymann-2016.html")
    assert "Retells" in source and "wenzel-2016.html" in source
    assert "Retold by" in html(site, "sources/wenzel-2016.html")


def test_every_page_is_html5_with_a_doctype_and_an_icon(site):
    """Without a doctype a browser lays the page out in quirks mode (tables lost the body's line
    height); without an icon it asks the server for /favicon.ico, a 404 on every first visit."""
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 30
    for p in pages:
        if "pagefind" in p.parts:
            continue
        text = p.read_text(encoding="utf-8")
        assert text.startswith("<!doctype html>\n"), p
        assert 'static/favicon.svg">' in text or p.name == "query.html", p


def test_cohort_age_lists_only_the_figures_given(site):
    text = html(site, "cases/zimmermann-2019.html")
    assert "mean 51; SD 24</dd>" in text


def test_contributors_are_credited(site):
    text = html(site, "contributors.html")
    assert "evidence founding team" in text and "3 case reports" in text


# ------------------------------------------------------------------------------------ evidence table

def test_cohort_rows_of_the_evidence_table_carry_the_regimen_and_the_counted_harms(site):
    """Zimmermann's three patients all had 4 mg daily for 3 months, and the source counts no severe
    adverse event in the group: the cohort rows said 'nothing recorded' for both."""
    rows = [r for r in csv.DictReader(io.StringIO((site / "evidence.csv").read_text(encoding="utf-8"))) if r["scope"] == "cohort"]
    assert len(rows) == 2
    for r in rows:
        assert (r["dose"], r["frequency"], r["route"], r["duration"]) == ("4 mg", "daily", "not reported", "3 months")
        assert r["adverse events"] == "0 of 3 with severe adverse events of any kind"


def test_a_cohort_row_carries_the_regimen_only_when_the_patients_listed_are_the_whole_cohort(kb, compiled):
    """Three patients listed of a cohort of twelve: their regimen is not everyone's."""
    from evidence.site_model import SiteModel

    case = kb.cases["zimmermann-2019"]
    assert case.cohort is not None and case.cohort.n == len(case.patients) == 3
    whole = SiteModel(kb, compiled.ns, compiled.term_iris).case_evidence_rows("zimmermann-2019")[1]
    assert {r.cells["dose"] for r in whole} == {"4 mg"}
    bigger = case.model_copy(update={"cohort": case.cohort.model_copy(update={"n": 12})})
    partial = dataclasses.replace(kb, cases={**kb.cases, "zimmermann-2019": bigger})
    rows = SiteModel(partial, compiled.ns, compiled.term_iris).case_evidence_rows("zimmermann-2019")[1]
    assert rows and {(r.cells["dose"], r.cells["frequency"], r.cells["duration"]) for r in rows} == {("", "", "")}


def test_evidence_table_has_every_row_server_rendered_and_a_matching_csv(site, kb):
    text = html(site, "evidence.html")
    rows = re.findall(r'<tr class="scope-(patient|cohort)"', text)
    expected = sum(max(1, len([o for o in p.outcomes if o.treatment == t.id])) for c in kb.cases.values() for p in c.patients for t in p.treatments)
    cohort = sum(len(c.cohort.outcome_counts) for c in kb.cases.values() if c.cohort)
    assert rows.count("patient") == expected and rows.count("cohort") == cohort
    data = list(csv.DictReader(io.StringIO(html(site, "evidence.csv"))))
    assert len(data) == len(rows)
    assert {r["drug"] for r in data} == {"baricitinib", "ruxolitinib"}
    wenzel = [r for r in data if r["case"] == "wenzel-2016"]
    assert [r["response"] for r in wenzel] == ["not reported", "worsened", "complete"]
    assert wenzel[0]["course"] == "start → dose reduced → stopped → restarted"
    # the filters are there for the script, hidden without it
    assert '<form id="filters" class="filters" hidden' in text
    for f in ("drug", "gene", "condition", "response", "level"):
        assert f'data-filter="{f}"' in text


# ------------------------------------------------------------------------------------ graph, queries, docs

def test_graph_view_is_a_static_svg_with_links_to_entity_pages(site):
    text = html(site, "graph.html")
    assert "<svg" in text and text.count('class="node ') >= 15
    assert 'href="cases/wenzel-2016.html"' in text and 'href="drugs/ruxolitinib.html"' in text
    assert 'data-s="n' in text


def test_query_library_page_has_every_query_its_question_and_answer(site, config):
    text = html(site, "queries.html")
    lib = load_library(config.kb_dir / "queries")
    assert lib
    for q in lib:
        assert f'id="q-{q.name}"' in text and str(escape(q.question)) in text
        assert (site / "queries" / f"{q.name}.rq").read_bytes() == q.path.read_bytes()
    # drugs-by-gene: TREX1, baricitinib 3 patients; ruxolitinib 1
    answer = text.split('id="q-drugs-by-gene-results"')[1].split("</table>")[0]
    assert "TREX1" in answer and "baricitinib" in answer and "<td>3</td>" in answer
    timeline = list(csv.reader(io.StringIO(html(site, "queries/complete-response-timeline.csv"))))
    assert [r[6] for r in timeline[1:]] == ["start", "dose reduced", "stopped", "restarted"]


def test_format_docs_name_every_field_of_every_model(site):
    text = html(site, "docs/format.html")
    models = [S.CaseReport, S.Source, *S.VOCABULARY_KINDS.values()]
    seen = set()
    while models:
        mdl = models.pop()
        if mdl in seen:
            continue
        seen.add(mdl)
        assert f'id="m-{mdl.__name__}"' in text, mdl.__name__
        section = text.split(f'id="m-{mdl.__name__}"')[1].split("</section>")[0]
        for name, f in mdl.model_fields.items():
            assert f"<code>{name}</code>" in section, (mdl.__name__, name)
            if f.description:
                assert str(escape(f.description.replace("``", ""))) in section, (mdl.__name__, name)
            for t in _models_in(f.annotation):
                models.append(t)
    for value in ("dose reduced", "compassionate use", "not reported", "mg/m2", "dominant negative"):
        assert f"<code>{value}</code>" in text


def _models_in(annotation) -> list:
    import typing

    out = []
    for t in typing.get_args(annotation) or [annotation]:
        if isinstance(t, type) and issubclass(t, S._Model):
            out.append(t)
        elif typing.get_args(t):
            out.extend(_models_in(t))
    return out


def test_vocabulary_docs_list_every_term_and_fixed_list(site, kb):
    text = html(site, "docs/vocabulary.html")
    for kind, terms in kb.vocab.items():
        for key in terms:
            assert f"<code>{key}</code>" in text, (kind, key)
    for name in ("Frequency", "Response", "PhaseKind", "Unit"):
        assert f'id="list-{name}"' in text


def test_downloads_page_lists_every_format(site):
    text = html(site, "downloads.html")
    for name in ("evidence.ttl.gz", "evidence.nt.gz", "evidence.nq.gz", "evidence.jsonld.gz", "evidence.trig.gz", "evidence.csv", "evidence.graphml",
                 "shapes.ttl",
                 "ontology.ttl", "schema/case.schema.json", "vocabulary.json", "vocabulary/drugs.yaml"):
        assert f'href="{name}"' in text, name
        assert (site / name).is_file()
    media = dict(re.findall(r'href="([^"]+)" download>[^<]*</a></th><td>[^<]*</td><td><code>([^<]+)</code>', text))
    assert media["vocabulary.json"] == "application/json"  # data, not a schema
    assert media["schema/case.schema.json"] == "application/schema+json"
    assert media["evidence.ttl.gz"] == "text/turtle"


def test_the_title_search_knows_every_page_linked_from_the_menu_footer_and_docs(site):
    titles = (site / "search-titles.js").read_text(encoding="utf-8")
    for rel in ("contributors.html", "docs/vocabulary.html", "licences/index.html", "measures.html", "phenotypes.html", "sources.html",
                "variants.html", "cases.html", "docs/format.html"):
        assert f'"{rel}"' in titles, rel


_PARSERS = {"ttl": ox.RdfFormat.TURTLE, "nt": ox.RdfFormat.N_TRIPLES, "nq": ox.RdfFormat.N_QUADS, "trig": ox.RdfFormat.TRIG,
            "jsonld": ox.RdfFormat.JSON_LD}


@pytest.mark.parametrize("fmt", DUMPS)
def test_whole_graph_files_are_gzip_of_the_whole_graph(site, compiled, fmt):
    """Each whole-graph file is gzip (one member per graph, see export.py): unpacked, it is what
    `evidence export` writes, and it parses to every quad of the compiled graph."""
    path = site / FORMATS[fmt][0]
    assert path.name == f"evidence.{fmt}.gz"
    data = path.read_bytes()
    assert data[:2] == b"\x1f\x8b"  # the gzip magic
    text = gzip.decompress(data)
    assert text == serialize(compiled, fmt)
    parsed = list(ox.parse(text, format=_PARSERS[fmt]))
    wanted = {(q.subject, q.predicate, q.object, q.graph_name) for q in ox.parse(compiled.nquads(), format=ox.RdfFormat.N_QUADS)}
    if fmt in ("ttl", "nt"):
        assert {(q.subject, q.predicate, q.object) for q in parsed} == {w[:3] for w in wanted}
    else:
        assert {(q.subject, q.predicate, q.object, q.graph_name) for q in parsed} == wanted
    assert len(parsed) == len(wanted)  # no triple twice
    # More than one member: the graphs' pieces are gzip members of their own.
    members, rest = 0, data
    while rest:
        d = zlib.decompressobj(31)
        d.decompress(rest)
        rest, members = d.unused_data, members + 1
    assert members >= len([g for g in compiled.graphs() if compiled.chunks[g]]) > 1


def test_downloads_page_names_the_content_type_and_the_compression(site):
    text = html(site, "downloads.html")
    row = re.search(r'<a href="evidence.ttl.gz" download>.*?</tr>', text, re.S)
    assert row and "<code>text/turtle</code>, gzip" in row.group(0)
    row = re.search(r'<a href="evidence.graphml" download>.*?</tr>', text, re.S)
    assert row and "gzip" not in row.group(0)


def test_search_index_and_offline_titles(site, kb):
    entry = json.loads((site / "pagefind" / "pagefind-entry.json").read_text())
    assert "en" in entry["languages"]
    assert entry["languages"]["en"]["page_count"] >= 30
    titles = (site / "search-titles.js").read_text()
    for cid in kb.cases:
        assert f"cases/{cid}.html" in titles
    assert "</script" not in titles.lower()
    assert (site / "licences" / "pagefind.txt").read_text().startswith("Pagefind")


# ------------------------------------------------------------------------------------ build rules

def test_two_builds_are_byte_identical_search_index_included(config, site, tmp_path):
    again = tmp_path / "again"
    build(config, again)
    for sub in ("pagefind", "."):
        cmp = filecmp.dircmp(site / sub, again / sub)
        assert not cmp.left_only and not cmp.right_only
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert any(str(f).startswith("pagefind/") for f in files)
    different = [str(rel) for rel in files if (site / rel).read_bytes() != (again / rel).read_bytes()]
    assert different == []


def test_pages_rendered_in_worker_processes_are_the_same(tmp_path, monkeypatch):
    import sys

    import evidence.site_pages as site_pages
    from evidence.pipeline import _DOWNLOADS
    from evidence.render import render_site

    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    synth.generate(tmp_path / "kb", 25, seed=5)
    kb = load_and_validate(load_config(tmp_path / "kb"))
    compiled = compile_checked(kb)
    downloads = [{"href": n, "name": n, "description": d} for n, d in _DOWNLOADS]
    monkeypatch.setattr(site_pages, "PAGES_PER_WORKER", 5)
    outs = []
    for workers in (1, 2):
        monkeypatch.setattr(site_pages, "WORKERS", workers)
        out = tmp_path / f"site-{workers}"
        out.mkdir()
        render_site(kb, compiled, ROOT / "site_templates", out, downloads)
        outs.append(out)
    a, b = outs
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert [str(f) for f in files if (a / f).read_bytes() != (b / f).read_bytes()] == []


def _list_pages(site: Path, kind: str, key: str, anchor: str, row: str) -> tuple[Path, list[Path], list]:
    """An entity page's long list: its page, its numbered pages in order, and the rows (``row``'s
    matches) found in the list on all of them."""
    main = site / kind / f"{file_slug(key)}.html"
    more = sorted((site / kind / file_slug(key)).glob(f"{anchor}-*.html"), key=lambda f: int(f.stem.split("-")[1]))
    found: list = []
    for f in [main, *more]:
        text = f.read_text(encoding="utf-8")
        if f == main:  # the list's own section of the entity page
            start = text.index(f'<h2 id="{anchor}">')
            end = text.find("<h2", start + 1)
            text = text[start:end if end > 0 else len(text)]
        found += re.findall(row, text)
    return main, more, found


def _synthetic_site(tmp_path: Path, monkeypatch, **settings):
    """A 30-case synthetic kb built with ``evidence.site_pages``'s ``settings`` (rows per page);
    checks that every link and anchor resolves and every page parses. Returns (site, kb)."""
    import sys

    import evidence.site_pages as site_pages

    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    synth.generate(tmp_path / "kb", 30, seed=5)
    for name, value in settings.items():
        monkeypatch.setattr(site_pages, name, value)
    build(load_config(tmp_path / "kb"), tmp_path / "site", templates=ROOT / "site_templates")
    site = tmp_path / "site"
    pages = parse_site(site)
    assert check_links(site, pages) == []
    assert [f"{r}: {e}" for r, page in pages.items() for e in page.errors] == []
    return site, load_and_validate(load_config(tmp_path / "kb"))


def test_long_lists_go_on_numbered_pages_with_every_row_once(tmp_path, monkeypatch):
    """A list longer than PAGE_ROWS rows keeps its first rows on the entity page and the rest on
    numbered pages, linked both ways by a pager: every row is on exactly one page, in order, and
    every link and anchor of the site still resolves."""
    rows_per = 5
    site, kb = _synthetic_site(tmp_path, monkeypatch, PAGE_ROWS=rows_per)
    checked = 0
    for drug in sorted({t.drug for c in kb.cases.values() for p in c.patients for t in p.treatments}):
        main, more, rows = _list_pages(site, "drugs", drug, "patients", r'<td><a href="[^"]*cases/([a-z0-9-]+)\.html#patient-([A-Za-z0-9-]+)">')
        expected = [(c.id, f"{p.id}-{t.id}") for c in kb.cases.values() for p in c.patients for t in p.treatments if t.drug == drug]
        assert sorted(rows) == sorted(expected), drug  # every row once
        assert len(more) == max(0, (len(expected) - 1) // rows_per), drug
        if more:
            checked += 1
            assert 'aria-label="Pages of this list"' in main.read_text(encoding="utf-8")
            last = more[-1].read_text(encoding="utf-8")
            first_row = rows_per * len(more) + 1
            assert f"Rows {first_row}–{len(expected)} of {len(expected)}. Page" in last
            assert f'href="../../drugs/{file_slug(drug)}.html#patients"' in last  # back to the list's first page
    assert checked >= 2  # the synthetic kb has drugs with more than one page of patients
    # Cohort-level counts are paged the same way (a measure's list was one unbounded list).
    paged = 0
    for measure in sorted({oc.measure for c in kb.cases.values() if c.cohort for oc in c.cohort.outcome_counts}):
        main, more, found = _list_pages(site, "measures", measure, "cohort", r'<li><a href="[^"]*cases/([a-z0-9-]+)\.html#cohort">')
        expected = [c.id for c in kb.cases.values() if c.cohort for oc in c.cohort.outcome_counts if oc.measure == measure]
        assert found == expected, measure  # every count once, in order
        assert len(more) == (len(expected) - 1) // rows_per, measure
        paged += bool(more)
    assert paged >= 1
    for term in sorted({ac.term for c in kb.cases.values() if c.cohort for ac in c.cohort.adverse_event_counts if ac.term}):
        _main, more, found = _list_pages(site, "phenotypes", term, "cohort", r'<li><a href="[^"]*cases/([a-z0-9-]+)\.html#cohort">')
        expected = [c.id for c in kb.cases.values() if c.cohort for ac in c.cohort.adverse_event_counts if ac.term == term]
        assert found == expected and len(more) == (len(expected) - 1) // rows_per, term


def test_long_lists_of_cases_and_sources_go_on_numbered_pages(tmp_path, monkeypatch):
    """The list of every case (and of every source, drug ...) is on pages of LIST_ROWS rows:
    cases.html, then cases-2.html ...; every row is on exactly one page, in the order of the
    list, each page names its rows and links every page, and every link of the site resolves."""
    rows_per = 7
    site, kb = _synthetic_site(tmp_path, monkeypatch, LIST_ROWS=rows_per)
    for kind, ids in (("cases", sorted(kb.cases)), ("sources", None)):
        files = [site / f"{kind}.html", *sorted(site.glob(f"{kind}-*.html"), key=lambda f: int(f.stem.rsplit("-", 1)[1]))]
        found = [m for f in files for m in re.findall(rf'<th scope="row"><a href="{kind}/([a-z0-9-]+)\.html">', f.read_text(encoding="utf-8"))]
        total = len(kb.cases) if kind == "cases" else len(kb.sources)
        assert len(found) == total and len(set(found)) == total, kind  # every row once
        if ids is not None:
            assert found == ids  # in the list's order
        assert len(files) == -(-total // rows_per) > 1, kind
        for k, f in enumerate(files, start=1):
            text = f.read_text(encoding="utf-8")
            last = min(k * rows_per, total)
            assert f"Rows {(k - 1) * rows_per + 1}–{last} of {total}. Page" in text, f.name
            assert f'data-pages="{" ".join(p.name for p in files)}" data-page="{k}"' in text, f.name
            assert all(f'href="{p.name}"' in text for p in files if p != f), f.name  # the pager links every other page


def test_two_pages_that_would_write_one_file_fail_the_build(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / "kb", project / "kb")
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    shutil.copytree(ROOT / "site_templates", project / "site_templates")
    pheno = project / "kb" / "vocabulary" / "phenotypes.yaml"
    pheno.write_text(pheno.read_text() + "Fever:\n  label: fever (a second key that differs only in case)\n")
    config = load_config(project)
    out = tmp_path / "_site"
    with pytest.raises(RenderError) as err:
        build(config, out)
    assert "two pages would write one file" in str(err.value) and "phenotypes/" in str(err.value)
    assert not out.exists()


def test_site_writer_refuses_a_second_file_and_a_clash_with_the_exports(tmp_path):
    (tmp_path / "evidence.ttl").write_text("x")
    w = SiteWriter(tmp_path)
    w.text("drugs/a.html", "a", "drug a")
    with pytest.raises(RenderError, match="drug A"):
        w.text("drugs/A.html", "b", "drug A")
    with pytest.raises(RenderError, match="the exports"):
        w.text("evidence.TTL", "c", "a page")
    # A per-case file still to be linked (evidence.linker) is not on disk yet: known by name.
    w = SiteWriter(tmp_path, existing=["cases/a.ttl"])
    with pytest.raises(RenderError, match="the exports"):
        w.text("cases/A.ttl", "d", "a page")


def test_safe_href_lets_only_http_and_relative_links_through():
    for ok in ("https://doi.org/10.1/x", "http://example.org/", "cases/a.html", "../drugs/b.html#x", "#top", "a.ttl"):
        assert safe_href(ok) == ok
    for bad in ("javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)", "data:text/html,<b>",
                "vbscript:x", "//evil.example/", "file:///etc/passwd", "mailto:a@b", None, ""):
        assert safe_href(bad) is None, bad


def test_human_duration():
    assert human_duration("P3M") == "3 months"
    assert human_duration("P1Y6M") == "1 year 6 months"
    assert human_duration("P2W") == "2 weeks"
    assert human_duration("not reported") == "not reported"
    assert human_duration(None) is None


def test_the_claim_walk_finds_every_claim_by_visiting_only_fields_that_can_hold_one(tmp_path):
    """site_model._claims_in looks only into the fields whose type can hold a claim: it finds the
    same claims, in the same order, as visiting every field of every model."""
    import sys

    from evidence.site_model import _claim_fields, _claims_in

    def every_field(node):
        if isinstance(node, S.Claim):
            yield node
        elif isinstance(node, S._Model):
            for name in type(node).model_fields:
                yield from every_field(getattr(node, name))
        elif isinstance(node, list):
            for x in node:
                yield from every_field(x)

    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    synth.generate(tmp_path / "kb", 40, seed=3)
    for root in (ROOT, tmp_path / "kb"):
        kb = load_and_validate(load_config(root))
        models = [*kb.cases.values(), *kb.sources.values(), *(t for terms in kb.vocab.values() for t in terms.values())]
        found = [list(_claims_in(x)) for x in models]
        assert sum(map(len, found)) > 40
        assert [[id(c) for c in f] for f in found] == [[id(c) for c in every_field(x)] for x in models]
    assert "title" not in _claim_fields(S.CaseReport) and "patients" in _claim_fields(S.CaseReport)


@pytest.mark.parametrize(("n", "step", "workers"), [(0, 50, 2), (1, 50, 2), (120, 50, 1), (401, 50, 2), (2508, 50, 2), (25000, 390, 2), (25000, 195, 4)])
def test_deferred_pages_are_cut_into_chunks_that_end_together(n, step, workers):
    """The render workers take chunks of ``step`` pages, smaller towards the end so that no
    worker is left with a long last chunk while the other waits; every page is in one chunk."""
    from evidence.site_pages import _guided

    chunks = _guided(n, step, workers)
    assert [i for a, b in chunks for i in range(a, b)] == list(range(n))
    sizes = [b - a for a, b in chunks]
    assert all(0 < s <= step for s in sizes)
    if workers > 1 and n > 8 * step * workers:
        assert sizes[0] == step and sizes[-2] <= step // 4, sizes[-4:]
        assert all(s >= step // 8 for s in sizes[:-1])
    if workers < 2:
        assert all(s == step for s in sizes[:-1])
