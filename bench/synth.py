"""Seeded generator of synthetic kbs, for benchmarks.

    .venv/bin/python bench/synth.py --cases 1000 --seed 1 --out /tmp/synth1000
    .venv/bin/python bench/synth.py --cases 1000 --seed 1 --out /tmp/synth1000 --texts

Every record is built as an ``evidence.schema`` model (``CaseReport``, ``Source``), so the files
are valid by construction, and dumped with ``model_dump(mode="json")``: a field added to the
schema shows up here without a second list of fields. The output folder is a complete project::

    <out>/evidence.toml              [evidence] base_iri, kb = "kb", source_texts = "texts"
    <out>/kb/vocabulary/*.yaml       copied from the real kb
    <out>/kb/synth-00001.yaml        one case per file
    <out>/kb/sources/src-00001.yaml  one source per case (text_held: none, unique DOI and PMID)
    <out>/kb/sources/<real>.yaml     the real sources that the vocabulary's claims cite
    <out>/texts/src-00001.txt        only with --texts

Case ``i`` draws from its own generator, seeded by (seed, i): the same seed gives byte-identical
files, and case 7 of a 1,000-case kb is case 7 of a 10,000-case kb.

By default no claim carries a quote: we hold no text of a synthetic source (text_held: none), and
a quote we cannot check is a warning. With ``--texts`` every claim quotes a sentence, the sources
hold an abstract, and the sentences are written to ``<out>/texts/`` so the quote check runs (and
passes) too.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from evidence import schema as S  # noqa: E402
from evidence.config import load_config  # noqa: E402

__all__ = ["generate", "make_case", "make_source", "load_vocabulary_keys"]

MARKER = ".evidence-synth"  # marks a folder this script wrote, so a rerun may replace it
TRANSCRIPT = "NM_033629.6"  # TREX1 MANE transcript
CDS_LENGTH = 1110  # TREX1 coding sequence, 369 codons + stop

AMINO = ["Ala", "Arg", "Asn", "Asp", "Cys", "Gln", "Glu", "Gly", "His", "Ile", "Leu", "Lys", "Met", "Phe", "Pro", "Ser", "Thr", "Trp", "Tyr", "Val"]
ONE_LETTER = dict(zip(AMINO, "ARNDCQEGHILKMFPSTWYV"))
BASES = "ACGT"

FAMILY = ["Martin", "Schmidt", "Rossi", "Dubois", "Nakamura", "Kowalski", "Garcia", "Jensen", "Novak", "Silva", "Okafor", "Chen",
          "Haddad", "Ivanova", "Larsen", "Moreau", "Fischer", "Bianchi", "Tanaka", "Costa", "Nguyen", "Petrov", "Weber", "Lopez"]
JOURNALS = ["J Invest Dermatol", "JAMA Dermatol", "Ann Rheum Dis", "Br J Dermatol", "Rheumatology (Oxford)", "J Clin Immunol",
            "Front Immunol", "Pediatr Dermatol", "Lupus", "Clin Exp Dermatol", "J Am Acad Dermatol", "Arthritis Rheumatol"]
CURATORS = [("A Curator", None), ("B Reviewer", "0000-0002-1825-0097"), ("C Editor", "0000-0001-5109-3700"),
            ("D Student", None), ("E Fellow", "0000-0003-1419-2405")]
LOCATORS = ["Abstract", "Abstract, Results", "Abstract, Methods", "Case report, paragraph 1", "Case report, paragraph 2",
            "Case presentation", "Table 1", "Table 2", "Figure 1", "Figure 2, legend", "Discussion, paragraph 1", "Results"]
FINDINGS = ["positive ANA", "low complement C3", "raised ESR", "interferon signature in blood", "acral violaceous plaques",
            "ulcerated lesions of the toes", "livedo reticularis", "nail fold capillary changes", "arthralgia",
            "lymphopenia", "raised CRP", "anti-dsDNA negative"]
REASONS = {
    "dose reduced": ["thrombocytopenia", "anaemia", "persistent remission", "weight gain", "an infection"],
    "dose increased": ["insufficient response", "a flare in winter", "new lesions"],
    "stopped": ["a drug eruption was suspected", "complete remission", "pregnancy", "an infection", "cost"],
    "restarted": ["relapse", "a flare after stopping", "new lesions"],
}
TIMELINES = [
    ["start"],
    ["start", "dose reduced"],
    ["start", "dose increased"],
    ["start", "stopped"],
    ["start", "stopped", "restarted"],
    ["start", "dose reduced", "stopped", "restarted"],
    ["start", "dose increased", "dose reduced"],
]
# Realistic dose ranges by drug key; other drugs use DEFAULT_DOSE.
DOSES: dict[str, list[tuple[list[float], str, str]]] = {
    "ruxolitinib": [([5, 10, 15, 20], "mg", "twice daily"), ([0.3, 0.5, 1.0], "mg/kg", "twice daily"), ([15, 25], "mg/m2", "twice daily")],
    "baricitinib": [([2, 4, 6, 8], "mg", "daily"), ([0.1, 0.2, 0.4], "mg/kg", "daily"), ([4], "mg", "twice daily")],
    "steroids": [([5, 10, 20, 40], "mg", "daily"), ([1, 2], "mg/kg", "daily"), ([500, 1000], "mg", "single dose"), ([1], "g", "monthly")],
}
DEFAULT_DOSE = [([1, 5, 10], "mg", "daily"), ([100], "ug", "weekly"), ([50], "ug/kg", "weekly"), ([1000], "IU", "daily"),
                ([2], "mL", "weekly"), ([0.1], "%", "twice daily")]
# Value ranges and units by measure key; on each a lower value is an improvement.
MEASURES: dict[str, tuple[float, float, str | None]] = {
    "rclasi": (0, 70, None),
    "pain-vas": (0, 10, "cm"),
    "ifn-signature-blood": (0.5, 40, "fold"),
    "skin-lesions-clinical": (0, 30, "lesions"),
}


# ----------------------------------------------------------------------------- vocabulary

def load_vocabulary_keys(vocab_dir: Path) -> dict[str, list[str]]:
    """The keys of each vocabulary file, in file order."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out: dict[str, list[str]] = {}
    for kind in S.VOCABULARY_KINDS:
        p = vocab_dir / f"{kind}.yaml"
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=loader) if p.is_file() else None
        out[kind] = [str(k) for k in (data or {})]
    for kind in ("drugs", "diseases", "measures", "genes"):
        if not out[kind]:
            raise SystemExit(f"{vocab_dir}/{kind}.yaml has no entries; a case needs at least one")
    return out


