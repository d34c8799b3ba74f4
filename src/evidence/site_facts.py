"""What the site needs of every case as plain values, and the records of a case as the site model
holds them (:class:`Ref`).

The site model (:mod:`evidence.site_model`) indexes every case: who was given what, for which
condition, with which genotype, outcome and harm; the home page counts them and the lists show a
row per case. It used to walk every case's model. A rebuild after one edit of a 10,000-case kb then
read 740,000 model objects back from the build cache (1.35 s) for pages that were linked from the
previous build unread. A case's :class:`SiteFacts` hold what that indexing needs; they are worked
out once, where the case is checked, and kept in its build-cache entry beside its model
(:class:`evidence.cases.CaseFacts`). The model is read back only for a page that shows more of it.

A :class:`Ref` stands for one record of a case in the site model's lists (the case itself, a
patient, a treatment, an outcome ...): it carries the values the whole site reads of it (its id, a
treatment's drug, an outcome's measure and response ...), and any other attribute is read from
the case's model, read back when first asked for. ``isinstance(ref, S.Patient)`` holds for a
patient's ref, so code written for models takes refs as they are.
"""

from __future__ import annotations

import pickle
from datetime import date
from typing import Any, NamedTuple

from . import schema as S
from .site_format import NR, age_text, human_duration, is_nr, measurement_text, regimen_parts, regimen_text

__all__ = ["SiteFacts", "PatientFacts", "VariantFacts", "site_facts", "pack_site_facts", "outcome_values", "variant_of", "Ref", "CaseRef", "PatientRef", "TreatmentRef", "OutcomeRef",
           "AdverseEventRef", "GenotypeRef", "PriorTreatmentRef", "OutcomeCountRef", "AdverseEventCountRef", "REF_TYPES"]


class VariantFacts(NamedTuple):
    """What a carrier's row shows of the variant (evidence.schema.Variant's fields of the same names)."""

    hgvs: str
    protein: str | None
    legacy_name: str | None
    transcript_status: str
    protein_status: str | None


def variant_of(g: S.Genotype) -> VariantFacts | str:
    """A genotype's variant as the carrier tables show it: its :class:`VariantFacts`, or
    ``site_format.NR``. A genotype's ref holds them."""
    if type(g) is GenotypeRef:
        return g._variant
    v = g.variant
    if not isinstance(v, S.Variant):
        return NR
    return VariantFacts(v.hgvs, v.protein, v.legacy_name, v.transcript_status, v.protein_status)


def outcome_values(o: S.Outcome) -> tuple[str, str, str]:
    """An outcome's time from the start of its treatment (``site_format.human_duration``, without
    its qualifier), and its values before and after (``site_format.measurement_text``), as the
    outcome tables show them: each may be ``site_format.NR``. An outcome's ref holds them."""
    if type(o) is OutcomeRef:
        return o._values
    return (NR if is_nr(o.timepoint) else human_duration(o.timepoint)), measurement_text(o.before), measurement_text(o.after)  # type: ignore[return-value]


class PatientFacts(NamedTuple):
    id: str
    age: str  # site_format.age_text
    sex: str
    genotype: tuple[tuple[str, str | None, str | None, str | None], ...] | None  # (gene, HGVS, protein, legacy name); None: not reported
    # each genotype's (zygosity, inheritance, mechanism, variant: VariantFacts or NR); () when the genotype is not reported
    carriers: tuple[tuple[str, str, str, VariantFacts | str], ...]
    diagnoses: tuple[str, ...]
    comorbidities: tuple[str, ...]
    prior: tuple[tuple[str, str], ...]  # each prior treatment's drug and result
    # (id, drug, indication or None, phase kinds, regimen text, regimen parts: site_format.regimen_parts)
    treatments: tuple[tuple[str, str, str | None, tuple[str, ...], str, tuple[tuple[str, str], ...]], ...]
    # (id, treatment, measure, response, direction, timepoint qualifier, description, outcome_values)
    outcomes: tuple[tuple[str, str, str, str, str, str, str | None, tuple[str, str, str]], ...]
    adverse_events: tuple[tuple[str, str, str, str, str], ...]  # (id, treatment, term, severity, action)


