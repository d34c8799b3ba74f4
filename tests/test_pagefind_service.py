"""The search index is made by Pagefind's service, fed through a pipe by a process of its own
(site_search.run_pagefind, evidence.pagefind_job): a real round trip, and a clear RenderError
(never a hang, never a traceback, no process left) when the service answers with an error,
answers out of turn, dies, hangs or is not installed. The failing services are small scripts
standing in for the binary (PAGEFIND_BINARY_PATH, which the pagefind package honours)."""

from __future__ import annotations

import gzip
import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from evidence import site_search
from evidence.errors import RenderError

DOCS = [
    ("cases/b.html", "Baricitinib in familial chilblain lupus", "case report", "baricitinib TREX1 interferon"),
    ("cases/a.html", "Ruxolitinib in chilblain lupus", "case report", "ruxolitinib JAK1/2 Frémond"),
    ("drugs/ruxolitinib.html", "ruxolitinib", "drug", "Janus kinase inhibitor <script>alert(1)</script>"),
]
COPIES = {"docs.html": '<!doctype html><html lang="en"><head><title>Docs</title></head><body><main data-pagefind-body><h1>Docs</h1>'
                       "<p>How to curate a case report</p></main></body></html>"}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _fragments(bundle: Path) -> dict[str, dict]:
    """The indexed pages of a bundle, by address (Pagefind's fragments: gzip, a marker, JSON)."""
    out = {}
    for p in (bundle / "fragment").glob("*.pf_fragment"):
        raw = gzip.decompress(p.read_bytes())
        d = json.loads(raw[raw.index(b"{"):])
        out[d["url"]] = d
    return out


def test_a_bundle_is_indexed_through_the_service_in_path_order(tmp_path):
    for site in ("one", "two"):  # the bundle is made in a folder that exists: the site being built
        (tmp_path / site).mkdir()
    written = site_search.run_pagefind(tmp_path / "one" / "pagefind", DOCS, COPIES)
    assert (tmp_path / "one" / "pagefind" / "pagefind.js") in written
    pages = _fragments(tmp_path / "one" / "pagefind")
    assert sorted(pages) == ["/cases/a.html", "/cases/b.html", "/docs.html", "/drugs/ruxolitinib.html"]
    assert pages["/cases/a.html"]["meta"] == {"title": "Ruxolitinib in chilblain lupus", "kind": "case report"}
    # A kb's text is escaped into the page: indexed as words, never read as markup by Pagefind
    # (which would drop a script element's text).
    assert "<script>alert(1)</script>" in pages["/drugs/ruxolitinib.html"]["content"]
    # The same pages handed over in another order make the same files: they are sent sorted.
    site_search.run_pagefind(tmp_path / "two" / "pagefind", list(reversed(DOCS)), COPIES)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_a_bundle_whose_site_folder_is_gone_is_not_written_and_that_folder_not_made_again(tmp_path):
    """A build that stops moves its unfinished site into its cache's trash while a Pagefind job may
    still be at work: the job wrote its files by path, making the folders as needed, and so made
    the site's folder again beside the site (after a second Ctrl-C, for instance)."""
    with pytest.raises(RenderError, match=r"the folder .*gone is gone \(the build stopped\?\)") as raised:
        site_search.run_pagefind(tmp_path / "gone" / "pagefind", DOCS, COPIES)
    assert "Traceback" not in str(raised.value)
    assert not (tmp_path / "gone").exists()


def test_a_bundle_whose_site_folder_is_moved_while_it_is_written_follows_it(tmp_path):
    """The bundle's files are written through a descriptor of its folder: when the build moves
    its unfinished site away in the middle (here: as the first file is decoded), the files go
    where the folder went, and nothing is made at the old place."""
    import base64

    from evidence import pagefind_job

    site, trash = tmp_path / "_site.tmp", tmp_path / "trash"
    site.mkdir()
    trash.mkdir()

    class Moving(str):  # a file's content that moves the site when it is decoded
        def encode(self, *args, **kwargs):
            if site.exists():
                site.rename(trash / site.name)
            return str(self).encode(*args, **kwargs)

    files = [{"path": "pagefind.js", "content": base64.b64encode(b"js").decode()},
             {"path": "fragment/a.pf_fragment", "content": Moving(base64.b64encode(b"a").decode())},
             {"path": "index/b.pf_index", "content": base64.b64encode(b"b").decode()}]
    pagefind_job._write(str(site / "pagefind"), files)
    assert not site.exists(), "the site's folder was made again at its old place"
    moved = trash / site.name / "pagefind"
    assert {p.relative_to(moved).as_posix(): p.read_bytes() for p in moved.rglob("*") if p.is_file()} == {
        "pagefind.js": b"js", "fragment/a.pf_fragment": b"a", "index/b.pf_index": b"b"}


