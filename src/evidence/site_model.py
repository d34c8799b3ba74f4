"""What the site shows, computed once from the validated kb: pages, cross-references, the
evidence rows and the evidence matrix. Templates read this model; they compute nothing.

Every page has a root-relative path (``drugs/ruxolitinib.html``); templates prefix it with the
way back to the root, so the site works under any sub-path and from ``file://``.
"""

from __future__ import annotations

import functools
import typing
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from . import schema as S
from .cases import site_facts_of
from .namespaces import Namespaces, curie_to_iri
from .site_facts import (
    REF_TYPES,
    AdverseEventCountRef,
    AdverseEventRef,
    CaseRef,
    GenotypeRef,
    OutcomeCountRef,
    OutcomeRef,
    PatientRef,
    PriorTreatmentRef,
    SiteFacts,
    TreatmentRef,
    outcome_values,
    variant_of,
)
from .site_format import (
    NR,
    age_text,
    citation_text,
    civic_levels,
    dose_text,
    file_slug,
    human_duration,
    is_nr,
    measurement_text,
    short_citation,
)
from .validate import Kb

__all__ = ["SiteModel", "Exposure", "EvidenceRow", "MatrixRow", "ENTITY_KINDS", "RESPONSE_ORDER", "EVIDENCE_COLUMNS", "search_text"]

# Page folder and singular name of every kind of entity page.
ENTITY_KINDS: dict[str, tuple[str, str]] = {
    "cases": ("case report", "case reports"),
    "drugs": ("drug", "drugs"),
    "genes": ("gene", "genes"),
    "variants": ("variant", "variants"),
    "diseases": ("condition", "conditions"),
    "measures": ("outcome measure", "outcome measures"),
    "phenotypes": ("phenotype", "phenotypes and adverse events"),
    "sources": ("source", "sources"),
}
RESPONSE_ORDER = ["complete", "partial", "none", "worsened", NR]
_LEVEL_RANK = {"A": 0, "B": 1, "C": 2, "D": 3, "E": 4}


@dataclass
class Exposure:
    """One patient given one treatment: what the drug, evidence and matrix pages list."""

    case: S.CaseReport
    patient: S.Patient
    treatment: S.Treatment
    outcomes: list[S.Outcome]
    adverse_events: list[S.AdverseEvent]
    conditions: list[str]  # disease keys: the indication, or the case's conditions when it is not reported
    genes: list[str] | None  # gene keys; None when the genotype is not reported
    variants: list[str]  # HGVS strings
    course: list[str]  # the phase kinds, in order
    dechallenge: bool
    rechallenge: bool
    regimen: str  # site_format.regimen_text of the treatment
    regimen_parts: tuple[tuple[str, str], ...]  # site_format.regimen_parts of the treatment
    age: str  # the patient's, as site_format.age_text gives it
    sex: str
    genotype: tuple[tuple[str, str | None, str | None, str | None], ...] | None  # the patient's (site_facts.PatientFacts.genotype)
    ref: str = field(init=False, repr=False, compare=False)  # what stands for it in a page's key (site_pages._fingerprint)

    def __post_init__(self) -> None:
        self.ref = f"E{self.case.id}/{self.patient.id}/{self.treatment.id}"

    @property
    def anchor(self) -> str:
        return f"patient-{self.patient.id}-{self.treatment.id}"

    @property
    def best_response(self) -> str | None:
        """The best response of any outcome; None when no outcome is recorded."""
        found = [o.response for o in self.outcomes]
        for r in RESPONSE_ORDER:
            if r in found:
                return r
        return None

    @property
    def improved(self) -> bool:
        return any(o.direction == "improved" for o in self.outcomes)


class CohortView(typing.NamedTuple):
    """A case's cohort-level figures as the lists of cases show them (SiteModel.cohort)."""

    n: int
    outcome_counts: list[OutcomeCountRef]
    adverse_event_counts: list[AdverseEventCountRef]


@dataclass
class EvidenceRow:
    """A row of the evidence table: patient x treatment x outcome, or a cohort-level count."""

    cells: dict[str, str]
    links: dict[str, str]  # column -> root-relative URL
    filters: dict[str, list[str]]
    scope: str  # "patient" | "cohort"
    nr: set[str] = field(default_factory=set)  # columns whose value is 'not reported'


