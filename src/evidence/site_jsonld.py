"""Machine-readable descriptions embedded in the pages: schema.org (for search engines and
dataset catalogues) and a DCAT/VoID description of the dataset with its distributions.

Download addresses are relative, so they resolve against wherever the site is hosted.
"""

from __future__ import annotations

from typing import Any

from . import schema as S
from .site_format import citation_text

__all__ = ["home_jsonld", "dcat_void_jsonld", "case_jsonld"]


def _person(name: str, orcid: str | None) -> dict[str, Any]:
    p: dict[str, Any] = {"@type": "Person", "name": name}
    if orcid:
        p["@id"] = f"https://orcid.org/{orcid}"
        p["identifier"] = f"https://orcid.org/{orcid}"
    return p


def _article(s: S.Source) -> dict[str, Any]:
    same = []
    if s.doi:
        same.append(f"https://doi.org/{s.doi}")
    if s.pmid:
        same.append(f"https://pubmed.ncbi.nlm.nih.gov/{s.pmid}/")
    if s.pmcid:
        same.append(f"https://www.ncbi.nlm.nih.gov/pmc/articles/{s.pmcid}/")
    a: dict[str, Any] = {"@type": "ScholarlyArticle", "name": s.title, "author": [{"@type": "Person", "name": n} for n in s.authors],
                         "datePublished": s.date.isoformat() if s.date else str(s.year), "citation": citation_text(s)}
    if s.journal:
        a["isPartOf"] = {"@type": "Periodical", "name": s.journal}
    if s.doi:
        a["identifier"] = f"doi:{s.doi}"
    if same:
        a["sameAs"] = same
    return a


def home_jsonld(name: str, description: str, base_iri: str, downloads: list[dict[str, Any]], keywords: list[str],
                creators: list[tuple[str, str | None]], modified: str) -> dict[str, Any]:
    return {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "@id": base_iri,
        "name": name,
        "description": description,
        "identifier": base_iri,
        "keywords": keywords,
        "creator": [_person(name, orcid) for name, orcid in creators],
        "dateModified": modified,
        "isAccessibleForFree": True,
        "distribution": [{"@type": "DataDownload", "name": d["name"], "encodingFormat": d.get("compress") or d["media"], "contentUrl": d["href"]}
                         for d in downloads if d.get("media")],
    }


def dcat_void_jsonld(name: str, description: str, base_iri: str, ev_ns: str, downloads: list[dict[str, Any]], triples: int | None,
                     example: str | None, modified: str) -> dict[str, Any]:
    ds: dict[str, Any] = {
        "@id": base_iri,
        "@type": ["dcat:Dataset", "void:Dataset"],
        "dcterms:title": name,
        "dcterms:description": description,
        "dcterms:modified": {"@value": modified, "@type": "xsd:date"},
        "void:uriSpace": base_iri,
        "void:vocabulary": {"@id": ev_ns},
        "dcat:distribution": [
            {"@type": "dcat:Distribution", "dcterms:title": d["name"], "dcterms:description": d["description"],
             "dcat:downloadURL": {"@id": d["href"]}, "dcat:mediaType": d["media"],
             **({"dcat:compressFormat": d["compress"]} if d.get("compress") else {})}
            for d in downloads if d.get("media")
        ],
        "void:dataDump": [{"@id": d["href"]} for d in downloads if d.get("rdf")],
    }
    if triples is not None:
        ds["void:triples"] = triples
    if example:
        ds["void:exampleResource"] = {"@id": example}
    return {
        "@context": {"dcat": "http://www.w3.org/ns/dcat#", "void": "http://rdfs.org/ns/void#", "dcterms": "http://purl.org/dc/terms/",
                     "xsd": "http://www.w3.org/2001/XMLSchema#"},
        "@graph": [ds],
    }


def case_jsonld(c: S.CaseReport, iri: str, base_iri: str, sources: list[S.Source], about: list[dict[str, Any]], files: list[tuple[str, str]]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@context": "https://schema.org/",
        "@type": "Dataset",
        "@id": iri,
        "identifier": iri,
        "name": c.title,
        "description": f"Curated evidence from a {c.study_design}: {c.title}",
        "isBasedOn": [_article(s) for s in sources],
        "creator": [_person(cur.name, cur.orcid) for cur in c.curation.curators],
        "dateCreated": c.curation.created.isoformat(),
        "isPartOf": {"@id": base_iri, "@type": "Dataset"},
        "about": about,
        "distribution": [{"@type": "DataDownload", "encodingFormat": media, "contentUrl": href} for href, media in files],
    }
    if c.curation.updated:
        doc["dateModified"] = c.curation.updated.isoformat()
    return doc
