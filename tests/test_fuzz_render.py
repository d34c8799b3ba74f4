"""Property-based fuzzing of the renderer: hostile but valid text in a kb comes out of the build as
text, never as markup, script, a link that runs code or a template that is evaluated, and it can be
read again on its page.

Hypothesis writes hostile values (markup, quotes, ampersands, ``</textarea>``, Jinja syntax,
``javascript:`` strings, arbitrary Unicode, very long strings) into the free-text and name fields
of a temporary copy of the kb: a case (title, rationale, label, findings, what followed, reasons,
outcome descriptions, a dose qualifier, curators, notes, a claim's locator, quote and note), a
new source that we hold no text of (so its quotes are not checked), a new phenotype term with a
generated key, and the label of a drug. Each example goes through the real build
(:func:`evidence.pipeline.build`) or, for speed, through the same stages with the render layer
called directly (:func:`evidence.render.render_site`, without the search index). Values the
validator must refuse go through the real build and must stop it with a ValidationError.

The formatting helpers that take user text (:func:`evidence.render.safe_href`, the ``Ui`` pieces
in :mod:`evidence.site_html`, :mod:`evidence.site_format`, the search titles script) are fuzzed
on their own, with many more examples.

Every test is derandomized (the same examples on every run, no example database), so CI is
deterministic; the module runs in well under a minute on two cores.
"""

from __future__ import annotations

import copy
import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from jinja2 import BytecodeCache

from evidence import render
from evidence import schema as S
from evidence.compile import compile_kb
from evidence.config import load_config
from evidence.errors import EvidenceError, ValidationError
from evidence.pipeline import build, load_and_validate
from evidence.render import render_site, safe_href
from evidence.site_format import file_slug, human_duration, json_script
from evidence.site_html import Ui
from evidence.site_model import SiteModel
from evidence.site_pages import _csv_cell
from evidence.site_search import titles_script
from evidence.yamlio import load_yaml_text

from .test_site import Page, _Parser
from .test_site_security import _strings

# A failing example of a build test holds long strings; Hypothesis warns about their repr, and the
# project turns warnings into errors, which would hide the failure itself.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "site_templates"
CASE = "wenzel-2016"
SOURCE = "fuzz-2020"
CASE_PAGE = f"cases/{CASE}.html"
SOURCE_PAGE = f"sources/{SOURCE}.html"
DRUG = "ruxolitinib"

# What the loader refuses on purpose (yamlio._INVISIBLE): bidirectional controls and zero-width
# characters. The valid-text strategy leaves them out; they must give a clean error instead
# (test_fuzz_refused_text_stops_the_real_build_with_a_message).
INVISIBLE = "".join(chr(c) for r in ((0x202A, 0x202E), (0x2066, 0x2069), (0x200B, 0x200F)) for c in range(r[0], r[1] + 1)) + "\u2028\u2029\ufeff"

# Pieces an attacker would try. Hypothesis mixes them with arbitrary Unicode text.
PAYLOADS = [
    "<script>window.__pwned=1</script>",
    "</script><script>window.__pwned=2</script>",
    '<img src=x onerror="window.__pwned=3">',
    '<a href="javascript:window.__pwned=4">x</a>',
    "<svg onload=window.__pwned=5>",
    "</textarea><script>x</script>",
    "</title>",
    "</style>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<",
    ">",
    "</",
    "&",
    "&amp;",
    "&lt;script&gt;",
    "&#x3C;",
    "&#60;",
    '"',
    "'",
    '"><script>x</script>',
    "' onmouseover='window.__pwned=6",
    "`",
    "\\",
    "{{ 7 * 7 }}",
    "{{ config }}",
    "{% raw %}",
    "{% endraw %}",
    "{% if true %}evaluated{% endif %}",
    "{# comment #}",
    "{{",
    "}}",
    "{%",
    "%}",
    "${7*7}",
    "%s",
    "%(x)s",
    "{0}",
    "javascript:window.__pwned=7",
    " JaVaScRiPt:alert(1)",
    "data:text/html,<b>x</b>",
    "vbscript:x",
    "not reported",
    "\\u003c",
    "\n",
    "\t",
    "  ",
    "—",
    "é",
    "漢字",
    "🙂",
    "ﷺ",
    "\U0001d54f",
]

TEXT_MAX = 5000  # schema.Text
SHORT_MAX = 500  # schema.ShortText