@dataclass
class MatrixRow:
    drug: str
    condition: str
    genotype: str  # a gene key, or "" when the genotype is not reported
    patients: int = 0
    cases: set[str] = field(default_factory=set)
    responses: dict[str, int] = field(default_factory=dict)
    no_outcome: int = 0
    improved_ungraded: int = 0
    ae_patients: int = 0
    ae_terms: dict[str, int] = field(default_factory=dict)
    levels: set[str] = field(default_factory=set)
    cohort_notes: list[tuple[str, str]] = field(default_factory=list)  # (case id, text)

    @property
    def best_level(self) -> str:
        return min(self.levels, key=lambda x: _LEVEL_RANK.get(x, 9)) if self.levels else ""


class SiteModel:
    """The kb seen as pages: URLs, labels and every cross-reference.

    Made from each case's facts (:class:`~evidence.site_facts.SiteFacts`, :attr:`facts`): the
    records it lists (an exposure's case, patient, treatment, outcomes ...) are refs
    (:class:`~evidence.site_facts.Ref`), which read the case's model back from the build cache
    only when a page shows more of it than the facts hold. Whatever walks every case (the
    indexes, the counts, the matrix, the lists' rows, the contributors) reads the facts."""

    def __init__(self, kb: Kb, ns: Namespaces | None = None, term_iris: dict[tuple[str, str], str] | None = None,
                 claim_counts: Mapping[str, Mapping[str, int]] | None = None):
        """``claim_counts``: for each case id, its claims counted by the source they cite, as the
        compiled parts hold them (:attr:`evidence.compile.Part.claims`); a case missing from it
        has its claims counted here, by walking its models (1.3 s at 10,000 cases)."""
        self.kb = kb
        self._claim_counts = claim_counts or {}
        self.config = kb.config
        self.ns = ns or Namespaces(kb.config.base_iri)
        self.term_iris = term_iris or {}
        self.levels = civic_levels()
        self.case_ids = sorted(kb.cases)
        self.source_ids = sorted(kb.sources)
        self._urls: dict[tuple[str, str], str] = {}
        self.iri_url: dict[str, str] = {}
        self.iri_entity: dict[str, tuple[str, str]] = {}
        self._claims: dict[str, list[S.Claim]] = {}
        self._index()

    # ------------------------------------------------------------------------------ building
    def _index(self) -> None:
        kb, ns = self.kb, self.ns
        for cid in self.case_ids:
            self._page("cases", cid, ns.case(cid))
        for sid in self.source_ids:
            self._page("sources", sid, ns.source(sid))
        for kind in ("drugs", "genes", "diseases", "measures", "phenotypes"):
            for key in sorted(kb.vocab.get(kind, {})):
                self._page(kind, key, self.term_iris.get((kind, key)) or ns.term(kind, key))

        self.exposures: list[Exposure] = []
        self.exposures_by_case: dict[str, list[Exposure]] = defaultdict(list)
        self.variants: dict[str, dict[str, Any]] = {}  # hgvs -> {gene, protein, legacy, carriers: [(case, patient, genotype)]}
        self.genotyped: dict[str, list[tuple[S.CaseReport, S.Patient, S.Genotype]]] = defaultdict(list)
        self.diagnosed: dict[str, list[tuple[S.CaseReport, S.Patient]]] = defaultdict(list)
        self.comorbid: dict[str, list[tuple[S.CaseReport, S.Patient]]] = defaultdict(list)
        self.case_conditions: dict[str, list[S.CaseReport]] = defaultdict(list)
        self.prior: dict[str, list[tuple[S.CaseReport, S.Patient, S.PriorTreatment]]] = defaultdict(list)
        self.outcomes_by_measure: dict[str, list[tuple[Exposure, S.Outcome]]] = defaultdict(list)
        self.cohort_outcomes: dict[str, list[tuple[S.CaseReport, S.OutcomeCount]]] = defaultdict(list)
        self.ae_by_term: dict[str, list[tuple[Exposure, S.AdverseEvent]]] = defaultdict(list)
        self.cohort_aes: dict[str, list[tuple[S.CaseReport, S.AdverseEventCount]]] = defaultdict(list)
        self.by_drug: dict[str, list[Exposure]] = defaultdict(list)
        self.cases_citing: dict[str, list[tuple[S.CaseReport, str]]] = defaultdict(list)  # source -> (case, role)
        self.claims_citing: dict[str, int] = defaultdict(int)
        self.reported_by: dict[str, list[str]] = defaultdict(list)  # primary source -> secondary sources
        self.targeted_by: dict[str, list[str]] = defaultdict(list)  # gene -> drugs
        # Cases with cohort-level figures (counts the source gives only for the group), by each
        # drug the case gave, each condition it is about and each gene its patients were genotyped at.
        self.cohorts: dict[tuple[str, str], list[S.CaseReport]] = defaultdict(list)  # (kind, key) -> cases

        for sid in self.source_ids:
            s = kb.sources[sid]
            if s.reports_on:
                self.reported_by[s.reports_on].append(sid)
        for dkey, drug in sorted(kb.vocab.get("drugs", {}).items()):
            if isinstance(drug, S.Drug) and isinstance(drug.targets, list):
                for t in drug.targets:
                    self.targeted_by[t.gene].append(dkey)

        # Every case from its facts (evidence.site_facts): its records are refs, whose models are
        # read back only for a page that shows more of them than the facts hold.
        cases = kb.cases
        self.facts: dict[str, SiteFacts] = {}
        self._cohorts: dict[str, CohortView] = {}  # see cohort()
        self.patient_drugs: dict[tuple[str, str], list[str]] = {}  # (case, patient) -> the drugs given, in order
        for cid in self.case_ids:
            sf = self.facts[cid] = site_facts_of(cases, cid)
            c = CaseRef(cases, cid, sf.title)
            for sid, role in sf.sources:
                self.cases_citing[sid].append((c, role))
            for k in sf.conditions:
                self.case_conditions[k].append(c)
            counted = self._claim_counts.get(cid)
            if counted is None:
                for claim in self.claims(kb.cases[cid]):
                    self.claims_citing[claim.source] += 1
            else:
                for sid, n in counted.items():
                    self.claims_citing[sid] += n
            if sf.cohort is not None:
                n, outcome_counts, ae_counts = sf.cohort
                ocs = [OutcomeCountRef(cases, cid, k, oc) for k, oc in enumerate(outcome_counts)]
                acs = [AdverseEventCountRef(cases, cid, k, ac) for k, ac in enumerate(ae_counts)]
                self._cohorts[cid] = CohortView(n, ocs, acs)
                for oc in ocs:
                    self.cohort_outcomes[oc.measure].append((c, oc))
                for ac in acs:
                    self.cohort_aes[ac.term or ""].append((c, ac))
                if outcome_counts or ae_counts:
                    for kind, keys in (("drugs", sf.drugs()), ("diseases", sf.conditions), ("genes", sf.genes())):
                        for k in dict.fromkeys(keys):
                            self.cohorts[(kind, k)].append(c)
            for i, pf in enumerate(sf.patients):
                p = PatientRef(cases, cid, i, pf.id)
                genes: list[str] | None = None
                variants: list[str] = []
                if pf.genotype is not None:
                    genes = []
                    for j, (gene, hgvs, protein, legacy) in enumerate(pf.genotype):
                        genes.append(gene)
                        g = GenotypeRef(cases, cid, i, j, gene, pf.carriers[j])
                        self.genotyped[gene].append((c, p, g))
                        if hgvs is not None:
                            variants.append(hgvs)
                            entry = self.variants.setdefault(hgvs, {"hgvs": hgvs, "gene": gene, "protein": protein, "legacy": legacy, "carriers": []})
                            entry["carriers"].append((c, p, g))
                for k in pf.diagnoses:
                    self.diagnosed[k].append((c, p))
                for k in pf.comorbidities:
                    self.comorbid[k].append((c, p))
                for j, prior in enumerate(pf.prior):
                    self.prior[prior[0]].append((c, p, PriorTreatmentRef(cases, cid, i, j, prior)))
                outcomes = [OutcomeRef(cases, cid, i, j, o) for j, o in enumerate(pf.outcomes)]
                aes = [AdverseEventRef(cases, cid, i, j, a) for j, a in enumerate(pf.adverse_events)]
                self.patient_drugs[(cid, pf.id)] = [t[1] for t in pf.treatments]
                for j, (tid, drug, indication, kinds, regimen, parts) in enumerate(pf.treatments):
                    stop = kinds.index("stopped") if "stopped" in kinds else -1
                    e = Exposure(
                        case=c, patient=p, treatment=TreatmentRef(cases, cid, i, j, tid, drug),
                        outcomes=[o for o in outcomes if o.treatment == tid],
                        adverse_events=[a for a in aes if a.treatment == tid],
                        conditions=[indication] if indication is not None else list(sf.conditions),
                        genes=genes, variants=variants, course=list(kinds),
                        dechallenge=stop >= 0, rechallenge=stop >= 0 and "restarted" in kinds[stop + 1:], regimen=regimen,
                        regimen_parts=parts, age=pf.age, sex=pf.sex, genotype=pf.genotype,
                    )
                    self.exposures.append(e)
                    self.exposures_by_case[cid].append(e)
                    self.by_drug[drug].append(e)
                    for o in e.outcomes:
                        self.outcomes_by_measure[o.measure].append((e, o))
                    for a in e.adverse_events:
                        self.ae_by_term[a.term].append((e, a))
        for hgvs in sorted(self.variants):
            self._page("variants", hgvs, ns.variant(hgvs))

    def release(self) -> None:
        """Drop everything the model holds, once the pages are rendered. Jinja2's page contexts
        and macros refer to each other, and a context holds the model (through the ``ui``
        global): held by those cycles, its 800,000 records at 10,000 cases waited for the
        collector, which walked them all (0.6 s of a rebuild); dropped, they are freed at once."""
        self.__dict__.clear()

    def _page(self, kind: str, key: str, iri: str) -> None:
        url = f"{kind}/{file_slug(key)}.html"
        self._urls[(kind, key)] = url
        self.iri_url.setdefault(iri, url)
        self.iri_entity.setdefault(iri, (kind, key))

    # ------------------------------------------------------------------------------ lookups
    def url(self, kind: str, key: str) -> str | None:
        """The root-relative URL of an entity page (None if the kb has no such entity)."""
        return self._urls.get((kind, key))

    def urls(self) -> list[tuple[str, str]]:
        """The (kind, key) of every page of a case, source or entity."""
        return list(self._urls)

    def pages(self, kind: str) -> list[str]:
        """The keys of the pages of one kind, in order (listed once per kind: 30,000 pages at 10,000 cases)."""
        by_kind = self.__dict__.get("_by_kind")
        if by_kind is None or by_kind[0] != len(self._urls):
            found: dict[str, list[str]] = {}
            for kd, k in self._urls:
                found.setdefault(kd, []).append(k)
            by_kind = self._by_kind = (len(self._urls), found)
        return list(by_kind[1].get(kind, ()))

    def term(self, kind: str, key: str) -> S.VocabTerm | None:
        return self.kb.vocab.get(kind, {}).get(key)

    def label(self, kind: str, key: str) -> str:
        if kind == "cases":
            sf = self.facts.get(key)
            return sf.title if sf is not None else key
        if kind == "sources":
            return short_citation(self.kb.sources[key]) if key in self.kb.sources else key
        if kind == "variants":
            v = self.variants.get(key)
            return f"{v['gene']} {key.split(':', 1)[-1]}" + (f" {v['protein']}" if v and v["protein"] else "") if v else key
        t = self.term(kind, key)
        if t is None:
            return key
        return t.symbol if isinstance(t, S.Gene) else t.label

    def any_term(self, key: str) -> tuple[str, str]:
        """(kind, key) of a comorbidity key, which may be a disease or a phenotype."""
        for kind in ("diseases", "phenotypes"):
            if key in self.kb.vocab.get(kind, {}):
                return kind, key
        return "diseases", key

    def identifier_link(self, curie: str) -> str | None:
        try:
            return curie_to_iri(curie)
        except (KeyError, ValueError):
            return None

    def source(self, sid: str) -> S.Source | None:
        return self.kb.sources.get(sid)

    def citation(self, sid: str) -> str:
        s = self.kb.sources.get(sid)
        return citation_text(s) if s else sid

    def level(self, c: S.CaseReport) -> tuple[str, str]:
        """A case's evidence level, (scale, level): for a case's ref, from its facts."""
        return self.facts[c.id].level if type(c) is CaseRef else (c.evidence_level.scale, c.evidence_level.level)

    def level_text(self, c: S.CaseReport) -> str:
        scale, level = self.level(c)
        meaning = self.levels.get(level, "")
        return f"{scale.upper()} {level}" + (f" ({meaning})" if meaning else "")

    # ------------------------------------------------------------------------------ provenance
    def is_secondary(self, claim: S.Claim, case: S.CaseReport | None = None) -> bool:
        """True when a claim's source retells the fact: a secondary source of the case, or any
        source that reports on another publication."""
        if case is not None and any(r.source == claim.source and r.role == "secondary" for r in case.sources):
            return True
        s = self.kb.sources.get(claim.source)
        return bool(s and s.reports_on)

    def only_secondary(self, claims: list[S.Claim], case: S.CaseReport | None = None) -> bool:
        return bool(claims) and all(self.is_secondary(c, case) for c in claims)

    def case_only_secondary(self, c: S.CaseReport) -> bool:
        return self.only_secondary(self.claims(c), c)

    def secondary_sources(self, c: S.CaseReport) -> list[str]:
        return [r.source for r in c.sources if r.role == "secondary"]

    # ------------------------------------------------------------------------------ cases
    def case_date(self, c: S.CaseReport) -> date:
        return c.curation.updated or c.curation.created

    def newest(self, n: int = 10) -> list[S.CaseReport]:
        """The ``n`` cases curated last (their models are read: the home page shows them)."""
        return [self.kb.cases[cid] for cid in sorted(self.facts, key=lambda cid: (-self.facts[cid].date.toordinal(), cid))[:n]]

    def modified(self) -> date | None:
        """When a case was last curated."""
        return max((sf.date for sf in self.facts.values()), default=None)

    def curators(self) -> list[tuple[str, str | None]]:
        """Every case's curators, (name, ORCID), each once, in the order of the cases."""
        return list(dict.fromkeys(cur for cid in self.case_ids for cur in self.facts[cid].curators))

    def case_drugs(self, c: S.CaseReport) -> list[str]:
        if type(c) is CaseRef:
            return self.facts[c.id].drugs()
        return sorted({t.drug for p in c.patients for t in p.treatments})

    def cohort(self, c: S.CaseReport) -> Any:
        """A case's cohort-level figures (``n``, ``outcome_counts``, ``adverse_event_counts``):
        the model's, or for a case's ref its facts' (None without a cohort)."""
        if type(c) is CaseRef:
            return self._cohorts.get(c.id)
        return c.cohort

    def treated_with(self, c: S.CaseReport, p: S.Patient) -> list[str]:
        """The drug of each of a patient's treatments, in order."""
        if type(p) is PatientRef:
            return self.patient_drugs[(c.id, p.id)]
        return [t.drug for t in p.treatments]

    # The carrier and outcome tables read these, so that a page listing a case does not read its model.
    variant_of = staticmethod(variant_of)
    outcome_values = staticmethod(outcome_values)

    def claims(self, c: S.CaseReport) -> list[S.Claim]:
        """Every claim in a case, depth first (worked out once per case)."""
        found = self._claims.get(c.id)
        if found is None:
            found = self._claims[c.id] = list(_claims_in(c))
        return found

    def case_genes(self, c: S.CaseReport) -> list[str]:
        return sorted({g.gene for p in c.patients if isinstance(p.genotype, list) for g in p.genotype})

    def case_patients(self, c: S.CaseReport) -> int:
        return c.cohort.n if c.cohort else len(c.patients)

    def primary_source(self, c: S.CaseReport) -> S.Source | None:
        for r in c.sources:
            if r.role == "primary":
                return self.kb.sources.get(r.source)
        return self.kb.sources.get(c.sources[0].source)

    def case_exposures(self, c: S.CaseReport) -> list[Exposure]:
        return self.exposures_by_case.get(c.id, [])

    def edit_url(self, c: S.CaseReport) -> str | None:
        """The hosting repository's edit page of the case file (GitHub and GitLab style)."""
        repo = (self.config.repository or "").rstrip("/")
        if not repo.startswith(("https://", "http://")):
            return None
        f = self.kb.files.get(f"case:{c.id}")
        try:
            rel = f.path.resolve().relative_to(self.config.root.resolve()).as_posix() if f else f"{self.config.kb}/{c.id}.yaml"
        except ValueError:
            rel = f"{self.config.kb}/{c.id}.yaml"
        sep = "/-/edit/" if "gitlab" in repo else "/edit/"
        return f"{repo}{sep}{self.config.branch or 'main'}/{rel}"

    # ------------------------------------------------------------------------------ curators
    def contributors(self) -> list[dict[str, Any]]:
        people: dict[tuple[str, str | None], dict[str, Any]] = {}

        def add(name: str, orcid: str | None, kind: str, key: str, created: date, updated: date | None) -> None:
            p = people.setdefault((name, orcid), {"name": name, "orcid": orcid, "cases": [], "sources": [], "first": created, "last": created})
            p[kind].append(key)
            p["first"] = min(p["first"], created)
            p["last"] = max(p["last"], updated or created)

        for cid in self.case_ids:
            sf = self.facts[cid]
            for name, orcid in sf.curators:
                add(name, orcid, "cases", cid, sf.created, sf.updated)
        for sid in self.source_ids:
            cu = self.kb.sources[sid].curation
            for cur in cu.curators:
                add(cur.name, cur.orcid, "sources", sid, cu.created, cu.updated)
        return sorted(people.values(), key=lambda p: (-len(p["cases"]) - len(p["sources"]), p["name"], p["orcid"] or ""))

    # ------------------------------------------------------------------------------ tables
    def genotype_text(self, e: Exposure) -> str:
        if e.genotype is None:
            return NR
        out = []
        for gene_key, hgvs, protein, _legacy in e.genotype:
            gene = self.label("genes", gene_key)
            out.append(f"{gene} {hgvs}" + (f" {protein}" if protein else "") if hgvs is not None else f"{gene} (variant not reported)")
        return "; ".join(out)

    def case_evidence_rows(self, cid: str) -> tuple[list[EvidenceRow], list[EvidenceRow]]:
        """One case's rows of the evidence table: every patient x treatment x outcome (a treatment
        without outcomes gives one row), and its cohort-level counts. They depend on nothing but
        the case's file, the vocabulary and the code (site_pages caches them by those, and puts
        the table together: every case's patient rows, then every case's cohort rows)."""
        return self._patient_rows(self.exposures_by_case.get(cid, [])), self._cohort_rows(self.kb.cases[cid])

    def _patient_rows(self, exposures: list[Exposure]) -> list[EvidenceRow]:
        rows: list[EvidenceRow] = []
        for e in exposures:
            c, p, t = e.case, e.patient, e.treatment
            base = {
                "case": c.id,
                "patient": p.id,
                "age": age_text(p.age),
                "sex": p.sex,
                "genotype": self.genotype_text(e),
                "condition": "; ".join(self.label("diseases", k) for k in e.conditions),
                "drug": self.label("drugs", t.drug),
                "dose": dose_text(t.dose) or "",
                "frequency": t.frequency,
                "route": t.route,
                "duration": human_duration(t.duration) or "",
                "course": " → ".join(e.course) if e.course else "",
                "adverse events": "; ".join(f"{self.label('phenotypes', a.term)} ({a.severity}, {a.action})" for a in e.adverse_events),
                "level": c.evidence_level.level,
                "patients": "1",
            }
            filters = {
                "drug": [self.label("drugs", t.drug)],
                "gene": [self.label("genes", g) for g in e.genes] if e.genes is not None else [NR],
                "condition": [self.label("diseases", k) for k in e.conditions],
                "level": [c.evidence_level.level],
            }
            links = {"case": f"{self.url('cases', c.id)}#{e.anchor}", "drug": self.url("drugs", t.drug) or ""}
            outcomes: list[S.Outcome | None] = list(e.outcomes) or [None]
            for o in outcomes:
                cells = dict(base)
                if o is None:
                    cells.update({"measure": "", "timepoint": "", "before": "", "after": "", "direction": "", "response": "", "description": ""})
                    resp = ["no outcome recorded"]
                else:
                    tp = human_duration(o.timepoint) or ""
                    if not is_nr(o.timepoint) and o.timepoint_qualifier != "at":
                        tp = f"{o.timepoint_qualifier} {tp}"
                    cells.update({
                        "measure": self.label("measures", o.measure),
                        "timepoint": tp,
                        "before": measurement_text(o.before) or "",
                        "after": measurement_text(o.after) or "",
                        "direction": o.direction,
                        "response": o.response,
                        "description": o.description or "",
                    })
                    resp = [o.response]
                row_links = dict(links)
                if o is not None:
                    row_links["measure"] = self.url("measures", o.measure) or ""
                rows.append(EvidenceRow(cells, row_links, {**filters, "response": resp}, "patient",
                                        {k for k, v in cells.items() if v == NR}))
        return rows

    def _cohort_rows(self, c: S.CaseReport) -> list[EvidenceRow]:
        rows: list[EvidenceRow] = []
        if c.cohort:
            drugs = self.case_drugs(c)
            drug_labels = [self.label("drugs", d) for d in drugs]
            genes = self.case_genes(c)
            # The regimen, where every patient of the case had the same one; the harms the source
            # counted for the group.
            regimens = {(t.drug, dose_text(t.dose) or "", t.frequency, t.route, human_duration(t.duration) or "") for p in c.patients for t in p.treatments}
            # Only when the patients listed are the whole cohort: theirs is then everyone's regimen.
            whole = len(c.patients) == c.cohort.n
            regimen = dict(zip(("dose", "frequency", "route", "duration"), next(iter(regimens))[1:], strict=True)) if whole and len(regimens) == 1 else {}
            harms = "; ".join(f"{ac.patients} of {c.cohort.n} with " + (f"{ac.severity} " if ac.severity else "")
                              + (self.label("phenotypes", ac.term) if ac.term else "adverse events of any kind") for ac in c.cohort.adverse_event_counts)
            for oc in c.cohort.outcome_counts:
                cells = {k: "" for k in EVIDENCE_COLUMNS}
                cells.update({
                    "case": c.id, "patient": f"cohort of {c.cohort.n}", "condition": "; ".join(self.label("diseases", k) for k in c.conditions),
                    "drug": "; ".join(drug_labels), "measure": self.label("measures", oc.measure),
                    "direction": oc.direction or "", "response": oc.response or "", "level": c.evidence_level.level,
                    "patients": str(oc.patients), "genotype": "; ".join(self.label("genes", g) for g in genes),
                    "adverse events": harms, **regimen,
                })
                rows.append(EvidenceRow(
                    cells, {"case": f"{self.url('cases', c.id)}#cohort", "measure": self.url("measures", oc.measure) or ""},
                    {"drug": drug_labels, "gene": [self.label("genes", g) for g in genes] or [NR],
                     "condition": [self.label("diseases", k) for k in c.conditions], "level": [c.evidence_level.level],
                     "response": [oc.response or "not graded"]},
                    "cohort", {k for k, v in cells.items() if v == NR}))
        return rows

    def matrix(self) -> list[MatrixRow]:
        """Drug x condition x genotype (gene): patients, responses, adverse events, evidence level."""
        cells: dict[tuple[str, str, str], MatrixRow] = {}
        seen: dict[tuple[str, str, str], dict[tuple[str, str], list[Exposure]]] = defaultdict(lambda: defaultdict(list))
        for e in self.exposures:
            for cond in e.conditions:
                for gene in (e.genes if e.genes else [""]):
                    key = (e.treatment.drug, cond, gene)
                    seen[key][(e.case.id, e.patient.id)].append(e)
        for key in sorted(seen, key=lambda k: (self.label("drugs", k[0]).lower(), self.label("diseases", k[1]).lower(), k[2])):
            row = cells[key] = MatrixRow(*key)
            for (cid, _pid), exps in sorted(seen[key].items()):
                row.patients += 1
                row.cases.add(cid)
                row.levels.add(self.facts[cid].level[1])
                found = {ex.best_response for ex in exps}  # each worked out once, not once per response level
                best = next((r for r in RESPONSE_ORDER if r in found), None)
                if best is None:
                    row.no_outcome += 1
                else:
                    row.responses[best] = row.responses.get(best, 0) + 1
                    if best == NR and any(ex.improved for ex in exps):
                        row.improved_ungraded += 1
                aes = {a.term for ex in exps for a in ex.adverse_events}
                if aes:
                    row.ae_patients += 1
                for term in aes:
                    row.ae_terms[term] = row.ae_terms.get(term, 0) + 1
            # Cohort-level counts belong to a drug only when every patient of the case had that one drug.
            for cid in sorted(row.cases):
                sf = self.facts[cid]
                if sf.cohort is not None and sf.drugs() == [key[0]]:
                    for measure, response, direction, patients in sf.cohort[1]:
                        what = response or direction or "counted"
                        row.cohort_notes.append((cid, f"{patients} {what} ({self.label('measures', measure)})"))
                    for term_key, severity, patients in sf.cohort[2]:
                        term = self.label("phenotypes", term_key) if term_key else "adverse events"
                        sev = f"{severity} " if severity else ""
                        row.cohort_notes.append((cid, f"{patients} with {sev}{term}"))
        return list(cells.values())

    def counts(self) -> list[tuple[str, int, str | None]]:
        kb = self.kb
        facts = self.facts.values()
        patients = sum(len(sf.patients) for sf in facts)
        drugs = {t[1] for sf in facts for p in sf.patients for t in p.treatments}
        genes = {g for sf in facts for g in sf.genes()}
        conditions = {e for sf in facts for e in sf.conditions}
        return [
            ("publications", len(kb.sources), "sources.html"),
            ("case reports", len(kb.cases), "cases.html"),
            ("patients", patients, "evidence.html"),
            ("drugs given", len(drugs), "drugs.html"),
            ("genes", len(genes), "genes.html"),
            ("variants", len(self.variants), "variants.html"),
            ("conditions treated", len(conditions), "diseases.html"),
        ]

    def coverage(self) -> dict[str, list[str]]:
        """What the kb is about, from its cases: drug classes, drugs, conditions, genes (worked
        out once: the description of every page and the home page show it)."""
        return {k: list(v) for k, v in self._coverage.items()}

    @functools.cached_property
    def _coverage(self) -> dict[str, list[str]]:
        facts = self.facts.values()
        drugs = sorted({t[1] for sf in facts for p in sf.patients for t in p.treatments}, key=str.lower)
        classes = sorted({d.drug_class for k in drugs if isinstance(d := self.term("drugs", k), S.Drug) and d.drug_class})
        conditions = sorted({k for sf in facts for k in sf.conditions}, key=lambda k: self.label("diseases", k).lower())
        genes = sorted({g for sf in facts for g in sf.genes()})
        return {"classes": classes, "drugs": drugs, "conditions": conditions, "genes": genes}


