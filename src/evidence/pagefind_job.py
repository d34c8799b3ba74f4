"""One bundle of the search index, made by Pagefind's service: run as a script of its own.

``python -I pagefind_job.py`` (by path and isolated, so that it imports nothing of the package or
of its folder) reads a job from the first line of its standard input, a JSON object ``{"binary":
PATH, "bundle": FOLDER or null, "pages": [[PATH, HTML], ...], "describe": BOOL, "pages" or
"page-words", "quiet": SECONDS, "nice": N}``, hands the pages to
``PAGEFIND --service``, asks for the bundle's files and writes them into ``FOLDER``. It exits 0
once every file is written; otherwise 1, with the reason on its standard error. With
``describe``, it then prints one JSON line (:func:`describe`): every word Pagefind indexed and
the address of each indexed page by Pagefind's id for it, read from the fragments it wrote (with
``"pages"``, the addresses only; with ``"page-words"``, each page's words too). Without a
``FOLDER`` nothing is written: the job only describes what Pagefind would index (the words of
the pages an edit changed, see evidence.site_search.SearchIndex).
:func:`evidence.site_search.run_pagefind` runs it. The job is one line, not the whole input: a
render worker forked while it is being sent holds a copy of the pipe, whose end would wait for
that worker.

The service reads requests from its standard input, each a base64-encoded JSON message ended by a
comma, handles them in order and answers each on its standard output: the protocol of Pagefind's
own Node and Python APIs. Their Python client reads one answer per tenth of a second (two minutes
for a bundle of 1,200 pages), so this is a client of our own. The files come back in the answer
to ``GetFiles`` and are written here: the service's ``WriteFiles`` answers before its last writes
are done (Tokio's file writes finish in the background), and the service exits as soon as its
input ends, so a bundle written by it could lose the end of a file.

A process of its own, not a thread of the build: the build's render holds the interpreter, and a
thread that writes a thousand files waits for it at each one (a bundle's staging pages took
0.9-1.4 s that way instead of 0.1-0.25 s).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import selectors
import stat
import subprocess
import sys
import threading
import zlib

__all__ = ["JobError", "run", "describe", "main"]


class JobError(Exception):
    """Why the bundle was not made (printed for the build to report, which raises it as an
    evidence.errors.RenderError: this script imports nothing of the package, so not its tree)."""


QUIET = 120.0  # seconds without a byte from the service, a request pending, before it is taken for stuck


def run(binary: str, bundle: str | None, pages: list[list[str]], quiet: float = QUIET) -> list:
    """Index ``pages`` into ``bundle`` (None: nowhere); return the files Pagefind returned (as it returned them).
    A service silent for ``quiet`` seconds while a request waits is a JobError: Pagefind answers
    each page in milliseconds, and one that cannot start its threads (a limit on processes) was
    seen to wait for ever, holding the build until its whole time limit (600 s)."""
    proc = subprocess.Popen([binary, "--service"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_dying_with(os.getpid()))  # noqa: PLW1509 - one thread here yet (the readers start after)
    errors = _Drain(proc.stderr)
    writer = None
    done = False
    try:
        replies = _Replies(proc.stdout, errors, quiet)
        _send(proc, [_request(1, {"type": "NewIndex", "config": {"keep_index_url": True}})])
        index_id = replies.expect(1, "NewIndex").get("index_id")
        if not isinstance(index_id, int):
            raise JobError(f"Pagefind made no index (it answered the index number {index_id!r})")
        requests = [_request(i, {"type": "AddFile", "index_id": index_id, "file_path": rel, "url": None, "file_contents": html})
                    for i, (rel, html) in enumerate(pages, start=2)]
        last = 2 + len(requests)
        requests.append(_request(last, {"type": "GetFiles", "index_id": index_id}))
        # Written by a thread while the answers are read here: the service answers as it goes, and
        # neither pipe may fill while the other end waits.
        writer = threading.Thread(target=_send, args=(proc, requests), daemon=True)
        writer.start()
        for i in range(2, last):
            replies.expect(i, "IndexedFile")
        files = replies.expect(last, "GetFiles").get("files")
        if bundle is not None:
            _write(bundle, files)
        done = True
        return files
    finally:
        if not done:
            # Stopped first: a service stuck with its input full holds the writer thread in a write,
            # and closing the input would wait for that write for ever.
            proc.kill()
        try:
            proc.stdin.close()  # the service exits once its input ends
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if writer is not None:
            writer.join(timeout=10)


def _write(bundle: str, files: object) -> None:
    """Write the bundle's files into the folder ``bundle``, made here in a folder that must exist
    (the site being built). The files are written through a descriptor of the bundle's folder
    (where the system allows, as Linux and macOS do): a build that stops moves its unfinished site
    into its cache's trash while this job may still be writing, and the files then follow the
    folder. Written by path, with the folders made as needed, they made the site's folder again
    beside the site (after a second Ctrl-C, for instance)."""
    if not isinstance(files, list) or not files:
        raise JobError("Pagefind returned no files for the search index")
    root = os.path.realpath(bundle)
    try:
        os.mkdir(root)
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise JobError(f"the folder {os.path.dirname(root)} is gone (the build stopped?): the search bundle was not written") from None
    at = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if _AT else None
    base = "" if at is not None else root  # names are taken from the folder's descriptor, else from its path
    try:
        made = {""}
        for f in sorted(files, key=lambda f: str(f.get("path")) if isinstance(f, dict) else ""):
            rel, content = (f.get("path"), f.get("content")) if isinstance(f, dict) else (None, None)
            path = os.path.normpath(os.path.join(root, rel)) if isinstance(rel, str) and rel and "\0" not in rel else None
            if path is None or os.path.isabs(rel) or os.path.commonpath([root, path]) != root or path == root:
                raise JobError(f"Pagefind returned a file outside its bundle: {rel!r}")
            if not isinstance(content, str):
                raise JobError(f"Pagefind returned {rel} without its content")
            inside = os.path.relpath(path, root)
            folder = os.path.dirname(inside)
            if folder not in made:
                parts = folder.split(os.sep)
                for i in range(1, len(parts) + 1):
                    sub = os.sep.join(parts[:i])
                    if sub not in made:
                        try:
                            os.mkdir(os.path.join(base, sub), dir_fd=at)
                        except FileExistsError:
                            pass
                        made.add(sub)
            # "x": the bundle's folder is new, so a file met twice is an error
            fd = os.open(os.path.join(base, inside), os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666, dir_fd=at)
            with open(fd, "wb") as fh:
                fh.write(base64.b64decode(content, validate=True))
        try:
            found = os.stat(os.path.join(base, "pagefind.js"), dir_fd=at)
        except FileNotFoundError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            raise JobError("Pagefind returned no pagefind.js for the search index")
    finally:
        if at is not None:
            os.close(at)


# Whether files can be made through a folder's descriptor (os.open and os.mkdir with dir_fd).
_AT = os.open in os.supports_dir_fd and os.mkdir in os.supports_dir_fd and os.stat in os.supports_dir_fd and hasattr(os, "O_DIRECTORY")


# What Rust's char::is_whitespace is (Unicode White_Space), by which Pagefind splits text into
# words; Python's str.split also splits at U+001C-U+001F.
_SPACE = re.compile("[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+")
_FRAGMENT = b"pagefind_dcd"  # a fragment: gzip of this marker and the page's JSON


def describe(files: list, words_too: bool = True, per_page: bool = False) -> dict:
    """What Pagefind indexed, from the fragments among ``files`` (one per page): ``words``, every
    word of the pages' text and metadata (title, kind...: Pagefind indexes its values as words too),
    sorted, once each; ``pages``, the address of each page by Pagefind's id for it (the fragment's
    name, which a search answers with). Without ``words_too``, ``pages`` only: the words bundle's
    own words are not needed, and at 10,000 cases they were every word of the site, which took
    the end of a rebuild to split, send and read. With ``per_page`` (and ``words_too``), also
    ``page_words``: each page's own words (sorted) by its address; ``words`` is their union."""
    words: set[str] = set()
    page_words: dict[str, list[str]] = {}
    pages: dict[str, str] = {}
    for f in files:
        rel = f["path"]
        if not (rel.startswith("fragment/") and rel.endswith(".pf_fragment")):
            continue
        try:
            data = gzip.decompress(base64.b64decode(f["content"], validate=True))
            if not data.startswith(_FRAGMENT):
                raise ValueError("no pagefind_dcd marker")
            page = json.loads(data[len(_FRAGMENT):])
            text, meta, url = page["content"], page.get("meta") or {}, page["url"]
            if not (isinstance(text, str) and isinstance(meta, dict) and isinstance(url, str)):
                raise TypeError("its content, meta or url is not what Pagefind 1.5 writes")
        except (OSError, EOFError, ValueError, TypeError, KeyError, zlib.error) as exc:
            raise JobError(f"cannot read the fragment {rel} that Pagefind returned ({exc}); is this a Pagefind version the build "
                           "was not tested with? (pyproject.toml names those it was)") from None
        if words_too:
            mine = set(_SPACE.split(text))
            for value in meta.values():
                mine.update(_SPACE.split(str(value)))
            mine.discard("")
            words |= mine
            if per_page:
                page_words[url] = sorted(mine)
        pages[rel[len("fragment/"):-len(".pf_fragment")]] = url
    if not words_too:
        return {"pages": dict(sorted(pages.items()))}
    if per_page:
        return {"words": sorted(words), "pages": dict(sorted(pages.items())), "page_words": dict(sorted(page_words.items()))}
    return {"words": sorted(words), "pages": dict(sorted(pages.items()))}