def _cited_sources(node: Any) -> set[str]:
    """Keys of the sources cited by claims anywhere in ``node`` (a loaded YAML tree)."""
    out: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("source"), str) and "locator" in node:
            out.add(node["source"])
        for v in node.values():
            out |= _cited_sources(v)
    elif isinstance(node, list):
        for v in node:
            out |= _cited_sources(v)
    return out


def real_sources_for_vocabulary(kb_dir: Path) -> list[Path]:
    """The real source files the copied vocabulary cites, with the sources they report on."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    todo: set[str] = set()
    for p in sorted((kb_dir / "vocabulary").glob("*.yaml")):
        todo |= _cited_sources(yaml.load(p.read_text(encoding="utf-8"), Loader=loader))
    found: dict[str, Path] = {}
    while todo:
        key = todo.pop()
        p = kb_dir / "sources" / f"{key}.yaml"
        if key in found or not p.is_file():
            continue  # a missing one shows up as an error when the synthetic kb is validated
        found[key] = p
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=loader) or {}
        if isinstance(data.get("reports_on"), str):
            todo.add(data["reports_on"])
        todo |= _cited_sources(data.get("citation_evidence"))
    return [found[k] for k in sorted(found)]


# ----------------------------------------------------------------------------- one case

class _Case:
    """What one case draws from: its generator, its source, the vocabulary, quotes if wanted."""

    def __init__(self, rng: random.Random, source_id: str, vocab: dict[str, list[str]], quotes: bool):
        self.rng = rng
        self.source = source_id
        self.vocab = vocab
        self.quotes = quotes
        self.sentences: list[str] = []  # the text of the source, when quotes are on

    def claims(self, *sentences: str, k: int | None = None) -> list[S.Claim]:
        """One claim per sentence (at least one): a locator, a quote if wanted, sometimes a note."""
        rng = self.rng
        chosen = list(sentences) if k is None else list(sentences[:k])
        out = []
        for sentence in chosen or ["The case is described."]:
            quote = None
            if self.quotes:
                quote = sentence
                self.sentences.append(sentence)
            note = rng.choice([None, None, None, None, "The value is read from the table.", "Derived from the text; see the curation notes."])
            out.append(S.Claim(source=self.source, locator=rng.choice(LOCATORS), quote=quote, note=note))
        return out

    def pick(self, kind: str, prefer: tuple[str, ...] = ()) -> str:
        keys = self.vocab[kind]
        liked = [k for k in keys if any(p in k for p in prefer)]
        if liked and self.rng.random() < 0.8:
            return self.rng.choice(liked)
        return self.rng.choice(keys)


def _duration(rng: random.Random) -> str:
    return rng.choice(["P1M", "P6W", "P2M", "P3M", "P4M", "P6M", "P9M", "P1Y", "P18M", "P2Y", "P1Y6M", "P10D", "P12W"])


def _date(rng: random.Random, start: date, days: int) -> date:
    return start + timedelta(days=rng.randrange(days))


_VARIANT_POOL: list[S.Variant] = []


def _variant(rng: random.Random) -> S.Variant:
    """One of a fixed pool of TREX1 variants: one HGVS always has the same protein change, as in
    real data (the validator refuses two protein changes for one variant)."""
    if not _VARIANT_POOL:
        pool_rng = random.Random(20190301)
        seen: set[str] = set()
        while len(_VARIANT_POOL) < 400:
            v = _new_variant(pool_rng)
            if v.hgvs not in seen:
                seen.add(v.hgvs)
                _VARIANT_POOL.append(v)
    v = rng.choice(_VARIANT_POOL)
    statuses = {"transcript_status": rng.choice(["stated", "curated"])}
    if v.protein:
        statuses["protein_status"] = rng.choice(["stated", "derived"])
    return v.model_copy(update=statuses)


def _new_variant(rng: random.Random) -> S.Variant:
    """A TREX1 variant on NM_033629.6 in valid HGVS, with a protein change derived to match its codon."""
    kind = rng.choices(["sub", "del", "dup", "ins", "delins"], weights=[70, 12, 8, 5, 5])[0]
    pos = rng.randint(1, CDS_LENGTH - 3)
    codon = (pos + 2) // 3
    ref_aa = rng.choice(AMINO)
    legacy = None
    if kind == "sub":
        ref = rng.choice(BASES)
        alt = rng.choice([b for b in BASES if b != ref])
        c = f"c.{pos}{ref}>{alt}"
        if rng.random() < 0.15:
            protein = f"p.({ref_aa}{codon}=)"
        elif rng.random() < 0.1:
            protein = f"p.({ref_aa}{codon}*)"
        else:
            alt_aa = rng.choice([a for a in AMINO if a != ref_aa])
            protein = f"p.({ref_aa}{codon}{alt_aa})"
            legacy = f"{ONE_LETTER[ref_aa]}{codon}{ONE_LETTER[alt_aa]}"
    else:
        length = rng.randint(1, 4)
        span = f"{pos}" if length == 1 else f"{pos}_{pos + length - 1}"
        seq = "".join(rng.choice(BASES) for _ in range(length))
        if kind == "del":
            c = f"c.{span}del" + (seq if rng.random() < 0.5 else "")
        elif kind == "dup":
            c = f"c.{span}dup" + (seq if rng.random() < 0.5 else "")
        elif kind == "ins":
            c = f"c.{pos}_{pos + 1}ins{seq}"
        else:
            c = f"c.{span}delins{''.join(rng.choice(BASES) for _ in range(rng.randint(1, 4)))}"
        # A length not a multiple of 3 shifts the frame; an in-frame change is left as p.(?),
        # since the schema's protein pattern has no in-frame deletion form.
        if length % 3 == 0:
            protein = "p.(?)"
        else:
            protein = rng.choice([f"p.({ref_aa}{codon}fs)", f"p.({ref_aa}{codon}fs*{rng.randint(2, 60)})"])
    with_protein = rng.random() < 0.8
    return S.Variant(
        hgvs=f"{TRANSCRIPT}:{c}",
        protein=protein if with_protein else None,
        protein_status=rng.choice(["stated", "derived"]) if with_protein else None,
        transcript_status=rng.choice(["stated", "curated"]),
        legacy_name=legacy if legacy and rng.random() < 0.5 else None,
    )


def _genotype(cx: _Case) -> list[S.Genotype] | str:
    rng = cx.rng
    if rng.random() < 0.15:
        return S.NOT_REPORTED
    gene = "TREX1" if "TREX1" in cx.vocab["genes"] else cx.vocab["genes"][0]
    zyg = rng.choices(["heterozygous", "homozygous", "compound heterozygous", "not reported"], weights=[55, 20, 15, 10])[0]
    n = 2 if zyg == "compound heterozygous" else 1
    out = []
    for _ in range(n):
        variant: S.Variant | str = S.NOT_REPORTED if rng.random() < 0.1 else _variant(rng)
        shown = variant.hgvs if isinstance(variant, S.Variant) else "a variant"
        out.append(S.Genotype(
            gene=gene,
            variant=variant,
            zygosity=zyg,
            inheritance=rng.choice(["autosomal dominant", "autosomal recessive", "de novo", "not reported"]),
            mechanism=rng.choice(["dominant negative", "loss of function", "haploinsufficiency", "not reported"]),
            evidence=cx.claims(f"Sequencing showed a {zyg} {gene} variant, {shown}."),
        ))
    return out


def _age(rng: random.Random) -> S.Age | str:
    form = rng.choices(["value", "months", "range", "category", "nr"], weights=[50, 5, 10, 15, 20])[0]
    if form == "value":
        return S.Age(value=float(rng.randint(1, 90)), basis="stated")
    if form == "months":
        return S.Age(value=float(rng.randint(1, 23)), unit="months")
    if form == "range":
        lo = rng.randint(0, 8) * 10
        return S.Age(min=float(lo), max=float(lo + 9))
    if form == "category":
        return S.Age(category=rng.choice(["infant", "child", "adolescent", "minor", "adult", "older adult"]), basis=rng.choice(["stated", "derived"]))
    return S.NOT_REPORTED


def _dose(rng: random.Random, drug: str) -> tuple[S.Dose | str, str]:
    """A dose and the frequency that goes with it."""
    value_set, unit, freq = rng.choice(DOSES.get(drug, DEFAULT_DOSE))
    r = rng.random()
    if r < 0.1:
        return S.NOT_REPORTED, rng.choice([freq, S.NOT_REPORTED])
    if r < 0.15:
        return S.Dose(qualifier=rng.choice(["full dose", "standard dose", "low dose"])), freq
    return S.Dose(value=float(rng.choice(value_set)), unit=unit, qualifier="per dose" if rng.random() < 0.05 else None), freq


def _scaled(dose: S.Dose | str, factor: float, qualifier: str) -> S.Dose:
    if isinstance(dose, S.Dose) and dose.value is not None:
        return S.Dose(value=round(dose.value * factor, 3), unit=dose.unit)
    return S.Dose(qualifier=qualifier)


def _measurement(rng: random.Random, measure: str, direction: str) -> tuple[S.Measurement | str, S.Measurement | str, str]:
    """Values before and after, consistent with the direction, and the response they mean."""
    if measure not in MEASURES or rng.random() < 0.25:
        resp = {"improved": rng.choice(["complete", "partial", S.NOT_REPORTED]), "worsened": "worsened", "unchanged": "none"}.get(direction, S.NOT_REPORTED)
        return S.NOT_REPORTED, S.NOT_REPORTED, resp
    lo, hi, unit = MEASURES[measure]
    before = round(rng.uniform(lo + (hi - lo) * 0.3, hi), 1)
    if direction == "improved":
        complete = rng.random() < 0.3
        after = lo if complete else round(before - rng.uniform(0.2, 0.8) * (before - lo), 1)
        resp = "complete" if complete else "partial"
    elif direction == "worsened":
        after = round(min(hi, before * rng.uniform(1.1, 1.6)), 1)
        resp = "worsened"
    else:
        after = before
        resp = "none"
    return S.Measurement(value=before, unit=unit), S.Measurement(value=after, unit=unit), resp


class _Patient:
    """Builds one patient's treatments, outcomes and adverse events, keeping their ids in step."""

    def __init__(self, cx: _Case, pid: str, diagnosis: str):
        self.cx = cx
        self.pid = pid
        self.diagnosis = diagnosis
        self.outcomes: list[S.Outcome] = []
        self.adverse_events: list[S.AdverseEvent] = []

    def outcome(self, tid: str, direction: str | None = None, timepoint: str | None = None) -> str:
        cx, rng = self.cx, self.cx.rng
        oid = f"O{len(self.outcomes) + 1}"
        measure = cx.pick("measures")
        direction = direction or rng.choices(["improved", "worsened", "unchanged", "new onset"], weights=[70, 10, 12, 8])[0]
        before, after, resp = _measurement(rng, measure, direction)
        tp = timepoint or (rng.choice([_duration(rng), _duration(rng), S.NOT_REPORTED]))
        self.outcomes.append(S.Outcome(
            id=oid, treatment=tid, measure=measure, timepoint=tp,
            timepoint_qualifier=rng.choice(["at", "at", "within", "after"]),
            before=before, after=after, direction=direction, response=resp,
            description=f"{measure} {direction}" if rng.random() < 0.6 else None,
            evidence=cx.claims(f"At follow-up ({tp}) the {measure} had {direction} on {tid} in patient {self.pid}.",
                               f"The response was {resp}.", k=rng.choice([1, 1, 2])),
        ))
        return oid

    def adverse_event(self, tid: str, action: str | None = None) -> str:
        cx, rng = self.cx, self.cx.rng
        aid = f"AE{len(self.adverse_events) + 1}"
        term = cx.pick("phenotypes") if cx.vocab["phenotypes"] else None
        if term is None:
            raise SystemExit("kb/vocabulary/phenotypes.yaml has no entries; adverse events need one")
        sev = rng.choice(["mild", "moderate", "severe", "not reported"])
        act = action or rng.choice(["none", "dose reduced", "interrupted", "stopped", "not reported"])
        self.adverse_events.append(S.AdverseEvent(
            id=aid, term=term, treatment=tid, severity=sev, action=act,
            evidence=cx.claims(f"Patient {self.pid} developed {term} ({sev}) on {tid}."),
        ))
        return aid

    def treatment(self, tid: str, drug: str) -> S.Treatment:
        cx, rng = self.cx, self.cx.rng
        dose, freq = _dose(rng, drug)
        route = rng.choices(["oral", "topical", "intravenous", "subcutaneous", "not reported"], weights=[75, 5, 5, 3, 12])[0]
        duration = rng.choice([_duration(rng), _duration(rng), S.NOT_REPORTED])
        start = rng.choice([None, S.NOT_REPORTED, _date(rng, date(2008, 1, 1), 6000)])
        phases: list[S.Phase] = []
        if rng.random() < 0.5:
            kinds = rng.choice(TIMELINES)
            current: S.Dose | str = dose
            for j, kind in enumerate(kinds, start=1):
                ph_dose: S.Dose | str | None
                reason: S.Reason | str | None = None
                if kind == "start":
                    ph_dose = dose
                elif kind == "dose reduced":
                    ph_dose = current = _scaled(current, 0.5, "reduced")
                elif kind == "dose increased":
                    ph_dose = current = _scaled(current, 2.0, "increased")
                elif kind == "restarted":
                    ph_dose = current = dose if rng.random() < 0.7 else _scaled(dose, 0.5, "reduced")
                else:
                    ph_dose = None
                if kind != "start":
                    r = rng.random()
                    if r < 0.35 and kind in ("dose reduced", "stopped"):
                        aid = self.adverse_event(tid, action={"dose reduced": "dose reduced", "stopped": "stopped"}[kind])
                        reason = S.Reason(description=self.adverse_events[-1].term, adverse_event=aid)
                    elif r < 0.85:
                        reason = S.Reason(description=rng.choice(REASONS[kind]))
                    else:
                        reason = S.NOT_REPORTED
                seen = []
                if rng.random() < 0.6:
                    direction = {"stopped": rng.choice(["worsened", "improved"]), "dose reduced": rng.choice(["new onset", "unchanged", "improved"])}.get(kind, "improved")
                    seen.append(self.outcome(tid, direction))
                phases.append(S.Phase(
                    id=f"PH{j}", kind=kind, dose=ph_dose,
                    frequency=freq if kind in ("start", "restarted") and rng.random() < 0.5 else None,
                    duration=rng.choice([_duration(rng), S.NOT_REPORTED, None]),
                    reason=reason,
                    followed_by=rng.choice([None, "the lesions improved", "her skin got worse", "remission was maintained"]),
                    outcomes=seen,
                    evidence=cx.claims(f"Treatment {tid} was {kind} in patient {self.pid}.", f"The reason given was {getattr(reason, 'description', 'none')}.",
                                       k=rng.choice([1, 1, 2])),
                ))
        shown = f"{dose.value} {dose.unit}" if isinstance(dose, S.Dose) and dose.value else "an unstated dose"
        return S.Treatment(
            id=tid, drug=drug,
            indication=self.diagnosis if rng.random() < 0.85 else S.NOT_REPORTED,
            access=rng.choice(["compassionate use", "off-label", "approved indication", "not reported"]),
            dose=dose, frequency=freq, route=route, start=start, duration=duration, phases=phases,
            evidence=cx.claims(f"Patient {self.pid} received {drug} at {shown} {freq} for {duration}."),
        )

    def build(self) -> S.Patient:
        cx, rng = self.cx, self.cx.rng
        jak = tuple(k for k in ("ruxolitinib", "baricitinib", "tofacitinib") if k in cx.vocab["drugs"])
        n_treat = rng.choices([1, 2, 3], weights=[70, 25, 5])[0]
        drugs = [cx.pick("drugs", jak) for _ in range(n_treat)]
        treatments = []
        for i, drug in enumerate(drugs, start=1):
            tid = f"T{i}"
            treatments.append(self.treatment(tid, drug))
            for _ in range(rng.choices([0, 1, 2, 3], weights=[10, 50, 30, 10])[0]):
                self.outcome(tid)
            if rng.random() < 0.25:
                self.adverse_event(tid)
        others = [k for k in cx.vocab["diseases"] + cx.vocab["phenotypes"] if k != self.diagnosis]
        comorbid = sorted(set(rng.sample(others, k=min(len(others), rng.choices([0, 1, 2], weights=[60, 30, 10])[0]))))
        prior_drugs = [d for d in cx.vocab["drugs"] if d not in drugs]
        priors = []
        for d in rng.sample(prior_drugs, k=min(len(prior_drugs), rng.choices([0, 1, 2], weights=[50, 40, 10])[0])):
            result = rng.choice(["none", "partial", "not reported"])
            priors.append(S.PriorTreatment(drug=d, result=result, evidence=cx.claims(f"Earlier treatment with {d} gave {result} response.")))
        sex = rng.choices(["female", "male", "not reported", "other"], weights=[50, 38, 11, 1])[0]
        age = _age(rng)
        return S.Patient(
            id=self.pid,
            label=f"patient {self.pid[1:]}" if rng.random() < 0.3 else None,
            age=age, sex=sex, genotype=_genotype(cx),
            diagnoses=[self.diagnosis],
            comorbidities=comorbid,
            findings=sorted(rng.sample(FINDINGS, k=rng.choices([0, 1, 2, 3], weights=[40, 30, 20, 10])[0])),
            prior_treatments=priors,
            treatments=treatments,
            outcomes=self.outcomes,
            adverse_events=self.adverse_events,
            evidence=cx.claims(f"Patient {self.pid}, {sex}, was diagnosed with {self.diagnosis}.", "Further findings are listed in Table 1.",
                               k=rng.choice([1, 1, 2])),
        )


