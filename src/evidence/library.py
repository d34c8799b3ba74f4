"""The curated SPARQL query library, ``kb/queries/*.rq``.

Each file starts with a header of ``# key: value`` lines::

    # title: Drugs given to patients who carry a variant in a gene
    # question: Which drugs were given to patients carrying a variant in a gene ...?
    # params: gene (literal, HGNC symbol such as TREX1; leave out for every gene)

``params`` lists the SELECT variables a caller may bind (``--param gene=TREX1``), each as
``name (description)``, separated by ``;``, or ``none``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import QueryError

__all__ = ["LibraryQuery", "Param", "load_library", "find_query"]


@dataclass(frozen=True)
class Param:
    name: str
    description: str


@dataclass(frozen=True)
class LibraryQuery:
    name: str  # the file stem, e.g. drugs-by-gene
    title: str
    question: str
    params: tuple[Param, ...]
    text: str
    path: Path
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        body = re.sub(r"#[^\n]*", "", self.text)
        m = re.search(r"\b(SELECT|CONSTRUCT|DESCRIBE|ASK)\b", body, re.IGNORECASE)
        return m.group(1).upper() if m else "SELECT"


def _parse(path: Path) -> LibraryQuery:
    text = path.read_text(encoding="utf-8")
    head: dict[str, str] = {}
    notes: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(":")
        if sep and key.strip() in ("title", "question", "params"):
            head[key.strip()] = value.strip()
        elif line[1:].strip():
            notes.append(line[1:].strip())
    missing = [k for k in ("title", "question", "params") if k not in head]
    if missing:
        raise QueryError(f"{path}: the header lacks {', '.join(missing)} (see evidence.library)")
    params: list[Param] = []
    if head["params"].lower() not in ("none", ""):
        rest = head["params"]
        for m in re.finditer(r"\s*(\w+)\s*(?:\(([^()]*)\))?\s*(?:;|$)", rest):
            if m.group(1):
                params.append(Param(m.group(1), (m.group(2) or "").strip()))
        if not params:
            raise QueryError(f"{path}: cannot read the parameters {rest!r}; expected 'name (description); name (description)'")
    return LibraryQuery(path.stem, head["title"], head["question"], tuple(params), text, path, tuple(notes))


def load_library(folder: Path) -> list[LibraryQuery]:
    """Every query of the library (``queries/`` of the kb), sorted by name. The folder, or a query
    in it, that a symbolic link leads out of the kb is a QueryError, and never read."""
    from .load import leaves_kb

    kb_real = folder.parent.resolve()
    problem = leaves_kb(folder, kb_real, folder=True) if folder.is_symlink() else None
    if problem:
        raise QueryError(f"{folder}: {problem}; put the folder itself in the kb, in place of the link")
    if not folder.is_dir():
        return []
    paths = sorted(folder.glob("*.rq"))
    for p in paths:
        problem = leaves_kb(p, kb_real) if p.is_symlink() else None
        if problem:
            raise QueryError(f"{p}: {problem}; put the file itself in the kb, in place of the link")
    return [_parse(p) for p in paths]


def find_query(folder: Path, name: str) -> LibraryQuery:
    """A library query by name; an unknown name lists the known ones."""
    lib = {q.name: q for q in load_library(folder)}
    if name in lib:
        return lib[name]
    import difflib

    guess = difflib.get_close_matches(name, list(lib), n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    raise QueryError(f"no query named '{name}' in {folder}{hint} Known: {', '.join(sorted(lib))}")
