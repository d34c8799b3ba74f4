"""The build cache never serves stale output.

A project is built with its cache, then edited (a case's text, a vocabulary label, a source text
that a quote is checked against), a case is renamed and another deleted. After each change the
cached build must be byte-identical to a build of the same kb with no cache at all: every page,
export and query result that should change did, and nothing else did. The counts of what the cache
served show that it was used: after one case is edited, only that case is compiled again.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import shutil
import time
import zlib
from pathlib import Path

import pytest

from evidence.cache import PACKED_STAGES, BuildCache
from evidence.config import load_config
from evidence.errors import ValidationError
from evidence.pipeline import build
from evidence.query import read_query, run_query
from tests.conftest import SEEDS

ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class Project:
    """A copy of the kb with its own cache and source texts, built with and without the cache."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch):
        self.root = tmp / "project"
        self.root.mkdir()
        shutil.copytree(ROOT / "kb", self.root / "kb")
        shutil.copy(ROOT / "evidence.toml", self.root / "evidence.toml")
        self.texts = tmp / "texts"
        shutil.copytree(SEEDS, self.texts)
        monkeypatch.setenv("EVIDENCE_SOURCE_TEXTS", str(self.texts))
        self.templates = ROOT / "site_templates"
        self.cache_dir = tmp / "cache"
        self.out = tmp / "_site"
        self.fresh_out = tmp / "_fresh"
        self.cache = BuildCache(self.cache_dir)

    def build(self) -> dict[str, bytes]:
        """A cached build, checked against a build with no cache; returns the cached site."""
        self.cache = BuildCache(self.cache_dir)
        self.report = build(load_config(self.root), self.out, templates=self.templates, cache=self.cache)
        build(load_config(self.root), self.fresh_out, templates=self.templates, cache=BuildCache(None))
        cached, fresh = _tree(self.out), _tree(self.fresh_out)
        assert sorted(cached) == sorted(fresh), "the cached build has other files than a build without cache"
        stale = [name for name in fresh if cached[name] != fresh[name]]
        assert stale == [], f"the cache served stale output: {stale[:10]}"
        return cached

    def edit(self, rel: str, old: str, new: str) -> None:
        p = self.root / "kb" / rel
        text = p.read_text(encoding="utf-8")
        assert old in text, (rel, old)
        p.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def project(tmp_path, monkeypatch):
    if not SEEDS.is_dir():
        pytest.skip("the source texts are not here")
    return Project(tmp_path, monkeypatch)


def _changed(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {n for n in set(before) | set(after) if before.get(n) != after.get(n)}


def test_a_rebuild_with_nothing_changed_is_served_from_the_cache(project):
    first = project.build()
    again = project.build()
    assert again == first
    assert project.cache.misses == 0 and project.cache.hits > 0


def test_editing_one_case_remakes_that_case_and_what_shows_it(project):
    before = project.build()
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    after = project.build()
    changed = _changed(before, after)
    assert {"cases/briand-2019.html", "cases/briand-2019.ttl", "cases/briand-2019.jsonld", "evidence.nq.gz", "evidence.ttl.gz",
            "evidence.graphml"} <= changed  # the case's node is labelled with its title
    assert "sources/briand-2019.html" in changed  # it lists the cases citing it, by title
    # What does not show the case is untouched: another case's graph files and its page.
    assert not changed & {"cases/zimmermann-2019.ttl", "cases/zimmermann-2019.jsonld", "cases/wenzel-2016.ttl"}
    # Only the edited file was checked and compiled again; the others came from the cache.
    assert project.cache.made("validate") == 1
    assert project.cache.made("compile") == 1
    assert "Edited, " in after["cases/briand-2019.html"].decode("utf-8")


def test_the_contributors_page_is_linked_unless_a_curation_changed(project, monkeypatch):
    """The contributors page shows who curated what, by id and date, not titles: a title edit
    links it from the previous build, unrendered; a changed curation remakes it."""
    from evidence import site_pages

    project.build()
    rendered = []
    real = site_pages.SitePages.render

    def watched(self, rel, template, ctx):
        rendered.append(rel)
        return real(self, rel, template, ctx)

    monkeypatch.setattr(site_pages.SitePages, "render", watched)
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert "contributors.html" not in rendered
    assert "index.html" in rendered, "the watch saw no page rendered"
    before = project.build()  # the same, checked against a build without cache
    project.edit("briand-2019.yaml", "created: 2026-11-22", "created: 2026-11-20")
    after = project.build()
    assert "contributors.html" in _changed(before, after) and "from 2026-11-20" in after["contributors.html"].decode("utf-8")


def test_a_rebuild_tries_to_link_each_file_once(project, monkeypatch):
    """A keyed page is linked by its key before it is made; once made, it is written, not tried
    again (the second try cost a failed lookup and stat per page remade)."""
    from collections import Counter

    from evidence.outputs import Outputs

    project.build()
    tried: Counter[str] = Counter()
    real = Outputs.link

    def counted(self, dest, rel, key, later=False):
        tried[rel] += 1
        return real(self, dest, rel, key, later)

    monkeypatch.setattr(Outputs, "link", counted)
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert tried["cases/briand-2019.html"] == 1 and tried["index.html"] == 1
    assert [rel for rel, n in tried.items() if n > 1] == []


def test_a_rebuild_whose_links_are_made_by_a_process_of_their_own(project, monkeypatch, linker_processes):
    """At 10,000 cases the unchanged files are linked by a process of their own (evidence.linker,
    from 2,000 links): here from the first, in batches of 5. The site is the same as a build's
    without cache, each unchanged page is the previous build's file, and the process ended."""
    from evidence import linker

    project.build()
    old = {rel: (project.out / rel).stat().st_ino for rel in ("sources/zimmermann-2019.html", "cases/wenzel-2016.ttl", "drugs/baricitinib.html")}
    monkeypatch.setattr(linker, "START_FROM", 1)
    monkeypatch.setattr(linker, "_BATCH", 5)
    started = linker_processes
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    project.build()
    assert len(started) == 1, started
    with pytest.raises(ChildProcessError):
        os.waitpid(started[0], os.WNOHANG)  # waited for
    assert {rel: (project.out / rel).stat().st_ino for rel in old} == old, "an unchanged file was written again"


@pytest.mark.parametrize("by_process", [False, True], ids=["linked-at-the-end", "linked-by-the-process"])
def test_a_search_bundle_with_a_file_touched_by_hand_is_remade_whole(project, monkeypatch, by_process):
    """A bundle is linked whole or remade whole. Its files used to be handed to the linker one by
    one until one was not the file recorded: those handed over were then linked into the bundle
    Pagefind remade (FileExistsError, 'internal error', on every rebuild after)."""
    from evidence import linker

    project.build()
    fragments = sorted((project.out / "pagefind" / "fragment").iterdir())
    os.utime(fragments[-1])  # touched by hand: no longer the file recorded
    if by_process:
        monkeypatch.setattr(linker, "START_FROM", 1)
        monkeypatch.setattr(linker, "_BATCH", 1)
    project.build()  # equal to a build without cache, checked whole
    project.build()


def test_a_rebuild_linked_by_the_process_needs_no_link_made_here(project, monkeypatch, linker_processes):
    """The process made every link: the build's own fallback (every file linked here, when the
    process failed) is not used."""
    from evidence import linker

    project.build()
    monkeypatch.setattr(linker, "START_FROM", 1)
    monkeypatch.setattr(linker, "_BATCH", 3)

    def refused(self, made):
        raise AssertionError("the build linked the files itself: the process failed")

    monkeypatch.setattr(linker.Linker, "_link_here", refused)
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert len(linker_processes) == 1


def test_editing_a_vocabulary_label_reaches_every_case(project):
    before = project.build()
    project.edit("vocabulary/drugs.yaml", "label: ruxolitinib", "label: ruxolitinib (edited)")
    after = project.build()
    changed = _changed(before, after)
    assert {"cases/briand-2019.html", "cases/wenzel-2016.html", "evidence.ttl.gz"} <= changed


def test_editing_a_source_record_remakes_the_case_pages_citing_it(project):
    before = project.build()
    project.edit("sources/zimmermann-2019.yaml", "title: ", "title: Edited, ")
    after = project.build()
    changed = _changed(before, after)
    assert {"cases/zimmermann-2019.html", "sources/zimmermann-2019.html"} <= changed
    assert "Edited, " in after["cases/zimmermann-2019.html"].decode("utf-8")
    assert "cases/wenzel-2016.html" not in changed


def test_editing_a_primary_source_remakes_the_source_that_retells_it(project):
    before = project.build()
    project.edit("sources/wenzel-2016.yaml", "title: ", "title: Edited, ")
    after = project.build()
    assert "sources/heymann-2016.html" in _changed(before, after)
    assert "Edited, " in after["sources/heymann-2016.html"].decode("utf-8")


def test_editing_a_case_title_remakes_the_pages_that_show_it_as_related(project):
    before = project.build()
    assert "Edited, " not in before["cases/briand-2019.html"].decode("utf-8")
    project.edit("zimmermann-2019.yaml", "title: ", "title: Edited, ")
    after = project.build()
    assert "Edited, " in after["cases/briand-2019.html"].decode("utf-8")  # in its list of related cases


def test_a_changed_source_text_is_checked_again(project):
    """A quote verified once is verified again when the text it was checked against changes."""
    project.build()
    text_file = project.texts / "001_51c7163df5526276.txt"
    text_file.write_text("This text no longer holds any of the quoted words.\n", encoding="utf-8")
    with pytest.raises(ValidationError) as err:
        build(load_config(project.root), project.out, templates=ROOT / "site_templates", cache=BuildCache(project.cache_dir))
    assert any(d.rule == "quote-not-found" and "briand-2019" in d.path for d in err.value.diagnostics)


def test_renaming_a_case_moves_its_outputs(project):
    before = project.build()
    src = project.root / "kb" / "briand-2019.yaml"
    text = src.read_text(encoding="utf-8").replace("id: briand-2019", "id: briand-2019-renamed", 1)
    src.unlink()
    (project.root / "kb" / "briand-2019-renamed.yaml").write_text(text, encoding="utf-8")
    after = project.build()
    assert "cases/briand-2019.html" in before and "cases/briand-2019.html" not in after
    assert "cases/briand-2019-renamed.html" in after and "cases/briand-2019-renamed.ttl" in after
    nquads = gzip.decompress(after["evidence.nq.gz"])
    assert b"case/briand-2019>" not in nquads and b"case/briand-2019-renamed>" in nquads


def test_deleting_a_case_removes_it_everywhere(project):
    before = project.build()
    (project.root / "kb" / "zimmermann-2019.yaml").unlink()
    after = project.build()
    gone = {n for n in before if "zimmermann-2019" in n and n.startswith("cases/")}
    assert gone and not gone & set(after)
    assert b"/case/zimmermann-2019" not in gzip.decompress(after["evidence.nq.gz"])
    # The query library sees the same graph: no row of the deleted case.
    from evidence.pipeline import compile_checked, load_and_validate

    compiled = compile_checked(load_and_validate(load_config(project.root), cache=BuildCache(project.cache_dir)), cache=BuildCache(project.cache_dir))
    query = read_query(str(project.root / "kb" / "queries" / "patients-by-drug.rq"))
    cases = {str(v.value) for row in run_query(compiled, query).rows for v in row.values() if v is not None}
    assert not any("zimmermann-2019" in c for c in cases) and any("briand-2019" in c for c in cases)


def test_a_damaged_cache_entry_is_made_again(project):
    project.build()
    entries = sorted([*project.cache_dir.rglob("*.pickle"), *project.cache_dir.rglob("pack-*")])
    assert entries and any(p.name.startswith("pack-") for p in entries)
    for p in entries:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])  # torn, as by a crash mid-write on a system without rename
    project.build()
    assert project.cache.hits == 0


