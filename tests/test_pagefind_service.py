"""The search index is made by Pagefind's service, fed through a pipe by a process of its own
(site_search.run_pagefind, evidence.pagefind_job): a real round trip, and a clear RenderError
(never a hang, never a traceback, no process left) when the service answers with an error,
answers out of turn, dies, hangs or is not installed. The failing services are small scripts
standing in for the binary (PAGEFIND_BINARY_PATH, which the pagefind package honours)."""

from __future__ import annotations

import os
import stat
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


def test_a_bundle_is_indexed_through_the_service_in_path_order(tmp_path):
    written = site_search.run_pagefind(tmp_path / "one" / "pagefind", DOCS, COPIES)
    assert (tmp_path / "one" / "pagefind" / "pagefind.js") in written
    assert len([p for p in written if p.suffix == ".pf_fragment"]) == len(DOCS) + len(COPIES)
    # The same pages handed over in another order make the same files: they are sent sorted.
    site_search.run_pagefind(tmp_path / "two" / "pagefind", list(reversed(DOCS)), COPIES)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")
    assert not [p for p in tmp_path.iterdir() if p.name not in ("one", "two")], "nothing is staged beside the bundle"


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
m = read()
if mode == "error":
    answer(m["message_id"], {{"type": "Error", "message": "Failed to add file"}})
elif mode == "crash":
    sys.stderr.write("thread 'main' panicked at 'out of memory'\\n")
    sys.exit(3)
elif mode == "disorder":
    answer(m["message_id"] + 5, {{"type": "IndexedFile", "page_word_count": 1, "page_url": "/x", "page_meta": {{}}}})
elif mode == "garbage":
    sys.stdout.buffer.write(b"not base64 at all!,")
    sys.stdout.flush()
while read():
    pass
'''

FAILURES = [
    ("error", r"Pagefind failed to index the site: Failed to add file"),
    ("crash", r"Pagefind failed to index the site: Pagefind stopped before it finished the search index: thread 'main' panicked at 'out of memory'"),
    ("disorder", r"Pagefind failed to index the site: Pagefind answered request 7 with IndexedFile, where 2 \(IndexedFile\) was due"),
    ("garbage", r"Pagefind failed to index the site: Pagefind answered something this build cannot read"),
    ("hang", r"Pagefind did not finish indexing the search bundle pagefind within 2 s"),
]


@pytest.mark.parametrize("mode,message", FAILURES, ids=[m for m, _ in FAILURES])
def test_a_service_that_fails_gives_a_clear_error_and_is_stopped(tmp_path, monkeypatch, mode, message):
    fake = tmp_path / "pagefind"
    fake.write_text(FAKE.format(python=sys.executable, mode=mode), encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PAGEFIND_BINARY_PATH", str(fake))
    procs = []
    t = time.monotonic()
    with pytest.raises(RenderError, match=message):
        site_search.run_pagefind(tmp_path / "site" / "pagefind", DOCS, COPIES, timeout=2, admit=lambda p: procs.append(p) or True)
    assert time.monotonic() - t < 15
    assert procs and procs[0].returncode is not None, "the job's process was waited for"
    with pytest.raises(ProcessLookupError):
        os.kill(procs[0].pid, 0)
    deadline = time.monotonic() + 10
    while _running(fake) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(fake), "the service ended with its input"
    assert not (tmp_path / "site" / "pagefind" / "pagefind.js").exists()


def _running(program: Path) -> bool:
    """Whether a process runs ``program`` (read from /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(program).encode() in cmdline.read_bytes():
                return True
        except OSError:
            pass
    return False


def test_pagefind_not_installed_names_the_fix(tmp_path, monkeypatch):
    import pagefind.service

    monkeypatch.setattr(pagefind.service, "get_executable", lambda: None)
    with pytest.raises(RenderError, match=r"pip install 'pagefind\[extended\]'"):
        site_search.run_pagefind(tmp_path / "pagefind", DOCS, COPIES)
