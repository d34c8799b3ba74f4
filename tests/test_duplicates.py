"""Duplicates: a publication recorded twice (the validator's rule) and a patient recorded twice
(:func:`evidence.duplicates.check_duplicates`, rule duplicate-patient)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evidence.config import load_config
from evidence.duplicates import check_duplicates
from evidence.validate import validate_kb

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests" / "data").rglob("*.yaml"))

# Made-up test publications (a DOI under 10.5555, the prefix Crossref reserves for tests).
SOURCE = """\
id: {id}
kind: case report
title: TEST FIXTURE, not a real publication ({id})
authors: [Test A]
authors_complete: true
year: 2099
doi: {doi}
text_held: none
curation:
  curators:
    - name: Test Curator
  created: 2026-11-22
"""
CASE = """\
id: {id}
title: TEST FIXTURE, a made-up case ({id})
sources:
  - source: {source}
    role: {role}
study_design: case report
evidence_level:
  scale: civic
  level: C
conditions: [familial-chilblain-lupus]
patients:
  - id: P1
    age: {age}
    sex: {sex}
    genotype: {genotype}
    diagnoses: [familial-chilblain-lupus]
    treatments:
      - id: T1
        drug: ruxolitinib
        indication: familial-chilblain-lupus
        dose: not reported
        frequency: not reported
        route: not reported
        duration: not reported
        evidence:
          - source: {source}
            locator: abstract
    evidence:
      - source: {source}
        locator: abstract
evidence:
  - source: {source}
    locator: abstract
curation:
  curators:
    - name: Test Curator
  created: 2026-11-22