_char = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters=INVISIBLE) | st.sampled_from("\t\n")
_piece = st.sampled_from(PAYLOADS) | st.text(_char, min_size=1, max_size=12)


def hostile(max_len: int) -> st.SearchStrategy[str]:
    """Valid text for a field of at most ``max_len`` characters: mostly short, sometimes near the limit."""
    short = st.lists(_piece, min_size=1, max_size=8).map("".join).filter(lambda s: len(s) <= max_len)
    long = st.tuples(st.lists(_piece, min_size=1, max_size=4).map("".join), st.integers(max(1, max_len - 50), max_len)).map(
        lambda t: (t[0] * (t[1] // len(t[0]) + 1))[: t[1]]
    )
    return st.one_of(short, short, short, long).filter(lambda s: re.search(r"\S", s))  # blanks only: an empty field (schema.Text)


# Source addresses that the schema accepts (https?://, no space, no <>"') and that are IRIs (RFC 3987),
# with the pieces an attacker would put in them. Addresses that are not IRIs crash the build (see
# test_fuzz_source_address_never_crashes_the_build, a known bug), so they are left out here.
_iri_char = st.characters(categories=("L", "N"), exclude_characters=INVISIBLE) | st.sampled_from("-._~!$&()*+,;=:@/")
_url_piece = st.sampled_from(
    ["javascript:alert(1)", "&", "&amp;", "&lt;", "?a=1&b=2", "%0a", "%3Cscript%3E", "%22", "%7B%7B7*7%7D%7D", ";", "=", "@", ":", "/", "(", ")", "*", "!", "$"]
)
_host = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}", fullmatch=True)
_path = st.lists(_url_piece | st.text(_iri_char, min_size=1, max_size=8), max_size=8).map("".join)
URLS = (
    st.tuples(st.sampled_from(["http://", "https://"]), _host, _path, st.none() | _path)
    .map(lambda t: f"{t[0]}{t[1]}/{t[2]}" + ("" if t[3] is None else f"#{t[3]}"))
    .filter(lambda u: len(u) <= 2000)
)

# Keys as the vocabulary allows them; never one that differs from an existing key only in case
# (two pages on one file: a RenderError that test_site.py covers on its own).
_EXISTING_KEYS = {k.casefold() for p in (ROOT / "kb" / "vocabulary").glob("*.yaml") for k in yaml.safe_load(p.read_text(encoding="utf-8"))}
KEYS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True).filter(lambda k: k.casefold() not in _EXISTING_KEYS)

# Field name -> (strategy, the page where the value must be readable again).
FIELDS: dict[str, tuple[st.SearchStrategy[str], str]] = {
    "title": (hostile(TEXT_MAX), CASE_PAGE),
    "rationale": (hostile(TEXT_MAX), CASE_PAGE),
    "label": (hostile(SHORT_MAX), CASE_PAGE),
    "finding": (hostile(TEXT_MAX), CASE_PAGE),
    "followed_by": (hostile(TEXT_MAX), CASE_PAGE),
    "reason": (hostile(TEXT_MAX), CASE_PAGE),
    "qualifier": (hostile(SHORT_MAX), CASE_PAGE),
    "outcome": (hostile(TEXT_MAX), CASE_PAGE),
    "notes": (hostile(TEXT_MAX), CASE_PAGE),
    "curator": (hostile(SHORT_MAX), CASE_PAGE),
    "locator": (hostile(SHORT_MAX), CASE_PAGE),
    "quote": (hostile(TEXT_MAX), CASE_PAGE),
    "note": (hostile(TEXT_MAX), CASE_PAGE),
    "source_title": (hostile(TEXT_MAX), SOURCE_PAGE),
    "author": (hostile(SHORT_MAX), SOURCE_PAGE),
    "journal": (hostile(SHORT_MAX), SOURCE_PAGE),
    "identifier_notes": (hostile(TEXT_MAX), SOURCE_PAGE),
    "pheno_label": (hostile(SHORT_MAX), "phenotypes/{key}.html"),
    "pheno_description": (hostile(TEXT_MAX), "phenotypes/{key}.html"),
    "synonym": (hostile(SHORT_MAX), "phenotypes/{key}.html"),
    "drug_label": (hostile(SHORT_MAX), f"drugs/{DRUG}.html"),
}
RECORDS = st.fixed_dictionaries({name: s for name, (s, _page) in FIELDS.items()} | {"key": KEYS, "url": URLS})

