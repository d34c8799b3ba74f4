"""Stage 5: render the site from the Jinja2 templates in ``site_templates/``.

Every page is written with relative links only, so ``_site/`` works under any sub-path of a static
host, from ``file://`` and offline; nothing is fetched from elsewhere (no CDN, fonts or outside
scripts). Templates are autoescaped with ``StrictUndefined``, and every link goes through
:func:`safe_href`, which lets only http(s) and relative addresses through. The writer refuses two
pages that would write one file (compared without case, as a case-insensitive file system would).
Full-text search is Pagefind's index, built over the written pages (:mod:`evidence.site_search`).

The modules: :mod:`~evidence.site_model` (what each page shows), :mod:`~evidence.site_timeline`,
:mod:`~evidence.site_graph` (the network view), :mod:`~evidence.site_related`,
:mod:`~evidence.site_docs`, :mod:`~evidence.site_jsonld`, :mod:`~evidence.site_format` and
:mod:`~evidence.site_pages` (every page, in order).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined, pass_context, select_autoescape

from .cache import TEMPLATES, code_digest
from .errors import RenderError
from .folders import write_whole
from .outputs import Outputs, walk_names
from .perf import freeze_heap, gc_paused, settle_heap
from .site_format import NR, age_text, dose_text, human_duration, measurement_text, num

__all__ = ["render_site", "safe_href", "environment", "SiteWriter"]

log = logging.getLogger("evidence")


def safe_href(url: str | None) -> str | None:
    """The URL if it is http(s) or a relative path; None for javascript:, data: and the like."""
    if not url:
        return None
    url = str(url)
    # A backslash is read as a slash by browsers ("/\\host" goes to another host): never in a link.
    if any(ch in url for ch in "\x00\r\n\t\\") or url != url.strip():
        return None
    if ":" not in url and not url.startswith("//"):
        return url  # no scheme: a relative address (the common case, checked without parsing)
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:  # "http://[" and other addresses that do not parse: not a link
        return None
    if scheme in ("http", "https") or (scheme == "" and not url.strip().lower().startswith(("javascript", "data", "vbscript", "//", "\\"))):
        return url
    return None


@pass_context
def _rel(ctx, path: str) -> str:
    """A root-relative site path as seen from the page being rendered."""
    return str(ctx.get("root", "")) + path


def environment(templates: Path, compiled_in: Path | None = None) -> Environment:
    """The Jinja2 environment of the site's templates. With ``compiled_in`` (a folder of the
    build cache), the templates compiled to Python are kept there (Jinja2's own bytecode cache,
    checked against each template's source), so a build does not parse and compile them again:
    that took about 0.3 s of every build, whatever the size of the kb. The folder must be one
    version of the code's own (see :func:`render_site`): the options set here (autoescaping, the
    filters) are compiled into the code, and Jinja2 checks only the template's source."""
    env = Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html", "xml", "svg"], default=True, default_for_string=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        bytecode_cache=_bytecode_cache(compiled_in) if compiled_in is not None else None,
    )
    env.filters.update(safe_href=safe_href, rel=_rel)
    env.globals.update(NR=NR, age=age_text, dose=dose_text, dur=human_duration, meas=measurement_text, num=num)
    return env


class _CompiledTemplates(FileSystemBytecodeCache):
    """Jinja2's cache of compiled templates, kept as the build cache keeps its entries: one that
    cannot be read is missing (the template is compiled again), one that cannot be written only
    costs speed.

    Each file is sealed with the SHA-256 of what follows, checked before Jinja2 reads it. Jinja2
    checks only its header and the template source's checksum, then hands the rest to
    ``marshal``: a file damaged in its middle became code with invalid instructions, and a render
    worker that ran it crashed (a segmentation fault; the build then waited for the task it held)."""

    _SEAL = 32  # bytes of the SHA-256 in front of each file

    def load_bytecode(self, bucket: Any) -> None:
        try:
            with open(self._get_cache_filename(bucket), "rb") as fh:
                data = fh.read()
        except OSError:
            return
        payload = data[self._SEAL:]
        if len(data) < self._SEAL or hashlib.sha256(payload).digest() != data[:self._SEAL]:
            log.debug("compiled template %s is damaged; compiling it again", bucket.key)
            bucket.reset()
            return
        try:
            bucket.bytecode_from_string(payload)
        except Exception as exc:  # sealed, yet not Jinja2's (an older format): compiled again
            log.debug("compiled template %s not read (%s: %s); compiling it again", bucket.key, type(exc).__name__, exc)
            bucket.reset()

    def dump_bytecode(self, bucket: Any) -> None:
        payload = bucket.bytecode_to_string()
        try:
            write_whole(self._get_cache_filename(bucket), hashlib.sha256(payload).digest() + payload)
        except OSError:
            pass