def _words(*parts: Any) -> str:
    return " ".join(str(p) for p in parts if p not in (None, "", NR))


def search_text(m: SiteModel, kind: str, key: str) -> tuple[str, str]:
    """(title, text) of a page for the search index: what a reader would type to find it."""
    if kind == "cases":
        c = m.kb.cases[key]
        bits: list[str] = [c.title, key, c.study_design, m.level_text(c), c.evidence_level.rationale or ""]
        bits += [m.label("diseases", k) for k in c.conditions]
        for ref in c.sources:
            s = m.kb.sources.get(ref.source)
            if s:
                bits += [citation_text(s), s.pmid or "", s.pmcid or ""]
        for p in c.patients:
            bits += [p.label or "", age_text(p.age), p.sex, *p.findings]
            bits += [m.label(*m.any_term(k)) for k in p.comorbidities] + [m.label("diseases", k) for k in p.diagnoses]
            if isinstance(p.genotype, list):
                for g in p.genotype:
                    bits.append(m.label("genes", g.gene))
                    if isinstance(g.variant, S.Variant):
                        bits += [g.variant.hgvs, g.variant.protein or "", g.variant.legacy_name or ""]
                    bits += [g.zygosity, g.mechanism]
            for pt in p.prior_treatments:
                bits.append(m.label("drugs", pt.drug))
            for t in p.treatments:
                bits += [m.label("drugs", t.drug), dose_text(t.dose) or "", t.frequency, t.route, human_duration(t.duration) or "", t.access]
                for ph in t.phases:
                    bits += [ph.kind, ph.followed_by or "", ph.reason.description if isinstance(ph.reason, S.Reason) else ""]
            for o in p.outcomes:
                bits += [m.label("measures", o.measure), o.direction, o.response, o.description or ""]
            for a in p.adverse_events:
                bits += [m.label("phenotypes", a.term), a.severity]
        bits += [cur.name for cur in c.curation.curators] + [c.curation.notes or ""]
        bits += [cl.quote for cl in m.claims(c) if cl.quote]
        return c.title, _words(*dict.fromkeys(bits))
    if kind == "sources":
        s = m.kb.sources[key]
        return short_citation(s), _words(citation_text(s), s.kind, s.pmid, s.pmcid, s.url, s.identifier_notes, *s.authors)
    if kind == "variants":
        v = m.variants[key]
        return m.label(kind, key), _words(key, v["protein"], v["legacy"], m.label("genes", v["gene"]))
    t = m.term(kind, key)
    if t is None:
        return key, key
    extra = [getattr(t, "drug_class", None), getattr(t, "symbol", None)]
    return m.label(kind, key), _words(m.label(kind, key), key, t.label, *t.synonyms, t.description, *t.identifiers, *extra)