def _cohort(cx: _Case, n_patients: int) -> S.Cohort:
    rng = cx.rng
    n = n_patients + rng.randint(0, 20)
    female = rng.randint(0, n)
    male = rng.randint(0, n - female) if rng.random() < 0.8 else None
    if rng.random() < 0.5:
        age = S.CohortAge(mean=float(rng.randint(5, 70)), sd=float(rng.randint(2, 25)))
    else:
        lo = rng.randint(1, 40)
        age = S.CohortAge(median=float(lo + 10), min=float(lo), max=float(lo + rng.randint(10, 50)))
    counts = [S.OutcomeCount(measure=cx.pick("measures"), response=rng.choice(["complete", "partial", "none"]),
                             direction=rng.choice([None, "improved"]), patients=rng.randint(0, n),
                             evidence=cx.claims(f"{k + 1} of {n} patients responded."))
              for k in range(rng.randint(0, 3))]
    ae_counts = [S.AdverseEventCount(term=rng.choice([None] + cx.vocab["phenotypes"]), severity=rng.choice([None, "severe", "mild"]),
                                     patients=rng.randint(0, n), evidence=cx.claims("No severe adverse reactions were reported."))
                 for _ in range(rng.randint(0, 2))]
    return S.Cohort(n=n, female=female, male=male, age=age if rng.random() < 0.8 else None, outcome_counts=counts,
                    adverse_event_counts=ae_counts, evidence=cx.claims(f"{n} patients ({female} women) were included."))


