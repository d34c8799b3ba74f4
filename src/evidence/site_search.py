"""Full-text search without a server: Pagefind (from PyPI) builds the index at build time.

Pagefind's service (``pagefind --service``, the binary that the ``pagefind`` package installs) is
handed one small page per site page through a pipe (:func:`run_pagefind`): its path, title, kind and
the words worth finding (names, identifiers, descriptions, quotes), never the tables and markup
around them. Pagefind reads HTML at about 8 MB/s, so indexing the real pages (30 KB a case page)
would take minutes at 10,000 cases; the small pages take seconds, and their addresses are the
real pages'. Until session 14 they were files in a staging folder that ``python -m pagefind
--site`` read, and writing them cost as much as the indexing.
A few pages (the docs, the query library) are indexed as they are.

The index is split into bundles of about ``SHARD_DOCS`` documents by a hash of each page's path
(:func:`shards`): ``pagefind/``, then ``pagefind-N/``. The search page merges them in the browser
(Pagefind's ``mergeIndex``). A bundle is made from a key over everything it indexes; a rebuild
links the bundles whose key did not change from the previous build and runs Pagefind only over
the others (one, after a one-case edit), since Pagefind has no incremental mode of its own. A
case's or source's words enter that key as the key they are kept under in the build cache
(:attr:`Shard.known`), so they are read only for a bundle that is remade.
The index begins before most pages are rendered (:meth:`SearchIndex.add` takes a bundle whose
last page was written later), so Pagefind runs while they render.

When the index has more than one bundle, it has a *words bundle* too (``pagefind-words/``, see
:func:`words_pages`): one document per bundle holding every word Pagefind indexed in that bundle
(as Pagefind's fragments give them: its own reading of the HTML), and ``bundles.json``, the
bundle each of its documents stands for. Pagefind matches a term by the words that begin with it and,
when an index has none, by the longest word that begins the term ("compassionate" finds the
word "c" of "c.52G>A"). Searched on its own, a bundle without the word would answer with such
pages; the search page first searches the words bundle, whose words are every bundle's, and then
only the bundles it names: the pages it shows are those a one-bundle index would find.

The words bundle waits for the words of every bundle, so a rebuild made the edit's bundle, then
the words bundle: at 10,000 cases 1.3-2.3 s, then 1.5 s more. The build keeps each page's own
words (``search-page-words``, under its bundle's key; the Outputs record notes which key each
bundle was last made under): a bundle remade after an edit then has its words worked out from those
of its pages that did not change and a Pagefind run over the few that did, which describes them
without writing a bundle (0.06-0.08 s at 10,000 cases). The words bundle starts from them, beside the edit's bundle.
Once Pagefind has made that bundle, its words are compared with those; were they ever to differ,
the words bundle would be made again from Pagefind's.

A browser cannot load Pagefind's index from ``file://``, so the search page falls back to
``search-titles.js``: every page's title, kind and address.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import escape

from .cache import digest, library_versions
from .errors import RenderError, WorkerError
from .outputs import Outputs, content_key, walk_names

__all__ = ["run_pagefind", "titles_script", "PAGEFIND_LICENCE_NAME", "Shard", "shards", "SearchIndex", "SHARD_DOCS", "WORDS_BUNDLE",
           "words_pages", "words_map", "WORDS_MAP", "bundle_pages", "page_key", "FORESEE_PAGES",
           "FORESEE_BUNDLES"]

log = logging.getLogger("evidence")

PAGEFIND_LICENCE_NAME = "pagefind.txt"
SHARD_DOCS = 2000  # documents per search bundle: about 1.5 s of Pagefind each (bench/README.md)
_STAGE = "search"
_WORDS_STAGE = "search-words"  # the words Pagefind indexed in a bundle, under the bundle's key
_PAGE_WORDS_STAGE = "search-page-words"  # under a bundle's key: {page_key of each of its pages: that page's words}
_NOTE = "search-bundle:"  # the Outputs note of the key a bundle was made under (+ its folder)
# A remade bundle's words are worked out ahead of Pagefind (see SearchIndex._foresee) when at most
# this many of its pages are new: they are described by a Pagefind run of their own.
FORESEE_PAGES = 64
# ... and only when at most this many bundles are remade (an edit's one or two): when a render of
# every page remakes them all, the words bundle waits behind them in Pagefind's queue anyway, and
# their pages' words (a pickle of about 1 MB per bundle at 10,000 cases) would be read for nothing.
FORESEE_BUNDLES = 2
# The priority (nice) of Pagefind for a bundle handed over ahead (SearchIndex.ahead): while the
# build's own process works alone, Pagefind takes the core it leaves idle, not the build's.
AHEAD_NICE = 10
WORDS_BUNDLE = "pagefind-words"  # the words bundle's folder (see the module's text)


@dataclass
class Shard:
    """Part of the search index: a Pagefind bundle of its own, in ``folder`` of the site."""

    folder: str
    docs: list[tuple[str, str, str, str]] = field(default_factory=list)  # (path, title, kind, text)
    copies: dict[str, str] = field(default_factory=dict)  # path -> a page indexed as it is
    # Documents known by a key over what their title and text are made from (path -> (kind, key)):
    # the bundle's key holds that key, so a bundle that did not change is linked without their
    # text being looked up (20,000 build-cache entries at 10,000 cases). See :meth:`resolve`.
    known: dict[str, tuple[str, str]] = field(default_factory=dict)

    def key(self, context: str) -> str:
        """A hash of everything the bundle is made from (``context``: the code, the templates and
        the library versions, as for the pages)."""
        return digest(_STAGE, context, self.folder, json.dumps(sorted(self.docs)), json.dumps(sorted(self.known.items())),
                      json.dumps(sorted(self.copies.items())))

    def resolve(self, lookup: Callable[[str, str], tuple[str, str]]) -> None:
        """Add the documents of :attr:`known` to :attr:`docs`, their (title, text) given by
        ``lookup(path, key)``; done before Pagefind indexes the bundle, after its key was taken."""
        for path, (kind, key) in sorted(self.known.items()):
            title, text = lookup(path, key)
            self.docs.append((path, title, kind, text))
        self.known = {}


def shards(docs: list[tuple[str, str, str, str]], copies: dict[str, str], size: int | None = None,
           known: dict[str, tuple[str, str]] | None = None) -> list[Shard]:
    """Split what is indexed (``docs``, ``copies`` and ``known``, as :class:`Shard` holds them)
    into bundles of about ``size`` (``SHARD_DOCS``) documents, by a hash of each page's path, so
    that an edit changes one bundle. The number of bundles is a power of two, so it changes only
    when the site doubles or halves; a small site has one, ``pagefind/``. The first bundle that is
    not empty is ``pagefind/``, the others ``pagefind-N/``."""
    size = size or SHARD_DOCS
    known = known or {}
    n = len(docs) + len(copies) + len(known)
    k = 1
    while k * size < n:
        k *= 2
    buckets = [Shard(folder=f"pagefind-{i}") for i in range(k)]
    for d in docs:
        buckets[_bucket(d[0], k)].docs.append(d)
    for rel, html in copies.items():
        buckets[_bucket(rel, k)].copies[rel] = html
    for rel, doc in known.items():
        buckets[_bucket(rel, k)].known[rel] = doc
    out = [b for b in buckets if b.docs or b.copies or b.known] or [buckets[0]]
    out[0].folder = "pagefind"
    return out


def bundle_pages(docs: list[tuple[str, str, str, str]], copies: dict[str, str]) -> list[tuple[str, str]]:
    """The pages Pagefind is handed for a bundle, in order: (path, HTML), a small page per
    document (:func:`_record_page`) and the pages indexed as they are."""
    return sorted([*((rel, _record_page(title, kind, text)) for rel, title, kind, text in docs), *copies.items()])


def page_key(rel: str, html: str) -> str:
    """The key of what Pagefind reads of one page: its path and HTML, Pagefind's version, and the
    job that reads the words out of what Pagefind indexed (evidence.pagefind_job.describe): a
    change to how it cuts them must not leave the words kept by the code before it in use."""
    return digest(_PAGE_WORDS_STAGE, library_versions(), _job_digest(), rel, html)


@functools.cache
def _job_digest() -> str:
    return digest(_JOB.read_bytes())


def _bucket(rel: str, k: int) -> int:
    return int.from_bytes(hashlib.sha256(rel.encode("utf-8")).digest()[:4], "big") % k


def words_pages(words: dict[str, list[str]]) -> dict[str, str]:
    """The documents of the words bundle: for each bundle (folder -> every word Pagefind indexed
    in it, see :func:`evidence.pagefind_job.describe`), a page ``<folder>.html`` of its words.
    Searched, the words bundle answers with the bundles that hold a word beginning each term (or,
    where none does, the longest word that begins it): those whose pages a one-bundle index of the
    whole site would find. Its ``bundles.json`` names the bundle of each of its pages."""
    return {f"{folder}.html": (f'<!doctype html><html lang="en"><head><meta charset="utf-8"></head>'
                               f'<body data-pagefind-body><p>{escape(" ".join(found))}</p></body></html>\n')
            for folder, found in sorted(words.items())}


WORDS_MAP = "bundles.json"  # in the words bundle: Pagefind's id of each of its pages -> the bundle it stands for


def words_map(pages: dict[str, str], bundles: set[str]) -> bytes:
    """``bundles.json`` of the words bundle, from Pagefind's id and address of each of its pages
    (``pages``, see :func:`evidence.pagefind_job.describe`): {id: the bundle the page stands for}.
    Not a Pagefind filter: Pagefind writes a filter's values in a different order on each run,
    and builds are byte-identical. A RenderError unless every bundle of ``bundles`` has its page."""
    found = {pid: url.rsplit("/", 1)[-1].removesuffix(".html") for pid, url in pages.items()}
    if set(found.values()) != bundles:
        raise RenderError(f"the words bundle of the search index names the bundles {sorted(set(found.values()))}, "
                          f"where {sorted(bundles)} were indexed")
    return (json.dumps(found, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


class SearchIndex:
    """The search index in the making: a bundle whose key the previous build's bundle had is linked
    from it at once (every file, or none: a bundle is remade whole); the others are indexed by
    Pagefind, two processes at a time (each uses several threads), while the caller goes on (the
    render's other pages). With more than one bundle, the words bundle (:func:`words_pages`) is
    added as soon as every bundle's words are known (:meth:`poll`, :meth:`result`). :meth:`result`
    waits for them all; :meth:`close` (or leaving the ``with`` block on an error) stops them.

    Each file of a bundle is recorded under the bundle's key and its own bytes' hash, so a file
    is only ever linked to the very file an earlier run of Pagefind wrote for the same bundle.
    The words Pagefind indexed in a bundle are kept in the build cache under its key too
    (``search-words``): a bundle is linked only with them, so the words bundle never waits for a
    bundle to be read again."""

    def __init__(self, parts: list[Shard], out: Path, outputs: Outputs, context: str, timeout: float = 600, hold: bool = False,
                 lookup: Callable[[str, str], tuple[str, str]] | None = None, bundles: int = 1):
        self.out, self.outputs, self.timeout = out, outputs, timeout
        self.lookup = lookup  # (path, key) -> (title, text) of a bundle's known documents (Shard.resolve)
        self.files: list[str] = []  # relative to the site, with /
        self._procs: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._stopped = False
        self.context = context
        self.todo: list[tuple[Shard, str]] = []  # the bundles Pagefind makes, in order
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="pagefind")
        self._futures: list[Future[tuple[list[Path], dict]]] = []  # one per bundle of todo handed to Pagefind
        self._held = hold  # bundles wait for start() (those the cache had are linked at once)
        self.bundles = bundles  # how many bundles the index has: with more than one, the words bundle is made
        self.words: dict[str, list[str]] = {}  # folder -> the words Pagefind indexed in it, for the words bundle
        self._words_added = False
        # A remade bundle's words worked out before Pagefind has made it (_foresee): folder -> the
        # work under way, and the words the words bundle was started with, checked once it is made.
        self._helper = ThreadPoolExecutor(1, thread_name_prefix="pagefind-words")
        self._foreseeing: dict[str, Future[list[str]]] = {}
        self.foreseen: dict[str, list[str]] = {}  # until Pagefind has made the bundle
        # folder -> the pages of a bundle (bundle_pages) and each one's page_key by path, worked out by _foresee
        self._foreseen_pages: dict[str, tuple[list[tuple[str, str]], dict[str, str]]] = {}
        self._wrong = False  # words foreseen differed from Pagefind's: the words bundle is made again
        self._recorded: set[int] = set()  # the bundles of todo whose files and words are recorded
        self._low: set[str] = set()  # the bundles handed to Pagefind ahead, at a low priority (ahead())
        self._ahead_done = False  # no more bundles are handed over ahead (finish_ahead())
        self.add(parts)

    def add(self, parts: list[Shard]) -> None:
        """Link or index more bundles (one whose pages were not all known when the index began)."""
        cache = self.outputs.cache
        try:
            for sh in parts:
                key = sh.key(self.context)
                entry = cache.get(_STAGE, key) if cache is not None else None
                words = cache.get(_WORDS_STAGE, key) if cache is not None and self._split(sh) else []
                # The words bundle made from foreseen words is linked here and now: should they prove
                # wrong, it is removed, and the linker (evidence.linker) links later.
                later = not (sh.folder == WORDS_BUNDLE and self.foreseen)
                if (_valid_entry(entry) and isinstance(words, list) and all(isinstance(w, str) for w in words)
                        and _link_bundle(self.outputs, self.out, entry, later)):
                    self.files += [rel for rel, _k in entry]
                    if self._split(sh):
                        self.words[sh.folder] = words
                        self.outputs.notes[_NOTE + sh.folder] = key
                        if cache is not None:
                            cache.touch(_PAGE_WORDS_STAGE, key)  # for the build that remakes it
                else:
                    _remove(self.out / sh.folder)  # what was linked of it, if anything: Pagefind must write new files only
                    if sh.known:
                        if self.lookup is None:
                            raise RenderError(f"the search bundle {sh.folder} has documents known by key, and nothing to look them up")
                        sh.resolve(self.lookup)
                    self.todo.append((sh, key))
            if not self._held:
                self.start()
            self._add_words()
        except BaseException:
            self.close()
            raise

    def _foresee(self, sh: Shard) -> None:
        """Start working out the words of ``sh``, a bundle to be remade, from the words of its pages
        that the build which last made it kept (``search-page-words``), and a Pagefind run over
        its new pages only, if they are few (FORESEE_PAGES): the words bundle can then start
        beside ``sh`` instead of after it (see the module's text)."""
        cache = self.outputs.cache
        last = self.outputs.previous_notes.get(_NOTE + sh.folder)
        known = cache.get(_PAGE_WORDS_STAGE, last) if cache is not None and isinstance(last, str) else None
        if not isinstance(known, dict):
            return
        pages = bundle_pages(sh.docs, sh.copies)
        keys = {rel: page_key(rel, html) for rel, html in pages}
        self._foreseen_pages[sh.folder] = (pages, keys)  # _index hands them to Pagefind and keeps the words under them
        new = {rel: html for rel, html in pages if keys[rel] not in known}
        if len(new) <= FORESEE_PAGES:
            self._foreseeing[sh.folder] = self._helper.submit(self._foretell, [known[k] for k in keys.values() if k in known], new)

    def _foretell(self, old: list[tuple[str, ...]], new: dict[str, str]) -> list[str]:
        """The words of a bundle: those of its pages known already (``old``), and those Pagefind
        reads in its ``new`` pages (path -> HTML), without making a bundle of them."""
        words: set[str] = set().union(*old)
        if new:
            described: dict = {}
            run_pagefind(None, [], new, self.timeout, admit=self._admit, described=described)
            words.update(described["words"])
        return sorted(words)

    def _foreseen(self) -> None:
        """Take the words foreseen by now for the bundles Pagefind has not made yet."""
        for folder, future in list(self._foreseeing.items()):
            if not future.done():
                continue
            del self._foreseeing[folder]
            try:
                words = future.result()
            except (RenderError, WorkerError, OSError) as exc:  # only time is lost: the words come from the bundle, once made
                log.debug("the words of the search bundle %s were not worked out ahead: %s", folder, exc)
                continue
            if folder not in self.words:
                self.words[folder] = self.foreseen[folder] = words

    def _add_words(self) -> None:
        """Add the words bundle once the words of every bundle are known (a rebuild: as soon as an
        edit's bundle is made and the last page indexed as it is, while the last pages render)."""
        if self.bundles > 1 and not self._words_added and len(self.words) == self.bundles:
            self._words_added = True
            self.add([Shard(folder=WORDS_BUNDLE, copies=words_pages(self.words))])

    def poll(self) -> None:
        """Record the bundles Pagefind has finished, without waiting (a RenderError if one
        failed), and start the words bundle if it can be."""
        try:
            self._record(block=False)
            self._foreseen()
            self._add_words()
        except BaseException:
            self.close()
            raise

    def ahead(self) -> None:
        """While the bundles are held (see :meth:`start`), hand them to Pagefind one at a time, at
        a low priority (AHEAD_NICE): each one made hands over the next, until :meth:`start` or
        :meth:`finish_ahead`. A cold build holds its bundles while its render workers run (each
        Pagefind process beside them raised the peak of memory), but for about 10 s before they
        start, at 10,000 cases, the build's own process worked alone and the machine's other core
        was idle (ad hoc, bench/README); Pagefind now takes that core. The bundles are made as
        they would be (the same pages, the same files), only sooner."""
        with self._lock:
            if not self._held or self._stopped or self._ahead_done or len(self._futures) >= len(self.todo):
                return
            if any(not f.done() for f in self._futures):
                return
            sh, _key = self.todo[len(self._futures)]
            self._low.add(sh.folder)
            future = self._pool.submit(self._index, sh)
            self._futures.append(future)
        future.add_done_callback(self._after_ahead)

    def _after_ahead(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is None:  # a failure is raised by the next poll
            self.ahead()

    def finish_ahead(self) -> None:
        """Hand no more bundles over ahead, and wait for the one being made, if any, and record it:
        the render workers are about to fork, and Pagefind beside them would add its memory to theirs."""
        with self._lock:
            self._ahead_done = True
            pending = [f for f in self._futures if not f.done()]
        try:
            wait(pending)
            self._record(block=False)
        except BaseException:
            self.close()
            raise

    def _split(self, sh: Shard) -> bool:
        """Whether the words bundle needs ``sh``'s words."""
        return self.bundles > 1 and sh.folder != WORDS_BUNDLE

    def start(self) -> None:
        """Hand the bundles that wait to Pagefind (two processes at a time), and, when they are
        few (FORESEE_BUNDLES), start working out their words ahead (:meth:`_foresee`)."""
        with self._lock:  # not beside a bundle made ahead handing over the next (ahead())
            self._held = False
            handed = self.todo[len(self._futures):]
            if sum(1 for sh, _key in self.todo if self._split(sh)) <= FORESEE_BUNDLES:
                for sh, _key in handed:
                    if self._split(sh) and sh.folder not in self.words and sh.folder not in self._foreseeing:
                        self._foresee(sh)
            self._futures += [self._pool.submit(self._index, sh) for sh, _key in handed]

    def _index(self, sh: Shard) -> tuple[list[Path], dict]:
        if self._stopped:
            raise RenderError("the search index was stopped")
        described: dict = {}
        keep = self._split(sh) and self.outputs.cache is not None  # each page's words, for _foresee in a later build
        pages, keys = self._foreseen_pages.pop(sh.folder, None) or (bundle_pages(sh.docs, sh.copies), None)  # made once, handed over as they are
        files = run_pagefind(self.out / sh.folder, [], dict(pages), self.timeout, admit=self._admit,
                             described=described if self.bundles > 1 else None, words=self._split(sh), per_page=keep,
                             nice=AHEAD_NICE if sh.folder in self._low else 0)
        if keep:  # by the key of what Pagefind read of the page (_foresee's, if it worked them out)
            found = described.pop("page_words")
            keys = keys or {rel: page_key(rel, html) for rel, html in pages}
            described["by_page"] = {keys[rel]: tuple(words) for rel, words in found.items() if rel in keys}
        return files, described

    def _admit(self, proc: subprocess.Popen) -> bool:
        """Note a Pagefind process so that close() can stop it; False once stopped."""
        with self._lock:
            if not self._stopped:
                self._procs.append(proc)
            return not self._stopped

    def result(self) -> list[str]:
        """Every file of the index (relative to the site, with /), once Pagefind has written its
        bundles (a RenderError if it failed)."""
        try:
            self.start()
            # The words bundle starts as soon as it can: once every bundle's words are known or
            # foreseen. What is under way is looked at before recording, so that a bundle finished
            # while the others were recorded is recorded by the next turn, not left out.
            while True:
                pending = [f for f in [*self._futures, *self._foreseeing.values()] if not f.done()]
                handed = len(self._futures)
                self._record(block=False)
                self._foreseen()
                self._add_words()  # if it was not yet: a cold build's, whose bundles waited for start()
                if not pending and len(self._futures) == handed:
                    break
                still = [f for f in [*self._futures, *self._foreseeing.values()] if not f.done()]
                if still:
                    wait(still, return_when=FIRST_COMPLETED)
            if self._wrong:  # never seen: made again from the words Pagefind gave
                self._words_again()
                self._record(block=True)
            if self.bundles > 1 and not self._words_added:
                raise RenderError(f"the search index has {self.bundles} bundles, and the words of only {len(self.words)}")
        finally:
            self.words = {}
            self.close()
        return self.files

    def _record(self, block: bool) -> None:
        """Record the files (and words) of the bundles Pagefind has made; with ``block``, wait for
        every bundle handed to it (the first failure stops the rest at once)."""
        if block:
            wait(self._futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in self._futures if f.done() and not f.cancelled() and f.exception() is not None), None)
        if failed is not None:
            failed.result()  # raised; leaving stops the others
        cache = self.outputs.cache
        for i, ((sh, key), future) in enumerate(zip(self.todo, self._futures)):
            if i in self._recorded or not future.done():
                continue
            self._recorded.add(i)
            written, described = future.result()
            if sh.folder == WORDS_BUNDLE:
                path = self.out / sh.folder / WORDS_MAP
                data = words_map(described.get("pages", {}), set(self.words))
                try:
                    path.write_bytes(data)
                except OSError as exc:
                    raise RenderError(f"cannot write {path}: {exc.strerror or exc}") from None
                written = sorted([*written, path])
            elif self._split(sh):
                self._foreseeing.pop(sh.folder, None)  # if still under way, no longer needed
                guess = self.foreseen.pop(sh.folder, None)
                if guess is not None and self._words_added and guess != described["words"]:
                    self._wrong = True  # the words bundle was made from them
                self.words[sh.folder] = described["words"]
                self.outputs.notes[_NOTE + sh.folder] = key
                if cache is not None:
                    cache.put(_WORDS_STAGE, key, described["words"])
                    if len(described["by_page"]) == len(sh.docs) + len(sh.copies):  # every page's words (a page missing
                        cache.put(_PAGE_WORDS_STAGE, key, described["by_page"])  # would be taken for new each time)
                    else:
                        log.debug("the search bundle %s: Pagefind's addresses of %d of its pages were not their paths; their words are not kept",
                                  sh.folder, len(sh.docs) + len(sh.copies) - len(described["by_page"]))
            made = [(p.relative_to(self.out).as_posix(), digest(key, content_key(p.read_bytes()))) for p in written]
            for rel, file_key in made:
                self.outputs.keys[rel] = file_key
            if cache is not None:
                cache.put(_STAGE, key, made)
            self.files += [rel for rel, _k in made]

    def _words_again(self) -> None:
        """Remove the words bundle made from foreseen words that proved wrong, and make it again."""
        self._wrong = False
        self.files = [rel for rel in self.files if not rel.startswith(WORDS_BUNDLE + "/")]
        _remove(self.out / WORDS_BUNDLE)
        self._words_added = False
        self._add_words()

    def close(self) -> None:
        """Stop the Pagefind processes still running, and wait for their threads. The lookup is
        dropped: it is the render's (a bound method of SitePages, which holds this index), and
        the cycle would keep the whole kb alive until the collector ran."""
        self.lookup = None
        with self._lock:
            self._stopped = True
            for proc in self._procs:
                if proc.poll() is None:
                    proc.kill()
        self._helper.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _valid_entry(entry: object) -> bool:
    return isinstance(entry, list) and bool(entry) and all(isinstance(x, tuple) and len(x) == 2 for x in entry)


def _remove(folder: Path) -> None:
    try:
        if folder.exists():
            shutil.rmtree(folder)
    except OSError as exc:
        raise RenderError(f"cannot clear {folder} for the search index: {exc.strerror or exc}") from None


def _link_bundle(outputs: Outputs, out: Path, entry: list[tuple[str, str]], later: bool = True) -> bool:
    """Link every file of a bundle from the previous build, or none (False: a file is not the one
    recorded). A bundle is 2,000 files in a few folders: each folder is made once (a mkdir a
    file took 0.1 s of a 10,000-case rebuild)."""
    for folder in sorted({rel.rpartition("/")[0] for rel, _key in entry}):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    return outputs.link_all([(os.path.join(out, rel), rel, key) for rel, key in entry], later=later)


# Pagefind is started from threads while the build's process forks render workers. A worker
# forked while Popen is starting a process holds a copy of the pipes Popen is waiting on (the one
# that reports a failed exec, and the write ends of stdout and stderr), so Popen, and then the
# reading of Pagefind's output, would wait until that worker ended. A fork waits for a start in
# progress, and a start waits for a fork (os.register_at_fork).
_STARTING = threading.RLock()
_FORKING = threading.local()  # whether this thread's fork holds _STARTING


def _before_fork() -> None:
    _STARTING.acquire()  # an interrupt here is reported and the fork goes on, without the lock
    _FORKING.held = True


def _after_fork() -> None:
    if getattr(_FORKING, "held", False):
        _FORKING.held = False
        _STARTING.release()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)


def run_pagefind(bundle: Path | None, docs: list[tuple[str, str, str, str]], copies: dict[str, str], timeout: float = 600,
                 admit: Callable[[subprocess.Popen], bool] | None = None, described: dict | None = None, words: bool = True,
                 quiet: float | None = None, per_page: bool = False, nice: int = 0) -> list[Path]:
    """Index ``docs`` (one small page each, see :func:`_record_page`: path, title, kind, words)
    and ``copies`` (path -> the page's HTML, indexed as it is) into ``bundle``, a new folder;
    return the files written (``bundle`` None: none, the pages are only described). With
    ``per_page`` (and ``words``), ``described`` also has ``page_words``: each page's own words,
    by its path. ``admit`` is told of the process once it runs (see
    SearchIndex.close); if it says no, the process is stopped. ``described``, a dict, is given
    what Pagefind indexed (:func:`evidence.pagefind_job.describe`: its ``words`` and its
    ``pages`` by Pagefind's id; without ``words``, its ``pages`` only: the words bundle's own
    words, every word of the site, are not needed). A service silent for ``quiet`` seconds
    (default: pagefind_job.QUIET) while a page waits is stopped, with the likely reason.

    The pages go, in path order, through a pipe to a process of their own
    (:mod:`evidence.pagefind_job`), which hands them to Pagefind's service and writes the files it
    returns. Until session 14 they were written as a staging folder that ``python -m pagefind
    --site`` read: writing a bundle's 1,200 small files took 0.1-1.5 s on this project's machines,
    and in a thread of the build, which waited for the busy render at each file, up to 1.5 s."""
    exe = _pagefind_binary()
    pages = bundle_pages(docs, copies)
    describe = (("page-words" if per_page else True) if words else "pages") if described is not None else False
    job = {"binary": str(exe), "bundle": None if bundle is None else str(bundle), "pages": pages, "describe": describe,
           **({"quiet": quiet} if quiet else {}), **({"nice": nice} if nice else {})}
    name = "of the changed pages" if bundle is None else bundle.name
    line = json.dumps(job).encode("utf-8") + b"\n"  # one line (see pagefind_job)
    with _STARTING:
        proc = subprocess.Popen([sys.executable, "-I", str(_JOB)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with proc:
        if admit is not None and not admit(proc):
            proc.kill()
        late: list[bool] = []  # the time limit passed while the job was being sent
        t = time.monotonic()
        _send(proc, line, timeout, late)
        try:
            if late:
                raise subprocess.TimeoutExpired(proc.args, timeout)
            stdout, stderr = proc.communicate(timeout=max(0.0, timeout - (time.monotonic() - t)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise RenderError(f"Pagefind did not finish indexing the search bundle {name} within {timeout:.0f} s") from None
    if proc.returncode != 0:
        said = stderr.decode("utf-8", "replace").strip()
        if any(sign in said for sign in _SHORT_OF):  # it could not start its threads: the machine's shortage, not the site's fault
            raise WorkerError(f"Pagefind could not start its threads to index the search bundle {name} (the machine is out of "
                              "processes or memory; a limit such as ulimit -u): nothing was changed; close other programs or raise "
                              "the limit, and run the command again") from None
        status = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        raise RenderError(f"Pagefind failed to index the search bundle {name}: {said[-2000:] or status}")
    if described is not None:
        try:
            got = json.loads(stdout)
            if not ((isinstance(got.get("words"), list) or not words) and isinstance(got.get("pages"), dict)):
                raise ValueError("no words and pages")
            if per_page and words:  # by path (Pagefind's address of a page is "/" and its path)
                paths = {f"/{rel}": rel for rel, _html in pages}
                got["page_words"] = {paths[url]: found for url, found in got.pop("page_words").items() if url in paths}
        except (ValueError, AttributeError, KeyError, TypeError) as exc:
            raise RenderError(f"the search bundle {name} was made, but what Pagefind indexed in it could not be read ({exc})") from None
        described.update(got)
    # Listed with a system call per folder (walk_names), not a stat per file: from a thread of the build while its own
    # thread works, each call waited up to 5 ms for the interpreter's lock on its way back, and Path.rglob with is_file
    # listed a bundle's 1,400 files in 1.8 s instead of 0.01 s (a 10,000-case cold build).
    return [] if bundle is None else sorted(Path(path) for path, _rel in walk_names(bundle))


def _send(proc: subprocess.Popen, line: bytes, timeout: float, late: list[bool]) -> None:
    """Write the job's line to ``proc`` in one system call, which waits for the job to read it
    without holding the interpreter's lock; ``late`` gets True if the job, killed at ``timeout``,
    had not read it by then. Popen.communicate wrote it 4 KB at a time, taking the lock back
    between writes: from a thread of the build while the build's own thread worked (a bundle
    made while the pages render), each write waited for its turn, up to 5 ms, and a job of 2,000
    pages (several MB) took seconds to send; Pagefind waited for it with a core idle (a bundle
    of a 10,000-case cold build, made ahead, took 6.2 s instead of 1.4 s). The job reads the
    line before it writes anything (see evidence.pagefind_job), so writing it first cannot
    wait for the job to be read from."""
    def kill() -> None:
        late.append(True)
        proc.kill()

    limit = threading.Timer(timeout, kill)
    limit.daemon = True
    limit.start()
    try:
        proc.stdin.write(line)  # type: ignore[union-attr]  (larger than its buffer: written straight through)
        proc.stdin.flush()  # type: ignore[union-attr]
    except BrokenPipeError:  # the job ended early (killed, or refused the job): its status and stderr say why
        pass
    finally:
        limit.cancel()


# What Pagefind (Rust's thread pools) or its Python job print when they cannot start a thread.
_SHORT_OF = ("ThreadPoolBuildError", "can't start new thread")
_JOB = Path(__file__).with_name("pagefind_job.py")


def _pagefind_binary() -> Path:
    try:
        from pagefind.service import get_executable
    except ImportError:
        get_executable = None
    try:
        exe = get_executable() if get_executable is not None else None
    except OSError:  # pagefind_bin_extended installed without its binary
        exe = None
    if exe is None:
        raise RenderError("Pagefind is not installed, so the search index cannot be made (install it with: pip install 'pagefind[extended]')")
    return Path(exe)


def _record_page(title: str, kind: str, text: str) -> str:
    """The small page that Pagefind indexes for a site page: its title as the heading (which
    Pagefind weighs above the text, so a page named by the words ranks first), its kind and its
    words."""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
            f'<body data-pagefind-body><h1>{escape(title)}</h1><p data-pagefind-meta="kind">{escape(kind)}</p>'
            f"<p>{escape(text)}</p></body></html>\n")


def titles_script(entries: list[tuple[str, str, str]]) -> str:
    """A script that sets ``window.EVIDENCE_TITLES`` to [[title, kind, url], ...]."""
    data = json.dumps([list(e) for e in entries], ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.EVIDENCE_TITLES = {data};\n"
