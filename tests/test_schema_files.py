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


def test_the_schemas_use_json_schema_keywords_for_bounds():
    """The bounds of an optional number were written as pydantic's own names ("ge", "gt", "le"),
    which are not JSON Schema: an editor did not flag a negative dose, and Ajv's strict mode
    refused the schema."""
    def walk(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                assert k not in ("ge", "gt", "le", "lt"), f"{path}/{k}"
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    schemas = {name: json.loads(text) for name, text in json_schemas().items()}
    for name, schema in schemas.items():
        walk(schema, name)
    defs = schemas["case.schema.json"]["$defs"]
    dose = next(b for b in defs["Dose"]["properties"]["value"]["anyOf"] if b.get("type") == "number")
    assert dose["exclusiveMinimum"] == 0 and dose["maximum"] == 100000
    age = next(b for b in defs["Age"]["properties"]["value"]["anyOf"] if b.get("type") == "number")
    assert age["minimum"] == 0


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