LAST_CURATED = date(2026, 11, 1)  # the latest curation date a synthetic file gets: fixed, so that a seed gives one kb


def _curation(rng: random.Random, created_after: date) -> S.Curation:
    curators = [S.Curator(name=name, orcid=orcid) for name, orcid in rng.sample(CURATORS, k=rng.choice([1, 1, 2]))]
    created = min(_date(rng, max(created_after, date(2024, 1, 1)), 700), LAST_CURATED)  # never in the future (a validation rule)
    updated = min(created + timedelta(days=rng.randint(1, 300)), LAST_CURATED) if rng.random() < 0.3 else None
    notes = rng.choice([None, None, "Values read from Table 1.", "The second patient of the series is left out: no treatment given."])
    return S.Curation(curators=curators, created=created, updated=updated, notes=notes)


def make_source(rng: random.Random, i: int, design: str, quotes: bool, sentences: list[str]) -> S.Source:
    """The publication record of case ``i``; with quotes it holds an abstract (the sentences)."""
    sid = f"src-{i:05d}"
    year = rng.randint(2005, 2025)
    n_auth = rng.randint(1, 12)
    authors: list[str] = []
    while len(authors) < n_auth:  # one name once: a repeated author would be a repeated triple
        name = f"{rng.choice(FAMILY)} {rng.choice('ABCDEFGHJKLMNPRSTW')}{rng.choice(['', 'A', 'M', 'J'])}"
        if name not in authors:
            authors.append(name)
    kind = rng.choice(["case report", "letter", "journal article"] if design == "case report" else ["case series", "journal article", "conference abstract"])
    title = f"{rng.choice(['JAK inhibition', 'Ruxolitinib', 'Baricitinib', 'Janus kinase inhibitors'])} in {rng.choice(['TREX1-related', 'familial', 'refractory'])} chilblain lupus: synthetic report {i}"
    held = S.TextHeld.abstract.value if quotes else S.TextHeld.none.value
    cite = f"{authors[0]} et al. {title}. {year}."
    if quotes:
        sentences.insert(0, cite)
    return S.Source(
        id=sid, kind=kind, title=title, authors=authors, authors_complete=rng.random() < 0.8,
        journal=rng.choice(JOURNALS) if kind != "conference abstract" else None,
        publisher="Synthetic Congress Proceedings" if kind == "conference abstract" else None,
        year=year, date=date(year, rng.randint(1, 12), rng.randint(1, 28)) if rng.random() < 0.5 else None,
        volume=str(rng.randint(1, 200)), issue=str(rng.randint(1, 12)) if rng.random() < 0.7 else None,
        pages=f"{(p := rng.randint(1, 2000))}-{p + rng.randint(1, 10)}",
        doi=f"10.5555/synth.{i:05d}", pmid=str(30_000_000 + i),
        pmcid=f"PMC{9_000_000 + i}" if rng.random() < 0.4 else None,
        url=f"https://example.org/synth/{i:05d}" if rng.random() < 0.2 else None,
        text_held=held, text_file=f"{sid}.txt" if quotes else None,
        citation_evidence=[S.Claim(source=sid, locator="title page", quote=cite if quotes else None)],
        identifier_notes="Synthetic record for benchmarks; the identifiers resolve to nothing." if rng.random() < 0.3 else None,
        curation=_curation(rng, date(year, 1, 1)),
    )