# One hand-written record with every payload, so that each of them is tried on every run.
SHORT_FIELDS = {"label", "qualifier", "curator", "locator", "author", "journal", "pheno_label", "synonym", "drug_label"}
EVERYTHING = "Evil " + " ".join(p for p in PAYLOADS if p.strip())
WORST = {name: EVERYTHING[:SHORT_MAX] if name in SHORT_FIELDS else EVERYTHING for name in FIELDS}
WORST |= {"key": "Evil.key_1-x", "url": "https://example.org/a?b=1&amp;c=%3Cx%3E%7B%7B7*7%7D%7D&d=javascript:alert(1)#javascript:alert(1)"}

_FUZZ = settings(derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fuzz(max_examples: int, shrink: bool = True) -> settings:
    """Deterministic (the same examples on every run, no example database), no deadline. Tests that
    build a site do not shrink a failing example (each step is a build: minutes), they report it."""
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.generate)
    return settings(_FUZZ, max_examples=max_examples, phases=phases)


# ------------------------------------------------------------------------------------ the kb


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):  # kb files may not use YAML aliases
        return True


def _dump(path: Path, data) -> None:
    path.write_text(yaml.dump(data, Dumper=_NoAliases, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _read(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


class Project:
    """A temporary copy of the kb whose case, source and vocabulary files each example rewrites."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(ROOT / "kb", root / "kb")
        toml = (ROOT / "evidence.toml").read_text(encoding="utf-8")
        texts = (ROOT / load_config(ROOT).source_texts).resolve()  # the copy is elsewhere: name the texts absolutely
        toml = re.sub(r"(?m)^source_texts = .*$", lambda _m: f"source_texts = {json.dumps(str(texts))}", toml)
        (root / "evidence.toml").write_text(toml, encoding="utf-8")
        self.kb = root / "kb"
        self.case = _read(self.kb / f"{CASE}.yaml")
        self.phenotypes = _read(self.kb / "vocabulary" / "phenotypes.yaml")
        self.drugs = _read(self.kb / "vocabulary" / "drugs.yaml")
        self.config = load_config(root)

    def write(self, v: dict[str, str]) -> None:
        """Put the values ``v`` into the kb (every file from its pristine copy)."""
        _dump(
            self.kb / "sources" / f"{SOURCE}.yaml",
            {
                "id": SOURCE,
                "kind": "commentary",
                "title": v["source_title"],
                "authors": [v["author"]],
                "authors_complete": True,
                "journal": v["journal"],
                "year": 2020,
                "url": v["url"],
                "text_held": "none",
                "identifier_notes": v["identifier_notes"],
                "reports_on": CASE,
                "curation": {"curators": [{"name": v["curator"]}], "created": "2026-11-22", "notes": v["notes"]},
            },
        )
        pheno = copy.deepcopy(self.phenotypes)
        pheno[v["key"]] = {"label": v["pheno_label"], "description": v["pheno_description"], "synonyms": [v["synonym"]]}
        _dump(self.kb / "vocabulary" / "phenotypes.yaml", pheno)
        drugs = copy.deepcopy(self.drugs)
        drugs[DRUG]["label"] = v["drug_label"]
        _dump(self.kb / "vocabulary" / "drugs.yaml", drugs)

        case = copy.deepcopy(self.case)
        claim = {"source": SOURCE, "locator": v["locator"], "quote": v["quote"], "note": v["note"]}
        case["title"] = v["title"]
        case["sources"].append({"source": SOURCE, "role": "secondary"})
        case["evidence_level"]["rationale"] = v["rationale"]
        case["evidence"].append(claim)
        p = case["patients"][0]
        p["label"] = v["label"]
        p["findings"].append(v["finding"])
        p["comorbidities"].append(v["key"])
        t = p["treatments"][0]
        t["phases"][1]["followed_by"] = v["followed_by"]
        t["phases"][1]["reason"]["description"] = v["reason"]
        t["phases"][3]["dose"]["qualifier"] = v["qualifier"]
        p["outcomes"][0]["description"] = v["outcome"]
        case["curation"]["notes"] = v["notes"]
        case["curation"]["curators"] = [{"name": v["curator"]}]
        _dump(self.kb / f"{CASE}.yaml", case)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    return Project(tmp_path_factory.mktemp("fuzz") / "project")


@pytest.fixture(scope="module")
def markup(site) -> str:
    """The text of every page of the real site (conftest's build): the site's own markup."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(site.rglob("*.html")))


# ------------------------------------------------------------------------------------ checks

_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))


def browser_scheme(url: str) -> str | None:
    """The scheme a browser would see in ``url`` (WHATWG: leading C0 controls and spaces are
    stripped, tabs and newlines removed anywhere), lower case; None for a relative address."""
    u = url.strip(_C0_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", u)
    return m.group(1).lower() if m else None


URL_ATTRS = ("href", "src", "action", "formaction", "xlink:href", "data", "poster", "srcdoc", "background")


class _FullParser(_Parser):
    """test_site's strict reader, keeping every attribute of every element as well."""

    def _start(self, tag, attrs, closed):
        self.page.attrs += [(tag, k, v or "") for k, v in attrs]
        super()._start(tag, attrs, closed)


def read_page(site: Path, rel: str) -> Page:
    page = Page(site / rel, rel)
    page.attrs = []
    page.raw = page.path.read_text(encoding="utf-8")
    parser = _FullParser(page)
    parser.feed(page.raw)
    parser.close()
    return page


def check_page_inert(rel: str, page: Page, values: dict[str, str], markup: str) -> None:
    """One page: well formed, no script but the site's own and JSON-LD, no handler, no link that
    runs code, no refresh, and no generated value containing '<' verbatim (unless the value is a
    piece of the site's own markup, such as '</title>': ``markup`` is every page of the real site)."""
    assert not page.errors, (rel, page.errors[:3])
    assert not page.event_attrs, (rel, page.event_attrs)
    for attrs in page.scripts:
        src = attrs.get("src", "")
        ok = (src and browser_scheme(src) is None and src.split("/")[-1] in ("site.js", "evidence.js", "graph.js", "search.js", "search-titles.js")) or (
            not src and attrs.get("type") == "application/ld+json"
        )
        assert ok, (rel, attrs)
    for attrs, text in page.script_texts:
        assert "</script" not in text.lower() and "<!--" not in text, rel
        if attrs.get("type") == "application/ld+json":
            json.loads(text)
    for tag, name, value in page.attrs:
        if name in URL_ATTRS:
            assert browser_scheme(value) in (None, "http", "https"), (rel, tag, name, value)
        if tag == "meta":
            assert name != "http-equiv" or value.lower() != "refresh", rel
    for name, v in values.items():
        if "<" in v and v not in markup:
            assert v not in page.raw, f"{rel}: the value of {name} is in the page unescaped"


def check_values_readable(pages: dict[str, Page], values: dict[str, str]) -> None:
    """Each value is on its page as text: HTML-unescaped, exactly as written in the kb (so Jinja
    syntax was not evaluated and nothing was lost)."""
    for name, (_s, rel) in FIELDS.items():
        rel = rel.format(key=file_slug(values["key"]))
        page = pages[rel]
        assert values[name] in page.text, f"{name} = {values[name][:200]!r} is not on {rel} as text"
    links = [v for _t, a, v in pages[SOURCE_PAGE].links if a == "href"]
    assert values["url"] in links, f"the source address {values['url']!r} is not a link on {SOURCE_PAGE}: {links}"
    blocks = [t for a, t in pages[CASE_PAGE].script_texts if a.get("type") == "application/ld+json"]
    assert any(values["title"] in set(_strings(json.loads(t))) for t in blocks), "the title is not data in the case's JSON-LD"


def check_built_site(site: Path, values: dict[str, str], every_page: bool, markup: str) -> None:
    """Every page (or the pages that show the values and the lists that name them) is inert, and
    every value is readable on its page and in the search titles."""
    if every_page:
        rels = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "pagefind" not in p.parts)
        assert len(rels) > 40
    else:
        rels = sorted(
            {
                CASE_PAGE,
                SOURCE_PAGE,
                f"phenotypes/{file_slug(values['key'])}.html",
                f"drugs/{DRUG}.html",
                "index.html",
                "cases.html",
                "evidence.html",
                "graph.html",
                "contributors.html",
                "sources.html",
                "phenotypes.html",
                "drugs.html",
                "queries.html",
            }
        )
    pages = {rel: read_page(site, rel) for rel in rels}
    for rel, page in pages.items():
        check_page_inert(rel, page, values, markup)
    check_values_readable(pages, values)
    titles = (site / "search-titles.js").read_text(encoding="utf-8")
    assert "<" not in titles and "\u2028" not in titles and "\u2029" not in titles
    entries = json.loads(titles.removeprefix("window.EVIDENCE_TITLES = ").rstrip().removesuffix(";"))
    assert [f"{values['title']} ({CASE})", "case report", CASE_PAGE] in entries


def check_kb_holds(kb, v: dict[str, str]) -> None:
    """The validated kb holds each value exactly as generated (the YAML round trip lost nothing)."""
    c = kb.cases[CASE]
    p = c.patients[0]
    assert c.title == v["title"] and c.evidence_level.rationale == v["rationale"] and p.label == v["label"]
    assert p.findings[-1] == v["finding"] and p.outcomes[0].description == v["outcome"] and c.curation.notes == v["notes"]
    assert c.evidence[-1].locator == v["locator"] and c.evidence[-1].quote == v["quote"] and c.evidence[-1].note == v["note"]
    assert kb.sources[SOURCE].title == v["source_title"] and kb.sources[SOURCE].url == v["url"]
    assert kb.vocab["phenotypes"][v["key"]].label == v["pheno_label"] and kb.vocab["drugs"][DRUG].label == v["drug_label"]


# ------------------------------------------------------------------------------------ the site


@fuzz(6, shrink=False)
@example(WORST)
@given(RECORDS)
def test_fuzz_real_build_is_inert_and_keeps_the_text(project, markup, tmp_path_factory, values):
    """The real build (exports, render, search index) of a kb with hostile text: every page
    parses and is inert, and every value is readable on its page."""
    project.write(values)
    out = tmp_path_factory.getbasetemp() / "fuzz-build" / "_site"
    try:
        report = build(project.config, out, templates=TEMPLATES)
    except EvidenceError as exc:  # the only failure allowed, and the values are valid: say why
        pytest.fail(f"a valid kb did not build: {type(exc).__name__}: {exc}")
    assert report.cases == 3
    check_built_site(out, values, every_page=True, markup=markup)


@fuzz(25, shrink=False)
@given(RECORDS)
def test_fuzz_render_layer_is_inert_and_keeps_the_text(project, markup, tmp_path_factory, values):
    """More examples, faster: validate, compile and render_site without the search index or the
    SHACL check, and look at the pages that hold the values and the lists that name them."""
    project.write(values)
    kb = load_and_validate(project.config)
    check_kb_holds(kb, values)
    out = tmp_path_factory.mktemp("fuzz-render")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(render, "environment", _environment_with_shared_bytecode)
        render_site(kb, compile_kb(kb), TEMPLATES, out, [], search=False)
    check_built_site(out, values, every_page=False, markup=markup)


class _SharedBytecode(BytecodeCache):
    """Compiled templates kept across examples: each render_site makes a new Environment, and
    compiling the templates again would be most of its time. Only the speed changes."""

    def __init__(self):
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket):
        self.code[bucket.key] = bucket.bytecode_to_string()


_BYTECODE = _SharedBytecode()
_ENVIRONMENT = render.environment


def _environment_with_shared_bytecode(templates: Path, compiled_in: Path | None = None):
    env = _ENVIRONMENT(templates)  # render_site without a build cache (outputs=None): compiled_in is None
    env.bytecode_cache = _BYTECODE
    return env


# ------------------------------------------------------------------------------------ refused input

# A value the validator must refuse, with a piece of the message it must give.
_too_long = st.tuples(hostile(40), st.integers(TEXT_MAX + 1, TEXT_MAX + 300)).map(lambda t: ((t[0] * (t[1] // len(t[0]) + 1))[: t[1]], "at most 5000"))
_short_too_long = st.tuples(hostile(40), st.integers(SHORT_MAX + 1, SHORT_MAX + 300)).map(lambda t: ((t[0] * (t[1] // len(t[0]) + 1))[: t[1]], "at most 500"))
_invisible = st.tuples(hostile(60), st.sampled_from(INVISIBLE), hostile(60)).map(lambda t: (t[0] + t[1] + t[2], f"U+{ord(t[1]):04X}"))
REFUSED = st.one_of(
    st.tuples(st.sampled_from(["title", "rationale", "notes", "finding", "outcome", "note", "source_title"]), _too_long),
    st.tuples(st.sampled_from(["label", "curator", "locator", "author", "journal", "pheno_label", "drug_label"]), _short_too_long),
    st.tuples(st.sampled_from(sorted(FIELDS)), _invisible),
    st.tuples(st.sampled_from(["title", "label", "notes", "source_title", "pheno_label"]), st.just(("", "is empty (hint: fill it in from the source"))),
)


@fuzz(40, shrink=False)
@given(RECORDS, REFUSED)
def test_fuzz_refused_text_stops_the_real_build_with_a_message(project, tmp_path_factory, values, bad):
    """Too long, empty, or holding a bidirectional or zero-width character: the real build stops
    with a ValidationError that names the file, the place and the problem, and writes nothing."""
    name, (value, expected) = bad
    project.write({**values, name: value})
    out = tmp_path_factory.getbasetemp() / "fuzz-refused" / "_site"
    with pytest.raises(ValidationError) as err:
        build(project.config, out, templates=TEMPLATES)
    assert not out.exists() and not list(out.parent.glob(".*tmp*"))
    errors = [d for d in err.value.diagnostics if d.level == "error"]
    assert errors and str(err.value).strip()
    assert any(expected in d.text() for d in errors), "\n".join(d.text() for d in errors)
    assert all(d.line >= 1 and d.col >= 1 and d.message for d in errors)


# Found by this module: the schema took any https?:// address without space, <, >, " or ', but the
# compiler makes an IRI of it with pyoxigraph, which refuses what RFC 3987 refuses ({ } | \ ^ ` [ ],
# a bad %-escape, a second #, a bad port, private-use characters): the build crashed with exit 3.
# The schema now checks the address as pyoxigraph will (tests/data/invalid/sources/url-not-iri.yaml).
_NOT_IRI = st.sampled_from(["{", "}", "|", "\\", "^", "`", "%", "%zz", "#a#b", "[", "]", "\ue000", "\ufffe"])
_SCHEMA_URLS = st.tuples(
    st.sampled_from(["http://", "https://"]), _host, st.lists(_url_piece | _NOT_IRI | st.text(_iri_char, min_size=1, max_size=4), max_size=6).map("".join)
).map(lambda t: f"{t[0]}{t[1]}/{t[2]}")
PLAIN = {name: f"plain {name}" for name in FIELDS} | {"key": "fuzz-term", "url": "https://example.org/"}


@settings(_FUZZ, max_examples=15, phases=(Phase.explicit, Phase.generate))
@example("https://example.org/{id}")
@given(_SCHEMA_URLS)
def test_fuzz_source_address_never_crashes_the_build(project, tmp_path_factory, url):
    """Any address the schema accepts either builds or stops the build with the project's own error."""
    assert re.fullmatch(r"https?://[^\s<>\"']+", url)
    project.write({**PLAIN, "url": url})
    out = tmp_path_factory.getbasetemp() / "fuzz-url" / "_site"
    try:
        build(project.config, out, templates=TEMPLATES)
    except EvidenceError as exc:
        assert str(exc).strip()


# Found by this module: a control character written raw was refused, but the same character written
# as a double-quoted escape ("\e", "\0", "\a", "\x7f", "\x9b") passed the loader, reached the HTML
# raw and was echoed to the terminal by `evidence validate` (tests/data/invalid/text-control-escape.yaml).
CONTROLS = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0) if c != 0x85]


@settings(_FUZZ, max_examples=100, phases=(Phase.explicit, Phase.generate))
@example("a\x1b[31mred")
@given(st.tuples(hostile(40), st.sampled_from(CONTROLS), hostile(40)).map("".join))
def test_fuzz_escaped_control_characters_are_refused_like_raw_ones(text):
    doc, diags = load_yaml_text(yaml.dump({"title": text}, allow_unicode=True), "f.yaml")
    assert doc is None and diags and "control character" in diags[0].message


# The twelve characters of Unicode's Bidi_Control property (U+061C ARABIC LETTER MARK was missed,
# found by this module).
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@pytest.mark.parametrize(
    "ch",
    list(BIDI_CONTROLS),
    ids=[f"U+{ord(c):04X}" for c in BIDI_CONTROLS],
)
def test_every_bidirectional_control_is_refused(ch):
    doc, diags = load_yaml_text(yaml.dump({"title": f"a{ch}b"}, allow_unicode=True), "f.yaml")
    assert doc is None and f"U+{ord(ch):04X}" in diags[0].message


# ------------------------------------------------------------------------------------ helpers

_SCHEMEISH = st.sampled_from(
    [
        "javascript",
        "JaVaScRiPt",
        "java\tscript",
        "java\nscript",
        "data",
        "vbscript",
        "http",
        "https",
        "mailto",
        "file",
        "ftp",
        ":",
        "://",
        "//",
        "\\",
        "/",
        "./",
        "../",
        "#",
        "?",
        "&colon;",
        "&#58;",
        "%3A",
        " ",
        "\x00",
        "\x01",
        "\x1f",
        "\x0b",
        "\x0c",
        "\u00a0",
        "\u3000",
        "example.org",
        "a",
        "1",
    ]
)
URLISH = st.lists(_SCHEMEISH | st.text(max_size=4), max_size=8).map("".join)


@fuzz(1000)
@example("\x01javascript:alert(1)")
@example(" JAVASCRIPT:alert(1)")
@example("java\tscript:alert(1)")
@example("\u00a0javascript:alert(1)")
@given(URLISH)
def test_fuzz_safe_href_never_lets_code_through(url):
    """safe_href returns the address unchanged or None, and never one a browser would open with a
    scheme other than http(s) (javascript:, data:, vbscript:, file:, ...)."""
    r = safe_href(url)
    if r is None:
        return
    assert r == url
    assert browser_scheme(r) in (None, "http", "https"), r
    assert not any(ch in r for ch in "\x00\t\r\n") and r == r.strip()


# safe_href refuses network-path references ('//host', '\\host') so that a relative address never
# leaves the site; '/\host' got through (found by this module), and a browser reads '/\' as '//'.
@fuzz(300)
@example("/\\evil.example/x")
@given(URLISH)
def test_fuzz_safe_href_keeps_relative_addresses_on_the_site(url):
    r = safe_href(url)
    if r is None or browser_scheme(r) is not None:
        return
    u = r.strip(_C0_OR_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")
    assert not re.match(r"[/\\]{2}", u), f"{r!r} is a network-path reference: it leaves the site"


# urlparse raises ValueError on a malformed bracketed host ('http://[', 'https://[x]'); safe_href
# raised with it (found by this module), and a page blamed its template. It now returns None.
@settings(_FUZZ, max_examples=300, phases=(Phase.explicit, Phase.generate))
@example("http://[")
@example("https://[x]/")
@given(st.lists(_SCHEMEISH | st.sampled_from(["[", "]", "[::1]", "[x"]) | st.text(max_size=4), max_size=8).map("".join))
def test_fuzz_safe_href_never_raises(url):
    assert safe_href(url) in (None, url)


_TEXT = st.lists(st.sampled_from(PAYLOADS) | st.text(max_size=10), max_size=6).map("".join)


class _Reader(HTMLParser):
    """The tags of a fragment and its text, with character references resolved."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def _read_fragment(markup: str) -> _Reader:
    r = _Reader()
    r.feed(markup)
    r.close()
    return r


@fuzz(400)
@given(_TEXT.filter(lambda s: s not in ("", S.NOT_REPORTED)), URLISH | URLS, _TEXT.filter(bool))
def test_fuzz_ui_values_and_links_escape_everything(value, url, text):
    """ui.val writes the text and no tag; ui.ext writes at most one <a>, whose address is the one
    given and safe, and whose text is the text given."""
    ui = Ui(None, safe_href)
    out = str(ui.val(value))
    r = _read_fragment(out)
    assert not r.tags and "<" not in out and html.unescape(out) == value
    out = str(ui.ext(url, text))
    r = _read_fragment(out)
    assert "".join(r.text) == text
    if safe_href(url) is None:
        assert not r.tags and html.unescape(out) == text
    else:
        assert [t for t, _a in r.tags] == ["a"]
        attrs = r.tags[0][1]
        assert attrs["href"] == url and browser_scheme(attrs["href"]) in (None, "http", "https")
        assert set(attrs) == {"class", "href", "rel"}


@pytest.fixture(scope="module")
def site_model(kb, compiled):
    return SiteModel(kb, compiled.ns, compiled.term_iris)


@fuzz(200)
@given(
    st.lists(
        st.tuples(st.sampled_from(["heymann-2016", "briand-2019", "no-such-source"]), _TEXT.filter(str.strip), _TEXT | st.none(), _TEXT | st.none()),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["", "../", "../../"]),
    _TEXT.filter(bool),
)
def test_fuzz_ui_claims_escape_every_field(site_model, kb, items, root, label):
    """The claims of a record: locator, quote, note and label come out as text, links stay on the site."""
    # Blank text is refused by the schema ("is empty"), so a blank quote or note is left out.
    claims = [S.Claim(source=s, locator=loc, quote=q if q and q.strip() else None, note=n if n and n.strip() else None) for s, loc, q, n in items]
    ui = Ui(site_model, safe_href)
    out = str(ui.claims({"root": root}, claims, kb.cases[CASE], label))
    r = _read_fragment(out)
    assert {t for t, _a in r.tags} <= {"div", "p", "span", "ul", "li", "a", "blockquote"}
    for tag, attrs in r.tags:
        assert not any(k.startswith("on") for k in attrs)
        if tag == "a":
            assert browser_scheme(attrs["href"]) is None and attrs["href"].startswith(root + "sources/"), attrs
    text = "".join(r.text)
    for c in claims:
        assert c.locator in text and (c.quote or "") in text and (c.note or "") in text
    assert label in text


@fuzz(400)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | _TEXT | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT | st.text(max_size=5), inner, max_size=4),
        max_leaves=12,
    )
)
def test_fuzz_json_script_cannot_close_its_element(data):
    """JSON-LD for a <script> element: nothing in it can end the element or open a comment, and it
    reads back as the same data."""
    out = str(json_script(data))
    assert not set(out) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(out) == data


@fuzz(300)
@given(st.lists(st.tuples(_TEXT | st.text(), st.sampled_from(["case report", "drug", "source"]), _TEXT | st.text()), max_size=5))
def test_fuzz_search_titles_script_stays_a_script(entries):
    """search-titles.js: one assignment of JSON that holds no '<' (so no '</script>') and no JavaScript
    line terminator, and reads back as the entries."""
    out = titles_script(entries)
    assert out.startswith("window.EVIDENCE_TITLES = ") and out.endswith(";\n") and out.count("\n") == 1
    assert not set(out) & {"<", "\u2028", "\u2029"}
    assert json.loads(out.removeprefix("window.EVIDENCE_TITLES = ").removesuffix(";\n")) == [list(e) for e in entries]


@fuzz(500)
@given(st.text(max_size=40) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,40}", fullmatch=True))
def test_fuzz_file_slug_is_a_safe_file_name(key):
    """A file name for any key: only safe characters, never hidden, '.' or '..', never a path; and a
    vocabulary key (the validator's pattern) is its own file name, so addresses are stable."""
    slug = file_slug(key)
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", slug), slug
    assert file_slug(slug) == slug
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", key):
        assert slug == key


_DURATIONS = st.builds(
    lambda parts, t: "P" + "".join(f"{n}{u}" for u, n in parts) + ("T" + "".join(f"{n}{u}" for u, n in t) if t else ""),
    st.lists(st.tuples(st.sampled_from("YMWD"), st.integers(0, 99)), min_size=1, max_size=4, unique_by=lambda x: x[0]).map(
        lambda ps: sorted(ps, key=lambda p: "YMWD".index(p[0]))
    ),
    st.lists(st.tuples(st.sampled_from("HMS"), st.integers(0, 99)), max_size=3, unique_by=lambda x: x[0]).map(
        lambda ps: sorted(ps, key=lambda p: "HMS".index(p[0]))
    ),
)


@fuzz(400)
@given(_DURATIONS | _TEXT | st.text(max_size=20))
def test_fuzz_human_duration_is_words_or_the_value_itself(text):
    """An ISO 8601 duration becomes words ('1 year 6 months'); anything else passes through unchanged
    (the template escapes it)."""
    out = human_duration(text)
    if re.fullmatch(S.ISO_DURATION, text):
        assert re.fullmatch(r"\d+(\.\d+)? (year|month|week|day|hour|minute|second)s?( \d+(\.\d+)? (year|month|week|day|hour|minute|second)s?)*", out), out
    else:
        assert out == text


@fuzz(400)
@given(st.lists(st.sampled_from(["=", "+", "-", "@", "\t", "\r", "1", "cmd|' /C calc'!A0", "SUM(1)", " "]) | st.text(max_size=5), max_size=5).map("".join))
def test_fuzz_csv_cells_never_start_a_formula(value):
    """A cell of the evidence CSV that a spreadsheet would run as a formula gets a leading apostrophe;
    a negative number stays a number; nothing else changes."""
    out = _csv_cell(value)
    assert out in (value, "'" + value)
    assert not out.startswith(("=", "+", "@", "\t", "\r"))
    assert not out.startswith("-") or out[1:2].isdigit()
