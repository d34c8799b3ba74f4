"""The format and vocabulary docs, generated from the models' JSON Schema and from
``kb/vocabulary``: the pages cannot drift from what the validator accepts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import schema as S
from .validate import _pattern_help  # the validator's own wording of each pattern

__all__ = ["DocModel", "DocField", "format_docs", "fixed_lists"]


@dataclass
class DocField:
    name: str
    required: bool
    types: list[dict[str, str]]  # [{"text": ..., "ref": anchor or ""}]
    description: str
    default: str | None
    values: list[str] = field(default_factory=list)


@dataclass
class DocModel:
    name: str
    anchor: str
    file: str  # where records of this model live, for the top-level ones
    description: str
    fields: list[DocField] = field(default_factory=list)
    values: list[str] = field(default_factory=list)  # for an enumeration


def _describe(node: dict[str, Any]) -> list[dict[str, str]]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return [{"text": name, "ref": f"m-{name}"}]
    if "anyOf" in node:
        out: list[dict[str, str]] = []
        for i, alt in enumerate(a for a in node["anyOf"] if a.get("type") != "null"):
            if i:
                out.append({"text": " or ", "ref": ""})
            out.extend(_describe(alt))
        return out
    if "const" in node:
        return [{"text": json.dumps(node["const"]), "ref": ""}]
    if "enum" in node:
        return [{"text": "one of the values listed", "ref": ""}]
    t = node.get("type")
    if t == "array":
        inner = _describe(node.get("items", {}))
        bounds = f" (at least {node['minItems']})" if node.get("minItems") else ""
        return [{"text": "list of ", "ref": ""}, *inner, *([{"text": bounds, "ref": ""}] if bounds else [])]
    if t == "string":
        if node.get("format") == "date":
            return [{"text": "date (YYYY-MM-DD)", "ref": ""}]
        if "pattern" in node:
            return [{"text": f"text: {_pattern_help(node['pattern'])}", "ref": ""}]
        limit = f", at most {node['maxLength']} characters" if "maxLength" in node else ""
        return [{"text": f"text{limit}", "ref": ""}]
    if t in ("number", "integer"):
        word = "whole number" if t == "integer" else "number"
        lo = node.get("minimum", node.get("exclusiveMinimum"))
        hi = node.get("maximum")
        rng = ""
        if lo is not None and hi is not None:
            rng = f" from {lo} to {hi}" if "minimum" in node else f" above {lo}, up to {hi}"
        elif lo is not None:
            rng = f" of at least {lo}" if "minimum" in node else f" above {lo}"
        return [{"text": word + rng, "ref": ""}]
    if t == "boolean":
        return [{"text": "true or false", "ref": ""}]
    if t == "object" and "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        return [{"text": "mapping of key to ", "ref": ""}, *_describe(node["additionalProperties"])]
    return [{"text": t or "any", "ref": ""}]


def _values(node: dict[str, Any]) -> list[str]:
    vals: list[str] = []
    for alt in node.get("anyOf", [node]):
        vals.extend(str(v) for v in alt.get("enum", []))
    return vals


def _models(root: type[S._Model], file: str, seen: set[str]) -> list[DocModel]:
    schema = root.model_json_schema()
    defs = schema.pop("$defs", {})
    defs[root.__name__] = schema
    order: list[str] = [root.__name__]
    i = 0
    while i < len(order):
        body = defs[order[i]]
        for prop in body.get("properties", {}).values():
            for ref in _refs(prop):
                if ref not in order:
                    order.append(ref)
        i += 1
    out = []
    for name in order:
        if name in seen:
            continue
        seen.add(name)
        body = defs[name]
        required = set(body.get("required", []))
        m = DocModel(name, f"m-{name}", file if name == root.__name__ else "", _clean(body.get("description", "")), values=[str(v) for v in body.get("enum", [])])
        for fname, prop in body.get("properties", {}).items():
            default = None
            if "default" in prop and prop["default"] not in (None, []):
                default = json.dumps(prop["default"], ensure_ascii=False)
            m.fields.append(DocField(fname, fname in required, _describe(prop), _clean(prop.get("description", "")), default, _values(prop)))
        out.append(m)
    return out


def _refs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        if "$ref" in node:
            out.append(node["$ref"].rsplit("/", 1)[-1])
        for v in node.values():
            out.extend(_refs(v))
    elif isinstance(node, list):
        for v in node:
            out.extend(_refs(v))
    return out


def _clean(text: str) -> str:
    return text.replace("``", "")


def format_docs() -> list[DocModel]:
    """Every model of the case, source and vocabulary files, each once, in reading order."""
    seen: set[str] = set()
    models = _models(S.CaseReport, "kb/<case>.yaml", seen)
    models += _models(S.Source, "kb/sources/<id>.yaml", seen)
    for kind, model in S.VOCABULARY_KINDS.items():
        models += _models(model, f"kb/vocabulary/{kind}.yaml (each entry)", seen)
    return models


def fixed_lists() -> list[tuple[str, str, list[str]]]:
    """(name, description, values) of every enumeration of the schema."""
    out = []
    for name in sorted(S.__all__):
        obj = getattr(S, name)
        if isinstance(obj, type) and issubclass(obj, str) and hasattr(obj, "__members__") and obj is not str:
            out.append((name, _clean((obj.__doc__ or "").strip()) if obj.__doc__ != str.__doc__ else "", [m.value for m in obj]))  # type: ignore[attr-defined]
    return out
