"""The JSON Schema files, generated from the models in :mod:`evidence.schema`.

They live in ``schema/`` for editors (YAML language servers complete and check fields with
them) and for other tools. ``evidence schema`` rewrites them; a test fails when they are stale.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import schema as S

__all__ = ["json_schemas", "write_schemas", "stale_schemas"]


def json_schemas() -> dict[str, str]:
    """File name -> JSON text, for the case, source and each vocabulary file."""
    out: dict[str, dict] = {
        "case.schema.json": S.CaseReport.model_json_schema(),
        "source.schema.json": S.Source.model_json_schema(),
    }
    for kind, model in sorted(S.VOCABULARY_KINDS.items()):
        out[f"vocabulary-{kind}.schema.json"] = {
            "title": f"kb/vocabulary/{kind}.yaml",
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$"},
            "additionalProperties": {"$ref": f"#/$defs/{model.__name__}"},
            "$defs": _defs(model),
        }
    for name, body in out.items():
        body.setdefault("$schema", "https://json-schema.org/draft/2020-12/schema")
        body.setdefault("$id", f"https://w3id.org/evidence-kb/schema/{name}")
    return {name: json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n" for name, body in sorted(out.items())}


def _defs(model) -> dict:
    sch = model.model_json_schema(ref_template="#/$defs/{model}")
    defs = sch.pop("$defs", {})
    defs[model.__name__] = sch
    return defs


def write_schemas(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


def stale_schemas(folder: Path) -> list[str]:
    """Names of schema files that are missing or differ from what the models generate."""
    stale = []
    for name, text in json_schemas().items():
        p = folder / name
        if not p.is_file() or p.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
