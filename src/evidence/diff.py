"""``evidence diff BASE [HEAD]``: what a change does to the evidence, in words a reviewer reads.

Each side is a git revision (extracted with ``git archive`` into a temporary folder; the
repository itself is not touched), a folder (a project folder with ``evidence.toml``, or a kb
folder), or, for HEAD left out, the working tree. Both sides are validated and compiled; the
report lists the cases, patients, treatments, phases, outcomes, adverse events, claims, sources
and vocabulary terms added, removed or changed (field by field), and counts the RDF quads added
and removed. ``--format markdown`` writes it for a pull-request comment.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import schema as S
from .config import Config, load_config
from .errors import EvidenceError
from .folders import write_whole
from .validate import Kb, validate_kb

__all__ = ["Side", "Record", "EvidenceDiff", "load_side", "diff_sides", "diff_specs", "render_text", "render_markdown", "add_commands"]

KINDS = ("case", "patient", "treatment", "phase", "outcome", "adverse event", "source", "vocabulary term")
_PLURAL = {"case": "cases", "patient": "patients", "treatment": "treatments", "phase": "treatment phases", "outcome": "outcomes",
           "adverse event": "adverse events", "source": "sources", "vocabulary term": "vocabulary terms", "claim": "claims"}
_CLAIM_KEYS = ("evidence", "class_evidence", "citation_evidence")
_CHILDREN = {"case": {"patients": "patient"}, "patient": {"treatments": "treatment", "outcomes": "outcome", "adverse_events": "adverse event"},
             "treatment": {"phases": "phase"}}


class DiffError(EvidenceError):
    """A side of the diff could not be read: not a folder, not a git revision, or no kb in it."""


# ============================================================================ the two sides


@dataclass
class Side:
    """One side of the comparison: its kb, and its compiled quads when it is valid."""

    label: str
    config: Config
    kb: Kb
    quads: set[str] | None = None
    graphs: dict[str, set[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _git(root: Path, *args: str, binary: bool = False) -> Any:
    r = subprocess.run(["git", "-C", str(root), *args], capture_output=True, timeout=300)
    if r.returncode != 0:
        return None
    return r.stdout if binary else r.stdout.decode("utf-8", "replace").strip()


def _extract_revision(root: Path, spec: str, dest: Path) -> tuple[Path, str] | None:
    """Extract evidence.toml and the kb of git revision ``spec`` into ``dest``; the project root there."""
    top = _git(root, "rev-parse", "--show-toplevel")
    sha = _git(root, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}") if top else None
    if not sha:
        return None
    rel = Path(root).resolve().relative_to(Path(top).resolve())
    config = load_config(root)
    wanted = [(rel / "evidence.toml").as_posix(), (rel / config.kb).as_posix()]
    present = [p for p in wanted if _git(Path(top), "cat-file", "-e", f"{sha}:{p}") is not None]
    data = _git(Path(top), "archive", "--format=tar", sha, "--", *present, binary=True) if present else b""
    dest.mkdir(parents=True, exist_ok=True)
    if data:
        links: list[tarfile.TarInfo] = []

        def links_aside(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
            if member.issym() or member.islnk():
                links.append(member)
                return None
            return tarfile.data_filter(member, path)

        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(dest, filter=links_aside)
        _put_links(dest, links)
    return dest / rel, sha


def _put_links(dest: Path, links: list[tarfile.TarInfo]) -> None:
    """The symbolic links of a revision, made as they are once every file is extracted, so that
    none is written through: validating the revision then reports a link that leads out of the
    kb, as it does in the working tree (load.leaves_kb). tarfile's "data" filter refused such a
    link, and the diff stopped with an internal error. A link whose own place is not inside
    ``dest`` is left out."""
    real = os.path.realpath(dest)
    for m in links:
        place = os.path.join(real, m.name)
        parent = os.path.realpath(os.path.dirname(place))
        if not m.issym() or not (parent == real or parent.startswith(real + os.sep)):
            continue
        with contextlib.suppress(OSError):
            os.symlink(m.linkname, os.path.join(parent, os.path.basename(place)))


def _compile(side: Side) -> None:
    from .pipeline import compile_checked

    if not side.kb.ok:
        n = sum(1 for d in side.kb.diagnostics if d.level == "error")
        side.problems.append(f"{side.label} has {n} validation error{'s' if n != 1 else ''} (run `evidence validate`): its RDF is not compared")
        unread = sorted({d.path for d in side.kb.diagnostics if d.level == "error"} - {f.display for f in side.kb.files.values()})
        if unread:
            side.problems.append(f"{side.label}: {', '.join(unread)} could not be read or do not match the schema, so their records are missing from it")
        return
    try:
        compiled = compile_checked(side.kb)
    except EvidenceError as exc:
        from .compile import compile_kb

        side.problems.append(f"{side.label} does not compile cleanly: {exc.message}")
        try:
            compiled = compile_kb(side.kb)
        except EvidenceError:
            return
    side.quads = set()
    for q in compiled.quads:
        text = str(q)
        side.quads.add(text)
        side.graphs.setdefault(getattr(q.graph_name, "value", ""), set()).add(text)


def load_side(spec: str | None, root: Path, workdir: Path, name: str) -> Side:
    """Read one side: ``None`` (the working tree at ``root``), a folder, or a git revision."""
    base = load_config(root)
    if spec is None:
        config, label = base, "the working tree"
    elif Path(spec).is_dir():
        folder = Path(spec).resolve()
        if (folder / "evidence.toml").is_file():
            config = load_config(folder)
        else:
            config = dataclasses.replace(base, root=folder.parent, kb=folder.name)
        label = spec
    else:
        found = _extract_revision(root, spec, workdir / name)
        if found is None:
            raise DiffError(f"'{spec}' is neither a folder nor a git revision of {root}; give a branch, tag or commit (such as main or HEAD~1), or a folder")
        project, sha = found
        config = load_config(project) if (project / "evidence.toml").is_file() else dataclasses.replace(base, root=project)
        label = sha[:7] if sha.startswith(spec) else f"{spec} ({sha[:7]})"
    if not config.kb_dir.is_dir():
        side = Side(label, config, Kb(config=config))
        side.problems.append(f"{label} has no kb folder ({config.kb}/)")
        side.quads, side.graphs = set(), {}
        return side
    side = Side(label, config, validate_kb(config))
    _compile(side)
    return side


# ============================================================================ records and claims


@dataclass(frozen=True)
class Record:
    kind: str
    key: str
    summary: str
    fields: dict[str, Any]


def _flatten(value: Any, prefix: str, out: dict[str, Any], skip: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in skip or k in _CLAIM_KEYS:
                continue
            _flatten(v, f"{prefix}.{k}" if prefix else k, out, set())
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{v['id'] if isinstance(v.get('id'), str) else i}]", out, set())
    elif isinstance(value, list):
        if value:
            out[prefix] = ", ".join(str(v) for v in value)
    elif value is not None:
        out[prefix] = value


def _claims(value: Any, owner: str, where: str, out: set[tuple[str, str, str, str, str, str]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{where}.{k}" if where else k
            if k in _CLAIM_KEYS and isinstance(v, list):
                for c in v:
                    if isinstance(c, dict):
                        out.add((owner, here, c.get("source", ""), c.get("locator", ""), c.get("quote") or "", c.get("note") or ""))
            elif k not in ("patients", "treatments", "outcomes", "adverse_events", "phases"):
                _claims(v, owner, here, out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            ident = v.get("id") if isinstance(v, dict) and isinstance(v.get("id"), str) else i
            _claims(v, owner, f"{where}[{ident}]", out)


def _num(x: Any) -> str:
    return S.number_text(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def _summary(kind: str, d: dict) -> str:
    nr = "not reported"
    if kind == "case":
        n = (d.get("cohort") or {}).get("n") or len(d.get("patients", []))
        return f"{d.get('title', '')} ({d.get('study_design', '')}, {n} patient{'s' if n != 1 else ''})"
    if kind == "patient":
        age = d.get("age")
        if isinstance(age, dict):
            unit = age.get("unit", "years")
            age = (f"{_num(age['value'])} {unit}" if age.get("value") is not None else f"{_num(age['min'])}-{_num(age['max'])} {unit}"
                   if age.get("min") is not None else f"{age.get('category')} ({age.get('basis', 'stated')})")
        geno = d.get("genotype")
        if isinstance(geno, list):
            geno = "; ".join(f"{g['gene']} " + (g["variant"]["hgvs"] if isinstance(g.get("variant"), dict) else "variant not reported") + f" ({g.get('zygosity')})"
                             for g in geno)
        return f"sex {d.get('sex')}, age {age or nr}, genotype {geno or nr}; diagnoses {', '.join(d.get('diagnoses', []))}"
    if kind == "treatment":
        dose = d.get("dose")
        dose = (f"{_num(dose['value'])} {dose['unit']}" if dose.get("value") is not None else dose.get("qualifier")) if isinstance(dose, dict) else f"dose {dose}"
        return f"{d.get('drug')}, {dose}, frequency {d.get('frequency')}, route {d.get('route')}, duration {d.get('duration')}"
    if kind == "phase":
        reason = d.get("reason")
        reason = reason.get("description") if isinstance(reason, dict) else reason
        return f"{d.get('kind')}" + (f" because of {reason}" if reason and reason != nr else "") + (f"; duration {d['duration']}" if d.get("duration") else "")
    if kind == "outcome":
        return f"{d.get('measure')} {d.get('direction')}, response {d.get('response')}, at {d.get('timepoint')} after {d.get('treatment')}"
    if kind == "adverse event":
        return f"{d.get('term')} after {d.get('treatment')}, severity {d.get('severity')}, action {d.get('action')}"
    if kind == "source":
        ids = ", ".join(f"{k} {d[k]}" for k in ("doi", "pmid", "pmcid") if d.get(k))
        return f"{d.get('title')} ({d.get('year')})" + (f"; {ids}" if ids else "")
    return str(d.get("label", ""))


def _walk(kind: str, key: str, d: dict, records: dict[str, Record], claims: set) -> None:
    children = _CHILDREN.get(kind, {})
    fields: dict[str, Any] = {}
    _flatten(d, "", fields, set(children))
    records[key] = Record(kind, key, _summary(kind, d), fields)
    _claims({k: v for k, v in d.items() if k not in children}, key, "", claims)
    for list_name, child_kind in children.items():
        for item in d.get(list_name, []) or []:
            _walk(child_kind, f"{key}/{item['id']}", item, records, claims)


def _contents(kb: Kb) -> tuple[dict[str, Record], set]:
    records: dict[str, Record] = {}
    claims: set = set()
    for cid, case in kb.cases.items():
        _walk("case", cid, case.model_dump(mode="json", exclude_none=True), records, claims)
    for sid, src in kb.sources.items():
        d = src.model_dump(mode="json", exclude_none=True)
        _flatten(d, "", fields := {}, set())
        records[f"source {sid}"] = Record("source", sid, _summary("source", d), fields)
        _claims(d, f"source {sid}", "", claims)
    for vkind, terms in kb.vocab.items():
        for tkey, term in terms.items():
            d = term.model_dump(mode="json", exclude_none=True)
            _flatten(d, "", fields := {}, set())
            records[f"term {vkind}/{tkey}"] = Record("vocabulary term", f"{vkind}/{tkey}", _summary("term", d), fields)
            _claims(d, f"{vkind}/{tkey}", "", claims)
    return records, claims


# ============================================================================ the comparison


@dataclass
class EvidenceDiff:
    base: Side
    head: Side
    added: list[Record] = field(default_factory=list)
    removed: list[Record] = field(default_factory=list)
    changed: list[tuple[Record, list[tuple[str, Any, Any]]]] = field(default_factory=list)
    claims_added: list[tuple] = field(default_factory=list)
    claims_removed: list[tuple] = field(default_factory=list)
    quads_added: int | None = None
    quads_removed: int | None = None
    graphs: list[tuple[str, int, int]] = field(default_factory=list)  # graph IRI, added, removed

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.claims_added or self.claims_removed or self.quads_added or self.quads_removed)

    def counts(self) -> list[tuple[str, int, int, int]]:
        rows = []
        for kind in KINDS:
            rows.append((kind, sum(r.kind == kind for r in self.added), sum(r.kind == kind for r in self.removed), sum(r.kind == kind for r, _ in self.changed)))
        return rows


def _order(r: Record) -> tuple:
    return (KINDS.index(r.kind), r.key)


def diff_sides(base: Side, head: Side) -> EvidenceDiff:
    """Compare two sides record by record, claim by claim and quad by quad."""
    old, old_claims = _contents(base.kb)
    new, new_claims = _contents(head.kb)
    d = EvidenceDiff(base, head)
    d.added = sorted((new[k] for k in new.keys() - old.keys()), key=_order)
    d.removed = sorted((old[k] for k in old.keys() - new.keys()), key=_order)
    for k in sorted(old.keys() & new.keys(), key=lambda k: _order(new[k])):
        a, b = old[k].fields, new[k].fields
        changes = [(f, a.get(f), b.get(f)) for f in sorted(a.keys() | b.keys()) if a.get(f) != b.get(f)]
        if changes:
            d.changed.append((new[k], changes))
    d.claims_added = sorted(new_claims - old_claims)
    d.claims_removed = sorted(old_claims - new_claims)
    if base.quads is not None and head.quads is not None:
        d.quads_added = len(head.quads - base.quads)
        d.quads_removed = len(base.quads - head.quads)
        for g in sorted(base.graphs.keys() | head.graphs.keys()):
            a_, b_ = base.graphs.get(g, set()), head.graphs.get(g, set())
            if a_ != b_:
                d.graphs.append((g, len(b_ - a_), len(a_ - b_)))
    return d


def diff_specs(base: str, head: str | None, root: Path) -> EvidenceDiff:
    """Load both sides (git revisions or folders; ``head`` None is the working tree) and compare them."""
    with tempfile.TemporaryDirectory(prefix="evidence-diff-") as tmp:
        a = load_side(base, root, Path(tmp), "base")
        b = load_side(head, root, Path(tmp), "head")
        return diff_sides(a, b)


# ============================================================================ the reports


def _show(v: Any, limit: int = 160) -> str:
    if v is None:
        return "(not set)"
    text = _num(v) if isinstance(v, float) else str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _claim_text(c: tuple) -> tuple[str, str]:
    owner, where, source, locator, quote, note = c
    what = f"{source}, {locator}" + (f': "{_show(quote, 120)}"' if quote else "") + (f" (note: {_show(note, 80)})" if note else "")
    return f"{owner} {where}", what


class _Report(ABC):
    """The report of a diff, in one walk (:meth:`render`); a subclass says how each part is
    written (plain text for a terminal, Markdown for a pull-request comment)."""

    def render(self, d: EvidenceDiff) -> str:
        out = self.intro(d)
        for p in d.base.problems + d.head.problems:
            out += self.problem(p)
        if d.empty:
            return self.finish(out + ["No change to the evidence."])
        rows: list[tuple[str, Any, Any, Any]] = [(_PLURAL[kind], a, r, c) for kind, a, r, c in d.counts() if a or r or c]
        if d.claims_added or d.claims_removed:
            rows.append(("claims", len(d.claims_added), len(d.claims_removed), None))
        if d.quads_added is not None:
            rows.append(("RDF quads", f"+{d.quads_added}", f"-{d.quads_removed}", None))
        out += self.table(rows)
        for kind in KINDS:
            lines = [self.record("added", r) for r in d.added if r.kind == kind]
            lines += [self.record("removed", r) for r in d.removed if r.kind == kind]
            for r, changes in d.changed:
                if r.kind == kind:
                    lines.append(self.record("changed", r))
                    lines += [self.change(f, a, b) for f, a, b in changes]
            if lines:
                out += self.section(_PLURAL[kind].capitalize(), lines)
        if d.claims_added or d.claims_removed:
            lines = [self.claim(sign, *_claim_text(c)) for sign, claims in (("added", d.claims_added), ("removed", d.claims_removed)) for c in claims]
            out += self.claims(d, lines)
        if d.graphs:
            out += self.graphs([self.graph(g, a, r) for g, a, r in d.graphs])
        return self.finish(out)

    @abstractmethod
    def intro(self, d: EvidenceDiff) -> list[str]:
        ...

    @abstractmethod
    def problem(self, p: str) -> list[str]:
        ...

    @abstractmethod
    def table(self, rows: list[tuple[str, Any, Any, Any]]) -> list[str]:
        """Rows of (what, added, removed, changed or None)."""
        ...

    @abstractmethod
    def record(self, how: str, r: Record) -> str:
        """A record added, removed or changed (its changes follow)."""
        ...

    @abstractmethod
    def change(self, field_name: str, before: Any, after: Any) -> str:
        ...

    @abstractmethod
    def section(self, title: str, lines: list[str]) -> list[str]:
        ...

    @abstractmethod
    def claim(self, how: str, where: str, what: str) -> str:
        ...

    @abstractmethod
    def claims(self, d: EvidenceDiff, lines: list[str]) -> list[str]:
        ...

    @abstractmethod
    def graph(self, g: str, added: int, removed: int) -> str:
        ...

    @abstractmethod
    def graphs(self, lines: list[str]) -> list[str]:
        ...

    def finish(self, out: list[str]) -> str:
        return "\n".join(out) + "\n"


class _TextReport(_Report):
    SIGN = {"added": "+", "removed": "-", "changed": "~"}

    def intro(self, d: EvidenceDiff) -> list[str]:
        return [f"evidence diff: {d.base.label} -> {d.head.label}", ""]

    def problem(self, p: str) -> list[str]:
        return [f"  {p}"]

    def table(self, rows: list[tuple[str, Any, Any, Any]]) -> list[str]:
        return [f"{'':18}{'added':>7}{'removed':>9}{'changed':>9}"] + [
            f"{name:18}{a:>7}{r:>9}" + (f"{c:>9}" if c is not None else "") for name, a, r, c in rows]

    def record(self, how: str, r: Record) -> str:
        return f"  ~ {r.key}" if how == "changed" else f"  {self.SIGN[how]} {r.key}: {_show(r.summary, 200)}"

    def change(self, field_name: str, before: Any, after: Any) -> str:
        return f"      {field_name}: {_show(before)} -> {_show(after)}"

    def section(self, title: str, lines: list[str]) -> list[str]:
        return ["", title, *lines]

    def claim(self, how: str, where: str, what: str) -> str:
        return f"  {self.SIGN[how]} {where}: {what}"

    def claims(self, d: EvidenceDiff, lines: list[str]) -> list[str]:
        return ["", "Claims (where a fact comes from)", *lines]

    def graph(self, g: str, added: int, removed: int) -> str:
        return f"  {g}: +{added} -{removed}"

    def graphs(self, lines: list[str]) -> list[str]:
        return ["", "RDF quads by named graph", *lines]


_MD_SPECIAL = set("\\`*_[]<>|~#")


def _md(text: Any, limit: int = 160) -> str:
    """Text from a pull request, made inert in Markdown: no links, mentions, HTML or formatting."""
    s = _show(text, limit).replace("\r", " ").replace("\n", " ")
    return "".join("\\" + ch if ch in _MD_SPECIAL else "&#64;" if ch == "@" else ch for ch in s)


MARKDOWN_LIMIT = 60000  # GitHub refuses comments over 65,536 characters


class _MarkdownReport(_Report):
    def intro(self, d: EvidenceDiff) -> list[str]:
        return ["<!-- evidence-diff -->", "### What this change does to the evidence", "", f"Compared {_md(d.base.label)} with {_md(d.head.label)}.", ""]

    def problem(self, p: str) -> list[str]:
        return [f"> :warning: {_md(p, 400)}", ""]

    def table(self, rows: list[tuple[str, Any, Any, Any]]) -> list[str]:
        return ["| | added | removed | changed |", "|---|---:|---:|---:|"] + [
            f"| {name} | {a} | {r} | {c} |" if c is not None else f"| {name} | {a} | {r} | |" for name, a, r, c in rows]

    def record(self, how: str, r: Record) -> str:
        return f"- **changed** `{r.key}`" if how == "changed" else f"- **{how}** `{r.key}`: {_md(r.summary, 240)}"

    def change(self, field_name: str, before: Any, after: Any) -> str:
        return f"  - `{field_name}`: {_md(before)} → {_md(after)}"

    def section(self, title: str, lines: list[str]) -> list[str]:
        return ["", f"#### {title}", *lines]

    def claim(self, how: str, where: str, what: str) -> str:
        return f"- {how} `{where.replace('`', '')}`: {_md(what, 300)}"

    def claims(self, d: EvidenceDiff, lines: list[str]) -> list[str]:
        return ["", f"<details><summary>Claims: {len(d.claims_added)} added, {len(d.claims_removed)} removed</summary>", "", *lines, "", "</details>"]

    def graph(self, g: str, added: int, removed: int) -> str:
        return f"- `{g}`: +{added} −{removed}"

    def graphs(self, lines: list[str]) -> list[str]:
        return ["", "<details><summary>RDF quads by named graph</summary>", "", *lines, "", "</details>"]

    def finish(self, out: list[str]) -> str:
        text = super().finish(out)
        if len(text) > MARKDOWN_LIMIT:
            text = text[:MARKDOWN_LIMIT].rsplit("\n", 1)[0] + "\n\n… (cut short; run `evidence diff` for all of it)\n"
        return text


def render_text(d: EvidenceDiff) -> str:
    """The report for a terminal."""
    return _TextReport().render(d)


def render_markdown(d: EvidenceDiff) -> str:
    """The report for a pull-request comment: everything from the change made inert, cut short
    under GitHub's limit."""
    return _MarkdownReport().render(d)


# ============================================================================ the command


def cmd_diff(args: argparse.Namespace) -> int:
    root = load_config(args.root).root
    try:
        d = diff_specs(args.base, args.head, root)
    except DiffError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    text = render_markdown(d) if args.format == "markdown" else render_text(d)
    if args.out:
        write_whole(args.out, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="what a change does to the evidence: records and claims added, removed or changed",
                       description="Compare the kb of BASE with HEAD (default: the working tree). Each is a git revision (branch, tag, commit) "
                                   "or a folder (a project folder with evidence.toml, or a kb folder). Lists cases, patients, treatments, "
                                   "phases, outcomes, adverse events, claims, sources and vocabulary terms added, removed or changed "
                                   "(field by field), and the RDF quads added and removed.")
    p.add_argument("base", metavar="BASE", help="the git revision or folder before the change, such as main")
    p.add_argument("head", metavar="HEAD", nargs="?", default=None, help="the git revision or folder after it (default: the working tree)")
    p.add_argument("--format", choices=["text", "markdown"], default="text", help="text (default) or markdown, for a pull request comment")
    p.add_argument("--out", help="write the report to this file (default: stdout)")
    p.set_defaults(func=cmd_diff)
