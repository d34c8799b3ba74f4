"""Stage 5: render the site. Until the site issue lands this is one plain index page beside the
exports. Templates are Jinja2 with autoescaping on, and every link is checked for its scheme."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .namespaces import curie_to_iri
from .validate import Kb

__all__ = ["render_index", "safe_href", "environment"]


def safe_href(url: str | None) -> str | None:
    """The URL if it is http(s) or a relative path; None for javascript:, data: and the like."""
    if not url:
        return None
    scheme = urlparse(url).scheme.lower()
    if scheme in ("http", "https") or (scheme == "" and not url.strip().lower().startswith(("javascript", "data", "vbscript"))):
        return url
    return None


def environment(templates: Path) -> Environment:
    return Environment(
        loader=FileSystemLoader(str(templates)),
        autoescape=select_autoescape(["html", "xml"], default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _citation(s) -> str:
    authors = ", ".join(s.authors) + ("" if s.authors_complete else ", et al")
    parts = [f"{authors}. {s.title}."]
    if s.journal:
        vol = f";{s.volume}" if s.volume else ""
        iss = f"({s.issue})" if s.issue else ""
        pages = f":{s.pages}" if s.pages else ""
        parts.append(f"{s.journal}. {s.year}{vol}{iss}{pages}.")
    else:
        parts.append(f"{s.year}.")
    return " ".join(parts)


def render_index(kb: Kb, templates: Path, out: Path, downloads: list[dict]) -> Path:
    env = environment(templates)
    patients = sum(len(c.patients) for c in kb.cases.values())
    drugs = sorted({t.drug for c in kb.cases.values() for p in c.patients for t in p.treatments})
    genes = sorted({g.gene for c in kb.cases.values() for p in c.patients if isinstance(p.genotype, list) for g in p.genotype})
    cases = []
    for cid in sorted(kb.cases):
        c = kb.cases[cid]
        srcs = []
        for ref in c.sources:
            s = kb.sources[ref.source]
            srcs.append({
                "citation": _citation(s),
                "role": ref.role,
                "doi": safe_href(curie_to_iri(f"doi:{s.doi}")) if s.doi else None,
                "pubmed": safe_href(f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/") if s.pmid else None,
            })
        cases.append({
            "id": cid,
            "title": c.title,
            "design": c.study_design,
            "level": f"{c.evidence_level.scale.upper()} {c.evidence_level.level}",
            "patients": (c.cohort.n if c.cohort else len(c.patients)),
            "drugs": sorted({kb.vocab["drugs"][t.drug].label for p in c.patients for t in p.treatments}),
            "sources": srcs,
        })
    html = env.get_template("index.html").render(
        summary="Janus kinase inhibitors in chilblain lupus and TREX1-related type I interferonopathy",
        counts=[("publications", len(kb.sources)), ("case reports", len(kb.cases)), ("patients recorded", patients),
                ("drugs", len(drugs)), ("genes", len(genes))],
        cases=cases,
        downloads=downloads,
        n_files=len(kb.files),
        base_iri=kb.config.base_iri,
    )
    path = out / "index.html"
    path.write_text(html, encoding="utf-8")
    return path
