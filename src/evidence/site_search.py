"""Full-text search without a server: Pagefind (from PyPI) builds the index at build time.

Pagefind is run as ``python -m pagefind --site DIR`` (the package installs no ``pagefind``
command, see PERFORMANCE.md). ``DIR`` is a staging folder that mirrors the site's paths with one
small page per site page: its title, its kind and the words worth finding (names, identifiers,
descriptions, quotes), never the tables and markup around them. Pagefind reads HTML at about
8 MB/s, so indexing the real pages (30 KB a case page) would take minutes at 10,000 cases; the
staging pages take seconds, and since they have the same paths, results link to the real pages.
A few pages (the docs, the query library) are indexed as they are.

A browser cannot load Pagefind's index from ``file://``, so the search page falls back to
``search-titles.js``: every page's title, kind and address.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from markupsafe import escape

from .errors import RenderError

__all__ = ["run_pagefind", "write_stage", "titles_script", "PAGEFIND_LICENCE_NAME"]

PAGEFIND_LICENCE_NAME = "pagefind.txt"


def write_stage(stage: Path, docs: list[tuple[str, str, str, str]], copies: dict[str, str]) -> None:
    """One small page per (path, title, kind, text) and the pages in ``copies`` (path -> HTML)."""
    for rel, title, kind, text in docs:
        p = stage / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
            f'<body data-pagefind-body><h1>{escape(title)}</h1><p data-pagefind-meta="kind">{escape(kind)}</p>'
            f"<p>{escape(text)}</p></body></html>\n", encoding="utf-8")
    for rel, html in copies.items():
        p = stage / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(html, encoding="utf-8")


def run_pagefind(stage: Path, bundle: Path, timeout: float = 600) -> list[Path]:
    """Index the staging folder into ``bundle`` (the site's ``pagefind/``); return the files written."""
    cmd = [sys.executable, "-m", "pagefind", "--site", str(stage), "--output-path", str(bundle), "--keep-index-url", "--silent"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RenderError(f"Pagefind did not finish indexing {stage} within {timeout:.0f} s") from None
    if r.returncode != 0:
        hint = " (install it with: pip install 'pagefind[extended]')" if "No module named" in r.stderr else ""
        raise RenderError(f"Pagefind failed to index the site{hint}: {(r.stderr or r.stdout).strip()[-2000:]}")
    folder = bundle
    if not (folder / "pagefind.js").is_file():
        raise RenderError(f"Pagefind wrote no index into {folder}: {(r.stderr or r.stdout).strip()[-2000:]}")
    return sorted(p for p in folder.rglob("*") if p.is_file())


def titles_script(entries: list[tuple[str, str, str]]) -> str:
    """A script that sets ``window.EVIDENCE_TITLES`` to [[title, kind, url], ...]."""
    data = json.dumps([list(e) for e in entries], ensure_ascii=False, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return f"window.EVIDENCE_TITLES = {data};\n"
