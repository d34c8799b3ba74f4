"""Every namespace the graph uses, in one table, and how CURIEs become standard IRIs."""

from __future__ import annotations

from urllib.parse import quote

__all__ = ["STANDARD", "PREFIXES", "curie_to_iri", "Namespaces", "PRIMARY_PREFIX"]

# Well-known vocabularies that the graph reuses.
STANDARD: dict[str, str] = {
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "dcterms": "http://purl.org/dc/terms/",
    "prov": "http://www.w3.org/ns/prov#",
    "bibo": "http://purl.org/ontology/bibo/",
    "fabio": "http://purl.org/spar/fabio/",
    "schema": "https://schema.org/",
    "sh": "http://www.w3.org/ns/shacl#",
    "obo": "http://purl.obolibrary.org/obo/",
}

# CURIE prefix -> IRI prefix: OBO PURLs for OBO ontologies, identifiers.org for the rest,
# doi.org for DOIs.
_CURIE_IRI: dict[str, str] = {
    "MONDO": "http://purl.obolibrary.org/obo/MONDO_",
    "HP": "http://purl.obolibrary.org/obo/HP_",
    "CHEBI": "http://purl.obolibrary.org/obo/CHEBI_",
    "DOID": "http://purl.obolibrary.org/obo/DOID_",
    "NCIT": "http://purl.obolibrary.org/obo/NCIT_",
    "HGNC": "https://identifiers.org/hgnc:",
    "NCBIGene": "https://identifiers.org/ncbigene:",
    "OMIM": "https://identifiers.org/mim:",
    "Ensembl": "https://identifiers.org/ensembl:",
    "UniProt": "https://identifiers.org/uniprot:",
    "DrugBank": "https://identifiers.org/drugbank:",
    "ChEMBL": "https://identifiers.org/chembl.compound:",
    "PubChem": "https://identifiers.org/pubchem.compound:",
    "Orphanet": "https://identifiers.org/orphanet:",
    "UMLS": "https://identifiers.org/umls:",
    "doi": "https://doi.org/",
    "pubmed": "https://identifiers.org/pubmed:",
    "pmc": "https://identifiers.org/pmc:",
    "orcid": "https://orcid.org/",
}

# Which identifier becomes the IRI of a vocabulary term, by vocabulary kind.
PRIMARY_PREFIX: dict[str, tuple[str, ...]] = {
    "genes": ("HGNC",),
    "drugs": ("CHEBI",),
    "diseases": ("MONDO",),
    "phenotypes": ("HP",),
    "measures": ("NCIT",),
}


def curie_to_iri(curie: str) -> str:
    """``MONDO:0018827`` -> ``http://purl.obolibrary.org/obo/MONDO_0018827``."""
    prefix, local = curie.split(":", 1)
    base = _CURIE_IRI[prefix]
    if prefix in ("ChEMBL",) and local.startswith("CHEMBL"):
        return base + local
    if prefix == "DrugBank":
        return base + local
    # A DOI keeps its slashes (https://doi.org/10.1001/jamadermatol.2018.5077); other
    # characters that are not safe in an IRI are escaped.
    return base + quote(local, safe="/()" if prefix == "doi" else "")


class Namespaces:
    """The project's own IRIs, all under the configured base IRI."""

    def __init__(self, base: str):
        self.base = base
        self.ev = base + "vocab/"
        self.shapes = base + "shapes/"

    def prefixes(self) -> dict[str, str]:
        out = {"ev": self.ev}
        out.update({k: v for k, v in STANDARD.items() if k not in ("sh", "owl", "obo")})
        out["obo"] = STANDARD["obo"]
        return out

    def case(self, case_id: str) -> str:
        return f"{self.base}case/{case_id}"

    def source(self, source_id: str) -> str:
        return f"{self.base}source/{source_id}"

    def term(self, kind: str, key: str) -> str:
        return f"{self.base}term/{kind}/{quote(key, safe='')}"

    def variant(self, hgvs: str) -> str:
        return f"{self.base}variant/{quote(hgvs, safe='')}"

    def graph(self, kind: str, key: str = "") -> str:
        return f"{self.base}graph/{kind}" + (f"/{key}" if key else "")

    def curator(self, name: str, orcid: str | None) -> str:
        if orcid:
            return _CURIE_IRI["orcid"] + orcid
        return f"{self.base}curator/{quote(name.lower().replace(' ', '-'), safe='')}"


PREFIXES = STANDARD
