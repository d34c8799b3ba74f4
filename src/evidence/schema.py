"""The kb format: one typed model per record, the single definition of every field.

The JSON Schema in ``schema/`` is generated from these models (``evidence schema``), the
validator checks files against them, the compiler reads their fields, and the format docs are
written from their titles and descriptions. Never add a field anywhere else.

"Not reported" is an explicit value (the string ``not reported``): it says the source is silent.
A field left out says nothing at all.
"""

from __future__ import annotations

import re
from datetime import date as Date
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "NOT_REPORTED",
    "NotReported",
    "number_text",
    "SLUG",
    "at_field",
    "Claim",
    "Curator",
    "Curation",
    "SourceRef",
    "Source",
    "EvidenceLevel",
    "Age",
    "Variant",
    "Genotype",
    "Dose",
    "Reason",
    "Phase",
    "Treatment",
    "PriorTreatment",
    "Measurement",
    "Outcome",
    "AdverseEvent",
    "Patient",
    "CohortAge",
    "OutcomeCount",
    "AdverseEventCount",
    "Cohort",
    "CaseReport",
    "VocabTerm",
    "Gene",
    "DrugTarget",
    "Drug",
    "Disease",
    "Measure",
    "Phenotype",
    "VOCABULARY_KINDS",
    "Unit",
    "Sex",
    "Frequency",
    "Route",
    "PhaseKind",
    "Response",
    "Direction",
    "Severity",
    "Action",
    "SourceKind",
    "TextHeld",
    "StudyDesign",
    "ISO_DURATION",
    "HGVS",
    "PROTEIN_CHANGE",
    "CURIE_PATTERNS",
]

NOT_REPORTED = "not reported"
NotReported = Literal["not reported"]

SLUG = r"^[a-z0-9][a-z0-9-]*[a-z0-9]$"  # a case or source id: the file name without .yaml
Slug = Annotated[str, StringConstraints(pattern=SLUG, max_length=80)]
LocalId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$", max_length=40)]
# Text holds something besides blanks: "  " is as empty as "" (and reported so, see
# validate.schema_diagnostics); a blank key named no term, and a blank quote was "found" anywhere.
Key = Annotated[str, StringConstraints(min_length=1, max_length=80, pattern=r"\S")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=5000, pattern=r"\S")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"\S")]

# true/false is never a number: pydantic's lax mode read `value: yes` as a dose of 1 and `n: yes`
# as a cohort of 1. A number YAML reads as text stays a number ("4", and 1.7e308, which YAML 1.1
# reads as text for want of a sign in the exponent); true/false is only true or false.


def _not_a_flag(kind: str) -> Any:
    def check(x: Any) -> Any:
        if isinstance(x, bool):
            raise PydanticCustomError(kind, "true or false is not a number")
        return x
    return BeforeValidator(check)


Number = Annotated[float, _not_a_flag("float_type")]
Whole = Annotated[int, _not_a_flag("int_type")]
Flag = Annotated[bool, Strict()]


def bounded(kind: type, **bounds: Any) -> Any:
    """A Number or Whole with bounds (ge, gt, le): the bounds come before the check on true/false,
    where the JSON Schema can name them (after it, they were written "ge", "le" into the schema)."""
    return Annotated[kind, Field(**bounds), _not_a_flag("int_type" if kind is int else "float_type")]


def at_field(name: str, message: str, hint: str = "", rule: str = "schema-rule", expected: str = "", found: str = "",
             sep: str = ": ") -> PydanticCustomError:
    """An error a model's own check finds in one of its fields (a model validator's errors are
    otherwise placed on the whole mapping): reported at that field, as ``<field><sep><message>``,
    by validate.schema_diagnostics (error type ``at_field``)."""
    return PydanticCustomError("at_field", "{field}: {message}", {"field": name, "message": message, "hint": hint, "rule": rule,
                                                                  "expected": expected, "found": found, "sep": sep})


def number_text(x: float | int) -> str:
    """A number as the kb means it, in plain positional notation: 4.0 is '4', 0.00002 is
    '0.00002' (``repr`` gives '2e-05', which is not an xsd:decimal, and which a reader of a dose
    should not have to decode)."""
    if isinstance(x, float):
        if x.is_integer():
            return str(int(x))
        text = repr(x)
        return text if "e" not in text else format(Decimal(text), "f")  # only an exponent needs the slower way
    return str(x)