def _request(message_id: int, payload: dict) -> bytes:
    return base64.b64encode(json.dumps({"message_id": message_id, "payload": payload}).encode("utf-8")) + b","


def _send(proc: subprocess.Popen, requests: list[bytes]) -> None:
    try:
        proc.stdin.write(b"".join(requests))
        proc.stdin.flush()
    except (BrokenPipeError, ValueError):  # the service ended (its answers say why)
        pass


class _Drain:
    """Reads a pipe to its end in a thread (so that it never fills), keeping the last 4,000 bytes."""

    def __init__(self, pipe) -> None:
        self._tail = b""
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._thread.start()

    def _run(self, pipe) -> None:
        while chunk := pipe.read1(1 << 16):
            self._tail = (self._tail + chunk)[-4000:]

    def text(self, ended: bool = True) -> str:
        """What was read; once the process has ``ended``, all of it (its last lines may be late)."""
        if ended:
            self._thread.join(timeout=5)
        return self._tail.decode("utf-8", "replace").strip()


class _Replies:
    """The service's answers, one by one."""

    def __init__(self, pipe, errors: _Drain, quiet: float = QUIET) -> None:
        self.pipe, self.errors, self.quiet = pipe, errors, quiet
        self.fd = pipe.fileno()  # read here alone, never through the pipe's buffer
        self.ready = selectors.DefaultSelector()  # closed with the process (the job runs one bundle)
        self.ready.register(self.fd, selectors.EVENT_READ)
        self.pending = bytearray()

    def expect(self, message_id: int, kind: str) -> dict:
        """The answer to request ``message_id``, of type ``kind``; a JobError if it is an error,
        another answer, or if the service ended first."""
        while (end := self.pending.find(b",")) < 0:
            if not self.ready.select(self.quiet):
                raise JobError(f"Pagefind gave no answer for {self.quiet:.0f} s (to request {message_id}, {kind}); a machine out of "
                               "processes or memory (a limit such as ulimit -u) leaves it waiting for threads it cannot start")
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise JobError(f"Pagefind stopped before it finished the search index: {self.errors.text() or 'no message'}")
            self.pending += chunk
        raw, self.pending = bytes(self.pending[:end]), self.pending[end + 1:]
        try:
            answer = json.loads(base64.b64decode(raw, validate=True))
            payload = answer["payload"]
            if not isinstance(payload, dict):
                raise TypeError("no payload")
        except (ValueError, TypeError, KeyError) as exc:  # binascii.Error and JSON's errors are ValueErrors
            raise JobError(f"Pagefind answered something this build cannot read ({exc}): {raw[:200]!r}") from None
        if payload.get("type") == "Error":
            raise JobError(f"{payload.get('message')} {self.errors.text(ended=False)}".strip())
        if answer.get("message_id") != message_id or payload.get("type") != kind:
            raise JobError(f"Pagefind answered request {answer.get('message_id')} with {payload.get('type')}, where {message_id} ({kind}) was due")
        return payload


