"""The memo of the entity pages (evidence.site_memo): a rebuild works out only the drugs, genes,
variants, conditions, measures and phenotypes that an edited case names, before or after the edit,
and links the others' pages from the previous build; the site stays byte-identical to a build
without cache. conftest sets EVIDENCE_CHECK_MEMO, so every build of the tests also checks the
memo's keys against keys worked out in full."""

from __future__ import annotations

import hashlib
import logging
import random
import re
import sys
from pathlib import Path

import pytest

from evidence.cache import BuildCache
from evidence.config import load_config
from evidence.errors import RenderError
from evidence.pipeline import build
from evidence.site_memo import CHECK_ENV, PageMemo, names_index, texts_of, units_named

ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("facts, texts", [
    (("a", ("b", ("c", 1, None)), 2.5), {"a", "b", "c"}),
    ((), set()),
    ((("x", "x"), ("y",)), {"x", "y"}),
])
def test_every_text_of_nested_facts_is_found(facts, texts):
    assert texts_of(facts, set()) == texts


def test_a_text_names_every_unit_with_that_key_and_no_case():
    index = names_index([("drugs", "a"), ("phenotypes", "a"), ("genes", "g"), ("cases", "c1"), ("sources", "s1")])
    assert sorted(units_named(("a", ("g", "c1", "s1", "other")), index)) == [("drugs", "a"), ("genes", "g"), ("phenotypes", "a"), ("sources", "s1")]


# (the memo's cases: id -> (hash, units named), the hashes now, what each case names now, the units
# to work out again)
CHANGES = [
    ({"c1": ("h1", {"d1"}), "c2": ("h2", {"d2"})}, {"c1": "h1", "c2": "h2"}, {}, set()),
    ({"c1": ("h1", {"d1", "g1"}), "c2": ("h2", {"d2"})}, {"c1": "h1*", "c2": "h2"}, {"c1": {"d3"}}, {"d1", "g1", "d3"}),
    ({"c1": ("h1", {"d1"})}, {"c1": "h1", "c3": "h3"}, {"c3": {"d4"}}, {"d4"}),
    ({"c1": ("h1", {"d1"}), "c2": ("h2", {"d2"})}, {"c1": "h1"}, {}, {"d2"}),
]


@pytest.mark.parametrize("cases, shas, now, dirty", CHANGES, ids=["nothing", "edited", "added", "deleted"])
def test_the_units_worked_out_again_are_those_a_changed_case_named_before_or_names_now(cases, shas, now, dirty):
    unit = lambda key: ("drugs", key)  # noqa: E731
    memo = PageMemo("ctx", {}, {c: (h, frozenset(map(unit, us))) for c, (h, us) in cases.items()})
    assert memo.changed(shas, lambda cid: map(unit, now[cid])) == set(map(unit, dirty))
    assert {c: h for c, (h, _us) in memo.cases.items()} == shas  # brought up to date
    assert all(memo.clean(unit(k)) is None for k in dirty)


def test_a_memo_made_in_another_context_or_damaged_is_not_used(tmp_path):
    cache = BuildCache(tmp_path / "cache")
    memo = PageMemo("ctx", {("drugs", "d"): (("drugs/d.html", "drug.html", "drug d", "page:k"),)}, {"c1": ("h1", frozenset({("drugs", "d")}))})
    memo.save(cache)
    back = PageMemo.load(cache, "ctx")
    assert back is not None and back.units == memo.units and back.cases == memo.cases
    assert PageMemo.load(cache, "another context") is None
    cache.put("page-memo", PageMemo._key(), ("ctx", ["not a unit"], {}, {"c1": ("h1", (7,), "")}, ""))
    assert PageMemo.load(cache, "ctx") is None


def _synth(tmp_path: Path, cases: int, seed: int) -> Path:
    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    synth.generate(tmp_path / "project", cases, seed=seed)
    return tmp_path / "project"