class SiteFacts(NamedTuple):
    title: str
    design: str
    level: tuple[str, str]  # (scale, level)
    created: date
    updated: date | None
    curators: tuple[tuple[str, str | None], ...]  # (name, ORCID)
    sources: tuple[tuple[str, str], ...]  # (source, role)
    conditions: tuple[str, ...]
    # (n, outcome counts as (measure, response, direction, patients), adverse-event counts as (term, severity, patients)); None: no cohort
    cohort: tuple[int, tuple[tuple[str, str | None, str | None, int], ...], tuple[tuple[str | None, str | None, int], ...]] | None
    patients: tuple[PatientFacts, ...]

    @property
    def date(self) -> date:
        """When the case was last curated (site_model.SiteModel.case_date)."""
        return self.updated or self.created

    def drugs(self) -> list[str]:
        """Every drug given in the case, sorted (site_model.SiteModel.case_drugs)."""
        return sorted({t[1] for p in self.patients for t in p.treatments})

    def genes(self) -> list[str]:
        """Every gene its patients were genotyped at, sorted (site_model.SiteModel.case_genes)."""
        return sorted({g[0] for p in self.patients if p.genotype is not None for g in p.genotype})

    def n_patients(self) -> int:
        """The cohort's size, or the patients listed (site_model.SiteModel.case_patients)."""
        return self.cohort[0] if self.cohort is not None else len(self.patients)


def site_facts(case: S.CaseReport) -> SiteFacts:
    patients = []
    for p in case.patients:
        genotype, carriers = None, ()
        if isinstance(p.genotype, list):
            carriers = tuple((g.zygosity, g.inheritance, g.mechanism, variant_of(g)) for g in p.genotype)
            genotype = tuple((g.gene, *((g.variant.hgvs, g.variant.protein, g.variant.legacy_name) if isinstance(g.variant, S.Variant) else (None, None, None)))
                             for g in p.genotype)
        patients.append(PatientFacts(
            id=p.id, age=age_text(p.age), sex=p.sex, genotype=genotype, carriers=carriers, diagnoses=tuple(p.diagnoses), comorbidities=tuple(p.comorbidities),
            prior=tuple((pt.drug, pt.result) for pt in p.prior_treatments),
            treatments=tuple((t.id, t.drug, None if is_nr(t.indication) else t.indication, tuple(ph.kind for ph in t.phases), regimen_text(t),
                              tuple(regimen_parts(t))) for t in p.treatments),
            outcomes=tuple((o.id, o.treatment, o.measure, o.response, o.direction, o.timepoint_qualifier, o.description, outcome_values(o))
                           for o in p.outcomes),
            adverse_events=tuple((a.id, a.treatment, a.term, a.severity, a.action) for a in p.adverse_events),
        ))
    cohort = None
    if case.cohort:
        cohort = (case.cohort.n, tuple((oc.measure, oc.response, oc.direction, oc.patients) for oc in case.cohort.outcome_counts),
                  tuple((ac.term, ac.severity, ac.patients) for ac in case.cohort.adverse_event_counts))
    cu = case.curation
    return SiteFacts(
        title=case.title, design=case.study_design, level=(case.evidence_level.scale, case.evidence_level.level), created=cu.created,
        updated=cu.updated, curators=tuple((cur.name, cur.orcid) for cur in cu.curators), sources=tuple((r.source, r.role) for r in case.sources),
        conditions=tuple(case.conditions), cohort=cohort, patients=tuple(patients),
    )


def pack_site_facts(facts: SiteFacts) -> bytes:
    """As they are kept in a case's build-cache entry: a pickle, read only by a build."""
    return pickle.dumps(facts, protocol=pickle.HIGHEST_PROTOCOL)


