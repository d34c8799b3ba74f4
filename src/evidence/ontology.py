"""The project vocabulary (``ev:``): every class and property the compiler emits.

This table is the single definition of the graph's shape: the ontology Turtle (labels and
comments), the SHACL shapes and the format docs are generated from it, and a test checks that
the compiled graph uses no ``ev:`` term that is not defined here.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Prop", "CLASSES", "PROPERTIES", "INDIVIDUALS", "prop", "ENUM_INDIVIDUALS"]


@dataclass(frozen=True)
class Prop:
    name: str
    label: str
    comment: str
    domain: tuple[str, ...]
    range: str  # "xsd:..." for a literal, a class name (ev:X or prefixed) for a resource
    required: bool = False  # at least one value on every node of the domain classes
    single: bool = False  # at most one value
    equivalent: str = ""  # a standard property it is a sub-property of, if any


CLASSES: dict[str, tuple[str, str]] = {
    "CaseReport": ("case report", "A curated case file: one publication's patients treated with a drug."),
    "Patient": ("patient", "One patient as a case file records them."),
    "Genotype": ("genotype", "A patient's genotype at one gene."),
    "Variant": ("variant", "A sequence variant in HGVS notation, shared by every patient who carries it."),
    "Treatment": ("treatment", "A drug given to a patient, with its timeline of phases."),
    "Phase": ("treatment phase", "One step of a treatment timeline: start, dose reduced or increased, stopped, restarted."),
    "PriorTreatment": ("prior treatment", "A treatment given before the one the case is about, with its result."),
    "Outcome": ("outcome", "A measured or described result of a treatment in a patient."),
    "AdverseEvent": ("adverse event", "A harm that followed a treatment."),
    "Cohort": ("cohort", "Figures that a source gives only for the group of patients."),
    "OutcomeCount": ("outcome count", "How many patients of a cohort had a given response on a measure."),
    "AdverseEventCount": ("adverse event count", "How many patients of a cohort had an adverse event."),
    "Claim": ("claim", "Provenance of a record: the source, the place in it, and a verbatim quote."),
    "Source": ("source", "A publication that the kb cites."),
    "Gene": ("gene", "A gene named by the kb."),
    "Drug": ("drug", "A drug named by the kb."),
    "Disease": ("disease", "A disease or syndrome named by the kb."),
    "Phenotype": ("phenotype", "A phenotype or adverse-event term named by the kb."),
    "OutcomeMeasure": ("outcome measure", "An instrument or way of measuring an outcome."),
    "Curator": ("curator", "A person who curated a kb file."),
    "Concept": ("concept", "A value from one of the kb's fixed lists (sex, unit, response...)."),
}

_CASE_PARTS = ("Patient", "Genotype", "Treatment", "Phase", "PriorTreatment", "Outcome", "AdverseEvent", "Cohort", "OutcomeCount", "AdverseEventCount")
_TERMS = ("Gene", "Drug", "Disease", "Phenotype", "OutcomeMeasure")

PROPERTIES: list[Prop] = [
    # case
    Prop("studyDesign", "study design", "Case report or case series.", ("CaseReport",), "Concept", True, True),
    Prop("evidenceLevel", "evidence level", "The evidence level on the named scale, e.g. CIViC C.", ("CaseReport",), "Concept", True, True),
    Prop("evidenceLevelRationale", "evidence level rationale", "Why the level was given.", ("CaseReport",), "xsd:string", False, True),
    Prop("condition", "condition", "A disease the treatment was for.", ("CaseReport",), "Disease", True),
    Prop("primarySource", "primary source", "The publication that reports the case.", ("CaseReport",), "Source", True),
    Prop("secondarySource", "secondary source", "A publication that retells the case.", ("CaseReport",), "Source"),
    Prop("hasPatient", "has patient", "A patient of the case.", ("CaseReport",), "Patient", True),
    Prop("hasCohort", "has cohort", "Group-level figures of the case.", ("CaseReport",), "Cohort", False, True),
    Prop("inCase", "in case", "The case a record (or a claim made in a case file) belongs to.", _CASE_PARTS, "CaseReport", True, True),
    Prop("curationNote", "curation note", "What the curator left out and why.", ("CaseReport", "Source"), "xsd:string", False, True),
    # patient
    Prop("localId", "local id", "The record's id within its case file.", ("Patient", "Treatment", "Phase", "Outcome", "AdverseEvent"), "xsd:string", True, True),
    Prop("ageValue", "age", "Exact age, in ageUnit.", ("Patient",), "xsd:decimal", False, True),
    Prop("ageMin", "age, lower bound", "Lower bound of an age range.", ("Patient",), "xsd:decimal", False, True),
    Prop("ageMax", "age, upper bound", "Upper bound of an age range.", ("Patient",), "xsd:decimal", False, True),
    Prop("ageUnit", "age unit", "Years, months, weeks or days.", ("Patient", "Cohort"), "xsd:string", False, True),
    Prop("ageCategory", "age category", "A qualitative age such as minor.", ("Patient",), "xsd:string", False, True),
    Prop("ageBasis", "age basis", "stated in the source, or derived by the curator.", ("Patient",), "xsd:string", False, True),
    Prop("sex", "sex", "Sex as reported.", ("Patient",), "Concept", False, True),
    Prop("hasGenotype", "has genotype", "The patient's genotype at one gene.", ("Patient",), "Genotype"),
    Prop("diagnosis", "diagnosis", "A disease the patient was diagnosed with and treated for.", ("Patient",), "Disease", True),
    Prop("comorbidity", "comorbidity", "Another disease or phenotype of the patient.", ("Patient",), "rdfs:Resource"),
    Prop("finding", "finding", "Another finding, in the source's words.", ("Patient",), "xsd:string"),
    Prop("hasPriorTreatment", "has prior treatment", "A treatment given before.", ("Patient",), "PriorTreatment"),
    Prop("hasTreatment", "has treatment", "A treatment the patient received.", ("Patient",), "Treatment", True),
    Prop("hasOutcome", "has outcome", "An outcome observed in the patient.", ("Patient",), "Outcome"),
    Prop("hasAdverseEvent", "has adverse event", "An adverse event of the patient.", ("Patient",), "AdverseEvent"),
    Prop("patient", "patient", "The patient a record belongs to.", ("Treatment", "Outcome", "AdverseEvent", "Genotype", "PriorTreatment"), "Patient", True, True),
    # genotype and variant
    Prop("gene", "gene", "The gene.", ("Genotype", "Variant"), "Gene", True, True),
    Prop("variant", "variant", "The variant carried.", ("Genotype",), "Variant", False, True),
    Prop("zygosity", "zygosity", "Heterozygous, homozygous...", ("Genotype",), "Concept", False, True),
    Prop("inheritance", "inheritance", "Mode of inheritance.", ("Genotype",), "Concept", False, True),
    Prop("mechanism", "mechanism", "Molecular mechanism, e.g. dominant negative.", ("Genotype",), "Concept", False, True),
    Prop("hgvs", "HGVS", "HGVS c. notation with its transcript.", ("Variant",), "xsd:string", True, True),
    Prop("transcript", "transcript", "The versioned transcript of the HGVS notation.", ("Variant",), "xsd:string", True, True),
    Prop("transcriptStatus", "transcript status", "stated in the source, or curated from a registry.", ("Genotype",), "xsd:string", False, True),
    Prop("proteinChange", "protein change", "HGVS p. notation.", ("Variant",), "xsd:string", False, True),
    Prop("proteinChangeStatus", "protein change status", "stated in the source, or derived by the curator.", ("Genotype",), "xsd:string", False, True),
    Prop("legacyName", "legacy name", "A legacy name of the variant.", ("Variant",), "xsd:string", False, True),
    # treatment
    Prop("drug", "drug", "The drug given.", ("Treatment", "PriorTreatment"), "Drug", True, True),
    Prop("indication", "indication", "The disease the drug was given for.", ("Treatment",), "Disease", False, True),
    Prop("access", "access", "How the drug was obtained: compassionate use, off-label...", ("Treatment",), "xsd:string", False, True),
    Prop("doseValue", "dose value", "Amount per administration.", ("Treatment", "Phase"), "xsd:decimal", False, True),
    Prop("doseUnit", "dose unit", "Unit of the dose value.", ("Treatment", "Phase"), "Concept", False, True),
    Prop("doseQualifier", "dose qualifier", "A dose as the source words it, e.g. full dose.", ("Treatment", "Phase"), "xsd:string", False, True),
    Prop("frequency", "frequency", "How often the dose is given.", ("Treatment", "Phase"), "Concept", False, True),
    Prop("route", "route", "Route of administration.", ("Treatment",), "Concept", False, True),
    Prop("startDate", "start date", "When the treatment started.", ("Treatment",), "xsd:date", False, True),
    Prop("duration", "duration", "ISO 8601 duration.", ("Treatment", "Phase"), "xsd:duration", False, True),
    Prop("hasPhase", "has phase", "A phase of the timeline.", ("Treatment",), "Phase"),
    Prop("firstPhase", "first phase", "The first phase of the timeline.", ("Treatment",), "Phase", False, True),
    Prop("hasDechallenge", "has dechallenge", "True when the drug was stopped and what followed is recorded (derived).", ("Treatment",), "xsd:boolean", False, True),
    Prop("hasRechallenge", "has rechallenge", "True when the drug was restarted after being stopped (derived).", ("Treatment",), "xsd:boolean", False, True),
    Prop("result", "result", "The response to a prior treatment.", ("PriorTreatment",), "Concept", False, True),
    # phase
    Prop("treatment", "treatment", "The treatment a record belongs to or follows.", ("Phase", "Outcome", "AdverseEvent"), "Treatment", True, True),
    Prop("phaseKind", "phase kind", "start, dose reduced, dose increased, stopped, restarted.", ("Phase",), "Concept", True, True),
    Prop("order", "order", "Position in the timeline, from 1.", ("Phase",), "xsd:integer", True, True),
    Prop("nextPhase", "next phase", "The phase that came after.", ("Phase",), "Phase", False, True),
    Prop("reason", "reason", "Why the change was made.", ("Phase",), "xsd:string", False, True),
    Prop("reasonAdverseEvent", "reason: adverse event", "The adverse event that caused the change.", ("Phase",), "AdverseEvent", False, True),
    Prop("followedBy", "followed by", "What followed the change, in the source's words.", ("Phase",), "xsd:string", False, True),
    Prop("observedOutcome", "observed outcome", "An outcome observed in the phase.", ("Phase",), "Outcome"),
    # outcome
    Prop("measure", "measure", "The outcome measure.", ("Outcome", "OutcomeCount"), "OutcomeMeasure", True, True),
    Prop("timepoint", "time point", "Time from the start of the treatment or phase (ISO 8601).", ("Outcome",), "xsd:duration", False, True),
    Prop("timepointQualifier", "time point qualifier", "at, within or after.", ("Outcome",), "xsd:string", False, True),
    Prop("valueBefore", "value before", "Measured value before treatment.", ("Outcome",), "xsd:decimal", False, True),
    Prop("valueAfter", "value after", "Measured value after treatment.", ("Outcome",), "xsd:decimal", False, True),
    Prop("valueBeforeUnit", "value before, unit", "Unit of the value before treatment.", ("Outcome",), "xsd:string", False, True),
    Prop("valueAfterUnit", "value after, unit", "Unit of the value after treatment.", ("Outcome",), "xsd:string", False, True),
    Prop("direction", "direction", "improved, worsened, unchanged, new onset.", ("Outcome", "OutcomeCount"), "Concept", False, True),
    Prop("response", "response", "complete, partial, none, worsened.", ("Outcome", "OutcomeCount"), "Concept", False, True),
    # adverse events
    Prop("term", "term", "The adverse-event term (HPO).", ("AdverseEvent", "AdverseEventCount"), "Phenotype", False, True),
    Prop("severity", "severity", "Severity as stated.", ("AdverseEvent", "AdverseEventCount"), "Concept", False, True),
    Prop("action", "action taken", "What was done about the adverse event.", ("AdverseEvent",), "Concept", False, True),
    # cohort
    Prop("size", "size", "Number of patients.", ("Cohort",), "xsd:integer", True, True),
    Prop("femaleCount", "female count", "Number of women.", ("Cohort",), "xsd:integer", False, True),
    Prop("maleCount", "male count", "Number of men.", ("Cohort",), "xsd:integer", False, True),
    Prop("ageMean", "mean age", "Mean age.", ("Cohort",), "xsd:decimal", False, True),
    Prop("ageSD", "age standard deviation", "Standard deviation of age.", ("Cohort",), "xsd:decimal", False, True),
    Prop("ageMedian", "median age", "Median age.", ("Cohort",), "xsd:decimal", False, True),
    Prop("ageMinimum", "minimum age", "Lowest age.", ("Cohort",), "xsd:decimal", False, True),
    Prop("ageMaximum", "maximum age", "Highest age.", ("Cohort",), "xsd:decimal", False, True),
    Prop("hasOutcomeCount", "has outcome count", "A count of patients by response.", ("Cohort",), "OutcomeCount"),
    Prop("hasAdverseEventCount", "has adverse event count", "A count of patients with an adverse event.", ("Cohort",), "AdverseEventCount"),
    Prop("patientCount", "patient count", "How many patients.", ("OutcomeCount", "AdverseEventCount"), "xsd:integer", True, True),
    # provenance
    Prop("supportedBy", "supported by", "A claim that supports the record.", _CASE_PARTS + ("CaseReport", "Drug", "Source"), "Claim"),
    Prop("about", "about", "The record the claim supports.", ("Claim",), "rdfs:Resource", True, True),
    Prop("locator", "locator", "Where in the source: section, paragraph or sentence.", ("Claim",), "xsd:string", True, True),
    Prop("quote", "quote", "A verbatim quote from the source.", ("Claim",), "xsd:string", False, True),
    Prop("viaSecondarySource", "via secondary source", "True when the claim's source retells the case (derived).", ("Claim",), "xsd:boolean", False, True),
    Prop("notReported", "not reported", "The source does not report this property of the record.", _CASE_PARTS + ("CaseReport",), "rdf:Property"),
    # sources
    Prop("authors", "authors", "The authors in order, separated by '; '.", ("Source",), "xsd:string", True, True),
    Prop("authorsComplete", "authors complete", "False when only the first authors are known (et al.).", ("Source",), "xsd:boolean", True, True),
    Prop("journal", "journal", "Journal or venue.", ("Source",), "xsd:string", False, True),
    Prop("year", "year", "Year of publication.", ("Source",), "xsd:gYear", True, True),
    Prop("reportsOn", "reports on", "The publication a secondary source retells.", ("Source",), "Source", False, True),
    Prop("textHeld", "text held", "Which text of the publication the project holds.", ("Source",), "xsd:string", True, True),
    Prop("textFile", "text file", "File name of the held text.", ("Source",), "xsd:string", False, True),
    Prop("identifierNotes", "identifier notes", "Identifiers left out because they are unconfirmed.", ("Source",), "xsd:string", False, True),
    # vocabulary terms
    Prop("vocabularyKey", "vocabulary key", "The key case files use for the term.", _TERMS, "xsd:string", True, True),
    Prop("identifierProvenance", "identifier provenance", "Where the identifiers were checked.", _TERMS, "xsd:string", False, True),
    Prop("symbol", "symbol", "HGNC gene symbol.", ("Gene",), "xsd:string", False, True),
    Prop("drugClass", "drug class", "Pharmacological class.", ("Drug",), "xsd:string", False, True),
    Prop("target", "target", "A gene whose product the drug inhibits, as a source says.", ("Drug",), "Gene"),
]

# Individuals of ev:Concept, by the fixed list they come from (value -> local name).
ENUM_INDIVIDUALS: dict[str, dict[str, str]] = {}

INDIVIDUALS: dict[str, tuple[str, str]] = {
    "NotReported": ("not reported", "The source does not report this."),
}


def prop(name: str) -> Prop:
    for p in PROPERTIES:
        if p.name == name:
            return p
    raise KeyError(name)
