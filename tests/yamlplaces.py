"""Walking a YAML document (as yaml.safe_load gives it) for the tests that change one place of a kb file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def places(node: Any, loc: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """Every place in the document, depth first, as (path, value): the document itself first, then
    each mapping's values by key and each list's items by index."""
    yield loc, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from places(v, loc + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from places(v, loc + (i,))


def leaves(node: Any) -> Iterator[tuple[tuple, Any]]:
    """Every value that is neither a mapping nor a list, as (path, value)."""
    return ((loc, v) for loc, v in places(node) if not isinstance(v, (dict, list)))


def put(data: Any, loc: tuple, value: Any) -> None:
    """Set the place ``loc`` of ``data`` to ``value``."""
    for seg in loc[:-1]:
        data = data[seg]
    data[loc[-1]] = value