# Whole numbers in every field but seconds, as in xsd:duration (which the graph uses; weeks are
# written there as days): "1.5 years" is curated as P1Y6M, which says the same exactly.
ISO_DURATION = r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?!$)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
_DURATION_PARTS = re.compile(r"(\d+(?:\.\d+)?)([YMWDHS])")
_DAYS_IN = {"Y": 365.25, "M": 30.4375, "W": 7.0, "D": 1.0, "H": 1 / 24, "TM": 1 / 1440, "S": 1 / 86400}
MAX_DURATION_YEARS = 150


def _plausible_duration(iso: str) -> str:
    """A duration of at most 150 years (P99999999999999999999999W passed the pattern, and the
    graph's tools then failed on it)."""
    date_part, _, time_part = iso.partition("T")
    days = sum(float(n) * _DAYS_IN[u] for n, u in _DURATION_PARTS.findall(date_part))
    days += sum(float(n) * _DAYS_IN["TM" if u == "M" else u] for n, u in _DURATION_PARTS.findall(time_part))
    if days > MAX_DURATION_YEARS * 365.25:
        raise ValueError(f"{iso} is more than {MAX_DURATION_YEARS} years; check the duration against the source")
    return iso


Duration = Annotated[str, StringConstraints(pattern=ISO_DURATION), AfterValidator(_plausible_duration)]

# A transcript-anchored HGVS variant such as NM_033629.6:c.52G>A (substitution, deletion,
# duplication, insertion, delins); the transcript version is required.
HGVS = (
    r"^(NM|NR|XM|XR|ENST)_?\d+\.\d+:c\."
    r"(\*|-)?\d+([+-]\d+)?(_(\*|-)?\d+([+-]\d+)?)?"
    r"([ACGT]>[ACGT]|del([ACGT]+)?|dup([ACGT]+)?|ins[ACGT]+|delins[ACGT]+)$"
)
HgvsString = Annotated[str, StringConstraints(pattern=HGVS)]
# HGVS protein notation, predicted changes in parentheses: p.(Asp18Asn), p.(Arg97ProfsTer23),
# p.(Lys12del), p.(Leu5_Val7del), p.(Arg4dup), p.(Gly2_Met3insAlaSer), p.(Cys28delinsTrpVal),
# p.(Trp24Ter), p.(Trp24*), p.(=), p.(?), p.0.
_AA = r"(?:Ala|Arg|Asn|Asp|Cys|Gln|Glu|Gly|His|Ile|Leu|Lys|Met|Phe|Pro|Ser|Thr|Trp|Tyr|Val|Sec|Pyl|Ter|\*)"
_POS = _AA + r"\d+"
_PCHANGE = (
    rf"(?:{_POS}(?:{_AA}|=|\?)"  # substitution, nonsense, silent, unknown
    rf"|{_POS}{_AA}?fs(?:{_AA}\d+|\*\d*|Ter\d*)?"  # frameshift
    rf"|{_POS}(?:_{_POS})?(?:del|dup)"  # deletion, duplication
    rf"|{_POS}_{_POS}ins{_AA}+"  # insertion
    rf"|{_POS}(?:_{_POS})?delins{_AA}+"  # deletion-insertion
    r"|=|\?|0)"
)
PROTEIN_CHANGE = rf"^p\.(?:\({_PCHANGE}\)|{_PCHANGE})$"
ProteinChange = Annotated[str, StringConstraints(pattern=PROTEIN_CHANGE)]

DOI = Annotated[str, StringConstraints(pattern=r"^10\.\d{4,9}/\S+$")]
PMID = Annotated[str, StringConstraints(pattern=r"^[1-9]\d{0,8}$")]
PMCID = Annotated[str, StringConstraints(pattern=r"^PMC\d{1,9}$")]
ORCID = Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")]
def _iri(value: str) -> str:
    """An address the graph can hold: a valid IRI (RFC 3987), as pyoxigraph parses it."""
    import pyoxigraph

    try:
        pyoxigraph.NamedNode(value)
    except ValueError as exc:
        raise ValueError(f"not a valid address ({exc}); percent-encode characters such as {{ }} | \\ ^ [ ]") from None
    return value