def _build(root: Path, out: Path, cache: Path | None) -> None:
    build(load_config(root), out, templates=ROOT / "site_templates", cache=BuildCache(cache))


def _worked(caplog, what: str = "entity pages") -> tuple[int, int]:
    """(worked out, in all) of the last build's entity units or case page keys, as it logged them."""
    found = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{what}: ")]
    worked, total = re.match(rf"{what}: (\d+) of (\d+) ", found[-1]).groups()  # type: ignore[union-attr]
    return int(worked), int(total)


def test_random_edits_rebuild_the_site_a_build_without_cache_makes(tmp_path, caplog):
    """Seeded random edits of a synthetic kb (a title; a treatment's drug, an outcome's measure or an
    adverse event's term replaced by another of the kb's; a case renamed, its id with it; a case
    deleted; a case copied under a new id): after each, the cached build, its memo checked, equals a build without cache byte for
    byte, and an edit that leaves the kb's files as many works out only a few of the units."""
    caplog.set_level(logging.DEBUG, logger="evidence")
    root = _synth(tmp_path, 40, seed=11)
    cache = tmp_path / "cache"
    _build(root, tmp_path / "site", cache)
    assert _worked(caplog)[0] == _worked(caplog)[1]  # a cold build works out every unit and case page key
    assert _worked(caplog, "case pages")[0] == _worked(caplog, "case pages")[1] == 40
    rnd = random.Random(29)
    text = "\n".join(p.read_text(encoding="utf-8") for p in (root / "kb").glob("*.yaml"))
    values = {k: sorted(set(re.findall(rf"^\s+{k}: ([a-z0-9-]+)$", text, re.M))) for k in ("drug", "measure", "term")}
    assert all(len(v) > 1 for v in values.values()), values
    edits = ["title", "drug", "measure", "term", "rename", "drug", "delete", "copy", "title"]
    for i, kind in enumerate(edits):
        cases = sorted((root / "kb").glob("*.yaml"))
        f = rnd.choice(cases)
        s = f.read_text(encoding="utf-8")
        if kind == "title":
            f.write_text(s.replace("title: ", f"title: Edited {i}, ", 1), encoding="utf-8")
        elif kind == "delete":
            f.unlink()
        elif kind == "copy":
            (root / "kb" / f"copy-{i}.yaml").write_text(s.replace(f"id: {f.stem}", f"id: copy-{i}", 1), encoding="utf-8")
        elif kind == "rename":  # as many files as before: the memo holds, the case gone under one id and new under another
            f.unlink()
            (root / "kb" / f"renamed-{i}.yaml").write_text(s.replace(f"id: {f.stem}", f"id: renamed-{i}", 1), encoding="utf-8")
        else:
            found = list(re.finditer(rf"^(\s+{kind}: )([a-z0-9-]+)$", s, re.M))
            if not found:
                continue
            m = rnd.choice(found)
            new = next(v for v in rnd.sample(values[kind], len(values[kind])) if v != m.group(2))
            f.write_text(s[:m.start()] + m.group(1) + new + s[m.end():], encoding="utf-8")
        caplog.clear()
        _build(root, tmp_path / "site", cache)
        worked, total = _worked(caplog)
        if kind in ("title", "drug", "measure", "term", "rename"):  # as many files: the memo holds
            assert 0 < worked < total / 2, (kind, worked, total)
            worked, total = _worked(caplog, "case pages")
            assert 0 < worked < total / 2, (kind, worked, total)
        _build(root, tmp_path / "fresh", None)
        cached, fresh = _tree(tmp_path / "site"), _tree(tmp_path / "fresh")
        assert sorted(cached) == sorted(fresh), kind
        assert [n for n in fresh if cached[n] != fresh[n]] == [], f"edit {i} ({kind} of {f.name}) served stale pages"