class Ref:
    """One record of a case, named by the case's id and its path in the case's model (``("patients",
    0, "treatments", 1)``). The values of its slots are known without the model; any other
    attribute is the model's, which is read back (``cases[case id]``) the first time one is asked
    for. Not pickled: a ref belongs to the kb it was made from."""

    __slots__ = ("_cases", "_case", "_path", "_model")
    MODEL: type = S._Model  # the model class it stands for (``isinstance`` and ``__class__`` say it)
    HAS_ID = True  # the model has an ``id`` field, and the ref holds it

    def __init__(self, cases: Any, case: str, path: tuple[str | int, ...]) -> None:
        self._cases, self._case, self._path, self._model = cases, case, path, None

    def resolve(self) -> Any:
        """The record's model."""
        obj = self._model
        if obj is None:
            obj = self._cases[self._case]
            for step in self._path:
                obj = obj[step] if type(step) is int else getattr(obj, step)
            self._model = obj
        return obj

    def __getattr__(self, name: str) -> Any:  # only for what the slots do not hold
        # The protocols (pickle, copy, __html__) are not the model's; pydantic's own attributes
        # and the fields' dictionary are, so that a model compares equal to a ref of it.
        if name.startswith("__") and name != "__dict__" and not name.startswith("__pydantic"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __iter__(self) -> Any:  # a model iterates its fields
        return iter(self.resolve())

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: F811 - isinstance(ref, S.Patient) holds for a patient's ref
        return self.MODEL

    def fingerprint(self) -> str:
        """What stands for it in a page's key (site_pages._fingerprint), as for its model: its
        kind and id (a record without an id is told apart by its place beside its case)."""
        return f"M{self.MODEL.__name__}:{self.id if self.HAS_ID else ''}"  # type: ignore[attr-defined]

    def __reduce__(self) -> Any:
        raise TypeError(f"a reference to a record of case '{self._case}' is not pickled; pickle its model (resolve())")

    def __repr__(self) -> str:
        return f"<{self.MODEL.__name__} of case {self._case} at {'/'.join(map(str, self._path)) or '.'}>"


class CaseRef(Ref):
    __slots__ = ("id", "title")
    MODEL = S.CaseReport

    def __init__(self, cases: Any, case: str, title: str) -> None:
        super().__init__(cases, case, ())
        self.id, self.title = case, title


class PatientRef(Ref):
    __slots__ = ("id",)
    MODEL = S.Patient

    def __init__(self, cases: Any, case: str, i: int, pid: str) -> None:
        super().__init__(cases, case, ("patients", i))
        self.id = pid


class TreatmentRef(Ref):
    __slots__ = ("id", "drug")
    MODEL = S.Treatment

    def __init__(self, cases: Any, case: str, i: int, k: int, tid: str, drug: str) -> None:
        super().__init__(cases, case, ("patients", i, "treatments", k))
        self.id, self.drug = tid, drug


class OutcomeRef(Ref):
    __slots__ = ("id", "treatment", "measure", "response", "direction", "timepoint_qualifier", "description", "_values")
    MODEL = S.Outcome

    def __init__(self, cases: Any, case: str, i: int, k: int, facts: tuple) -> None:
        super().__init__(cases, case, ("patients", i, "outcomes", k))
        (self.id, self.treatment, self.measure, self.response, self.direction, self.timepoint_qualifier, self.description,
         self._values) = facts


class AdverseEventRef(Ref):
    __slots__ = ("id", "treatment", "term", "severity", "action")
    MODEL = S.AdverseEvent

    def __init__(self, cases: Any, case: str, i: int, k: int, facts: tuple[str, str, str, str, str]) -> None:
        super().__init__(cases, case, ("patients", i, "adverse_events", k))
        self.id, self.treatment, self.term, self.severity, self.action = facts


class GenotypeRef(Ref):
    __slots__ = ("gene", "zygosity", "inheritance", "mechanism", "_variant")
    MODEL = S.Genotype
    HAS_ID = False

    def __init__(self, cases: Any, case: str, i: int, k: int, gene: str, facts: tuple[str, str, str, VariantFacts | str]) -> None:
        super().__init__(cases, case, ("patients", i, "genotype", k))
        self.gene = gene
        self.zygosity, self.inheritance, self.mechanism, self._variant = facts


class PriorTreatmentRef(Ref):
    __slots__ = ("drug", "result")
    MODEL = S.PriorTreatment
    HAS_ID = False

    def __init__(self, cases: Any, case: str, i: int, k: int, facts: tuple[str, str]) -> None:
        super().__init__(cases, case, ("patients", i, "prior_treatments", k))
        self.drug, self.result = facts


class OutcomeCountRef(Ref):
    __slots__ = ("measure", "response", "direction", "patients")
    MODEL = S.OutcomeCount
    HAS_ID = False

    def __init__(self, cases: Any, case: str, k: int, facts: tuple[str, str | None, str | None, int]) -> None:
        super().__init__(cases, case, ("cohort", "outcome_counts", k))
        self.measure, self.response, self.direction, self.patients = facts


class AdverseEventCountRef(Ref):
    __slots__ = ("term", "severity", "patients")
    MODEL = S.AdverseEventCount
    HAS_ID = False

    def __init__(self, cases: Any, case: str, k: int, facts: tuple[str | None, str | None, int]) -> None:
        super().__init__(cases, case, ("cohort", "adverse_event_counts", k))
        self.term, self.severity, self.patients = facts


REF_TYPES = frozenset({CaseRef, PatientRef, TreatmentRef, OutcomeRef, AdverseEventRef, GenotypeRef, PriorTreatmentRef, OutcomeCountRef,
                       AdverseEventCountRef})