def test_a_bundle_larger_than_a_pipe_is_indexed_whole(tmp_path):
    """Requests and answers well past a pipe's 64 KB: neither end waits for the other for ever."""
    docs = [(f"cases/c{i:04}.html", f"Case {i}", "case report", f"words of case {i} " * 40) for i in range(600)]
    site_search.run_pagefind(tmp_path / "pagefind", docs, {})
    assert len(_fragments(tmp_path / "pagefind")) == 600


FAKE = '''#!{python}
import base64, json, sys, time
mode = {mode!r}
def read():
    buf = b""
    while True:
        c = sys.stdin.buffer.read(1)
        if not c:
            sys.exit(0)
        if c == b",":
            return json.loads(base64.b64decode(buf))
        buf += c
def answer(mid, payload):
    sys.stdout.buffer.write(base64.b64encode(json.dumps({{"message_id": mid, "payload": payload}}).encode()) + b",")
    sys.stdout.flush()
m = read()
if mode == "hang":  # reads on, never answers, and ends when its input does (as Pagefind's does)
    while read():
        pass
answer(m["message_id"], {{"type": "NewIndex", "index_id": 0}})
if mode == "stuck":  # answers the first request, then neither reads nor answers: its input fills
    time.sleep(120)
m = read()
if mode == "error":
    answer(m["message_id"], {{"type": "Error", "message": "Failed to add file"}})
elif mode == "crash":
    sys.stderr.write("thread 'main' panicked at 'out of memory'\\n")
    sys.exit(3)
elif mode == "threads":  # as Pagefind under a limit on processes (ulimit -u): its thread pool cannot start
    sys.stderr.write("thread 'main' panicked at rayon-core/src/registry.rs:171:10: The global thread pool has not been initialized.: "
                     "ThreadPoolBuildError {{ kind: IOError(Os {{ code: 11, kind: WouldBlock }}) }}\\n")
    sys.exit(101)
elif mode == "disorder":
    answer(m["message_id"] + 5, {{"type": "IndexedFile", "page_word_count": 1, "page_url": "/x", "page_meta": {{}}}})
elif mode == "garbage":
    sys.stdout.buffer.write(b"not base64 at all!,")
    sys.stdout.flush()
elif mode == "escape":  # indexes every page, then returns a file outside the bundle
    while m["payload"]["type"] != "GetFiles":
        answer(m["message_id"], {{"type": "IndexedFile", "page_word_count": 1, "page_url": "/x", "page_meta": {{}}}})
        m = read()
    answer(m["message_id"], {{"type": "GetFiles", "files": [{{"path": "../escape.txt", "content": "eA=="}}]}})
elif mode == "badfragment":  # indexes every page, then returns a fragment of another format
    import gzip
    while m["payload"]["type"] != "GetFiles":
        answer(m["message_id"], {{"type": "IndexedFile", "page_word_count": 1, "page_url": "/x", "page_meta": {{}}}})
        m = read()
    frag = base64.b64encode(gzip.compress(b'{{"url": "/a.html"}}')).decode()
    answer(m["message_id"], {{"type": "GetFiles", "files": [{{"path": "pagefind.js", "content": "eA=="}},
                                                         {{"path": "fragment/en_1.pf_fragment", "content": frag}}]}})
while read():
    pass
'''

FAILURES = [
    ("error", r"Pagefind failed to index the search bundle pagefind: Failed to add file"),
    ("crash", r"bundle pagefind: Pagefind stopped before it finished the search index: thread 'main' panicked at 'out of memory'"),
    ("disorder", r"bundle pagefind: Pagefind answered request 7 with IndexedFile, where 2 \(IndexedFile\) was due"),
    ("garbage", r"bundle pagefind: Pagefind answered something this build cannot read"),
    ("escape", r"bundle pagefind: Pagefind returned a file outside its bundle: '../escape.txt'"),
    ("hang", r"Pagefind did not finish indexing the search bundle pagefind within 2 s"),
]