def _inodes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_ino for p in folder.rglob("*") if p.is_file()}


def test_a_rebuild_with_nothing_changed_writes_nothing(project):
    """Every file of the new site is the previous build's file (a hard link): case and source
    pages and the RDF files are linked without being made again, the rest once found identical."""
    project.build()
    before = _inodes(project.out)
    project.build()
    assert _inodes(project.out) == before
    assert project.report.reused == len(before)


def test_a_rebuild_after_an_edit_shares_what_did_not_change(project):
    project.build()
    before = _inodes(project.out)
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    project.build()  # byte-identical to a build without cache (checked in build)
    after = _inodes(project.out)
    assert after["cases/briand-2019.ttl"] != before["cases/briand-2019.ttl"]
    assert after["evidence.nq.gz"] != before["evidence.nq.gz"]  # spliced into a new file, never changed in place
    assert after["cases/zimmermann-2019.ttl"] == before["cases/zimmermann-2019.ttl"]
    assert after["ontology.ttl"] == before["ontology.ttl"]


@pytest.mark.parametrize("damage", ["same size", "appended", "replaced"])
def test_an_output_changed_by_hand_is_never_reused(project, damage):
    """The previous build's files are trusted only while inode, size and time are as recorded: a
    whole-graph file or a page changed after the build is written again, not spliced from."""
    project.build()
    for rel in ("evidence.nq.gz", "evidence.jsonld.gz", "cases/briand-2019.html", "cases/zimmermann-2019.ttl"):
        p = project.out / rel
        data = p.read_bytes()
        if damage == "same size":
            with open(p, "r+b") as fh:  # in place: same inode and size, a new modification time
                fh.write(b"#" * 64)
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        elif damage == "appended":
            p.write_bytes(data + b"\n# appended by hand\n")
        else:
            p.unlink()
            p.write_bytes(data)  # the same bytes in a new file: not the file recorded, so not trusted
    project.edit("wenzel-2016.yaml", "title: ", "title: Edited, ")
    project.build()  # checked byte for byte against a build without cache


def test_editing_a_template_between_two_builds_in_one_process_remakes_the_pages(project, tmp_path):
    project.templates = tmp_path / "templates"
    shutil.copytree(ROOT / "site_templates", project.templates)
    project.build()
    page = project.templates / "case.html"
    page.write_text(page.read_text(encoding="utf-8").replace("{% block main %}", "{% block main %}<p>template edited</p>", 1), encoding="utf-8")
    after = project.build()
    assert "template edited" in after["cases/briand-2019.html"].decode("utf-8")


