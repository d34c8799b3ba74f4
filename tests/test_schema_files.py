"""The JSON Schema files are generated from the models and must not go stale."""

from __future__ import annotations

import json

from evidence import schema as S
from evidence.schemafiles import json_schemas, stale_schemas


def test_saved_schema_is_up_to_date(root):
    stale = stale_schemas(root / "schema")
    assert not stale, f"stale JSON Schema: {stale}; run `.venv/bin/evidence schema` (or `make schema`) and commit schema/"


def test_stale_check_can_fail(tmp_path):
    assert stale_schemas(tmp_path) == sorted(json_schemas())
    for name, text in json_schemas().items():
        (tmp_path / name).write_text(text.replace('"title"', '"titel"', 1))
    assert stale_schemas(tmp_path) == sorted(json_schemas())


def test_every_field_has_a_description_or_obvious_name():
    """The docs are generated from the models: key fields carry a description."""
    case = json.loads(json_schemas()["case.schema.json"])
    assert case["properties"]["conditions"]["description"]
    assert set(case["properties"]) == set(S.CaseReport.model_fields)


def test_readme_documents_every_case_field(root):
    readme = (root / "README.md").read_text(encoding="utf-8")
    for model in (S.CaseReport, S.Patient, S.Treatment, S.Phase, S.Outcome, S.AdverseEvent, S.Cohort, S.Claim, S.Source, S.Genotype, S.Variant, S.Dose, S.Age):
        for name in model.model_fields:
            assert f"{name}:" in readme, f"README.md does not document {model.__name__}.{name}"