def test_a_stale_memo_fails_a_checked_build_and_would_serve_a_stale_page(tmp_path, monkeypatch):
    """The memo is told that a case does not name a drug it names; the case is then moved to
    another drug. Checked (as every build of the tests is), the build fails and says so; unchecked,
    the drug's page would be linked from the previous build, still listing the case: the check is
    what would catch a memo that leaves a unit out."""
    root = _synth(tmp_path, 30, seed=5)
    cache = tmp_path / "cache"
    _build(root, tmp_path / "site", cache)
    f = next(f for f in sorted((root / "kb").glob("*.yaml")) if re.search(r"^    drug: ruxolitinib$", f.read_text(encoding="utf-8"), re.M))
    raw = BuildCache(cache).get("page-memo", PageMemo._key())
    context, names, units, cases, related = raw
    rux = names.index(("drugs", "ruxolitinib"))
    sha, named, key = cases[f.stem]
    cases[f.stem] = (sha, tuple(i for i in named if i != rux), key)
    c = BuildCache(cache)
    c.put("page-memo", PageMemo._key(), (context, names, units, cases, related))
    c.close()
    s = f.read_text(encoding="utf-8")
    f.write_text(re.sub(r"^    drug: ruxolitinib$", "    drug: baricitinib", s, flags=re.M), encoding="utf-8")
    with pytest.raises(RenderError, match=r"memo of the pages is stale for the drugs page 'ruxolitinib'"):
        _build(root, tmp_path / "site", cache)
    monkeypatch.setenv(CHECK_ENV, "0")
    _build(root, tmp_path / "site", cache)
    page = (tmp_path / "site" / "drugs" / "ruxolitinib.html").read_text(encoding="utf-8")
    assert f"cases/{f.stem}.html" in page  # stale: the case no longer gives ruxolitinib


def test_a_source_edit_works_out_every_unit(tmp_path, caplog):
    """What every entity page may show of a source (a claim's citation) is in the memo's context."""
    caplog.set_level(logging.DEBUG, logger="evidence")
    root = _synth(tmp_path, 20, seed=3)
    _build(root, tmp_path / "site", tmp_path / "cache")
    src = sorted((root / "kb" / "sources").glob("*.yaml"))[0]
    src.write_text(src.read_text(encoding="utf-8").replace("title: ", "title: Edited, ", 1), encoding="utf-8")
    caplog.clear()
    _build(root, tmp_path / "site", tmp_path / "cache")
    worked, total = _worked(caplog)
    assert worked == total > 0


def test_a_case_page_is_linked_by_the_memo_only_while_it_and_its_related_cases_are_unchanged(tmp_path, monkeypatch):
    """The memo also keeps each case page's key. Told that an edited case did not change, an
    unchecked build links the previous build's page under the memo's key, with the old title; a
    checked build then fails and says so."""
    root = _synth(tmp_path, 30, seed=5)
    cache = tmp_path / "cache"
    _build(root, tmp_path / "site", cache)
    f = sorted((root / "kb").glob("*.yaml"))[7]
    f.write_text(f.read_text(encoding="utf-8").replace("title: ", "title: Edited, ", 1), encoding="utf-8")
    sha = hashlib.sha256(f.read_bytes()).hexdigest()  # as evidence.load hashes a kb file
    context, names, units, cases, related = BuildCache(cache).get("page-memo", PageMemo._key())
    assert cases[f.stem][0] != sha and cases[f.stem][2].startswith("page:")
    cases[f.stem] = (sha, *cases[f.stem][1:])  # the memo told the edited file is as it was
    c = BuildCache(cache)
    c.put("page-memo", PageMemo._key(), (context, names, units, cases, related))
    c.close()
    monkeypatch.setenv(CHECK_ENV, "0")
    _build(root, tmp_path / "site", cache)
    assert "Edited, " not in (tmp_path / "site" / "cases" / f"{f.stem}.html").read_text(encoding="utf-8")  # stale
    monkeypatch.setenv(CHECK_ENV, "1")  # the memo still holds the stale key: checked, the next build fails
    with pytest.raises(RenderError, match=rf"memo of the pages is stale for the page of case {f.stem}"):
        _build(root, tmp_path / "site", cache)
