"""The site is inert whatever a kb file says: markup, script and ``javascript:`` links written into
a case (titles, descriptions, quotes, notes, labels, a source's address, the repository address)
come out as text, never as markup, script or a link that runs code.

The payloads go into a temporary copy of the kb (the real kb is never touched); a source address
the schema would refuse is put into the validated model afterwards, to test the renderer's own
defence and not only the validator's.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from evidence import pipeline
from evidence.config import load_config
from evidence.pipeline import load_and_validate

from .test_site import check_links, parse_site
from .yamlplaces import leaves, put

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=2">'
BREAK = "</script><script>window.__pwned=3</script>"
JS = "javascript:window.__pwned=4"
PAYLOAD = f"Evil {SCRIPT} {IMG} {BREAK} {JS} {{{{ 7 * 7 }}}}"


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data):  # kb files may not use YAML aliases
        return True


def _dump(path: Path, data) -> None:
    path.write_text(yaml.dump(data, Dumper=_NoAliases, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="module")
def evil_site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("evil")
    project = tmp / "project"
    shutil.copytree(ROOT / "kb", project / "kb")
    toml = (ROOT / "evidence.toml").read_text(encoding="utf-8")
    toml = re.sub(r'(?m)^repository = .*$', 'repository = "javascript:window.__pwned=5//"', toml)
    (project / "evidence.toml").write_text(toml, encoding="utf-8")
    kb = project / "kb"

    # A source we hold no text of, so that its quotes are not checked (a warning, not an error).
    _dump(kb / "sources" / "evil-2020.yaml", {
        "id": "evil-2020", "kind": "commentary", "title": PAYLOAD, "authors": [f"Evil {SCRIPT}"], "authors_complete": True,
        "journal": BREAK, "year": 2020, "url": "https://example.org/evil?a=1&b=2", "text_held": "none",
        "identifier_notes": PAYLOAD, "reports_on": "wenzel-2016",
        "curation": {"curators": [{"name": f"Mallory {IMG}"}], "created": "2026-11-22", "notes": PAYLOAD},
    })
    pheno = yaml.safe_load((kb / "vocabulary" / "phenotypes.yaml").read_text(encoding="utf-8"))
    pheno["evil-term"] = {"label": f"evil {SCRIPT}", "description": PAYLOAD, "synonyms": [JS, BREAK]}
    _dump(kb / "vocabulary" / "phenotypes.yaml", pheno)

    case = yaml.safe_load((kb / "wenzel-2016.yaml").read_text(encoding="utf-8"))
    claim = {"source": "evil-2020", "locator": f"paragraph {SCRIPT}", "quote": PAYLOAD, "note": f"{JS} {BREAK}"}
    case["title"] = PAYLOAD
    case["sources"].append({"source": "evil-2020", "role": "secondary"})
    case["evidence_level"]["rationale"] = PAYLOAD
    case["evidence"].append(claim)
    p = case["patients"][0]
    p["label"] = PAYLOAD
    p["findings"].append(PAYLOAD)
    p["comorbidities"].append("evil-term")
    p["evidence"].append(claim)
    t = p["treatments"][0]
    t["phases"][1]["followed_by"] = PAYLOAD
    t["phases"][1]["reason"]["description"] = BREAK
    t["phases"][2]["evidence"].append(claim)
    p["outcomes"][0]["description"] = PAYLOAD
    case["curation"]["notes"] = PAYLOAD
    case["curation"]["curators"] = [{"name": f"Mallory {SCRIPT}"}]
    _dump(kb / "wenzel-2016.yaml", case)

    def validated_then_tampered(config, paths=None, cache=None):
        kbm = load_and_validate(config, paths, cache)
        # An address the schema refuses, put in after validation: the renderer must refuse it too.
        kbm.sources["evil-2020"].url = JS
        return kbm

    out = tmp / "_site"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "load_and_validate", validated_then_tampered)
        pipeline.build(load_config(project), out, templates=ROOT / "site_templates")
    return out


def test_the_payload_is_in_the_kb_and_on_the_page_as_text(evil_site):
    text = (evil_site / "cases" / "wenzel-2016.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;" in text
    assert "{{ 7 * 7 }}" in text and ">49<" not in text


def test_no_page_has_injected_markup_script_or_handler(evil_site):
    pages = parse_site(evil_site)
    assert len(pages) > 40
    for rel, page in pages.items():
        raw = page.path.read_text(encoding="utf-8")
        assert "<script>window" not in raw and "<img src=x" not in raw, rel
        assert not page.errors, (rel, page.errors[:3])
        assert not page.event_attrs, (rel, page.event_attrs)
        for attrs in page.scripts:
            src = attrs.get("src", "")
            assert (src and not urlparse(src).scheme and src.split("/")[-1] in ("site.js", "evidence.js", "graph.js", "search.js")) or \
                attrs.get("type") == "application/ld+json", (rel, attrs)


def test_json_ld_blocks_parse_and_keep_the_payload_as_data(evil_site):
    pages = parse_site(evil_site)
    blocks = [(rel, t) for rel, p in pages.items() for a, t in p.script_texts if a.get("type") == "application/ld+json"]
    assert blocks
    found = False
    for rel, t in blocks:
        assert "</script" not in t.lower(), rel
        doc = json.loads(t)
        found = found or any(PAYLOAD in v for v in _strings(doc))
    assert found


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def test_no_link_runs_code(evil_site):
    pages = parse_site(evil_site)
    for rel, page in pages.items():
        for _tag, _attr, value in page.links:
            assert not value.strip().lower().startswith(("javascript", "data:", "vbscript")), (rel, value)
    case = (evil_site / "cases" / "wenzel-2016.html").read_text(encoding="utf-8")
    assert "Suggest a correction" not in case  # the repository address is javascript:, so no edit link
    source = (evil_site / "sources" / "evil-2020.html").read_text(encoding="utf-8")
    assert "Publisher’s page" in source and 'href="javascript' not in source
    assert not check_links(evil_site, pages)


def test_the_search_files_are_inert(evil_site):
    titles = (evil_site / "search-titles.js").read_text(encoding="utf-8")
    assert "</script" not in titles.lower() and "<script" not in titles.lower()
    data = json.loads(titles.split("=", 1)[1].strip().rstrip(";"))
    assert any("Evil" in e[0] for e in data)
    for p in (evil_site / "pagefind").rglob("*.json"):
        assert "<script>window" not in p.read_text(encoding="utf-8", errors="replace")


def test_the_pages_are_inert_in_a_browser(evil_site):
    from .test_browser import ARGS, CHROMIUM, _missing, _need

    _need(_missing())
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context()
        base = evil_site.resolve().as_uri() + "/"
        context.route("**/*", lambda r: r.continue_() if r.request.url.startswith(base) else (problems.append(r.request.url), r.abort()))
        page = context.new_page()
        page.on("dialog", lambda d: (problems.append(f"dialog {d.message}"), d.dismiss()))
        for rel in ("cases/wenzel-2016.html", "sources/evil-2020.html", "phenotypes/evil-term.html", "evidence.html", "index.html",
                    "docs/vocabulary.html", "contributors.html", "search.html?q=Evil"):
            page.goto(base + rel)
            if rel.startswith("search"):
                page.locator("#search-results li a").first.wait_for()
            for link in page.locator("a").all()[:400]:
                href = link.get_attribute("href") or ""
                assert not href.lower().startswith("javascript"), (rel, href)
            assert page.evaluate("typeof window.__pwned") == "undefined", rel
        browser.close()
    assert not problems, problems


# ------------------------------------------------------------------ every text field of every file

def _payloads(n: int) -> list[str]:
    """Markup that runs code, numbered: free text first, then one without spaces for the fields
    whose pattern allows anything but spaces, then one that starts as a DOI does."""
    return [f"Evil{n} <script>window.__pwned={n}</script> <img src=x onerror=window.__pwned={n}> javascript:window.__pwned={n}",
            f'x{n}"><script>window.__pwned={n}</script>', f'10.1234/x{n}"><script>window.__pwned={n}</script>']


def _accepts(model, data) -> bool:
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError:
        return False
    return True


@pytest.fixture(scope="module")
def every_field_site(tmp_path_factory):
    """The founding kb with a numbered payload in every string of every file (cases, sources and
    vocabularies) that the schema accepts there; one whose file then breaks a rule across files (a
    quote no longer in its source text) is put back. Returns (site, {n: (file, field)}, the
    errors that put one back)."""
    import copy

    from evidence import schema as S
    from evidence.cache import BuildCache
    from evidence.validate import validate_kb
    from evidence.yamlio import field_name

    project = tmp_path_factory.mktemp("every-field") / "project"
    shutil.copytree(ROOT / "kb", project / "kb")
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    kb = project / "kb"
    placed: dict[int, tuple[str, str]] = {}  # payload number -> (file, field)
    originals: dict[Path, tuple[dict, dict[str, tuple]]] = {}  # file -> (its data before, field -> place)
    for path in sorted(kb.glob("*.yaml")) + sorted((kb / "sources").glob("*.yaml")) + sorted((kb / "vocabulary").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        before = copy.deepcopy(data)
        fields: dict[str, tuple] = {}
        for loc in [loc for loc, v in leaves(data) if isinstance(v, str)]:
            if path.parent.name == "vocabulary":  # a mapping of key -> term: each term is checked on its own
                if len(loc) < 2:
                    continue
                model, root, at = S.VOCABULARY_KINDS[path.stem], data[loc[0]], loc[1:]
            else:
                model, root, at = (S.Source if path.parent.name == "sources" else S.CaseReport), data, loc
            for text in _payloads(len(placed)):
                trial = copy.deepcopy(root)
                put(trial, at, text)
                if _accepts(model, trial):
                    put(data, loc, text)
                    name = field_name(before, loc)
                    placed[len(placed)] = (path.relative_to(project).as_posix(), name)
                    fields[name] = loc
                    break
        originals[path] = (before, fields)
        _dump(path, data)
    config = load_config(project)
    reverted: list[str] = []
    for _round in range(3):  # put back what breaks a rule across files
        errors = [d for d in validate_kb(config).diagnostics if d.level == "error"]
        if not errors:
            break
        for d in errors:
            path = project / d.path
            before, fields = originals[path]
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            loc = fields.get(d.field)
            assert loc is not None, f"an error on a field that holds no payload: {d.text()}"
            original = before
            for seg in loc:
                original = original[seg]
            put(data, loc, original)
            _dump(path, data)
            placed = {n: where for n, where in placed.items() if where != (d.path, d.field)}
            reverted.append(d.text())
    else:
        pytest.fail(f"the kb with payloads still has errors: {[d.text() for d in errors]}")
    out = project.parent / "_site"
    pipeline.build(config, out, templates=ROOT / "site_templates", cache=BuildCache(None))
    return out, placed, reverted


def test_every_text_field_takes_a_payload(every_field_site):
    """The generic walk reaches the fields a hand-made list leaves out (a source's publisher, volume,
    pages and DOI, a variant's legacy name, every vocabulary term's label, synonyms,
    descriptions and provenance)."""
    _site, placed, reverted = every_field_site
    fields = {f for _file, f in placed.values()}
    assert len(placed) >= 150, len(placed)
    for wanted in ("title", "doi", "pages", "curation.notes", "identifier_provenance", "label", "synonyms[0]"):
        assert any(f == wanted or f.endswith("." + wanted) for f in fields), (wanted, reverted)
    assert any(f.endswith("legacy_name") for f in fields)


def test_every_payload_is_inert_on_every_page(every_field_site):
    """No page or script of the site holds any payload as markup; the pages have no
    handler attribute and no script but the site's own; and the payloads that a page shows, shown
    as text, are most of them."""
    site, placed, _reverted = every_field_site
    raw_marks = ("<script>window.__pwned", "<img src=x")  # as markup; escaped, they read "&lt;script&gt;"
    for path in site.rglob("*"):
        if path.suffix in (".html", ".js") and path.is_file():  # what a browser renders or runs (the downloads are data)
            text = path.read_text(encoding="utf-8", errors="replace")
            assert not any(m in text for m in raw_marks), path.relative_to(site)
    pages = parse_site(site)
    shown: set[int] = set()
    for rel, page in pages.items():
        assert not page.errors, (rel, page.errors[:3])
        assert not page.event_attrs, (rel, page.event_attrs)
        for attrs in page.scripts:
            src = attrs.get("src", "")
            assert (src and not urlparse(src).scheme) or attrs.get("type") == "application/ld+json", (rel, attrs)
        for _tag, _attr, value in page.links:
            assert not value.strip().lower().startswith(("javascript", "data:", "vbscript")), (rel, value)
        text = page.path.read_text(encoding="utf-8")
        shown.update(int(n) for n in re.findall(r"&lt;script&gt;window\.__pwned=(\d+)&lt;/script&gt;", text))
    assert shown <= set(placed)
    assert len(shown) >= 0.8 * len(placed), sorted(placed[n] for n in set(placed) - shown)
