#!/usr/bin/env python3
"""Check that every DOI and PubMed link of the kb's source records still resolves.

A DOI resolves when the DOI resolver answers with a redirect (it does not follow it: publishers
often refuse robots, which says nothing about the DOI); a PubMed id when its PubMed page answers
200. Transient failures (network errors, 429, 5xx) are retried; what still fails is reported.

    python .github/scripts/check_links.py [--root DIR] [--format text|github] [--report FILE]

Exit codes: 0 every link resolves; 1 some do not (each is printed); 2 a wrong command line.
The resolvers can be pointed elsewhere (--doi-resolver, --pubmed), which is how the tests run
it against a local HTTP server only.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from evidence.config import load_config  # noqa: E402
from evidence.load import discover  # noqa: E402
from evidence.yamlio import load_yaml  # noqa: E402

USER_AGENT = "evidence-link-check/0.1 (weekly check of a curated case-report knowledge base)"


@dataclass
class Link:
    path: str  # the source record, relative to the project
    kind: str  # "doi" or "pmid"
    value: str
    url: str


@dataclass
class Result:
    link: Link
    ok: bool
    detail: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 - stop at the first answer
        return None


def links(root: Path, doi_resolver: str, pubmed: str) -> list[Link]:
    """Every DOI and PMID of the kb's source records, with the address that should resolve."""
    config = load_config(root)
    out: list[Link] = []
    for kind, path in discover(config.kb_dir):
        if kind != "source":
            continue
        shown = path.resolve().relative_to(config.root.resolve()).as_posix()
        doc, _ = load_yaml(path, shown)
        data = doc.data if doc is not None and isinstance(doc.data, dict) else {}
        if isinstance(data.get("doi"), str) and data["doi"]:
            out.append(Link(shown, "doi", data["doi"], doi_resolver + quote(data["doi"], safe="/")))
        if data.get("pmid") not in (None, ""):
            pmid = str(data["pmid"])
            out.append(Link(shown, "pmid", pmid, f"{pubmed}{quote(pmid, safe='')}/"))
    return out


def check(link: Link, timeout: float, attempts: int, pause: float) -> Result:
    opener = urllib.request.build_opener(_NoRedirect) if link.kind == "doi" else urllib.request.build_opener()
    detail = ""
    for attempt in range(attempts):
        if attempt:
            time.sleep(pause * attempt)
        request = urllib.request.Request(link.url, headers={"User-Agent": USER_AGENT})
        try:
            with opener.open(request, timeout=timeout) as response:
                code = response.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            detail = f"could not be reached ({getattr(exc, 'reason', exc)})"
            continue
        if link.kind == "doi" and code in (301, 302, 303, 307, 308, 200):
            return Result(link, True, f"HTTP {code}")
        if link.kind == "pmid" and code == 200:
            return Result(link, True, f"HTTP {code}")
        detail = f"HTTP {code} from {link.url}"
        if code in (404, 410) or (400 <= code < 500 and code != 429):
            break  # a definite answer: retrying will not change it
    return Result(link, False, detail)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Check that the DOI and PubMed links of kb/sources/ still resolve.")
    ap.add_argument("--root", type=Path, default=ROOT, help="the project folder (default: this repository)")
    ap.add_argument("--doi-resolver", default="https://doi.org/", help="the DOI resolver, ending in / (default: https://doi.org/)")
    ap.add_argument("--pubmed", default="https://pubmed.ncbi.nlm.nih.gov/", help="the PubMed address, ending in /")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one answer (default 30)")
    ap.add_argument("--attempts", type=int, default=3, help="tries per link for transient failures (default 3)")
    ap.add_argument("--pause", type=float, default=2.0, help="seconds between links and before a retry, to be polite (default 2)")
    ap.add_argument("--format", choices=["text", "github"], default="text", help="text, or GitHub Actions annotations")
    ap.add_argument("--report", type=Path, help="also write a Markdown report of the broken links to this file")
    args = ap.parse_args(argv)

    found = links(args.root, args.doi_resolver, args.pubmed)
    results = []
    for i, link in enumerate(found):
        if i and args.pause:
            time.sleep(args.pause)
        results.append(check(link, args.timeout, max(1, args.attempts), args.pause))
    broken = [r for r in results if not r.ok]
    for r in results:
        what = f"{r.link.kind} {r.link.value}"
        if args.format == "github" and not r.ok:
            print(f"::error file={r.link.path},title=broken link::{what} does not resolve: {r.detail}")
        else:
            print(f"{r.link.path}: {what}: {'resolves' if r.ok else 'DOES NOT RESOLVE: ' + r.detail}")
    print(f"{len(results) - len(broken)} of {len(results)} links resolve", file=sys.stderr)
    if args.report is not None:
        lines = [f"- `{r.link.path}`: {r.link.kind} `{r.link.value}` does not resolve ({r.detail})" for r in broken]
        body = ("The weekly link check found links that do not resolve. Check each identifier in its registry and correct the "
                "source record, or remove the identifier and say why in `identifier_notes`.\n\n" + "\n".join(lines) + "\n") if broken else ""
        args.report.write_text(body, encoding="utf-8")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