@pytest.mark.parametrize("mode,message", FAILURES, ids=[m for m, _ in FAILURES])
def test_a_service_that_fails_gives_a_clear_error_and_is_stopped(tmp_path, monkeypatch, mode, message):
    fake = tmp_path / "pagefind"
    fake.write_text(FAKE.format(python=sys.executable, mode=mode), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    (tmp_path / "site").mkdir()
    t = time.monotonic()
    with pytest.raises(RenderError, match=message) as raised:
        site_search.run_pagefind(tmp_path / "site" / "pagefind", DOCS, COPIES, timeout=2 if mode == "hang" else 60)
    assert time.monotonic() - t < 30 and "Traceback" not in str(raised.value)
    deadline = time.monotonic() + 10
    while _running(fake) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(fake), "the service ended with its input (the hanging one: once the job was stopped)"
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "site" / "escape.txt").exists()


def test_a_service_that_stops_answering_is_stopped_long_before_the_time_limit(tmp_path, monkeypatch):
    """Pagefind under a limit on processes was seen to wait for ever, silent, for threads it could
    not start: the build waited out its whole time limit (600 s). A service that says nothing
    for ``quiet`` seconds while a page waits is stopped, with the likely reason."""
    fake = tmp_path / "pagefind"
    fake.write_text(FAKE.format(python=sys.executable, mode="hang"), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    (tmp_path / "site").mkdir()
    t = time.monotonic()
    with pytest.raises(RenderError, match=r"bundle pagefind: Pagefind gave no answer for 1 s \(to request 1, NewIndex\); .*ulimit -u"):
        site_search.run_pagefind(tmp_path / "site" / "pagefind", DOCS, COPIES, timeout=60, quiet=1)
    assert time.monotonic() - t < 20
    deadline = time.monotonic() + 10
    while _running(fake) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(fake)


def test_a_service_stuck_with_its_input_full_is_stopped_after_quiet_seconds_too(tmp_path, monkeypatch):
    """A service that stops after its first answer, and no longer reads: the pages fill its
    input, and the job's writer waits in a write. The job stops it after ``quiet`` seconds
    (closing its input first waited for that write, until the whole time limit)."""
    fake = tmp_path / "pagefind"
    fake.write_text(FAKE.format(python=sys.executable, mode="stuck"), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    (tmp_path / "site").mkdir()
    docs = [(f"cases/c{i:04}.html", f"Case {i}", "case report", f"words of case {i} " * 40) for i in range(600)]  # more than a pipe holds
    t = time.monotonic()
    with pytest.raises(RenderError, match=r"Pagefind gave no answer for 1 s \(to request 2, IndexedFile\)") as raised:
        site_search.run_pagefind(tmp_path / "site" / "pagefind", docs, {}, timeout=60, quiet=1)
    assert time.monotonic() - t < 20 and "Traceback" not in str(raised.value)
    deadline = time.monotonic() + 10
    while _running(fake) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(fake), "the stuck service was left running"


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux: the service dies with its job (PR_SET_PDEATHSIG)")
def test_a_job_killed_at_its_time_limit_takes_its_service_with_it(tmp_path, monkeypatch):
    """The build kills a job that overruns its time limit. A service that no longer reads its
    input did not see the job end, and was left running, orphaned, for as long as it liked."""
    fake = tmp_path / "pagefind"
    fake.write_text(FAKE.format(python=sys.executable, mode="stuck"), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    (tmp_path / "site").mkdir()
    with pytest.raises(RenderError, match="within 3 s"):
        site_search.run_pagefind(tmp_path / "site" / "pagefind", DOCS, COPIES, timeout=3, quiet=100)
    deadline = time.monotonic() + 10
    while _running(fake) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(fake), "the service outlived its job"


def _running(program: Path) -> bool:
    """Whether a process runs ``program`` (read from /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(program).encode() in cmdline.read_bytes():
                return True
        except OSError:
            pass
    return False


def _missing_binary():
    raise FileNotFoundError("pagefind_extended")


@pytest.mark.parametrize("lookup", [lambda: None, _missing_binary], ids=["no binary", "package without its binary"])
def test_pagefind_not_installed_names_the_fix(tmp_path, monkeypatch, lookup):
    import pagefind.service

    monkeypatch.setattr(pagefind.service, "get_executable", lookup)
    with pytest.raises(RenderError, match=r"pip install 'pagefind\[extended\]'"):
        site_search.run_pagefind(tmp_path / "pagefind", DOCS, COPIES)


@pytest.mark.parametrize("job", [b"not json\n", b'{"binary": 3}\n', b""], ids=["not JSON", "no pages", "nothing"])
def test_a_job_of_another_shape_is_refused_without_a_traceback(job):
    done = subprocess.run([sys.executable, "-I", str(site_search._JOB)], input=job, capture_output=True, timeout=60)
    assert done.returncode == 1 and done.stderr.strip() and b"Traceback" not in done.stderr


def test_the_job_starts_on_its_line_while_its_input_stays_open(tmp_path):
    """A render worker forked while the job is being sent holds a copy of the job's input pipe,
    which then ends only when that worker does: the job reads its one line and goes on."""
    job = json.dumps({"binary": str(site_search._pagefind_binary()), "bundle": str(tmp_path / "pagefind"),
                      "pages": [["cases/a.html", site_search._record_page("A case", "case report", "words")]]}).encode() + b"\n"
    proc = subprocess.Popen([sys.executable, "-I", str(site_search._JOB)], stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(job)
        proc.stdin.flush()  # and not closed, as a forked copy would keep it
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
        assert (tmp_path / "pagefind" / "pagefind.js").is_file()
    finally:
        proc.stdin.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()


# What Pagefind indexed in a bundle (pagefind_job.describe), for the words bundle (site_search.words_pages).

PAGE = ('<!doctype html><html lang="en"><head><title>In the head</title></head><body><nav>Menu</nav>'
        '<main data-pagefind-body><h1>Docs</h1><p>one <b>two</b>three</p><table><tr><th>Field</th><th>Required</th></tr></table>'
        '<div data-pagefind-ignore><p>hidden</p></div><p>four&amp;five</p></main><footer>Footer</footer></body></html>')


def test_a_bundle_is_described_by_the_words_pagefind_indexed_and_the_id_of_each_page(tmp_path):
    described: dict = {}
    folder = tmp_path / "pagefind"
    site_search.run_pagefind(folder, DOCS, {**COPIES, "p.html": PAGE}, described=described)
    assert described["words"] == sorted(set(described["words"]))
    words = {w.rstrip(".") for w in described["words"]}  # Pagefind ends a block's text with a full stop
    # the words of the text and of the metadata (title, kind), as Pagefind read the HTML: an
    # inline tag joins words, a table cell does not part them, ignored parts and the nav are left out
    assert {"Ruxolitinib", "JAK1/2", "Frémond", "<script>alert(1)</script>", "case", "report", "curate", "Docs", "four&five"} <= words
    assert {"twothree", "FieldRequired"} <= words and not {"hidden", "Menu", "Footer", "two"} & words, sorted(words)
    fragments = {p.name.removesuffix(".pf_fragment"): p for p in (folder / "fragment").glob("*.pf_fragment")}
    assert sorted(described["pages"]) == sorted(fragments)  # keyed by the id a search answers with
    assert {pid: _fragments(folder)[url]["url"] for pid, url in described["pages"].items()} == described["pages"]
    assert sorted(described["pages"].values()) == ["/cases/a.html", "/cases/b.html", "/docs.html", "/drugs/ruxolitinib.html", "/p.html"]


def test_each_pages_words_are_described_by_its_path_and_a_run_without_a_bundle_writes_nothing(tmp_path):
    """A bundle's words are the union of its pages' own (site_search.SearchIndex works out a
    remade bundle's words from them); described without a bundle, pages give the same words."""
    pages = {**COPIES, "p.html": PAGE}
    described: dict = {}
    site_search.run_pagefind(tmp_path / "pagefind", DOCS, pages, described=described, per_page=True)
    by_page = described["page_words"]
    assert sorted(by_page) == sorted([d[0] for d in DOCS] + list(pages))
    assert sorted(set().union(*map(set, by_page.values()))) == described["words"]
    assert all(words == sorted(set(words)) for words in by_page.values())
    assert "Docs" in {w.rstrip(".") for w in by_page["p.html"]} and "Docs" not in {w.rstrip(".") for w in by_page["cases/a.html"]}
    before = sorted(tmp_path.rglob("*"))
    alone: dict = {}
    assert site_search.run_pagefind(None, [], {"p.html": PAGE}, described=alone) == []
    assert alone["words"] == by_page["p.html"] and sorted(tmp_path.rglob("*")) == before


def test_the_words_map_names_the_bundle_each_page_of_the_words_bundle_stands_for(tmp_path):
    pages = site_search.words_pages({"pagefind": ["ruxolitinib", "c.52G>A"], "pagefind-1": ["baricitinib"], "pagefind-2": ["<b>"]})
    maps = []
    for run in ("one", "two"):  # two runs of Pagefind: the same map (builds are byte-identical)
        described: dict = {}
        (tmp_path / run).mkdir()
        site_search.run_pagefind(tmp_path / run / site_search.WORDS_BUNDLE, [], pages, described=described, words=False)
        assert "words" not in described  # not asked for: the words bundle's own words are every word of the site
        maps.append(site_search.words_map(described["pages"], {"pagefind", "pagefind-1", "pagefind-2"}))
        contents = {url: d["content"] for url, d in _fragments(tmp_path / run / site_search.WORDS_BUNDLE).items()}
        assert "<b>" in contents["/pagefind-2.html"]  # escaped: a word, not markup
    assert maps[0] == maps[1]
    found = json.loads(maps[0])
    assert sorted(found.values()) == ["pagefind", "pagefind-1", "pagefind-2"] and sorted(found) == sorted(described["pages"])
    with pytest.raises(RenderError, match=r"names the bundles \['pagefind', 'pagefind-1', 'pagefind-2'\], where .*'pagefind-3'"):
        site_search.words_map(described["pages"], {"pagefind", "pagefind-1", "pagefind-2", "pagefind-3"})


def test_a_fragment_of_another_format_is_a_clear_error(tmp_path, monkeypatch):
    fake = tmp_path / "pagefind"
    fake.write_text(FAKE.format(python=sys.executable, mode="badfragment"), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    (tmp_path / "plain").mkdir()
    (tmp_path / "site").mkdir()
    site_search.run_pagefind(tmp_path / "plain" / "pagefind", DOCS, COPIES)  # not read unless described
    with pytest.raises(RenderError, match=r"bundle pagefind: cannot read the fragment fragment/en_1\.pf_fragment .*pagefind_dcd.*Pagefind version") as raised:
        site_search.run_pagefind(tmp_path / "site" / "pagefind", DOCS, COPIES, described={})
    assert "Traceback" not in str(raised.value)


def test_a_pagefind_that_cannot_start_its_threads_is_the_machines_shortage(tmp_path, monkeypatch):
    """Under a limit on processes Pagefind panicked ('ThreadPoolBuildError ... WouldBlock') and the
    build said 'Pagefind failed' with Rust's backtrace (exit 1): it is the machine's shortage, exit
    code 4 (WorkerError), with what to do."""
    from evidence.errors import WorkerError

    fake = tmp_path / "pagefind"
    fake.write_text(FAKE.format(python=sys.executable, mode="threads"), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    (tmp_path / "site").mkdir()
    with pytest.raises(WorkerError, match="Pagefind could not start its threads .* out of processes or memory") as raised:
        site_search.run_pagefind(tmp_path / "site" / "pagefind", DOCS, COPIES)
    assert "panicked" not in raised.value.message


def test_a_bundle_finished_while_the_others_are_recorded_is_recorded_too(tmp_path, monkeypatch):
    """SearchIndex.result() records the bundles made, then starts the words bundle, until nothing
    is under way. A bundle that ended within that turn, after it was looked at, was taken for done
    and left out: a cold build then failed for want of its words, a rebuild lost its files."""
    import threading

    from evidence.outputs import Outputs

    release = threading.Event()

    def pagefind(bundle, docs, copies, timeout=600, admit=None, described=None, words=True, quiet=None, per_page=False, nice=0):
        if bundle.name == "pagefind-1":
            release.wait(10)
        bundle.mkdir(parents=True)
        (bundle / "pagefind.js").write_text(bundle.name, encoding="utf-8")
        pages = site_search.bundle_pages(docs, copies)
        if described is not None:
            described["pages"] = {f"id{i}": "/" + rel for i, (rel, _html) in enumerate(pages)}
            if words:
                described["words"] = ["w-" + bundle.name]
                if per_page:
                    described["page_words"] = {rel: ["w-" + bundle.name] for rel, _html in pages}
        return sorted(p for p in bundle.rglob("*") if p.is_file())

    monkeypatch.setattr(site_search, "run_pagefind", pagefind)
    index = site_search.SearchIndex([site_search.Shard("pagefind", docs=[("a.html", "A", "k", "a")]),
                                     site_search.Shard("pagefind-1", docs=[("b.html", "B", "k", "b")])],
                                    tmp_path, Outputs(out=tmp_path), "context", bundles=2)
    real = index._foreseen

    def between() -> None:  # within result()'s turn: the second bundle ends now
        real()
        if not release.is_set():
            release.set()
            index._futures[1].result()

    monkeypatch.setattr(index, "_foreseen", between)
    index._futures[0].result()  # the first bundle is made before result() looks
    files = index.result()
    assert {"pagefind/pagefind.js", "pagefind-1/pagefind.js", f"{site_search.WORDS_BUNDLE}/pagefind.js"} <= set(files), files


@pytest.mark.parametrize("remade", [1, 2, 3])
def test_words_are_foreseen_for_an_edits_few_bundles_only(tmp_path, monkeypatch, remade):
    """A remade bundle's words are worked out ahead from its pages' kept words when an edit remakes
    one or two bundles (FORESEE_BUNDLES); when more are remade (every page rendered again), the
    words bundle waits behind them in Pagefind's queue anyway, so nothing is read for it."""
    from evidence.cache import BuildCache
    from evidence.outputs import Outputs

    monkeypatch.setattr(site_search, "run_pagefind", lambda *a, **k: [])
    cache = BuildCache(tmp_path / "cache")
    outputs = Outputs(out=tmp_path / "site", cache=cache)
    parts = [site_search.Shard(f"pagefind-{i}", docs=[(f"p{i}.html", "T", "k", "words")]) for i in range(remade)]
    for sh in parts:  # what the build before kept of each bundle: the key it was made under, its pages' words
        outputs.previous_notes[f"search-bundle:{sh.folder}"] = f"old-{sh.folder}"
        cache.put("search-page-words", f"old-{sh.folder}", {site_search.page_key(rel, html): ("words",)
                                                             for rel, html in site_search.bundle_pages(sh.docs, sh.copies)})
    foreseen: list[str] = []
    monkeypatch.setattr(site_search.SearchIndex, "_foretell", lambda self, old, new: (foreseen.append(old), sorted(set().union(*old)))[1])
    index = site_search.SearchIndex(parts, tmp_path, outputs, "context", hold=True, bundles=4)
    index.start()
    for future in list(index._foreseeing.values()):  # done before close(), which cancels what has not started
        future.result()
    index.close()
    assert len(foreseen) == (remade if remade <= site_search.FORESEE_BUNDLES else 0), foreseen
    cache.close()


def test_a_pages_words_are_kept_under_the_job_that_read_them(tmp_path, monkeypatch):
    """The words kept for each page (search-page-words) were cut by evidence.pagefind_job: kept by
    another version of it, they are not the words this one would read, and must not be used."""
    job = tmp_path / "pagefind_job.py"
    job.write_bytes(site_search._JOB.read_bytes())
    monkeypatch.setattr(site_search, "_JOB", job)
    site_search._job_digest.cache_clear()
    try:
        before = site_search.page_key("cases/a.html", "<p>words</p>")
        assert site_search.page_key("cases/a.html", "<p>words</p>") == before
        job.write_bytes(job.read_bytes() + b"\n# cut differently\n")
        site_search._job_digest.cache_clear()
        assert site_search.page_key("cases/a.html", "<p>words</p>") != before
    finally:
        site_search._job_digest.cache_clear()


def test_a_bundle_made_ahead_runs_pagefind_at_a_low_priority(tmp_path, monkeypatch):
    """The job lowers its priority before it starts Pagefind, which runs at it (a service standing
    in for the binary notes its own)."""
    import os

    noted = tmp_path / "nice.txt"
    fake = tmp_path / "pagefind"
    fake.write_text(f"#!{sys.executable}\nimport os, sys\nopen({str(noted)!r}, 'w').write(str(os.nice(0)))\nsys.exit(3)\n", encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    base = os.nice(0)
    for nice in (0, 7):
        with pytest.raises(RenderError, match="Pagefind"):
            site_search.run_pagefind(tmp_path / f"pagefind-{nice}", DOCS, {}, timeout=60, nice=nice)
        assert int(noted.read_text()) == min(base + nice, 19)