def make_case(seed: int, i: int, vocab: dict[str, list[str]], quotes: bool = False) -> tuple[S.CaseReport, S.Source, list[str]]:
    """Case ``i`` of seed ``seed``, its source, and the source's text (sentences; empty without quotes)."""
    rng = random.Random(f"evidence-synth:{seed}:{i}")
    sid = f"src-{i:05d}"
    cx = _Case(rng, sid, vocab, quotes)
    n_patients = rng.choices([1, 2, 3, 4, 5], weights=[50, 15, 15, 10, 10])[0]
    with_cohort = n_patients > 1 and rng.random() < 0.6
    design = "case series" if n_patients > 1 else "case report"
    condition = cx.pick("diseases", ("lupus",))
    patients = [_Patient(cx, f"P{k}", condition).build() for k in range(1, n_patients + 1)]
    cohort = _cohort(cx, n_patients) if with_cohort else None
    drugs = sorted({t.drug for p in patients for t in p.treatments})
    case = S.CaseReport(
        id=f"synth-{i:05d}",
        title=f"{', '.join(drugs)} in {n_patients} patient{'s' if n_patients > 1 else ''} with {condition} (synthetic {i})",
        sources=[S.SourceRef(source=sid, role="primary")],
        study_design=design,
        evidence_level=S.EvidenceLevel(scale="civic", level=rng.choice(["C", "C", "C", "B"]),
                                       rationale=rng.choice([None, "A single case report.", f"A case series of {n_patients} patients, without controls."])),
        conditions=[condition],
        cohort=cohort,
        patients=patients,
        evidence=cx.claims(f"We report {n_patients} patient(s) with {condition}.", "This is a retrospective description.", k=rng.choice([1, 2])),
        curation=_curation(rng, date(2024, 1, 1)),
    )
    source = make_source(rng, i, design, quotes, cx.sentences)
    return _started_by(case, source.year), source, cx.sentences


