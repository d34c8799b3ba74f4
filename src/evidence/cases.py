"""The checked cases of a kb: each case's model, read back from the build cache only when it is
asked for, and beside it what the checks across files need of it, as plain values.

A checked case is about 74 model objects: 740,000 at 10,000 cases, which took 1.35 s to read
back from the build cache in every validate, whether anything then asked for them or not (the
checks across files need a few of their values; ``evidence validate`` none of the rest). A case
the cache has is now kept as its pickle (:class:`Pickled`) in :class:`CaseModels` until its
model is asked for, and the checks across files run on its :class:`CaseFacts`, kept in the cache
entry beside the pickle. The facts hold what the site model needs of the case as well
(:class:`~evidence.site_facts.SiteFacts`, pickled apart: only a build reads them), so a build
reads back only the models of the pages it renders again.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, MutableMapping
from typing import Any, NamedTuple

from . import schema as S
from .duplicates import describe_patient, patient_signature
from .errors import Diagnostic, LoadError
from .site_facts import SiteFacts, pack_site_facts, site_facts

__all__ = ["CaseFacts", "CaseModels", "Pickled", "case_facts", "facts_of", "site_facts_of"]


class CaseFacts(NamedTuple):
    """What the checks across files (duplicate patients, one HGVS one variant) need of a case."""

    id: str
    sources: tuple[str, ...]  # the keys of the sources in its ``sources`` list, in order
    # each patient in order: its id, patient_signature (None: nothing to match on), describe_patient
    patients: tuple[tuple[str, tuple | None, str], ...]
    # each genotype with a variant: (patient index, genotype index, HGVS, gene, protein change
    # without brackets, legacy name)
    variants: tuple[tuple[int, int, str, str, str | None, str | None], ...]
    site: bytes  # what the site model needs of it: its SiteFacts, pickled (pack_site_facts)


def case_facts(case: S.CaseReport) -> CaseFacts:
    variants = []
    for i, p in enumerate(case.patients):
        if not isinstance(p.genotype, list):
            continue
        for j, g in enumerate(p.genotype):
            if isinstance(g.variant, S.Variant):
                # p.(Asp18Asn), predicted, and p.Asp18Asn, observed, name the same change.
                protein = g.variant.protein.replace("(", "").replace(")", "") if g.variant.protein else None
                variants.append((i, j, g.variant.hgvs, g.gene, protein, g.variant.legacy_name))
    return CaseFacts(
        id=case.id,
        sources=tuple(ref.source for ref in case.sources),
        patients=tuple((p.id, patient_signature(p), describe_patient(p)) for p in case.patients),
        variants=tuple(variants),
        site=pack_site_facts(site_facts(case)),
    )


def facts_of(cases: Any, key: str) -> CaseFacts:
    """A case's facts from a kb's cases: a :class:`CaseModels`, or a plain mapping of models."""
    return cases.facts(key) if isinstance(cases, CaseModels) else case_facts(cases[key])


def site_facts_of(cases: Any, key: str) -> SiteFacts:
    """A case's :class:`~evidence.site_facts.SiteFacts` from a kb's cases (as :func:`facts_of`)."""
    return cases.site(key) if isinstance(cases, CaseModels) else site_facts(cases[key])


class Pickled:
    """A checked case's model as the build cache keeps it (``pickle.dumps`` of the model), with its
    facts and the file it was checked from (named if it cannot be read back)."""

    __slots__ = ("facts", "data", "display")

    def __init__(self, facts: CaseFacts, data: bytes, display: str):
        self.facts, self.data, self.display = facts, data, display

    @property
    def id(self) -> str:
        return self.facts.id

    def load(self) -> S.CaseReport:
        try:
            model = pickle.loads(self.data)
        except Exception as exc:  # the entry's bytes passed their CRC: this is a cache written by other code
            raise LoadError(f"{self.display}: its checked model in the build cache cannot be read ({type(exc).__name__}: {exc})", [
                Diagnostic(self.display, 1, 1, "its checked model in the build cache cannot be read", rule="file-read",
                           hint="build again with EVIDENCE_CACHE=off, or delete the folder .cache/build")]) from None
        if not isinstance(model, S.CaseReport):
            raise LoadError(f"{self.display}: the build cache holds a {type(model).__name__} for it, not a case", [
                Diagnostic(self.display, 1, 1, "the build cache holds something else than its checked case", rule="file-read",
                           hint="build again with EVIDENCE_CACHE=off, or delete the folder .cache/build")])
        return model


class CaseModels(MutableMapping[str, S.CaseReport]):
    """Case id -> checked model, in the order the ids were added. A value given as a
    :class:`Pickled` is read back the first time it is asked for (``[id]``, ``values()``,
    ``items()``, ``get``), and kept; ``in``, ``len``, iterating the ids and :meth:`facts` read
    nothing back."""

    __slots__ = ("_models", "_facts", "_site")

    def __init__(self, items: Any = ()) -> None:
        self._models: dict[str, Any] = {}
        self._facts: dict[str, CaseFacts] = {}  # of the models given as models, worked out once
        self._site: dict[str, SiteFacts] = {}  # read from the facts once
        self.update(items)

    def facts(self, key: str) -> CaseFacts:
        """The case's :class:`CaseFacts`, without reading its model back."""
        value = self._models[key]
        if type(value) is Pickled:
            return value.facts
        found = self._facts.get(key)
        if found is None:
            found = self._facts[key] = case_facts(value)
        return found

    def site(self, key: str) -> SiteFacts:
        """The case's :class:`~evidence.site_facts.SiteFacts`, without reading its model back."""
        found = self._site.get(key)
        if found is None:
            found = self._site[key] = pickle.loads(self.facts(key).site)
        return found

    def add(self, key: str, model: S.CaseReport, facts: CaseFacts) -> None:
        """Set ``key`` to a model whose facts were worked out already (by the worker that checked it)."""
        self[key] = model
        self._facts[key] = facts

    def __getitem__(self, key: str) -> S.CaseReport:
        value = self._models[key]
        if type(value) is Pickled:
            self._facts[key] = value.facts
            value = self._models[key] = value.load()
        return value

    def __setitem__(self, key: str, value: S.CaseReport | Pickled) -> None:
        self._models[key] = value
        self._facts.pop(key, None)
        self._site.pop(key, None)

    def __delitem__(self, key: str) -> None:
        del self._models[key]
        self._facts.pop(key, None)
        self._site.pop(key, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def __contains__(self, key: object) -> bool:
        return key in self._models

    def __copy__(self) -> CaseModels:
        """A mapping of its own (copy.copy of the slots shared the dictionaries), its models not read back."""
        new = CaseModels()
        new._models, new._facts, new._site = dict(self._models), dict(self._facts), dict(self._site)
        return new

    def unread(self) -> int:
        """How many models have not been read back yet."""
        return sum(1 for v in self._models.values() if type(v) is Pickled)

    def __repr__(self) -> str:
        return f"CaseModels({len(self)} cases, {self.unread()} not read back)"