"""
TREX1 = """
      - gene: TREX1
        variant:
          hgvs: NM_033629.6:c.52G>A
          transcript_status: curated
        zygosity: heterozygous
        inheritance: not reported
        mechanism: not reported
        evidence:
          - source: {source}
            locator: abstract"""


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "evidence.toml", tmp_path / "evidence.toml")
    shutil.copytree(ROOT / "kb", tmp_path / "kb")
    return tmp_path


def add_source(project: Path, id: str, doi: str) -> None:
    (project / "kb" / "sources" / f"{id}.yaml").write_text(SOURCE.format(id=id, doi=doi))


def add_case(project: Path, id: str, source: str, role: str = "primary", age: str = "{value: 12, unit: years}", sex: str = "female",
             variant: bool = True) -> None:
    genotype = TREX1.format(source=source) if variant else "not reported"
    (project / "kb" / f"{id}.yaml").write_text(CASE.format(id=id, source=source, role=role, age=age, sex=sex, genotype=genotype))


def diagnostics(project: Path):
    kb = validate_kb(load_config(project))
    return kb, check_duplicates(kb)


def test_the_founding_kb_has_no_duplicate_patient():
    assert check_duplicates(validate_kb(load_config(ROOT))) == []


def test_a_patient_recorded_twice_from_one_publication_is_flagged_in_both_files_naming_the_other(project: Path):
    add_source(project, "test-2099", "10.5555/evidence-test-2099")
    add_case(project, "test-2099", "test-2099")
    add_case(project, "test-2099b", "test-2099")
    kb, diags = diagnostics(project)
    assert [d.text() for d in kb.diagnostics if d.level == "error"] == []
    assert {(d.path, d.line, d.col, d.level, d.rule, d.field) for d in diags} == {
        ("kb/test-2099.yaml", 12, 9, "warning", "duplicate-patient", "patients[P1]"),
        ("kb/test-2099b.yaml", 12, 9, "warning", "duplicate-patient", "patients[P1]"),
    }
    first = next(d for d in diags if d.path == "kb/test-2099b.yaml")
    assert first.message == ("patients[P1] may be patient P1 of kb/test-2099.yaml (line 12): the same publication (test-2099), "
                             "age, sex and genotype (12 years, female, TREX1 NM_033629.6:c.52G>A)")
    assert "add what is new to kb/test-2099.yaml and remove it here" in first.hint


def test_a_patient_retold_by_a_commentary_is_the_same_publication(project: Path):
    """wenzel-2016 is known through heymann-2016, which reports_on it: a new case file for the
    commentary, with the same 69-year-old woman, duplicates kb/wenzel-2016.yaml."""
    add_case(project, "heymann-2016", "heymann-2016", age="{value: 69, unit: years}", sex="female", variant=False)
    _, diags = diagnostics(project)
    new = [d for d in diags if d.path == "kb/heymann-2016.yaml"]
    assert len(new) == 1 and "may be patient P1 of kb/wenzel-2016.yaml" in new[0].message
    assert "the same publication (heymann-2016, wenzel-2016)" in new[0].message
    assert [d.path for d in diags if d.path != "kb/heymann-2016.yaml"] == ["kb/wenzel-2016.yaml"]


def test_two_source_records_with_one_doi_are_one_publication_an_error_of_the_validator(project: Path):
    add_source(project, "test-2099", "10.5555/evidence-test-2099")
    add_source(project, "copy-2099", "10.5555/EVIDENCE-TEST-2099")  # DOIs are case-insensitive
    add_case(project, "test-2099", "test-2099")
    add_case(project, "copy-2099", "copy-2099")
    kb, diags = diagnostics(project)
    dup = [d for d in kb.diagnostics if d.rule == "duplicate-publication"]
    assert {(d.path, d.level) for d in dup} == {("kb/sources/copy-2099.yaml", "error"), ("kb/sources/test-2099.yaml", "error")}
    assert any("also recorded in kb/sources/test-2099.yaml" in d.message for d in dup)
    # ... and the patients of the two case files are the same patient.
    assert {d.path for d in diags} == {"kb/test-2099.yaml", "kb/copy-2099.yaml"}
    assert all("the same publication (doi:10.5555/evidence-test-2099)" in d.message for d in diags)


@pytest.mark.parametrize("change", [
    {"age": "{value: 13, unit: years}"},
    {"sex": "male"},
    {"variant": False},
], ids=["other age", "other sex", "other genotype"])
def test_a_different_age_sex_or_genotype_is_another_patient(project: Path, change: dict):
    add_source(project, "test-2099", "10.5555/evidence-test-2099")
    add_case(project, "test-2099", "test-2099")
    add_case(project, "test-2099b", "test-2099", **change)
    assert diagnostics(project)[1] == []


def test_another_publication_is_another_patient(project: Path):
    add_source(project, "test-2099", "10.5555/evidence-test-2099")
    add_source(project, "other-2099", "10.5555/evidence-other-2099")
    add_case(project, "test-2099", "test-2099")
    add_case(project, "other-2099", "other-2099")
    assert diagnostics(project)[1] == []


def test_patients_with_nothing_reported_are_never_matched(project: Path):
    add_source(project, "test-2099", "10.5555/evidence-test-2099")
    add_case(project, "test-2099", "test-2099", age="not reported", sex="not reported", variant=False)
    add_case(project, "test-2099b", "test-2099", age="not reported", sex="not reported", variant=False)
    assert diagnostics(project)[1] == []


def test_patients_of_one_file_are_never_compared(project: Path):
    """The three Zimmermann patients have the same (unreported) age, sex and variant: the curator told them apart."""
    add_source(project, "test-2099", "10.5555/evidence-test-2099")
    add_case(project, "test-2099", "test-2099")
    case = project / "kb" / "test-2099.yaml"
    text = case.read_text()
    patient = text[text.index("  - id: P1"):text.index("evidence:\n  - source")]
    case.write_text(text.replace(patient, patient + patient.replace("id: P1", "id: P2", 1)))
    kb, diags = diagnostics(project)
    assert len(kb.cases["test-2099"].patients) == 2 and diags == []


@pytest.mark.parametrize("path", FIXTURES, ids=[p.relative_to(ROOT).as_posix() for p in FIXTURES])
def test_wiring_it_into_validate_changes_nothing_for_the_test_fixtures(path: Path):
    """Every fixture is validated with the real kb: none of them may gain a duplicate-patient warning."""
    assert check_duplicates(validate_kb(load_config(ROOT), [path])) == []