def _started_by(case: S.CaseReport, year: int) -> S.CaseReport:
    """The case with every treatment start moved into its publication's year at the latest (a
    start after it is a validation warning); no random draw, so a seed gives the kb it gave."""
    def start(t: S.Treatment) -> S.Treatment:
        if isinstance(t.start, date) and t.start.year > year:
            return t.model_copy(update={"start": t.start.replace(year=year, day=min(t.start.day, 28))})
        return t

    patients = [p.model_copy(update={"treatments": [start(t) for t in p.treatments]}) for p in case.patients]
    return case.model_copy(update={"patients": patients})


# ----------------------------------------------------------------------------- writing

def _dump(model: S._Model) -> str:
    data: Any = model.model_dump(mode="json", exclude_none=True, exclude_defaults=False)
    return yaml.dump(data, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper), sort_keys=False, allow_unicode=True, width=100)


def _prepare(out: Path, force: bool) -> None:
    """Make ``out`` empty of any earlier synthetic kb; never touch a folder we did not write."""
    out.mkdir(parents=True, exist_ok=True)
    ours = (out / MARKER).is_file()
    busy = [p for p in (out / "kb", out / "texts", out / "evidence.toml") if p.exists()]
    if busy and not ours and not force:
        raise SystemExit(f"{out} holds files this script did not write ({', '.join(p.name for p in busy)}); choose another --out or pass --force")
    for p in busy:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    (out / MARKER).write_text("written by bench/synth.py; the folder is replaced on the next run\n", encoding="utf-8")