HttpUrl = Annotated[str, StringConstraints(pattern=r"^https?://[^\s<>\"']+$", max_length=2000), AfterValidator(_iri)]
TextFile = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*\.txt$", max_length=200)]

# The identifier syntax of every prefix a vocabulary may use. Keys are CURIE prefixes as
# Bioregistry spells them; a test checks every identifier in kb/vocabulary against these.
CURIE_PATTERNS: dict[str, str] = {
    "HGNC": r"^HGNC:\d{1,6}$",
    "NCBIGene": r"^NCBIGene:\d+$",
    "OMIM": r"^OMIM:\d{6}$",
    "Ensembl": r"^Ensembl:ENS[A-Z]*G\d{11}$",
    "UniProt": r"^UniProt:[OPQ][0-9][A-Z0-9]{3}[0-9]$|^UniProt:[A-NR-Z][0-9]([A-Z][A-Z0-9]{2}[0-9]){1,2}$",
    "CHEBI": r"^CHEBI:\d+$",
    "DrugBank": r"^DrugBank:DB\d{5}$",
    "ChEMBL": r"^ChEMBL:CHEMBL\d+$",
    "PubChem": r"^PubChem:\d+$",
    "MONDO": r"^MONDO:\d{7}$",
    "Orphanet": r"^Orphanet:\d+$",
    "DOID": r"^DOID:\d+$",
    "UMLS": r"^UMLS:C\d{7}$",
    "HP": r"^HP:\d{7}$",
    "NCIT": r"^NCIT:C\d+$",
}
Curie = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.]*:[A-Za-z0-9_.:-]+$")]


def _known_prefix(curie: str) -> str:
    """A CURIE of a known prefix, with that prefix's syntax (checked item by item, so that an
    error names the identifier and its line, not the whole list)."""
    prefix = curie.split(":", 1)[0]
    if prefix not in CURIE_PATTERNS:
        raise ValueError(f"unknown identifier prefix '{prefix}' in '{curie}'; known: {', '.join(sorted(CURIE_PATTERNS))}")
    if not re.fullmatch(CURIE_PATTERNS[prefix], curie):  # not re.match: its "$" lets a final newline through
        raise ValueError(f"'{curie}' does not match the {prefix} pattern {CURIE_PATTERNS[prefix]}")
    return curie


CheckedCurie = Annotated[Curie, AfterValidator(_known_prefix)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, allow_inf_nan=False, use_enum_values=True, regex_engine="python-re")

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickled (into the build cache, or from a forked validation worker) as its class, its
        field values in the class's order and the names of the fields it was given; unpickled by
        :func:`_restore`, which makes one shared :class:`_GivenFields` per distinct set of names.
        pydantic's own pickling (a state dictionary, and a set of given names per model) took
        2.2 s to read back the 20,000 checked models of a 10,000-case kb, this 1.5 s; and pydantic
        keeps a set per model, about a million sets of 200 to 700 bytes from 141 distinct ones
        (250 MB of the 900 MB the models took)."""
        cls = type(self)
        values = self.__dict__
        names = _field_names(cls)
        if self.__pydantic_extra__ or self.__pydantic_private__ or len(values) != len(names) or tuple(values) != names:
            return super().__reduce_ex__(protocol)  # not a model as validation makes them: pydantic's way
        given = self.__pydantic_fields_set__
        names_given = given.names if isinstance(given, _GivenFields) else tuple(sorted(given))
        return (_restore, (cls, tuple(values.values()), names_given))

    def __setstate__(self, state: dict[Any, Any]) -> None:  # pydantic's way (see __reduce_ex__)
        state["__pydantic_fields_set__"] = _given_fields(state.get("__pydantic_fields_set__") or ())
        super().__setstate__(state)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(getattr(self, "__pydantic_fields_set__", None), _GivenFields):  # before pydantic changes anything
            _GivenFields._refuse()
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if isinstance(getattr(self, "__pydantic_fields_set__", None), _GivenFields):
            _GivenFields._refuse()
        super().__delattr__(name)


class _GivenFields(set):
    """A set of given field names shared by many unpickled models, so it cannot change (pydantic
    adds to it when a field is assigned: models read from the cache are read, never changed).
    A set, not a frozenset, because pydantic's serializer takes only sets."""

    __slots__ = ("names",)

    def __init__(self, names: Any = ()) -> None:
        super().__init__(names)
        self.names = tuple(sorted(self))  # how a model pickles it (see _Model.__reduce_ex__)

    @staticmethod
    def _refuse(*args: Any, **kwargs: Any) -> None:
        raise TypeError("a model read back from a pickle (the build cache) cannot be changed; make a new one")

    def __copy__(self) -> set[str]:  # a copy of the model (model_copy) is a model of its own
        return set(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> set[str]:
        return set(self)

    add = discard = remove = pop = clear = update = difference_update = intersection_update = symmetric_difference_update = _refuse
    __ior__ = __iand__ = __isub__ = __ixor__ = _refuse  # type: ignore[assignment]


_SHARED_FIELDS: dict[tuple[str, ...], _GivenFields] = {}  # by the sorted names, see _Model.__reduce_ex__
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}  # a model class's fields, in order
_set_attr = object.__setattr__