EVIDENCE_COLUMNS = ["case", "patient", "patients", "age", "sex", "genotype", "condition", "drug", "dose", "frequency", "route", "duration",
                    "course", "measure", "timepoint", "before", "after", "direction", "response", "description", "adverse events", "level"]


def _claims_in(node: Any):
    """Every Claim inside a model, depth first. Only the fields whose type can hold a claim are
    visited: at 10,000 cases, visiting every field of every model took 1.8 s of the site model's
    2.2 s."""
    if type(node) in REF_TYPES:  # a record the site model holds as a ref: its model's claims
        node = node.resolve()
    if isinstance(node, S.Claim):
        yield node
    elif isinstance(node, S._Model):
        for name in _claim_fields(type(node)):
            yield from _claims_in(getattr(node, name))
    elif isinstance(node, list):
        for x in node:
            yield from _claims_in(x)


@functools.cache
def _claim_fields(cls: type) -> tuple[str, ...]:
    """The fields of a model class whose type can hold a Claim, at any depth, in field order."""
    return tuple(name for name, f in cls.model_fields.items() if _can_hold_claim(f.annotation, frozenset({cls})))


def _can_hold_claim(tp: Any, within: frozenset[type]) -> bool:
    """Whether a type annotation can hold a Claim: a Claim, a model with such a field, or a list,
    union or annotation of such types. ``within`` are the models being looked into (a model that
    holds itself adds nothing new)."""
    if isinstance(tp, type) and issubclass(tp, S._Model):
        if tp is S.Claim or issubclass(tp, S.Claim):
            return True
        if tp in within:
            return False
        return any(_can_hold_claim(f.annotation, within | {tp}) for f in tp.model_fields.values())
    return any(_can_hold_claim(arg, within) for arg in typing.get_args(tp))