def generate(out: Path, cases: int, seed: int, quotes: bool = False, force: bool = False, base_iri: str = "https://w3id.org/evidence-kb/") -> dict[str, int]:
    """Write a complete synthetic project to ``out``; returns counts."""
    real_vocab = ROOT / "kb" / "vocabulary"
    vocab = load_vocabulary_keys(real_vocab)
    _prepare(out, force)
    kb = out / "kb"
    (kb / "sources").mkdir(parents=True)
    shutil.copytree(real_vocab, kb / "vocabulary")
    # The vocabulary's claims cite real sources: copy those records (and, for the quote check,
    # their texts) so that the synthetic kb is whole.
    real_texts = load_config(ROOT).texts_dir()
    if quotes:
        (out / "texts").mkdir()
    for p in real_sources_for_vocabulary(ROOT / "kb"):
        shutil.copyfile(p, kb / "sources" / p.name)
        text_file = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("text_file")
        if quotes and text_file and real_texts and (real_texts / text_file).is_file():
            shutil.copyfile(real_texts / text_file, out / "texts" / text_file)
    (out / "evidence.toml").write_text(
        "# A synthetic kb written by bench/synth.py, for benchmarks.\n"
        f'[evidence]\nbase_iri = "{base_iri}"\nkb = "kb"\nsource_texts = "texts"\n', encoding="utf-8")
    patients = 0
    for i in range(1, cases + 1):
        case, source, sentences = make_case(seed, i, vocab, quotes)
        patients += len(case.patients)
        (kb / f"{case.id}.yaml").write_text(_dump(case), encoding="utf-8")
        (kb / "sources" / f"{source.id}.yaml").write_text(_dump(source), encoding="utf-8")
        if quotes:
            (out / "texts" / f"{source.id}.txt").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return {"cases": cases, "patients": patients}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=1000, help="number of case files (default 1000)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    ap.add_argument("--out", type=Path, required=True, help="folder to write the project to")
    ap.add_argument("--texts", action="store_true", help="quote a sentence in every claim and write the source texts to check them against")
    ap.add_argument("--force", action="store_true", help="replace kb/, texts/ and evidence.toml in --out even if this script did not write them")
    ap.add_argument("--check", action="store_true", help="validate the result afterwards and fail on any error or warning")
    args = ap.parse_args(argv)
    if args.cases < 1 or args.cases > 99_999:
        ap.error("--cases must be between 1 and 99999 (ids have five digits)")
    counts = generate(args.out, args.cases, args.seed, quotes=args.texts, force=args.force)
    print(f"wrote {counts['cases']} cases, {counts['patients']} patients to {args.out}")
    if args.check:
        from evidence.validate import validate_kb

        kb = validate_kb(load_config(args.out))
        for d in kb.diagnostics[:20]:
            print(d)
        print(f"validate: {len(kb.cases)} cases, {len(kb.diagnostics)} diagnostics")
        return 1 if kb.diagnostics else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