def test_compiled_templates_are_kept_and_a_damaged_one_is_compiled_again(project, monkeypatch):
    """Jinja2 keeps the compiled templates in the build cache (render.environment): a rebuild
    compiles none (about 0.3 s of every build), and one whose file is damaged (anywhere: each is
    sealed with its SHA-256, render._CompiledTemplates) is compiled again."""
    from jinja2 import Environment
    from jinja2.bccache import bc_magic

    from evidence.cache import TEMPLATES

    stale = project.cache_dir / TEMPLATES / "0123456789abcdef"  # another version of the code's
    stale.mkdir(parents=True)
    (stale / "__jinja2_old.cache").write_bytes(b"compiled by another version")
    project.build()
    assert not stale.exists(), "prune deletes the compiled templates of another version of the code"
    kept = sorted((project.cache_dir / TEMPLATES).rglob("__jinja2_*"))
    assert kept and len({f.parent for f in kept}) == 1, "the compiled templates are in the build cache, one folder"
    compiled: list[str] = []
    real = Environment.compile

    def counted(self, source, name=None, filename=None, raw=False, defer_init=False):
        compiled.append(name)
        return real(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(Environment, "compile", counted)
    project.edit("wenzel-2016.yaml", "title: ", "title: Edited, ")
    build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert compiled == []
    for f in kept:
        f.write_bytes(bc_magic + b"not what Jinja2 wrote")  # the right header, then garbage
    project.edit("wenzel-2016.yaml", "title: ", "title: Edited again, ")
    build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert "case.html" in compiled and "base.html" in compiled
    # Damaged in the middle, header and source checksum intact: Jinja2 handed the rest to
    # marshal, and a render worker crashed running it. The file's seal is checked first.
    compiled.clear()
    for f in kept:
        data = bytearray(f.read_bytes())
        at = len(data) // 3
        data[at:at + 64] = bytes(range(200, 136, -1))
        f.write_bytes(bytes(data))
    project.edit("wenzel-2016.yaml", "title: ", "title: Edited a third time, ")
    build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert "case.html" in compiled and "base.html" in compiled
    monkeypatch.setattr(Environment, "compile", real)
    project.build()  # and the site is what a build without cache makes


def test_a_setting_in_evidence_toml_reaches_every_case_page(project):
    before = project.build()
    toml = project.root / "evidence.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('branch = "main"', 'branch = "trunk"'), encoding="utf-8")
    after = project.build()
    assert "/edit/main/" in before["cases/wenzel-2016.html"].decode("utf-8")
    assert "/edit/trunk/" in after["cases/wenzel-2016.html"].decode("utf-8")


def test_builds_into_two_folders_with_one_cache_keep_both_records(project, tmp_path):
    project.build()
    other = tmp_path / "_other"
    build(load_config(project.root), other, templates=project.templates, cache=BuildCache(project.cache_dir))
    first = _inodes(project.out)
    project.build()
    assert _inodes(project.out) == first  # the build into the other folder did not drop this one's record


def test_a_rebuild_that_fails_after_linking_and_splicing_leaves_the_previous_site_as_it_was(project, monkeypatch):
    """The new tree shares files with the published one (hard links) and copies from it: nothing
    in it may be written through to the published site, whatever stage fails."""
    from evidence import render

    before = project.build()
    inodes = _inodes(project.out)
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    real = render.render_site

    def render_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(render, "render_site", render_then_fail)
    with pytest.raises(RuntimeError):
        build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert _tree(project.out) == before
    assert _inodes(project.out) == inodes
    assert sorted(p.name for p in project.out.parent.iterdir() if p.name.startswith("._site")) == []


def test_an_edit_reindexes_one_search_bundle_and_links_the_others(project, monkeypatch):
    """The search index is split into bundles (site_search.shards); after one case is edited only
    the bundle holding its page is indexed again, the others are the previous build's files."""
    import re

    import evidence.site_search as site_search

    monkeypatch.setattr(site_search, "SHARD_DOCS", 4)  # the founding kb in several bundles
    staged: list[tuple[Path, list[str]]] = []  # (bundle, the pages indexed into it)
    real_run = site_search.run_pagefind
    runs: list[Path] = []
    asked_words: list[tuple[str, bool]] = []  # (bundle, whether its words were asked for)
    foretold: list[list[str]] = []  # the pages of each run that only describes them (SearchIndex._foresee)
    events: list[tuple[str, str | None]] = []
    slow: list[bool] = []  # the cached build's bundles take a second more

    def indexing(bundle, docs, copies, timeout=600, admit=None, described=None, words=True, per_page=False, nice=0):
        pages = [d[0] for d in docs] + list(copies)
        name = None if bundle is None else bundle.name
        if bundle is None:
            foretold.append(pages)
        else:
            staged.append((bundle, pages))
            runs.append(bundle)
            asked_words.append((bundle.name, words))
        events.append(("start", name))
        if slow and name not in (None, site_search.WORDS_BUNDLE) and bundle.parent.name.startswith(f".{project.out.name}.tmp-"):
            time.sleep(1.0)
        made = real_run(bundle, docs, copies, timeout, admit, described, words, per_page=per_page, nice=nice)
        events.append(("end", name))
        return made

    monkeypatch.setattr(site_search, "run_pagefind", indexing)
    first = project.build()  # byte-identical to a build without cache (checked in build)
    bundles = sorted(p.name for p in project.out.iterdir() if p.name.startswith("pagefind"))
    listed = re.search(r'data-bundles="([^"]*)"', first["search.html"].decode()).group(1).split()
    assert len(bundles) > 2 and listed[0] == "pagefind" and sorted(listed + [site_search.WORDS_BUNDLE]) == bundles
    assert f'data-words="{site_search.WORDS_BUNDLE}"' in first["search.html"].decode()
    # Every bundle's words are asked for (the words bundle is made of them), not the words bundle's own.
    assert asked_words and all(words == (name != site_search.WORDS_BUNDLE) for name, words in asked_words), asked_words
    assert (site_search.WORDS_BUNDLE, False) in asked_words
    before = _inodes(project.out)
    staged.clear()
    runs.clear()
    # A case's or source's words are looked up only for the bundle that is remade.
    import evidence.site_pages as site_pages

    looked_up: list[str] = []
    real_lookup = site_pages.SitePages._search_lookup
    monkeypatch.setattr(site_pages.SitePages, "_search_lookup", lambda self, path, key: (looked_up.append(path), real_lookup(self, path, key))[1])
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    events.clear()
    foretold.clear()
    slow.append(True)
    project.build()  # checked byte for byte against a build without cache
    slow.clear()
    mine = [b.name for b in runs if b.parent.name.startswith(f".{project.out.name}.tmp-")]  # not the uncached build's
    # The edit's bundle, and the words bundle: the edit brought a word ("Edited,") its bundle lacked.
    assert len(mine) == 2 and mine[-1] == site_search.WORDS_BUNDLE, runs
    changed = mine[0]
    # The words bundle did not wait for the edit's bundle: its words were worked out from those of
    # its pages that did not change and of a Pagefind run over the edited case's page alone.
    assert foretold and "cases/briand-2019.html" in foretold[0] and len(foretold[0]) < len(staged[0][1]), (foretold, staged[:1])
    assert events.index(("start", site_search.WORDS_BUNDLE)) < events.index(("end", changed)), events
    assert any("cases/briand-2019.html" in pages for _stage, pages in staged[:1]), staged[:1]
    assert "cases/briand-2019.html" in looked_up and set(looked_up) <= set(staged[0][1]), "only the remade bundle's words are looked up"
    after = _inodes(project.out)
    for rel, ino in before.items():
        if rel.startswith("pagefind") and not rel.startswith((changed + "/", site_search.WORDS_BUNDLE + "/")):
            assert after.get(rel) == ino, f"{rel} was written again"
    assert any(after[rel] != ino for rel, ino in before.items() if rel.startswith(changed + "/"))
    # An edit that brings no new word remakes its bundle only: the words bundle is linked.
    before = _inodes(project.out)
    runs.clear()
    project.edit("briand-2019.yaml", "title: Edited, ", "title: Edited, Edited, ")
    project.build()
    assert [b.name for b in runs if b.parent.name.startswith(f".{project.out.name}.tmp-")] == [changed], runs
    after = _inodes(project.out)
    assert all(after[rel] == ino for rel, ino in before.items() if rel.startswith(site_search.WORDS_BUNDLE + "/"))
    # An edit that takes the last "Edited," out of its bundle remakes the words bundle too.
    runs.clear()
    project.edit("briand-2019.yaml", "title: Edited, Edited, ", "title: ")
    project.build()
    assert [b.name for b in runs if b.parent.name.startswith(f".{project.out.name}.tmp-")] == [changed, site_search.WORDS_BUNDLE], runs
    # Words worked out wrong (never seen) are found out once the bundle is made: the words bundle
    # is made again, and the site is as a build without cache makes it (checked in build).
    from evidence.site_search import SearchIndex

    real_foretell, real_again = SearchIndex._foretell, SearchIndex._words_again
    again: list[bool] = []
    monkeypatch.setattr(SearchIndex, "_foretell", lambda self, old, new: [w for w in real_foretell(self, old, new) if w != "Again,"])
    monkeypatch.setattr(SearchIndex, "_words_again", lambda self: (again.append(True), real_again(self))[1])
    runs.clear()
    project.edit("briand-2019.yaml", "title: ", "title: Again, ")
    # The edit's bundle takes a second more, so that the words foreseen are taken before it is
    # made: made first, its own words were taken (nothing foreseen wrong, nothing made again),
    # which failed this test in one of session 28's three runs of the suite (and every time with
    # the foresight slowed by 0.5 s, ad hoc).
    slow.append(True)
    project.build()
    slow.clear()
    # Without "Again,", the words were those of the build before: its words bundle was linked, then
    # removed, and made by Pagefind from the words of the edit's bundle.
    assert again == [True] and [b.name for b in runs if b.parent.name.startswith(f".{project.out.name}.tmp-")] == [
        changed, site_search.WORDS_BUNDLE], runs
    monkeypatch.setattr(SearchIndex, "_foretell", real_foretell)
    project.edit("briand-2019.yaml", "title: Again, ", "title: ")
    project.build()
    # The words of the pages in bundles that were linked stay in the cache, though they were not
    # read: the next edit makes the words of its case only, whichever bundle it is in (a pack
    # with any unused entry is packed anew here).
    monkeypatch.setattr(BuildCache, "PACK_FROM", 1)
    project.edit("wenzel-2016.yaml", "title: ", "title: Edited, ")
    project.build()
    pages = project.report.cases + len(list((project.root / "kb" / "sources").glob("*.yaml")))
    assert len({key for stage, key in project.cache.used if stage == "search-text"}) == pages, "every case's and source's words are kept"
    project.edit("zimmermann-2019.yaml", "title: ", "title: Edited, ")
    project.build()
    assert project.cache.made("search-text") == 1


@pytest.mark.parametrize("answered", ["early", "between", "late"])
def test_the_query_library_page_is_written_once_its_answers_are_in(project, monkeypatch, answered):
    """The search index's words bundle waits for the bundle holding queries.html, so that page is
    written as soon as the query library's answers are in, between any two steps: right after the
    search page ("early": waited for), after the case pages, whose step defers its pages to
    run_deferred ("between": the page must still be written then, to be indexed), or in its place
    after the lists when they come late. Whichever, the site is the same, byte for byte, search
    index included (checked here against a build without cache; two orders against each other
    below)."""
    import evidence.site_search as site_search
    from evidence.library_run import LibraryAnswers
    from evidence.site_pages import SitePages

    monkeypatch.setattr(site_search, "SHARD_DOCS", 4)  # several bundles, so a words bundle
    order: list[str] = []
    for name in ("search", "queries", "cases", "lists"):
        real = getattr(SitePages, name)
        monkeypatch.setattr(SitePages, name, lambda self, _real=real, _name=name: (order.append(_name), _real(self))[1])
    waited = lambda self: self._thread is None or (self._thread.join() or True)  # noqa: E731
    readiness = {"early": waited, "between": lambda self: order[-1] == "cases" and waited(self), "late": lambda self: False}
    monkeypatch.setattr(LibraryAnswers, "ready", readiness[answered])
    site = project.build()
    mine = order[: len(order) // 2]  # the cached build's steps (the build without cache follows)
    assert mine == {"early": ["search", "queries", "cases", "lists"], "between": ["search", "cases", "queries", "lists"],
                    "late": ["search", "cases", "lists", "queries"]}[answered], order
    assert b"Query library" in site["queries.html"]
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    order.clear()
    edited = project.build()
    assert order[:4] == mine
    monkeypatch.setattr(LibraryAnswers, "ready", readiness["late" if answered != "late" else "early"])
    order.clear()
    project.build()  # the other order, from the same cache
    assert order[:4] != mine
    assert _tree(project.out) == edited, "the order of the steps changed the site"


def test_a_bundle_with_documents_known_by_key_needs_a_lookup(tmp_path):
    from evidence.errors import RenderError
    from evidence.outputs import Outputs
    from evidence.site_search import SearchIndex, Shard

    bundle = Shard(folder="pagefind", known={"cases/a.html": ("case", "key-a")})
    with pytest.raises(RenderError, match="nothing to look them up"):
        SearchIndex([bundle], tmp_path, Outputs(out=tmp_path), "context", hold=True)


def test_search_bundles_split_by_path_in_powers_of_two():
    from evidence.site_search import shards

    docs = [(f"cases/c{i}.html", f"Case {i}", "case", "words") for i in range(50)]
    assert [s.folder for s in shards(docs, {"docs.html": "<p>x</p>"})] == ["pagefind"]  # a small site: one bundle
    split = shards(docs, {"docs.html": "<p>x</p>"}, size=10)
    assert split[0].folder == "pagefind" and 1 < len(split) <= 8  # 51 documents in 8 buckets of about 10
    seen = sorted(d[0] for s in split for d in s.docs) + [r for s in split for r in s.copies]
    assert seen == sorted(d[0] for d in docs) + ["docs.html"]  # every page in exactly one bundle
    # a page stays in its bundle when others are added or removed (the count stays a power of two)
    where = {d[0]: s.folder for s in split for d in s.docs}
    more = shards(docs[:45] + [(f"cases/n{i}.html", "", "case", "") for i in range(20)], {}, size=10)
    assert {d[0]: s.folder for s in more for d in s.docs if d[0] in where} == {r: f for r, f in where.items() if r in {d[0] for d in docs[:45]}}
    # a page known by key goes where it would go with its text, and its key is in its bundle's key
    known = shards(docs[:25], {"docs.html": "<p>x</p>"}, size=10, known={d[0]: ("case", f"key-{d[0]}") for d in docs[25:]})
    assert {r: s.folder for s in known for r in s.known} == {d[0]: where[d[0]] for d in docs[25:]}
    bundle = next(s for s in known if s.known)
    before = bundle.key("context")
    bundle.known[next(iter(bundle.known))] = ("case", "another key")
    assert bundle.key("context") != before
    bundle.resolve(lambda path, key: (f"title of {path}", key))
    assert not bundle.known and ("title of", "another key") in {(d[1][:8], d[3]) for d in bundle.docs}


def _rebuilt(project: Project, monkeypatch, *edit: str) -> tuple[dict[str, bytes], list[str]]:
    """Make ``edit`` (Project.edit's arguments) and build again: the site (checked byte for byte
    against a build without cache) and the pages that the cached build rendered (it renders
    first, up to its home page, the last one) rather than linked from the previous build."""
    import evidence.site_pages as site_pages

    rendered: list[str] = []
    real = site_pages.SitePages.render
    monkeypatch.setattr(site_pages.SitePages, "render", lambda self, rel, template, ctx: (rendered.append(rel), real(self, rel, template, ctx))[1])
    project.edit(*edit)
    after = project.build()
    monkeypatch.setattr(site_pages.SitePages, "render", real)
    return after, rendered[: rendered.index("index.html") + 1]


def test_an_edit_remakes_only_the_numbered_pages_that_show_the_edited_case(project, monkeypatch):
    """Long lists go on numbered pages (site_pages.SitePages.paged), each made from a key over its
    rows' case files: after one case is edited, exactly the numbered pages with a row of it are
    rendered again; the build is still byte-identical to one without cache."""
    import evidence.site_pages as site_pages

    monkeypatch.setattr(site_pages, "PAGE_ROWS", 1)  # the founding kb's lists on many pages
    project.build()
    _after, cached = _rebuilt(project, monkeypatch, "zimmermann-2019.yaml", "title: ", "title: Edited, ")
    numbered = sorted(p.relative_to(project.out).as_posix() for p in project.out.glob("*/*/*-[0-9]*.html"))
    showing = [rel for rel in numbered if "cases/zimmermann-2019.html" in (project.out / rel).read_text(encoding="utf-8")]
    assert sorted(rel for rel in cached if rel in numbered) == showing
    assert showing and len(numbered) > len(showing), (showing, numbered)


def test_an_edit_remakes_only_the_evidence_table_pages_whose_rows_changed(project, monkeypatch):
    """The evidence table is on pages of EVIDENCE_ROWS rows, each made from a key over what it
    shows: after an edit of one patient's rows, exactly the pages whose bytes changed are rendered."""
    import evidence.site_pages as site_pages

    monkeypatch.setattr(site_pages, "EVIDENCE_ROWS", 3)
    before = project.build()
    tables = sorted(rel for rel in before if rel == "evidence.html" or rel.startswith("evidence/"))
    assert len(tables) > 2, tables
    after, cached = _rebuilt(project, monkeypatch, "zimmermann-2019.yaml", "    sex: not reported", "    sex: female")
    changed = sorted(rel for rel in tables if before[rel] != after[rel])
    assert changed and sorted(rel for rel in cached if rel in tables) == changed


def test_an_edit_remakes_only_the_list_pages_whose_rows_changed(project, monkeypatch):
    """The lists of cases, drugs, sources ... are on pages of LIST_ROWS rows, each made from a key
    over what it shows: after a case's title is edited, exactly the list pages whose bytes changed
    (the one with that case's row) are rendered again."""
    import evidence.site_pages as site_pages

    monkeypatch.setattr(site_pages, "LIST_ROWS", 1)
    before = project.build()
    lists = sorted(rel for rel in before if "/" not in rel and re.fullmatch(r"(cases|drugs|genes|variants|diseases|measures|phenotypes|sources)(-\d+)?\.html", rel))
    assert "cases-3.html" in lists and len(lists) > 10, lists
    after, cached = _rebuilt(project, monkeypatch, "zimmermann-2019.yaml", "title: ", "title: Edited, ")
    changed = sorted(rel for rel in lists if before[rel] != after[rel])
    assert changed == ["cases-3.html"], changed
    assert sorted(rel for rel in cached if rel in lists) == changed


def test_an_edit_remakes_only_the_entity_pages_that_list_the_edited_case(project, monkeypatch):
    """A drug, gene, variant, condition, measure or phenotype page is made from a key over what
    it shows: after one case is edited, exactly the entity pages that list that case are
    rendered again (the build is still byte-identical to one without cache), and an edit of a
    source, whose citation any entity page may show, renders every entity page again."""

    before = project.build()
    kinds = ("drugs", "genes", "variants", "diseases", "measures", "phenotypes")
    entities = sorted(rel for rel in before if rel.count("/") == 1 and rel.split("/")[0] in kinds)
    after, cached = _rebuilt(project, monkeypatch, "zimmermann-2019.yaml", "title: ", "title: Edited, ")
    showing = sorted(rel for rel in entities if "cases/zimmermann-2019.html" in after[rel].decode("utf-8"))
    assert showing and len(showing) < len(entities), showing
    assert sorted(rel for rel in cached if rel in entities) == showing
    assert all(rel in showing for rel in entities if before[rel] != after[rel])
    _after, cached = _rebuilt(project, monkeypatch, "sources/briand-2019.yaml", "title: ", "title: Edited, ")
    assert sorted(rel for rel in cached if rel in entities) == entities


def test_a_page_key_refuses_a_value_it_cannot_stand_for():
    """A context value the entity pages' key does not know is an error, never left out of the
    key (a key that leaves something out would serve a stale page); a str subclass is text."""
    from markupsafe import Markup

    from evidence.site_pages import _fingerprint

    out: list[str] = []
    _fingerprint({"title": Markup("<b>x</b>"), "n": 3, "rows": [("a", 1.5, None, True)]}, out, {})
    assert "".join(out) == "{'title'Markup('<b>x</b>')'n'3'rows'(('a'1.5NoneTrue))}"
    with pytest.raises(TypeError, match="cannot stand for a object"):
        _fingerprint({"rows": [object()]}, [], {})


def test_an_edit_checks_the_shapes_of_that_case_only(project, monkeypatch):
    """SHACL checks a file's unit again only when its bytes changed: after one case is edited the
    data checked holds that case's graph and no other case's."""
    import evidence.shapes as shapes

    project.build()
    checked: list[bytes] = []
    real = shapes.validate_shapes
    monkeypatch.setattr(shapes, "validate_shapes", lambda data, turtle, *a, **k: (checked.append(data), real(data, turtle, *a, **k))[1])
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    cache = BuildCache(project.cache_dir)
    build(load_config(project.root), project.out, templates=project.templates, cache=cache)
    data = b"".join(checked)
    assert b"/graph/case/briand-2019>" in data
    assert b"/graph/case/zimmermann-2019>" not in data and b"/graph/case/wenzel-2016>" not in data



def test_a_list_that_grows_or_shrinks_shows_its_new_total_on_every_numbered_page(tmp_path, monkeypatch):
    """Moving the last case's treatment from one drug to another shortens one list and lengthens
    another at their ends: the numbered pages before the end keep their rows but show the new
    total ("Rows 8-14 of N"), so the cached build must still equal a build without cache."""
    import sys

    import evidence.site_pages as site_pages

    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    synth.generate(tmp_path / "project", 30, seed=5)
    monkeypatch.setattr(site_pages, "PAGE_ROWS", 7)
    root = tmp_path / "project"
    build(load_config(root), tmp_path / "site", templates=ROOT / "site_templates", cache=BuildCache(tmp_path / "cache"))
    last = next(f for f in sorted((root / "kb").glob("*.yaml"), reverse=True) if "drug: ruxolitinib" in f.read_text(encoding="utf-8"))
    last.write_text(last.read_text(encoding="utf-8").replace("drug: ruxolitinib", "drug: baricitinib", 1), encoding="utf-8")
    build(load_config(root), tmp_path / "site", templates=ROOT / "site_templates", cache=BuildCache(tmp_path / "cache"))
    build(load_config(root), tmp_path / "fresh", templates=ROOT / "site_templates", cache=BuildCache(None))
    cached, fresh = _tree(tmp_path / "site"), _tree(tmp_path / "fresh")
    assert len([n for n in fresh if "/patients-" in n]) > 4
    assert sorted(cached) == sorted(fresh)
    assert [n for n in fresh if cached[n] != fresh[n]] == []


def test_a_carrier_moved_to_another_variant_remakes_every_page_that_shows_it(tmp_path):
    """One case's genotype is changed from its variant to another case's variant of the same
    gene: the pages of both variants, of the gene and of every case and list they touch change,
    data of one case shown on the pages of another (a variant's carriers, its name from its first
    carrier). The cached build must still equal a build without cache, byte for byte."""
    import sys

    from markupsafe import escape

    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    synth.generate(tmp_path / "project", 30, seed=5)
    root = tmp_path / "project"
    build(load_config(root), tmp_path / "site", templates=ROOT / "site_templates", cache=BuildCache(tmp_path / "cache"))
    block = re.compile(r"    variant:\n(?:      .*\n)*?      hgvs: (\S+)\n(?:      .*\n)*")  # a genotype's whole variant
    carriers = {f: block.search(f.read_text(encoding="utf-8")) for f in sorted((root / "kb").glob("*.yaml"))}
    carriers = {f: m for f, m in carriers.items() if m}
    # a carrier of a variant that another case carries too, so that both variants keep a page and
    # the variants' table is the same: only the pages' own cases tell that they changed
    shared = [a for a in carriers if sum(m.group(1) == carriers[a].group(1) for m in carriers.values()) > 1]
    moved, other = next((a, b) for a in shared for b in carriers if carriers[a].group(1) != carriers[b].group(1))
    text = moved.read_text(encoding="utf-8")
    moved.write_text(text.replace(carriers[moved].group(0), carriers[other].group(0), 1), encoding="utf-8")
    build(load_config(root), tmp_path / "site", templates=ROOT / "site_templates", cache=BuildCache(tmp_path / "cache"))
    build(load_config(root), tmp_path / "fresh", templates=ROOT / "site_templates", cache=BuildCache(None))
    cached, fresh = _tree(tmp_path / "site"), _tree(tmp_path / "fresh")
    assert sorted(cached) == sorted(fresh)
    assert [n for n in fresh if cached[n] != fresh[n]] == []
    assert str(escape(carriers[other].group(1))) in fresh[f"cases/{moved.stem}.html"].decode("utf-8")  # the edit took


def test_the_network_view_of_a_large_kb_is_remade_when_its_edges_change_and_only_then(tmp_path, monkeypatch):
    """Above MAX_CASES cases the network view shows the entities only, and is keyed by the files'
    network fragments without their own nodes' labels (SitePages._graph_key): a case's title
    leaves it as it was (linked from the previous build); a drug given instead of another, or a
    vocabulary label, remakes it. Each build equals a build without cache, byte for byte."""
    import sys

    import evidence.site_pages as site_pages
    from evidence.site_graph import MAX_CASES

    sys.path.insert(0, str(ROOT / "bench"))
    import synth

    root = tmp_path / "project"
    synth.generate(root, MAX_CASES + 5, seed=11)
    site, fresh = tmp_path / "site", tmp_path / "fresh"
    made: list[int] = []
    real = site_pages.graph_view
    monkeypatch.setattr(site_pages, "graph_view", lambda *a: (made.append(1), real(*a))[1])

    def built() -> tuple[int, bytes]:
        made.clear()
        build(load_config(root), site, templates=ROOT / "site_templates", cache=BuildCache(tmp_path / "cache"))
        remade = bool(made)
        shutil.rmtree(fresh, ignore_errors=True)
        build(load_config(root), fresh, templates=ROOT / "site_templates", cache=BuildCache(None))
        got, want = _tree(site), _tree(fresh)
        assert sorted(got) == sorted(want)
        assert [n for n in want if got[n] != want[n]] == []
        return remade, (site / "graph.html").read_bytes()

    remade, page = built()
    assert remade and b"too many case reports to draw each one" in page
    case = root / "kb" / "synth-00001.yaml"
    case.write_text(case.read_text(encoding="utf-8").replace("title: ", "title: Retitled ", 1), encoding="utf-8")
    assert built() == (False, page), "a title is not in the view: the page is linked, not made again"
    text = case.read_text(encoding="utf-8")
    given = re.findall(r"^    drug: (\S+)$", text, re.M)
    other = next(d for d in ("ruxolitinib", "baricitinib", "steroids") if d not in given)
    case.write_text(text.replace(f"    drug: {given[0]}\n", f"    drug: {other}\n", 1), encoding="utf-8")
    changed = built()
    assert changed[0] and changed[1] != page
    vocab = root / "kb" / "vocabulary" / "drugs.yaml"
    label = re.search(r"^  label: (.+)$", vocab.read_text(encoding="utf-8"), re.M)
    assert label, "a drug with a label"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace(label.group(0), f"  label: {label.group(1)} (relabelled)", 1), encoding="utf-8")
    relabelled = built()
    assert relabelled[0] and relabelled[1] != changed[1]


def test_a_file_renamed_without_its_id_fails_a_cached_build_as_it_fails_one_without_cache(project):
    """A checked file was kept in the cache under its bytes alone: renamed with its id left as it
    was, the cached build took the old verdict and published the site. Its key holds its path."""
    project.build()
    kb = project.root / "kb"
    (kb / "briand-2019.yaml").rename(kb / "briand-2019-letter.yaml")
    for cache in (BuildCache(project.cache_dir), BuildCache(None)):
        with pytest.raises(ValidationError) as err:
            build(load_config(project.root), project.out, templates=project.templates, cache=cache)
        assert any(d.rule == "id-filename" and d.path.endswith("briand-2019-letter.yaml") for d in err.value.diagnostics)


def test_diagnostics_kept_in_the_cache_name_the_file_where_it_is_now(project):
    """A warning kept with a checked file named the file where it was: after the kb folder was
    moved, a cached build printed the old path."""
    from evidence.validate import validate_kb

    project.edit("wenzel-2016.yaml", "            duration: P1Y\n", "            duration: P0D\n")  # a warning
    project.build()
    before = [d for d in validate_kb(load_config(project.root), cache=BuildCache(project.cache_dir)).diagnostics if d.level == "warning"]
    assert [d.path for d in before] == ["kb/wenzel-2016.yaml"], before
    (project.root / "kb").rename(project.root / "data")
    toml = project.root / "evidence.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('kb = "kb"', 'kb = "data"', 1), encoding="utf-8")
    for cache in (BuildCache(project.cache_dir), BuildCache(None)):
        after = [d for d in validate_kb(load_config(project.root), cache=cache).diagnostics if d.level == "warning"]
        assert [(d.path, d.line, d.message) for d in after] == [("data/wenzel-2016.yaml", before[0].line, before[0].message)]


def test_an_entry_damaged_inside_is_not_served(project):
    """A byte changed inside a pack's entry, where it still unpickles (a gzip member of the export
    pieces, a model's text): the entry was served as it was, into the published files, or the
    build stopped with an 'internal error'. Each entry's CRC-32 is checked as it is read, and a
    damaged one is made again: the site is what a build without cache makes (Project.build)."""
    project.build()
    for stage in PACKED_STAGES:
        for pack in _packs(project.cache_dir, stage):
            data = bytearray(pack.read_bytes())
            end = len(data) - 8 - int.from_bytes(data[-8:], "big")  # where the index begins: damage the entries only
            for at in range(len(b"evidence-pack 2\n") + 7, end, max(1, end // 40)):
                data[at] ^= 0x20
            pack.write_bytes(bytes(data))
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    project.build()


def _singles(cache_dir: Path, stage: str) -> list[Path]:
    return sorted((cache_dir / stage).glob("*/*.pickle"))


def _packs(cache_dir: Path, stage: str) -> list[Path]:
    return sorted((cache_dir / stage).glob("pack-*"))


def test_packed_stages_serve_rebuilds_and_a_damaged_pack_is_ignored(project):
    """The checked models and compiled parts are kept in packs: a cold build writes one per stage
    as it goes, an edit adds a small one, and a torn or lying pack is never trusted. Every build
    is checked byte for byte against a build without cache (Project.build)."""
    project.build()
    for stage in PACKED_STAGES:
        assert len(_packs(project.cache_dir, stage)) == 1, "a cold build writes one pack per stage"
        assert _singles(project.cache_dir, stage) == [] and not list((project.cache_dir / stage).glob(".tmp-*"))
    project.build()
    assert project.cache.misses == 0 and project.cache.made("validate") == project.cache.made("compile") == 0
    assert len(_packs(project.cache_dir, "compile")) == 1, "a build that makes nothing writes no pack"
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    project.build()
    assert project.cache.made("validate") == project.cache.made("compile") == project.cache.made("evidence-rows") == 1
    assert project.cache.made("search-text") == 1  # the case's words; its sources' did not change
    assert len(_packs(project.cache_dir, "compile")) == 2
    project.build()
    assert project.cache.misses == 0
    # A source edited: the cases citing it are checked again and stored under their old keys,
    # which an older pack holds; the newest pack's entry is the one read from then on.
    project.edit("sources/zimmermann-2019.yaml", "title: ", "title: Edited, ")
    project.build()
    assert project.cache.made("validate") >= 2
    assert project.cache.made("evidence-rows") == 0  # a case's rows show nothing of its sources
    citing = [c for c in ("zimmermann-2019", "briand-2019", "wenzel-2016") if "source: zimmermann-2019" in (project.root / "kb" / f"{c}.yaml").read_text(encoding="utf-8")]
    assert citing and project.cache.made("search-text") == 1 + len(citing)  # the source's words, and those of the cases citing it
    project.build()
    assert project.cache.made("validate") == 0 and project.cache.misses == 0
    files = project.report.cases + len(list((project.root / "kb" / "sources").glob("*.yaml")))
    for damage in ("torn", "lying"):
        for stage in PACKED_STAGES:
            for pack in _packs(project.cache_dir, stage):
                data = pack.read_bytes()
                if damage == "torn":
                    pack.write_bytes(data[: len(data) // 2])
                else:  # an index that points past the data
                    n = int.from_bytes(data[-8:], "big")
                    index = pickle.loads(data[-8 - n:-8])
                    index = {k: (off + len(data), length, crc) for k, (off, length, crc) in index.items()}
                    tail = pickle.dumps(index)
                    pack.write_bytes(data[: -8 - n] + tail + len(tail).to_bytes(8, "big"))
        damaged = _packs(project.cache_dir, "compile")
        project.build()
        assert project.cache.made("validate") == files and project.cache.made("compile") == files, damage
        assert not set(damaged) & set(_packs(project.cache_dir, "compile")), "the damaged packs are gone"
        project.build()
        assert project.cache.misses == 0 and len(_packs(project.cache_dir, "compile")) == 1


def test_prune_deletes_the_single_entries_of_a_stage_now_packed(tmp_path):
    """The export stage kept single files until it was packed: prune deletes them (nothing reads
    them again), and keeps the stage's packs."""
    cache = BuildCache(tmp_path / "cache")
    cache.put("export", "k" * 64, {"ttl": b"piece"})
    legacy = tmp_path / "cache" / "export" / "ab" / ("ab" + "0" * 62 + ".pickle")
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"an entry of an older build")
    cache.prune()
    assert not legacy.parent.exists() and _packs(tmp_path / "cache", "export")
    assert BuildCache(tmp_path / "cache").get("export", "k" * 64) == {"ttl": b"piece"}


def test_packs_are_merged_when_there_are_many_or_most_entries_are_unused(tmp_path, monkeypatch):
    monkeypatch.setattr(BuildCache, "MAX_PACKS", 3)

    def run(keys: list[str], version: str = "") -> BuildCache:
        cache = BuildCache(tmp_path)
        for k in keys:
            if cache.get("validate", k) is None:
                cache.put("validate", k, {"entry": k, "version": version})
        cache.prune()
        return cache

    first = [f"{i:064x}" for i in range(100)]
    run(first)
    (base,) = _packs(tmp_path, "validate")
    inode = base.stat().st_ino
    extra = [f"{i:064x}" for i in range(1000, 1010)]
    for n in range(1, 3):  # one new entry per build: a pack each, up to MAX_PACKS
        cache = run(first + extra[:n])
        assert cache.hits == 99 + n and len(_packs(tmp_path, "validate")) == n + 1
    # One more: the small packs, all newer than the largest, become one; the largest is kept.
    cache = run(first + extra[:3])
    packs = _packs(tmp_path, "validate")
    assert len(packs) == 2 and packs[0] == base and base.stat().st_ino == inode
    # A key made again with another value (as when a cited source changed) is read from the
    # newest pack, before and after a merge.
    cache = BuildCache(tmp_path)
    for k in first + extra[:3]:
        cache.get("validate", k)
    cache.put("validate", first[0], {"entry": first[0], "version": "new"})
    cache.prune()
    assert len(_packs(tmp_path, "validate")) == 3
    assert BuildCache(tmp_path).get("validate", first[0])["version"] == "new"
    # Builds that do not use that key add packs until they are merged: the merge keeps the new
    # value, since it shadows the old one in the largest pack.
    run(first[1:] + extra[:4])
    assert len(_packs(tmp_path, "validate")) == 2
    assert BuildCache(tmp_path).get("validate", first[0])["version"] == "new"
    # Most of what the packs hold unused: the used entries are packed anew, alone.
    cache = run(first[:20] + extra[:3])
    assert cache.misses == 0 and len(_packs(tmp_path, "validate")) == 1
    cache = BuildCache(tmp_path)
    assert cache.get("validate", first[0])["version"] == "new"
    assert [cache.get("validate", k) for k in first[1:20]] == [{"entry": k, "version": ""} for k in first[1:20]] and cache.misses == 0
    assert cache.get("validate", first[50]) is None  # dropped with the old packs
    assert _singles(tmp_path, "validate") == [] and not list((tmp_path / "validate").glob(".tmp-*"))


def test_when_the_largest_pack_is_the_newest_every_pack_is_merged(tmp_path, monkeypatch):
    monkeypatch.setattr(BuildCache, "MAX_PACKS", 1)
    keys = [f"{i:064x}" for i in range(40)]
    for upto in (10, 40):  # a pack of 10 entries, then a larger one of 30
        cache = BuildCache(tmp_path)
        for k in keys[:upto]:
            if cache.get("validate", k) is None:
                cache.put("validate", k, k)
        cache.prune()
    assert len(_packs(tmp_path, "validate")) == 1
    cache = BuildCache(tmp_path)
    assert [cache.get("validate", k) for k in keys] == keys and cache.misses == 0


def test_a_pack_is_written_by_its_own_process_and_an_unsealed_one_is_never_read(tmp_path):
    cache = BuildCache(tmp_path)
    cache.put("compile", "a" * 64, "made here")
    go, ready = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker: what it stores must not land in its parent's pack
        os.read(go, 1)  # once the parent has written past the end the worker knows of
        cache.put("compile", "b" * 64, "made in a worker, over the parent's entry")
        os._exit(0)
    cache.put("compile", "c" * 64, "made here too")
    os.write(ready, b"x")
    os.waitpid(pid, 0)
    assert cache.get("compile", "a" * 64) == "made here", "what a build made is read back before the pack is sealed"
    # An interrupted build: its pack has no index and no name, and is never read.
    writing = set((tmp_path / "compile").glob(".tmp-pack-*"))
    torn = BuildCache(tmp_path)
    torn.put("compile", "d" * 64, "never sealed")
    (unsealed,) = set((tmp_path / "compile").glob(".tmp-pack-*")) - writing
    cache.prune()
    again = BuildCache(tmp_path)
    assert [again.get("compile", k * 64) for k in "abcd"] == ["made here", None, "made here too", None]
    old = time.time() - 2 * 86400
    os.utime(unsealed, (old, old))
    torn._stages.clear()  # the interrupted build is gone without sealing its pack
    BuildCache(tmp_path).prune()
    assert not unsealed.exists(), "an interrupted build's pack is deleted once it is a day old"


def test_a_raw_entry_is_copied_from_its_pack_as_it_was_stored(tmp_path):
    """put_raw keeps bytes unpickled in a packed stage; raw_range says where they are, in the pack
    being written and, after sealing, in the pack on disk; one that is not there is a miss."""

    def read(where):
        fd, offset, length, crc = where
        data = os.pread(fd, length, offset)
        assert zlib.crc32(data) == crc
        return data

    data = os.urandom(100_000)
    cache = BuildCache(tmp_path)
    cache.put("compile", "a" * 64, "the entry")
    written = cache.put_raw("compile", "a" * 64 + "/chunk", data)
    assert written is not None and read(written) == data
    assert cache.made("compile") == 1, "a raw entry belongs to an entry: it is not counted"

    assert read(cache.raw_range("compile", "a" * 64 + "/chunk")) == data
    assert cache.raw_range("compile", "b" * 64 + "/chunk") is None
    cache.prune()
    again = BuildCache(tmp_path)
    assert read(again.raw_range("compile", "a" * 64 + "/chunk")) == data and again.get("compile", "a" * 64) == "the entry"
    with pytest.raises(AssertionError, match="not a packed stage"):
        again.put_raw("shacl", "c" * 64, b"x")
    assert BuildCache(None).raw_range("compile", "a" * 64 + "/chunk") is None


def _noting_reads(monkeypatch) -> list[str]:
    """The names of the kb files that a cached build reads (FileShas notes each one it reads)."""
    from evidence.load import FileShas

    noted: list[str] = []
    note = FileShas.note
    monkeypatch.setattr(FileShas, "note", lambda self, path, st, sha: (noted.append(path.name), note(self, path, st, sha))[1])
    return noted


def test_a_kb_file_whose_identity_did_not_change_is_not_read_again(project, monkeypatch):
    from evidence.load import FileShas

    monkeypatch.setattr(FileShas, "SETTLE_NS", 0)  # the project's files were all written before the first build
    project.build()
    noted = _noting_reads(monkeypatch)
    project.edit("zimmermann-2019.yaml", "title: ", "title: Edited, ")
    project.build()  # byte-identical to a build without cache
    assert noted == ["zimmermann-2019.yaml"], "only the edited file is read"


def test_a_source_text_whose_identity_did_not_change_is_not_read_again(project, monkeypatch):
    """The source texts are part of every validate key; like the kb files, a text is read only
    when its identity on disk changed. One that changed in place, with its size and times put
    back, is read again (by its change time), and the quote checked against it fails."""
    from evidence.load import FileShas

    monkeypatch.setattr(FileShas, "SETTLE_NS", -(10**18))  # only the identity tells an edit apart
    project.build()
    noted = _noting_reads(monkeypatch)
    project.build()
    assert noted == [], "nothing changed: no kb file and no source text is read"
    text_file = project.texts / "001_51c7163df5526276.txt"
    st = text_file.stat()
    data = text_file.read_bytes()
    text_file.write_bytes(bytes(b if b in b"\n\r " else ord("x") for b in data))  # every quoted word gone, same size
    os.utime(text_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert text_file.stat().st_size == st.st_size and text_file.stat().st_mtime_ns == st.st_mtime_ns
    with pytest.raises(ValidationError) as err:
        build(load_config(project.root), project.out, templates=ROOT / "site_templates", cache=BuildCache(project.cache_dir))
    assert noted == [text_file.name]
    assert any(d.rule == "quote-not-found" and "briand-2019" in d.path for d in err.value.diagnostics)


def _swap_first_title_letter(p: Path) -> str:
    """Change one letter of the case's title in place (the file keeps its size); the new letter."""
    text = p.read_text(encoding="utf-8")
    title = re.search(r"^title: (.)", text, re.M)
    assert title
    swapped = "X" if title.group(1) != "X" else "Y"
    p.write_text(text[: title.start(1)] + swapped + text[title.end(1):], encoding="utf-8")
    return swapped


def test_an_edit_that_keeps_the_size_and_puts_the_times_back_is_seen(project, monkeypatch):
    """The change time, which a write sets and nothing can set back, tells the edit apart (the
    settling rule is switched off here, so that only the file's identity can)."""
    from evidence.load import FileShas

    monkeypatch.setattr(FileShas, "SETTLE_NS", -(10**18))
    project.build()
    p = project.root / "kb" / "zimmermann-2019.yaml"
    st = p.stat()
    swapped = _swap_first_title_letter(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert p.stat().st_size == st.st_size and p.stat().st_mtime_ns == st.st_mtime_ns
    noted = _noting_reads(monkeypatch)
    after = project.build()  # byte-identical to a build without cache
    assert noted == ["zimmermann-2019.yaml"]
    assert re.search(rf"<h1[^>]*>{swapped}", after["cases/zimmermann-2019.html"].decode()), "the page shows the edit"


def test_a_file_changed_in_the_same_clock_tick_as_a_build_began_is_read_again(project, monkeypatch):
    """On a file system whose clock is coarse (here: every file's times are one tick, a second
    before each build begins), an edit that keeps the size leaves the file's identity as it was;
    FileShas.SETTLE_NS has the next build read such a file again. Without that rule this test
    fails: the cached build serves the old title."""
    from evidence.load import FileShas

    tick = 1_000 * 10**9
    monkeypatch.setattr(FileShas, "_identity", staticmethod(lambda st: (st.st_dev, st.st_ino, st.st_size, tick, tick)))
    monkeypatch.setattr(FileShas, "_now", staticmethod(lambda: tick + 10**9))
    project.build()
    swapped = _swap_first_title_letter(project.root / "kb" / "zimmermann-2019.yaml")
    after = project.build()  # byte-identical to a build without cache
    assert re.search(rf"<h1[^>]*>{swapped}", after["cases/zimmermann-2019.html"].decode()), "the page shows the edit"


def test_a_file_not_read_that_changes_during_the_build_is_an_error_never_a_file_left_out(project, monkeypatch):
    import evidence.validate as V
    from evidence.load import FileShas

    monkeypatch.setattr(FileShas, "SETTLE_NS", 0)
    project.build()
    shutil.rmtree(project.cache_dir / "validate")  # every file is checked again, so read where it is parsed
    listed = V.read_kb

    def list_then_edit(*args, **kwargs):
        got = listed(*args, **kwargs)
        _swap_first_title_letter(project.root / "kb" / "zimmermann-2019.yaml")  # after its hash was taken from the record
        return got

    monkeypatch.setattr(V, "read_kb", list_then_edit)
    before = _tree(project.out)
    with pytest.raises(ValidationError) as failed:
        build(load_config(project.root), project.out, templates=project.templates, cache=BuildCache(project.cache_dir))
    assert [(d.path, d.rule) for d in failed.value.diagnostics] == [("kb/zimmermann-2019.yaml", "file-read")]
    assert "build again" in failed.value.diagnostics[0].hint
    assert _tree(project.out) == before, "the site is as it was"


def test_compiled_chunks_named_in_the_packs_outlive_their_merge_and_the_cache(project, monkeypatch):
    """A compiled graph's chunks are read where the cache keeps them (compile._cached_part): the
    cache merging its packs, deleting the old ones and closing changes nothing in the graph, nor
    in the query library's answers."""
    from evidence.library import load_library
    from evidence.library_run import LibraryAnswers
    from evidence.pipeline import compile_checked, load_and_validate

    project.build()
    project.edit("zimmermann-2019.yaml", "title: ", "title: Edited, ")
    config = load_config(project.root)
    monkeypatch.setattr(BuildCache, "MAX_PACKS", 0)  # every prune merges
    cache = BuildCache(project.cache_dir)
    compiled = compile_checked(load_and_validate(config, cache=cache), cache=cache)
    assert cache.made("compile") == 1 and len(_packs(project.cache_dir, "compile")) == 1
    old_packs = set(_packs(project.cache_dir, "compile"))
    cache.prune()  # seals this build's pack, merges both, deletes them, closes every pack
    assert not old_packs & set(_packs(project.cache_dir, "compile")), "the packs the graph was named in are gone"
    fresh = compile_checked(load_and_validate(config), cache=BuildCache(None))
    assert compiled.nquads() == fresh.nquads() and list(compiled.chunks) == list(fresh.chunks)
    lib = load_library(config.kb_dir / "queries")
    with LibraryAnswers(compiled, lib) as a, LibraryAnswers(fresh, lib) as b:
        assert [(q.name, r.rows) for q, r in a.result()] == [(q.name, r.rows) for q, r in b.result()]


# ------------------------------------------------------------------------------ the commands besides build


def _counting(monkeypatch: pytest.MonkeyPatch, module, name: str) -> list[int]:
    """Count the calls of ``module.name`` (what a command checks or compiles anew, not from the cache)."""
    calls: list[int] = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_validate_uses_the_build_cache_and_never_reports_from_a_stale_entry(project, monkeypatch, capsys):
    """`evidence validate` checks only the files the cache has not checked as they are (12 s
    every time at 10,000 cases without it, 1.4 s with it), and says the same as without it."""
    import evidence.validate as V
    from evidence.cli import main

    monkeypatch.setenv("EVIDENCE_CACHE", str(project.cache_dir))
    checked = _counting(monkeypatch, V, "_read_and_parse_at")

    def validate() -> tuple[int, str, str]:
        checked.clear()
        rc = main(["--root", str(project.root), "validate"])
        out = capsys.readouterr()
        return rc, out.out, out.err

    first = validate()
    files = len(checked)
    assert first[0] == 0 and files >= 6, first  # the 3 cases and their sources, checked
    assert list((project.cache_dir / "validate").glob("pack-*")), "validate kept nothing in the cache"
    assert validate() == first and checked == []  # nothing checked again
    project.edit("zimmermann-2019.yaml", "unit: mg\n", "unit: mgg\n")
    broken = validate()
    assert broken[0] == 1 and "kb/zimmermann-2019.yaml:71:" in broken[1] and "'mgg'" in broken[1], broken
    assert len(checked) == 1
    project.edit("zimmermann-2019.yaml", "unit: mgg\n", "unit: mg\n")
    assert validate() == first and checked == []  # the file as it was: its entry again
    monkeypatch.setenv("EVIDENCE_CACHE", "off")
    assert validate() == first and len(checked) == files


def test_export_and_query_use_the_build_cache_and_follow_an_edit(project, monkeypatch, capsys):
    """`evidence export` and `evidence query` validate, compile and check the kb: through the
    build cache (43.8 s each time at 10,000 cases without it, 1.7-2.5 s with it), with the same
    bytes as without it, and an edit reaches them."""
    import evidence.compile as C
    from evidence.cli import main

    monkeypatch.setenv("EVIDENCE_CACHE", str(project.cache_dir))
    compiled = _counting(monkeypatch, C, "_compile_record")
    out = project.root / "graph.nq"

    def export() -> bytes:
        compiled.clear()
        assert main(["--root", str(project.root), "export", "--format", "nq", "--out", str(out)]) == 0
        return out.read_bytes()

    first = export()
    files = len(compiled)
    assert files >= 6
    assert export() == first and compiled == []
    project.edit("briand-2019.yaml", "title: ", "title: Edited, ")
    edited = export()
    assert len(compiled) == 1 and b"Edited, " in edited and b"Edited, " not in first
    compiled.clear()
    capsys.readouterr()
    assert main(["--root", str(project.root), "query", "--format", "csv",
                 'SELECT ?t WHERE { ?c <http://purl.org/dc/terms/title> ?t FILTER(STRSTARTS(?t, "Edited, ")) }']) == 0
    assert compiled == [] and "Edited, " in capsys.readouterr().out
    monkeypatch.setenv("EVIDENCE_CACHE", "off")
    assert export() == edited and len(compiled) == files


def test_checks_across_files_run_on_cached_cases_without_reading_their_models_back(project):
    """A case the cache has is kept as its pickle (evidence.cases): the checks across files (one
    HGVS one variant, duplicate patients) run on its facts, and say what they say without the
    cache; its model, asked for, is the model a fresh check makes."""
    from evidence.cases import CaseModels
    from evidence.validate import validate_kb
    from tests.test_duplicates import add_case, add_source

    add_source(project.root, "test-2099", "10.5555/evidence-test-2099")
    add_case(project.root, "test-2099", "test-2099")
    add_case(project.root, "test-2099b", "test-2099")
    extra = [ROOT / "tests" / "data" / "invalid" / "variant-consistency.yaml"]  # its variant differs from kb/briand-2019.yaml's
    config = load_config(project.root)

    def texts(kb):
        return [d.text() for d in kb.diagnostics]

    fresh = validate_kb(config, extra, BuildCache(None))
    assert {d.rule for d in fresh.diagnostics} >= {"variant-consistency", "duplicate-patient"}
    filling = BuildCache(project.cache_dir)
    validate_kb(config, extra, filling)
    filling.close()
    cache = BuildCache(project.cache_dir)
    kb = validate_kb(config, extra, cache)
    assert cache.hits >= 5 and texts(kb) == texts(fresh)
    # The 5 kb cases and the fixture: its error comes from a check across files, which always runs.
    assert isinstance(kb.cases, CaseModels) and kb.cases.unread() == 6
    assert kb.cases["briand-2019"] == fresh.cases["briand-2019"] and kb.cases.unread() == 5
    models = dict(kb.cases)  # every model read back
    assert kb.cases.unread() == 0 and models == dict(fresh.cases)


@pytest.mark.parametrize("data", [b"not a pickle", pickle.dumps({"a": "dict"})])
def test_a_cached_model_that_cannot_be_read_back_is_an_error_naming_its_file(data):
    from evidence.cases import CaseFacts, CaseModels, Pickled
    from evidence.errors import LoadError

    cases = CaseModels()
    cases["x"] = Pickled(CaseFacts("x", (), (), (), b""), data, "kb/x.yaml")
    assert "x" in cases and len(cases) == 1 and cases.facts("x").id == "x"  # nothing read back yet
    with pytest.raises(LoadError) as failed:
        cases["x"]
    assert failed.value.diagnostics[0].path == "kb/x.yaml" and "EVIDENCE_CACHE=off" in failed.value.diagnostics[0].hint


def test_validate_and_export_keep_the_packs_few_and_every_entry(project, monkeypatch, capsys):
    """Each validate or export that checks or compiles a file anew seals a pack of its own; only a
    build prunes. Past MAX_PACKS packs they merge them, keeping every entry (the next build's
    site entries too): without that, packs piled up and every command opened them all."""
    from evidence.cli import main

    monkeypatch.setenv("EVIDENCE_CACHE", str(project.cache_dir))
    monkeypatch.setattr(BuildCache, "MAX_PACKS", 2)
    project.build()
    out = project.root / "graph.nq"
    for i in range(6):
        project.edit("zimmermann-2019.yaml", "title: ", f"title: Edit {i}, ")
        assert main(["--root", str(project.root), "validate"]) == 0
        assert main(["--root", str(project.root), "export", "--format", "nq", "--out", str(out)]) == 0
        assert len(_packs(project.cache_dir, "validate")) <= 3 and len(_packs(project.cache_dir, "compile")) <= 3
    capsys.readouterr()
    project.build()  # the cached build equals one without the cache (Project.build)
    assert project.cache.made("validate") == 0 and project.cache.made("compile") == 0  # all kept by the merges


def test_a_copy_of_the_cases_is_a_mapping_of_its_own():
    import copy

    from evidence.cases import CaseFacts, CaseModels, Pickled

    cases = CaseModels()
    cases["x"] = Pickled(CaseFacts("x", (), (), (), b""), b"", "kb/x.yaml")
    other = copy.copy(cases)
    other["y"] = Pickled(CaseFacts("y", (), (), (), b""), b"", "kb/y.yaml")
    del other["x"]
    assert list(cases) == ["x"] and list(other) == ["y"] and cases.unread() == 1