def _bytecode_cache(folder: Path) -> FileSystemBytecodeCache | None:
    """Jinja2's cache of compiled templates in ``folder``; None when the folder cannot be made."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return _CompiledTemplates(str(folder))


class SiteWriter:
    """Writes the site's files and fails when two of them would land on one path."""

    def __init__(self, out: Path, outputs: Outputs | None = None, existing: list[str] | None = None):
        """``existing``: the files already in ``out`` (the exports), by their names in it; without
        it, ``out`` is walked. Some of them may not be there yet: the linker makes them later."""
        self.out = out
        self._root = os.fspath(out)
        self.outputs = outputs or Outputs(out=out)
        self.owner: dict[str, tuple[str, str]] = {}
        self.files: list[str] = []  # the site's files, relative to ``out`` (with /): a Path each cost 7 µs, 40,000 of them
        self.folders: set[str] = set()  # made by claim()
        for rel in existing if existing is not None else (rel for _path, rel in walk_names(out)):  # the exports
            self.owner[rel.casefold()] = (rel, "the exports")

    def claim(self, rel: str, origin: str) -> str:
        key = rel.casefold()
        if key in self.owner:
            first, by = self.owner[key]
            raise RenderError(f"two pages would write one file: '{rel}' for {origin}, and '{first}' for {by}; "
                              "rename one of the kb keys so that their file names differ (file names ignore case)")
        self.owner[key] = (rel, origin)
        folder = rel.rpartition("/")[0]
        if folder not in self.folders:
            (self.out / folder).mkdir(parents=True, exist_ok=True)
            self.folders.add(folder)
        return os.path.join(self._root, rel)

    def unclaim(self, rel: str) -> None:
        """Give back a file claimed and not written (a page that could not be linked, then made)."""
        del self.owner[rel.casefold()]

    def text(self, rel: str, text: str, origin: str) -> str:
        return self.data(rel, text.encode("utf-8"), origin)

    def data(self, rel: str, data: bytes, origin: str) -> str:
        path = self.claim(rel, origin)
        self.emit(rel, data)
        self.files.append(rel)
        return path

    def emit(self, rel: str, data: bytes, key: str | None = None, try_link: bool = True) -> None:
        """Write a claimed file, or link the previous build's when it has the same bytes (or the
        same ``key``: a hash of what the file was made from). ``try_link=False``: the caller
        tried to link it by ``key`` before making it (Outputs.link_or_write)."""
        self.outputs.link_or_write(self.out / rel, rel, data, key, try_link)


def render_site(kb, compiled, templates: Path, out: Path, downloads: list[dict], search: bool = True,
                timings: dict[str, float] | None = None, outputs: Outputs | None = None, existing: list[str] | None = None,
                freeze: bool = False) -> list[str]:
    """Write every page, the assets and the search index into ``out``; return the names of the
    files written, relative to ``out`` (with ``/``).

    ``outputs`` is the previous build's record (:mod:`evidence.outputs`): a case or source page
    whose inputs did not change is linked from the previous build without being rendered, and any
    other file with the same bytes as before is linked instead of written. The exports may still
    be being written (export.Finishing), with their final sizes already. ``existing``: the files
    already written into ``out`` by name (see SiteWriter), which no page may take: some are
    still to be linked (evidence.linker), so walking ``out`` would not find them.

    ``freeze`` (the build's, within perf.frozen_heap): the site model is moved out of the
    collector's sight once it is made (perf.freeze_heap). It lives through the render, and the
    collection after it (perf.settle_heap) walked it: at 10,000 cases 1.6 million objects, 0.6 s
    of a rebuild. It is dropped at the end (SiteModel.release), so reference counting frees it.
    With it, a 10,000-case rebuild's render took 3.3-3.6 s instead of 4.2-4.4 s (ad hoc, five
    rebuilds after a title edit each)."""
    from .library import load_library
    from .library_run import LibraryAnswers
    from .site_pages import SitePages

    if not (templates / "base.html").is_file():
        raise RenderError(f"no site templates in {templates} (expected base.html and the page templates there)")
    timings = timings if timings is not None else {}
    writer = SiteWriter(out, outputs, existing)
    # The query library is answered by a worker process while the pages render (see library_run).
    # Pages make millions of short-lived strings and no cycles worth collecting (see perf.py).
    # The search index is made by Pagefind processes started once the search page is written,
    # while the other pages render (SitePages.search); they are stopped if the render fails.
    pages: SitePages | None = None
    cache = writer.outputs.cache
    compiled_in = None
    if cache is not None and cache.folder is not None:
        # One folder per version of the code and libraries (code_digest), kept by prune while
        # builds use it: what Jinja2 compiles depends on them as well as on the template.
        version = code_digest()[:16]
        cache.touch(TEMPLATES, version)
        compiled_in = cache.folder / TEMPLATES / version
    env = environment(templates, compiled_in)
    try:
        with LibraryAnswers(compiled, load_library(kb.config.kb_dir / "queries")) as library, gc_paused():
            if freeze:
                settle_heap()  # the earlier stages' garbage freed first (0.04 s at 10,000 cases): frozen, it would outlive the build
            pages = SitePages(kb, compiled, env, templates, writer, downloads, timings, library, search=search)
            if freeze:
                freeze_heap()
                pages.frozen = True
            pages.write_all()
        if pages.index is not None:
            t = time.perf_counter()
            writer.files += pages.index.result()
            timings["search index"] = timings.get("search index", 0.0) + time.perf_counter() - t
    finally:
        if pages is not None and pages.index is not None:
            pages.index.close()  # waited for already, or stopped: nothing writes into the site after this
        # A Jinja2 environment and its templates refer to each other: through the globals, that
        # cycle held the site model, and so the whole kb, until the collector ran.
        env.globals.clear()
        if env.cache is not None:  # the templates refer to it too: frozen with the site model, that cycle would outlive the build
            env.cache.clear()
        if pages is not None:
            # So does each page's context, which holds a copy of the globals (Context <-> Macro).
            pages.m.release()
    return writer.files