def _given_fields(names: Any) -> _GivenFields:
    key = tuple(sorted(set(names)))
    found = _SHARED_FIELDS.get(key)
    if found is None:
        found = _SHARED_FIELDS[key] = _GivenFields(key)
    return found


def _field_names(cls: type[_Model]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(cls.model_fields)
    return names


def _restore(cls: type[_Model], values: tuple, given: tuple[str, ...]) -> _Model:
    """A model pickled by :meth:`_Model.__reduce_ex__`. The cache keys every entry by the code, so
    the class has the fields it had when it was pickled; a count that differs is an unreadable
    entry (a TypeError, which the cache takes for a miss)."""
    names = _field_names(cls)
    if len(values) != len(names):
        raise TypeError(f"a pickled {cls.__name__} has {len(values)} fields, the class {len(names)}")
    shared = _SHARED_FIELDS.get(given) or _given_fields(given)  # given: sorted names, as the key is
    self = cls.__new__(cls)
    _set_attr(self, "__dict__", dict(zip(names, values)))
    _set_attr(self, "__pydantic_fields_set__", shared)
    _set_attr(self, "__pydantic_extra__", None)
    _set_attr(self, "__pydantic_private__", None)
    return self


# --------------------------------------------------------------------------- enumerations


class Unit(StrEnum):
    """Dose units. mg/m2 is milligrams per square metre of body surface area."""

    mg = "mg"
    mg_kg = "mg/kg"
    mg_m2 = "mg/m2"
    ug = "ug"
    ug_kg = "ug/kg"
    g = "g"
    mL = "mL"
    IU = "IU"
    percent = "%"


class Sex(StrEnum):
    female = "female"
    male = "male"
    other = "other"
    not_reported = NOT_REPORTED


class Frequency(StrEnum):
    daily = "daily"
    twice_daily = "twice daily"
    three_times_daily = "three times daily"
    every_other_day = "every other day"
    weekly = "weekly"
    monthly = "monthly"
    single_dose = "single dose"
    not_reported = NOT_REPORTED


class Route(StrEnum):
    oral = "oral"
    topical = "topical"
    intravenous = "intravenous"
    subcutaneous = "subcutaneous"
    intramuscular = "intramuscular"
    not_reported = NOT_REPORTED


class PhaseKind(StrEnum):
    """What happened to the treatment at the start of a phase."""

    start = "start"
    dose_reduced = "dose reduced"
    dose_increased = "dose increased"
    stopped = "stopped"
    restarted = "restarted"


class Response(StrEnum):
    complete = "complete"
    partial = "partial"
    none = "none"
    worsened = "worsened"
    not_reported = NOT_REPORTED


class Direction(StrEnum):
    improved = "improved"
    worsened = "worsened"
    unchanged = "unchanged"
    new_onset = "new onset"
    not_reported = NOT_REPORTED


class Severity(StrEnum):
    mild = "mild"
    moderate = "moderate"
    severe = "severe"
    life_threatening = "life-threatening"
    not_reported = NOT_REPORTED


class Action(StrEnum):
    none = "none"
    dose_reduced = "dose reduced"
    interrupted = "interrupted"
    stopped = "stopped"
    not_reported = NOT_REPORTED


class SourceKind(StrEnum):
    journal_article = "journal article"
    letter = "letter"
    case_report = "case report"
    case_series = "case series"
    commentary = "commentary"
    conference_abstract = "conference abstract"


class TextHeld(StrEnum):
    """Which text of a publication the project holds, and so can check quotes against."""

    none = "none"
    abstract = "abstract"
    article_page = "article page"
    full_text = "full text"
    commentary = "commentary"


class StudyDesign(StrEnum):
    case_report = "case report"
    case_series = "case series"


# --------------------------------------------------------------------------- provenance


class Claim(_Model):
    """Where a fact comes from: the source, the place in it, and a verbatim quote."""

    source: Key = Field(description="Key of the publication in kb/sources/ that states the fact.")
    locator: ShortText = Field(description="Where in the source: section, paragraph or sentence (e.g. 'Abstract, Results').")
    quote: Text | None = Field(None, description="A short verbatim quote; checked against the source text when we hold it.")
    note: Text | None = Field(None, description="The curator's note: how the fact follows from the quote, if not plainly.")


class Curator(_Model):
    name: ShortText = Field(description="The curator's name.")
    orcid: ORCID | None = Field(None, description="ORCID iD, digits only (0000-0000-0000-0000).")


class Curation(_Model):
    """Who curated the file and when."""

    curators: list[Curator] = Field(min_length=1, description="Everyone who curated the file.")
    created: Date = Field(description="Date the file was first curated (YYYY-MM-DD).")
    updated: Date | None = Field(None, description="Date of the last substantive change.")
    notes: Text | None = Field(None, description="What was left out and why; anything a reviewer should know.")

    @model_validator(mode="after")
    def _dates(self) -> Curation:
        # A day ahead is allowed: a curator east of UTC may already be on the next day.
        latest = Date.today() + timedelta(days=1)
        for name in ("created", "updated"):
            when = getattr(self, name)
            if when is not None and when > latest:
                raise at_field(name, f"{when.isoformat()} is in the future", "write the date the file was curated")
        if self.updated is not None and self.updated < self.created:
            raise at_field("updated", f"{self.updated.isoformat()} is before created ({self.created.isoformat()})",
                           "updated is the date of the last change, on or after created")
        return self


# --------------------------------------------------------------------------- publications


class Source(_Model):
    """A publication record, ``kb/sources/<id>.yaml``."""

    id: Slug = Field(description="The record's key; the file name without .yaml.")
    kind: SourceKind = Field(description="Publication type.")
    title: Text = Field(description="Title as published.")
    authors: list[ShortText] = Field(min_length=1, description="Authors as 'Family Initials', in order.")
    authors_complete: Flag = Field(description="False when only the first authors are known (et al.).")
    journal: ShortText | None = Field(None, description="Journal or venue.")
    publisher: ShortText | None = Field(None, description="Publisher, for a venue that is not a journal.")
    year: Whole = Field(ge=1800, le=2100, description="Year of publication.")
    date: Date | None = Field(None, description="Full publication date where known.")
    volume: ShortText | None = None
    issue: ShortText | None = None
    pages: ShortText | None = None
    doi: DOI | None = Field(None, description="DOI without the https://doi.org/ prefix; only if checked.")
    pmid: PMID | None = Field(None, description="PubMed id; only if checked.")
    pmcid: PMCID | None = Field(None, description="PubMed Central id (PMC...); only if checked.")
    url: HttpUrl | None = Field(None, description="An http(s) address of the publication.")
    reports_on: Key | None = Field(None, description="For a secondary source: the key of the publication it retells.")
    text_held: TextHeld = Field(description="Which text of it we hold.")
    text_file: TextFile | None = Field(None, description="File name of the held text in the source-text folder.")
    citation_evidence: list[Claim] = Field(default_factory=list, description="Where the bibliographic facts were read.")
    identifier_notes: Text | None = Field(None, description="Identifiers that were left out because they are unconfirmed.")
    curation: Curation

    @model_validator(mode="after")
    def _text(self) -> Source:
        if self.text_held != TextHeld.none.value and not self.text_file:
            raise at_field("text_held", f"'{self.text_held}' needs text_file, the name of the held text's file",
                           "add text_file: <name>.txt, or write text_held: none")
        if self.date is not None and not self.year - 1 <= self.date.year <= self.year:  # an online-first date may be the year before
            raise at_field("date", f"{self.date.isoformat()} is not in the year {self.year} (nor, as an online-first date, the year before)",
                           "make the date and the year agree with the publication")
        return self


class SourceRef(_Model):
    source: Key = Field(description="Key of a publication in kb/sources/.")
    role: Literal["primary", "secondary"] = Field(description="primary: reports the case; secondary: retells it.")


class EvidenceLevel(_Model):
    scale: Literal["civic"] = Field(description="The scale: civic (A validated, B clinical, C case study, D preclinical, E inferential).")
    level: Literal["A", "B", "C", "D", "E"]
    rationale: Text | None = Field(None, description="Why this level.")


# --------------------------------------------------------------------------- patients


class Age(_Model):
    """Exactly one of: ``value`` (exact), ``min`` and ``max`` (a range), or ``category``."""

    value: bounded(float, ge=0) | None = Field(None, description="Exact age, in ``unit``: at most 120 years.")
    min: bounded(float, ge=0) | None = None
    max: bounded(float, ge=0) | None = None
    unit: Literal["years", "months", "weeks", "days"] = "years"
    category: Literal["neonate", "infant", "child", "adolescent", "minor", "adult", "older adult"] | None = None
    basis: Literal["stated", "derived"] = Field("stated", description="derived: inferred from the text, as 'minor' from parental consent.")

    @model_validator(mode="after")
    def _one_form(self) -> Age:
        forms = [self.value is not None, self.min is not None or self.max is not None, self.category is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of value, min and max, or category")
        if forms[1] and (self.min is None or self.max is None or self.min > self.max):
            raise ValueError("an age range needs min <= max")
        _plausible_age(self, ("value", "min", "max"))
        return self


_MAX_AGE = {"years": 120, "months": 120 * 12, "weeks": 6261, "days": 43830}  # 120 years in each unit


def _plausible_age(age: Any, fields: tuple[str, ...]) -> None:
    """No age (or spread of ages) above 120 years, in the unit it is written in. Checked here,
    where the unit is known (a field is validated before the fields after it); reported at the
    field (at_field)."""
    limit = _MAX_AGE[age.unit]
    for name in fields:
        x = getattr(age, name)
        if x is not None and x > limit:
            found = number_text(x)
            raise at_field(name, f"{found} is not plausible", "check the number and its unit against the source", rule="plausible-age",
                           expected=f"at most {limit} {age.unit}" + ("" if age.unit == "years" else " (120 years)"), found=found, sep=" ")


class Variant(_Model):
    hgvs: HgvsString = Field(description="HGVS c. notation with a versioned transcript, e.g. NM_033629.6:c.52G>A.")
    protein: ProteinChange | None = Field(None, description="HGVS p. notation, e.g. p.(Asp18Asn).")
    protein_status: Literal["stated", "derived"] | None = Field(None, description="stated in the source, or derived by the curator.")
    transcript_status: Literal["stated", "curated"] = Field(description="curated: the transcript was added from a checked registry.")
    legacy_name: ShortText | None = None

    @model_validator(mode="after")
    def _protein(self) -> Variant:
        if self.protein and not self.protein_status:
            raise ValueError("protein_status (stated or derived) is required with protein")
        return self


class Genotype(_Model):
    gene: Key = Field(description="Gene key from kb/vocabulary/genes.yaml.")
    variant: Variant | NotReported
    zygosity: Literal["heterozygous", "homozygous", "compound heterozygous", "hemizygous", "not reported"]
    inheritance: Literal["autosomal dominant", "autosomal recessive", "de novo", "X-linked", "not reported"]
    mechanism: Literal["dominant negative", "loss of function", "gain of function", "haploinsufficiency", "not reported"]
    evidence: list[Claim] = Field(min_length=1)


class Dose(_Model):
    """A dose: a value with a unit, or only a qualifier such as 'full dose' when no value is given."""

    value: bounded(float, gt=0, le=100000) | None = Field(None, description="Amount per administration; must be positive.")
    unit: Unit | None = None
    qualifier: ShortText | None = Field(None, description="As the source words it: 'full dose', 'reduced'.")

    @model_validator(mode="after")
    def _complete(self) -> Dose:
        if (self.value is None) != (self.unit is None):
            raise ValueError("a dose value needs a unit, and a unit needs a value")
        if self.value is None and not self.qualifier:
            raise ValueError("give value and unit, or a qualifier, or write 'not reported'")
        return self


class Reason(_Model):
    description: Text
    adverse_event: LocalId | None = Field(None, description="Id of the patient's adverse event that caused the change.")


class Phase(_Model):
    """One step of a treatment timeline, in order."""

    id: LocalId
    kind: PhaseKind
    dose: Dose | NotReported | None = None
    frequency: Frequency | None = None
    duration: Duration | NotReported | None = Field(None, description="ISO 8601 duration of the phase, e.g. P1Y, P3M.")
    reason: Reason | NotReported | None = Field(None, description="Why the change was made.")
    followed_by: Text | None = Field(None, description="What followed, in the source's words.")
    outcomes: list[LocalId] = Field(default_factory=list, description="Ids of outcomes observed in this phase.")
    evidence: list[Claim] = Field(min_length=1)


class Treatment(_Model):
    id: LocalId
    drug: Key = Field(description="Drug key from kb/vocabulary/drugs.yaml.")
    indication: Key | NotReported = Field(description="Disease key the drug was given for.")
    access: Literal["compassionate use", "off-label", "clinical trial", "approved indication", "not reported"] = NOT_REPORTED
    dose: Dose | NotReported
    frequency: Frequency
    route: Route
    start: Date | NotReported | None = None
    duration: Duration | NotReported = Field(description="ISO 8601 duration of the whole treatment.")
    phases: list[Phase] = Field(default_factory=list, description="The timeline; the first phase is the start.")
    evidence: list[Claim] = Field(min_length=1)

    @model_validator(mode="after")
    def _first(self) -> Treatment:
        if self.phases and self.phases[0].kind != PhaseKind.start.value:
            raise ValueError("the first phase of a timeline must be of kind 'start'")
        return self


class PriorTreatment(_Model):
    drug: Key = Field(description="Drug key from kb/vocabulary/drugs.yaml.")
    result: Response
    evidence: list[Claim] = Field(min_length=1)


# Plausible bounds for what has none of its own: a number past them is a typo or hostile input
# (a 4,000-digit cohort size went through to every page). More patients than any study holds,
# and a measurement's size in any unit (a viral load of 10^9 copies/ml still fits).
MAX_PATIENTS = 10_000_000
MAX_MEASUREMENT = 1e12


class Measurement(_Model):
    value: Number = Field(ge=-MAX_MEASUREMENT, le=MAX_MEASUREMENT)
    unit: ShortText | None = None


class Outcome(_Model):
    id: LocalId
    treatment: LocalId = Field(description="Id of the treatment the outcome follows.")
    measure: Key = Field(description="Outcome measure key from kb/vocabulary/measures.yaml.")
    timepoint: Duration | NotReported = Field(description="Time from the start of the treatment or phase (ISO 8601).")
    timepoint_qualifier: Literal["at", "within", "after"] = "at"
    before: Measurement | NotReported = NOT_REPORTED
    after: Measurement | NotReported = NOT_REPORTED
    direction: Direction
    response: Response
    description: Text | None = None
    evidence: list[Claim] = Field(min_length=1)


class AdverseEvent(_Model):
    id: LocalId
    term: Key = Field(description="Phenotype key (HPO) from kb/vocabulary/phenotypes.yaml.")
    treatment: LocalId
    severity: Severity
    action: Action
    evidence: list[Claim] = Field(min_length=1)


class Patient(_Model):
    id: LocalId = Field(description="Local id, unique in the case file (P1, P2...).")
    label: ShortText | None = Field(None, description="How the source names the patient.")
    age: Age | NotReported
    sex: Sex
    genotype: list[Genotype] | NotReported
    diagnoses: list[Key] = Field(min_length=1, description="Disease keys the patient was diagnosed with and treated for.")
    comorbidities: list[Key] = Field(default_factory=list, description="Other disease or phenotype keys.")
    findings: list[Text] = Field(default_factory=list, description="Other findings in the source's words.")
    prior_treatments: list[PriorTreatment] = Field(default_factory=list)
    treatments: list[Treatment] = Field(min_length=1)
    outcomes: list[Outcome] = Field(default_factory=list)
    adverse_events: list[AdverseEvent] = Field(default_factory=list)
    evidence: list[Claim] = Field(min_length=1)


class CohortAge(_Model):
    mean: bounded(float, ge=0) | None = None
    sd: bounded(float, ge=0) | None = None
    median: bounded(float, ge=0) | None = None
    min: bounded(float, ge=0) | None = None
    max: bounded(float, ge=0) | None = None
    unit: Literal["years", "months"] = "years"

    @model_validator(mode="after")
    def _plausible(self) -> CohortAge:
        _plausible_age(self, ("mean", "sd", "median", "min", "max"))
        return self


class OutcomeCount(_Model):
    measure: Key
    response: Response | None = None
    direction: Direction | None = None
    patients: Whole = Field(ge=0, le=MAX_PATIENTS)
    evidence: list[Claim] = Field(min_length=1)


class AdverseEventCount(_Model):
    term: Key | None = Field(None, description="Phenotype key, or left out for any adverse event.")
    severity: Severity | None = None
    patients: Whole = Field(ge=0, le=MAX_PATIENTS)
    evidence: list[Claim] = Field(min_length=1)


class Cohort(_Model):
    """Figures the source gives only for the group, not per patient."""

    n: Whole = Field(ge=1, le=MAX_PATIENTS)
    female: bounded(int, ge=0, le=MAX_PATIENTS) | None = None
    male: bounded(int, ge=0, le=MAX_PATIENTS) | None = None
    age: CohortAge | None = None
    outcome_counts: list[OutcomeCount] = Field(default_factory=list)
    adverse_event_counts: list[AdverseEventCount] = Field(default_factory=list)
    evidence: list[Claim] = Field(min_length=1)

    @model_validator(mode="after")
    def _sum(self) -> Cohort:
        if (self.female or 0) + (self.male or 0) > self.n:
            raise ValueError("female + male is more than n")
        return self


class CaseReport(_Model):
    """A case file, ``kb/<id>.yaml``: one publication's patients."""

    id: Slug = Field(description="The case's key; the file name without .yaml.")
    title: Text = Field(description="A one-line summary for people.")
    sources: list[SourceRef] = Field(min_length=1)
    study_design: StudyDesign
    evidence_level: EvidenceLevel
    conditions: list[Key] = Field(min_length=1, description="Disease keys (Mondo) the treatment was for.")
    cohort: Cohort | None = None
    patients: list[Patient] = Field(min_length=1)
    evidence: list[Claim] = Field(min_length=1, description="Claims for the case-level facts (design, conditions).")
    curation: Curation


# --------------------------------------------------------------------------- vocabulary


class VocabTerm(_Model):
    label: ShortText
    synonyms: list[ShortText] = Field(default_factory=list)
    description: Text | None = None
    identifiers: list[CheckedCurie] = Field(default_factory=list, description="CURIEs, each checked in a public registry.")
    identifier_provenance: Text | None = Field(None, description="Where the identifiers were checked.")

    @model_validator(mode="after")
    def _provenance(self) -> VocabTerm:
        if self.identifiers and not self.identifier_provenance:
            raise ValueError("identifier_provenance is required when identifiers are given")
        return self


class Gene(VocabTerm):
    symbol: ShortText


class DrugTarget(_Model):
    gene: Key
    evidence: list[Claim] = Field(min_length=1)


class Drug(VocabTerm):
    drug_class: ShortText | None = None
    targets: list[DrugTarget] | NotReported = Field(NOT_REPORTED, description="Target genes, each with the source that says so.")
    class_evidence: list[Claim] = Field(default_factory=list)


class Disease(VocabTerm):
    pass


class Measure(VocabTerm):
    pass


class Phenotype(VocabTerm):
    pass


# File stem in kb/vocabulary/ -> model of each entry.
VOCABULARY_KINDS: dict[str, type[VocabTerm]] = {
    "genes": Gene,
    "drugs": Drug,
    "diseases": Disease,
    "measures": Measure,
    "phenotypes": Phenotype,
}

DoseOrNR = Union[Dose, NotReported]