def _dying_with(job: int):
    """What the service's process runs before Pagefind: be killed when this job (``job``, its
    PID) ends (Linux's PR_SET_PDEATHSIG). The build kills a job that overruns its time limit; a
    service that no longer read its input was left running, orphaned, until it ended by itself.
    The C library is looked up here, in the job; elsewhere (no ctypes, not Linux) the service
    ends when its input does."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        prctl = None

    def die_with_the_job() -> None:
        if prctl is None:
            return
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        if os.getppid() != job:  # the job ended before the call (its orphan went to pid 1 or a subreaper)
            os._exit(1)

    return die_with_the_job


def main() -> int:
    try:
        job = json.loads(sys.stdin.buffer.readline())
        if job.get("nice"):  # before Pagefind starts: it runs at the job's priority (evidence.site_search.AHEAD_NICE)
            os.nice(int(job["nice"]))
        files = run(job["binary"], job["bundle"], job["pages"], float(job.get("quiet", QUIET)))
        how = job.get("describe")
        if how:
            said = describe(files, words_too=how != "pages", per_page=how == "page-words")
            sys.stdout.write(json.dumps(said, separators=(",", ":")) + "\n")
    except (JobError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except Exception as exc:  # a job or an answer of another shape than this code knows: said, never a traceback
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    except KeyboardInterrupt:  # Ctrl-C reaches the whole group: the build reports it, not this job
        sys.stderr.write("interrupted\n")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
