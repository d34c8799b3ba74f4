"""Patients recorded twice: the same person from the same publication, in two case files.

A publication is one record (``kb/sources/``); two source records with the same DOI, PMID or
PMCID are already an error of the validator (rule ``duplicate-publication``). What this module
adds is the patient: a case file that records a patient already recorded in another case file
from the same publication (directly, through a secondary source that retells it, or through a
source record with the same DOI, PMID or PMCID), with the same age, sex and genotype, is flagged
with the file and patient it duplicates (rule ``duplicate-patient``).

Level: **warning**. The match is strong but not proof: age, sex and genotype do not identify a
person (two siblings of one family can share all three), and "same publication" includes a
commentary that retells a case, which a curator may rightly record separately. An error would
block a correct contribution with no way out; a warning is printed by ``evidence validate``
and shown on the pull request's changed lines, where the reviewer decides. Patients within one
case file are never compared: the curator has told them apart there (P1, P2, ...), and a series
often gives several patients the same "not reported" fields. A patient whose age, sex and
variant are all "not reported" carries nothing to match on and is never flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import schema as S
from .errors import Diagnostic

if TYPE_CHECKING:  # validate.py calls check_duplicates: no import cycle at run time
    from .validate import Kb

__all__ = ["check_duplicates", "describe_patient", "patient_signature", "publications_of"]


def publications_of(kb: Kb, sources: Iterable[str]) -> set[str]:
    """Every name of every publication a case rests on, from the keys of the sources it cites
    (:attr:`evidence.cases.CaseFacts.sources`): source keys, what they retell, identifiers."""
    out: set[str] = set()
    for sid in sources:
        out.add(f"source:{sid}")
        src = kb.sources.get(sid)
        if src is None:
            continue
        if src.reports_on:
            out.add(f"source:{src.reports_on}")
            # The retold publication's identifiers name it as well.
            src = kb.sources.get(src.reports_on) or src
        for attr in ("doi", "pmid", "pmcid"):
            for s in (kb.sources.get(sid), src):
                value = getattr(s, attr, None) if s else None
                if value:
                    out.add(f"{attr}:{value.lower()}")
    return out


def patient_signature(p: S.Patient) -> tuple | None:
    """(age, sex, genotype) as comparable values, or None when nothing of them is reported."""
    age: tuple | None = None
    if isinstance(p.age, S.Age):
        age = (p.age.value, p.age.min, p.age.max, p.age.unit, p.age.category)
    genotype: tuple | None = None
    variants = False
    if isinstance(p.genotype, list):
        items = []
        for g in p.genotype:
            hgvs = g.variant.hgvs if isinstance(g.variant, S.Variant) else None
            variants = variants or hgvs is not None
            items.append((g.gene, hgvs or "", g.zygosity))
        genotype = tuple(sorted(items))
    if age is None and p.sex == S.NOT_REPORTED and not variants:
        return None
    return (age, p.sex, genotype)


def describe_patient(p: S.Patient) -> str:
    """Age, sex and genotype, as a duplicate-patient warning names them."""
    parts = []
    if isinstance(p.age, S.Age):
        a = p.age
        def n(x: float | None) -> str:
            return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)
        parts.append(f"{n(a.value)} {a.unit}" if a.value is not None else f"{n(a.min)}-{n(a.max)} {a.unit}" if a.min is not None else str(a.category))
    if p.sex != S.NOT_REPORTED:
        parts.append(str(p.sex))
    if isinstance(p.genotype, list):
        parts.extend(f"{g.gene} {g.variant.hgvs}" if isinstance(g.variant, S.Variant) else g.gene for g in p.genotype)
    return ", ".join(parts)


def check_duplicates(kb: Kb) -> list[Diagnostic]:
    """A warning on each patient that matches a patient of another case file (see the module docstring)."""
    from .cases import facts_of  # cases imports this module

    # Each case's facts (evidence.cases): its model is not read back from the build cache.
    seen: list[tuple[str, int, tuple[str, tuple | None, str], set[str], tuple]] = []
    for cid in sorted(kb.cases):
        facts = facts_of(kb.cases, cid)
        pubs = publications_of(kb, facts.sources)
        for i, p in enumerate(facts.patients):
            sig = p[1]
            if sig is not None:
                seen.append((cid, i, p, pubs, sig))
    # Only patients with the same signature can match: compare within those groups (comparing
    # every pair took 250 s at 10,000 cases).
    groups: dict[tuple, list[int]] = {}
    for n, entry in enumerate(seen):
        groups.setdefault(entry[4], []).append(n)
    out: list[Diagnostic] = []
    for members in groups.values():
        for a in members:
            for b in members:
                cid, i, p, pubs, sig = seen[a]
                ocid, oi, op, opubs, osig = seen[b]
                if cid == ocid or sig != osig or not (pubs & opubs):
                    continue
                f, other = kb.files.get(f"case:{cid}"), kb.files.get(f"case:{ocid}")
                if f is None or other is None or f.doc is None or other.doc is None:
                    continue
                line, col = f.doc.where(("patients", i, "id"))
                oline, _ = other.doc.where(("patients", oi, "id"))
                shared = sorted(x.split(":", 1)[1] for x in pubs & opubs if x.startswith("source:")) or sorted(pubs & opubs)
                out.append(Diagnostic(
                    f.display, line, col,
                    f"patients[{p[0]}] may be patient {op[0]} of {other.display} (line {oline}): the same publication ({', '.join(shared)}), "
                    f"age, sex and genotype ({p[2]})",
                    level="warning", rule="duplicate-patient", field=f"patients[{p[0]}]",
                    hint=f"if it is the same person, record it once: add what is new to {other.display} and remove it here; "
                         "if they are different people, say why in curation.notes, for the reviewer"))
    return out
