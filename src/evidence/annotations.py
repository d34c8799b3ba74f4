"""What a schema field accepts, read from its type annotation (shared by validate and authoring)."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import BaseModel

from . import schema as S

__all__ = ["MapOf", "unwrap", "models_in", "list_item", "choices", "accepts_not_reported"]


@dataclass(frozen=True)
class MapOf:
    """The root of a vocabulary file: a mapping of any key to entries of ``model``."""

    model: type[BaseModel]


def unwrap(ann: Any) -> list[Any]:
    """The alternatives of an annotation, through Annotated, Optional and unions."""
    origin = typing.get_origin(ann)
    if origin is typing.Annotated:
        return unwrap(typing.get_args(ann)[0])
    if origin is typing.Union or type(ann).__name__ == "UnionType":
        return [t for a in typing.get_args(ann) for t in unwrap(a)]
    return [ann]


def models_in(ann: Any) -> list[type[BaseModel]]:
    return [t for t in unwrap(ann) if isinstance(t, type) and issubclass(t, BaseModel)]


def list_item(ann: Any) -> Any | None:
    for t in unwrap(ann):
        if typing.get_origin(t) is list:
            return typing.get_args(t)[0]
    return None


def choices(ann: Any) -> list[str]:
    """The fixed values a field takes (Literal members and Enum values), in order."""
    out: list[str] = []
    for t in unwrap(ann):
        if typing.get_origin(t) is typing.Literal:
            out.extend(str(a) for a in typing.get_args(t))
        elif isinstance(t, type) and issubclass(t, Enum):
            out.extend(str(e.value) for e in t)
    return list(dict.fromkeys(out))


def accepts_not_reported(ann: Any) -> bool:
    return S.NOT_REPORTED in choices(ann)
