"""Writing kb files by hand: ``evidence new`` (a template of every field) and ``evidence fmt``.

``new`` writes ``kb/<id>.yaml`` and ``kb/sources/<id>.yaml`` from a template generated from the
models in :mod:`evidence.schema`, so it cannot drift from the format: every field is there with
its description as a comment, required fields are left empty for the curator to fill in (the
validator reports each empty one, at its line), optional structures are commented out.

``fmt`` gives every kb file one layout, decided by the data alone (see :func:`format_text`):
keys in the schema's field order, 2-space indentation, block mappings, flow style only for
short lists of scalars, strings plain unless they need quotes (then double quotes; verbatim
quotes always double-quoted), long text folded, and every comment kept beside the field it was
written above or beside. It refuses to write a result that does not load to the same data.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import io
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import schema as S
from .annotations import MapOf, accepts_not_reported, choices, list_item, models_in, unwrap
from .config import Config, load_config
from .folders import write_whole
from .load import REFUSED, discover, file_kind, leaves_kb, yaml_files_under
from .yamlio import load_yaml_text

__all__ = [
    "add_commands",
    "case_template",
    "source_template",
    "write_new",
    "format_text",
    "comments_of",
    "FormatError",
    "WIDTH",
]

WIDTH = 160  # the longest line: a longer text is folded, a longer list of scalars is written one item a line
FOLD = 100  # the length of the lines that long text is folded into


class FormatError(Exception):
    """A file cannot be formatted: it is not YAML that the kb accepts (the message says why)."""


# ============================================================================ types of a field


def _scalar_kind(ann: Any) -> str:
    names = {getattr(t, "__name__", "") for t in unwrap(ann)}
    for kind, label in (("date", "a date, YYYY-MM-DD"), ("bool", "true or false"), ("int", "a whole number"), ("float", "a number")):
        if kind in names:
            return label
    return ""


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split()).replace("``", "`")


def _doc_once(t: _Template, model: type[BaseModel]) -> str:
    if model in t.docs_shown or model.__doc__ is None or model.__doc__ == BaseModel.__doc__:
        return ""
    t.docs_shown.add(model)
    return _first_line(model.__doc__)


# ============================================================================ evidence new

_LOCAL_ID = {S.Patient: "P", S.Treatment: "T", S.Phase: "PH", S.Outcome: "O", S.AdverseEvent: "AE"}
_HEADER = """\
# {path}: {what}.
# Written by `evidence new` from the schema; CONTRIBUTING.md walks through filling it in.
# Fill in every empty field from the publication. Where a field allows it, write `not reported`
# when the source is silent; never fill a field from memory or from another source. Optional
# blocks are commented out: remove the `# ` in front of a block to use it. Then check the file:
#   evidence validate {path}
"""


@dataclass
class _Template:
    case_id: str
    today: str
    patients: int = 1  # how many patient blocks to write
    docs_shown: set = field(default_factory=set)  # each model's docstring is shown once, the first time
    index: int = 1  # which patient is being written (P1, P2, ...)

    def prefill(self, model: type[BaseModel], name: str) -> Any:
        """The values a template can fill in itself: ids, the source key, today's date."""
        if name == "id" and model in (S.CaseReport, S.Source):
            return self.case_id
        if name == "id" and model in _LOCAL_ID:
            return f"{_LOCAL_ID[model]}{self.index if model is S.Patient else 1}"
        if (model, name) in ((S.Claim, "source"), (S.SourceRef, "source")):
            return self.case_id
        if (model, name) in ((S.SourceRef, "role"),):
            return "primary"
        if (model, name) in ((S.Outcome, "treatment"), (S.AdverseEvent, "treatment")):
            return "T1"
        if (model, name) == (S.Phase, "kind"):
            return "start"
        if (model, name) == (S.EvidenceLevel, "scale"):
            return "civic"
        if (model, name) == (S.Curation, "created"):
            return self.today
        return None


def _comment(info: Any, required: bool) -> str:
    parts = []
    if info.description:
        parts.append(info.description.rstrip("."))
    options = [c for c in choices(info.annotation) if c != S.NOT_REPORTED]
    if options and not models_in(info.annotation):
        parts.append("one of: " + " | ".join(options))
    elif not options and not models_in(info.annotation) and list_item(info.annotation) is None and _scalar_kind(info.annotation):
        parts.append(_scalar_kind(info.annotation))
    if accepts_not_reported(info.annotation):
        parts.append("or: not reported")
    parts.append("required" if required else "optional")
    return "; ".join(parts)


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    return _inline_string(str(value), flow=False) if isinstance(value, str) else str(value)


def _model_lines(t: _Template, model: type[BaseModel], indent: int, expand: bool) -> list[str]:
    """One line or block per field of ``model``; optional structures commented out unless ``expand``."""
    out: list[str] = []
    pad = " " * indent
    for name, info in model.model_fields.items():
        required = info.is_required()
        ann = info.annotation
        note = _comment(info, required)
        item = list_item(ann)
        nested = models_in(ann)
        default = None if required else info.get_default(call_default_factory=True)
        structured = nested or (item is not None and models_in(item))
        if structured and not (required or expand):
            # An optional structure: shown commented out, every field of it expanded.
            if default not in (None, []):
                out.append(f"{pad}{name}: {_scalar(default)}  # {note}")
                note = "or, instead of the line above"
            block = _field_block(t, name, ann, indent, note, expand=True)
            out.extend(_comment_out(block, indent))
            continue
        if structured:
            out.extend(_field_block(t, name, ann, indent, note, expand))
            continue
        if item is not None:
            out.append(f"{pad}{name}: []  # {note}")
            continue
        value = t.prefill(model, name)
        if value is None and default is not None:
            value = default
        text = _scalar(value)
        out.append(f"{pad}{name}:{' ' + text if text else ''}  # {note}")
    return out


def _field_block(t: _Template, name: str, ann: Any, indent: int, note: str, expand: bool) -> list[str]:
    pad = " " * indent
    item = list_item(ann)
    if item is not None and models_in(item):
        model = models_in(item)[0]
        lines = [f"{pad}{name}:  # {note}"]
        doc = _doc_once(t, model)
        count = max(1, t.patients) if model is S.Patient else 1
        for i in range(count):
            if model is S.Patient:
                t.index = i + 1
            body = _model_lines(t, model, indent + 4, expand)
            if doc and i == 0:
                lines.append(f"{pad}  # {doc}")
            lines.append(f"{pad}  - {body[0].lstrip()}")
            lines.extend(body[1:])
        return lines
    model = models_in(ann)[0]
    lines = [f"{pad}{name}:  # {note}"]
    doc = _doc_once(t, model)
    if doc:
        lines.append(f"{pad}  # {doc}")
    lines.extend(_model_lines(t, model, indent + 2, expand))
    return lines


def _comment_out(lines: list[str], indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}# {ln[indent:]}" for ln in lines]


def case_template(case_id: str, patients: int = 1, today: str | None = None) -> str:
    """The text of a new case file: every field of :class:`~evidence.schema.CaseReport`."""
    t = _Template(case_id, today or datetime.date.today().isoformat(), patients=patients)
    head = _HEADER.format(path=f"kb/{case_id}.yaml", what="a case report, one publication's patients")
    return head + "\n".join(_model_lines(t, S.CaseReport, 0, expand=False)) + "\n"


def source_template(source_id: str, today: str | None = None) -> str:
    """The text of a new source record: every field of :class:`~evidence.schema.Source`."""
    t = _Template(source_id, today or datetime.date.today().isoformat())
    head = _HEADER.format(path=f"kb/sources/{source_id}.yaml", what="the publication record")
    return head + "\n".join(_model_lines(t, S.Source, 0, expand=False)) + "\n"


def _id_problem(case_id: str) -> str | None:
    if not re.fullmatch(S.SLUG, case_id) or len(case_id) > 80:
        return f"'{case_id}' is not a usable id: use lower-case letters, digits and hyphens, such as smith-2021 (first author and year)"
    return None


def _new_id(text: str) -> str:
    """argparse's check of `new`'s id: a wrong one is a wrong command line (exit 2)."""
    problem = _id_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _patients(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of patients from 1 to 100")
    return n


def write_new(config: Config, case_id: str, patients: int = 1, existing_source: bool = False) -> list[Path]:
    """Write the two templates; refuse (ValueError) to overwrite anything."""
    problem = _id_problem(case_id)
    if problem:
        raise ValueError(problem)
    case = config.kb_dir / f"{case_id}.yaml"
    source = config.kb_dir / "sources" / f"{case_id}.yaml"
    if case.exists():
        raise ValueError(f"{_shown(case, config)} already exists; edit it, or choose another id (such as {case_id}b)")
    if existing_source and not source.exists():
        raise ValueError(f"--existing-source: {_shown(source, config)} does not exist")
    if source.exists() and not existing_source:
        raise ValueError(f"{_shown(source, config)} already exists; to write only the case file, citing it, add --existing-source")
    written = []
    case.parent.mkdir(parents=True, exist_ok=True)
    with case.open("x", encoding="utf-8") as fh:  # "x": never overwrite, even in a race
        fh.write(case_template(case_id, patients))
    written.append(case)
    if not existing_source:
        source.parent.mkdir(parents=True, exist_ok=True)
        with source.open("x", encoding="utf-8") as fh:
            fh.write(source_template(case_id))
        written.append(source)
    return written


def _shown(path: Path, config: Config) -> str:
    try:
        return path.resolve().relative_to(config.root.resolve()).as_posix()
    except ValueError:
        return str(path)


# ============================================================================ evidence fmt

_STR = "tag:yaml.org,2002:str"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_RESOLVER = yaml.resolver.Resolver()
# YAML 1.2 core schema: a plain scalar that other tools (editors) would not read as text.
_YAML12_NOT_TEXT = re.compile(
    r"^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$"
)
_PRINTABLE = re.compile("^[\t\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")


def _analysis(s: str) -> Any:
    return yaml.emitter.Emitter(io.StringIO(), allow_unicode=True).analyze_scalar(s)


@functools.lru_cache(maxsize=4096)
def _plain_ok(s: str, flow: bool) -> bool:
    """Whether ``s`` may be written without quotes and read back as the same text, everywhere."""
    if not s or s != s.strip() or not _PRINTABLE.match(s) or "\t" in s:
        return False
    if _RESOLVER.resolve(yaml.ScalarNode, s, (True, False)) not in (_STR, _TIMESTAMP) or _YAML12_NOT_TEXT.match(s):
        return False
    a = _analysis(s)
    if a.multiline or not a.allow_block_plain:
        return False
    # PyYAML's emitter never writes a ":" plain inside [a, b]; readers accept one, so CURIEs such as
    # HGNC:12269 may stay plain there. What the kb's reader (libyaml) makes of it decides,
    # and fmt's own reader (pure-Python PyYAML, which keeps comments' places) must agree.
    text = f"[{s}]" if flow else f"k: {s}"
    doc, _ = load_yaml_text(text)
    if doc is None or doc.data != ([s] if flow else {"k": s}):
        return False
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return False
    inner = node.value[0] if flow else node.value[0][1]
    return isinstance(inner, yaml.ScalarNode) and inner.value == s


def _double_quoted(s: str) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or 0x7F <= o <= 0x9F or ch in "\u2028\u2029\ufeff" or 0xD800 <= o <= 0xDFFF or ch in "\ufffe\uffff":
            out.append(f"\\x{o:02X}" if o <= 0xFF else f"\\u{o:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _inline_string(s: str, flow: bool, quote: bool = False) -> str:
    return _double_quoted(s) if quote or not _plain_ok(s, flow) else s


def _foldable(s: str) -> bool:
    return bool(s) and s == s.strip() and "\n" not in s and "\r" not in s and _PRINTABLE.match(s) is not None and "\t" not in s and "  " not in s


def _fold(s: str, width: int) -> list[str]:
    """Split at single spaces into lines of at most ``width`` (a longer word stands alone)."""
    words = s.split(" ")
    lines: list[str] = []
    cur = ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    lines.append(cur)
    return lines


def _literal_ok(s: str) -> bool:
    if "\n" not in s or "\r" in s or not _PRINTABLE.match(s.replace("\n", "")) or s[:1] in (" ", "\t", "\n"):
        return False
    body = s[:-1] if s.endswith("\n") else s
    if body.endswith("\n"):
        return False
    return all(line == line.rstrip(" \t") for line in body.split("\n"))


def _float_text(x: float) -> str:
    if x != x:
        return ".nan"
    if x in (float("inf"), float("-inf")):
        return ".inf" if x > 0 else "-.inf"
    text = repr(x)
    if "e" in text:
        mant, exp = text.split("e")
        mant = mant if "." in mant else mant + ".0"
        exp = exp if exp[0] in "+-" else "+" + exp
        text = f"{mant}e{exp}"
    return text


# -- comments ----------------------------------------------------------------------------------


def _token_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges that are YAML syntax (not comments); a block scalar's header line is left out."""
    spans = []
    for tok in yaml.scan(text, Loader=yaml.SafeLoader):
        start, end = tok.start_mark.index, tok.end_mark.index
        if start == end:
            continue
        if isinstance(tok, yaml.ScalarToken) and tok.style in ("|", ">"):
            nl = text.find("\n", start)
            spans.append((start, start + 1 + len(re.match(r"[-+0-9]*", text[start + 1:]).group(0))))
            start = end if nl < 0 else min(nl, end)
        spans.append((start, end))
    return sorted(spans)


def comments_of(text: str) -> list[tuple[int, int, str]]:
    """Every comment as (character index, line, text from '#' to the end of the line, stripped)."""
    spans = _token_spans(text)
    out = []
    pos = 0
    k = 0
    for m in re.finditer("#", text):
        i = m.start()
        if i < pos:
            continue
        while k < len(spans) and spans[k][1] <= i:
            k += 1
        if k < len(spans) and spans[k][0] <= i < spans[k][1]:
            continue
        if i > 0 and text[i - 1] not in " \t\n":
            continue
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        out.append((i, text.count("\n", 0, i), text[i:end].rstrip()))
        pos = end
    return out


@dataclass
class _Notes:
    """The comments attached to an entry (a key with its value, or a list item) or a collection."""

    above: list[str] = field(default_factory=list)  # the lines above the entry
    beside: list[str] = field(default_factory=list)  # at the end of the entry's first line
    end: list[str] = field(default_factory=list)  # below the last entry of a collection


@dataclass
class _Entry:
    start: int
    line: int
    col: int  # the column of the key, or of the dash of a list item
    depth: int
    key: int  # id() of the key node of a pair, or of the item node of a list item
    parent: int  # id() of the collection node


def _dash_column(text: str, item: yaml.Node) -> int:
    i = item.start_mark.index - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    return item.start_mark.column - (item.start_mark.index - i) if i >= 0 and text[i] == "-" else item.start_mark.column


def _entries(text: str, node: yaml.Node, depth: int, out: list[_Entry]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            out.append(_Entry(k.start_mark.index, k.start_mark.line, k.start_mark.column, depth, id(k), id(node)))
            _entries(text, v, depth + 1, out)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out.append(_Entry(item.start_mark.index, item.start_mark.line, _dash_column(text, item), depth, id(item), id(node)))
            _entries(text, item, depth + 1, out)


def _attach(text: str, root: yaml.Node) -> tuple[list[str], dict[int, _Notes]]:
    """Header comments, and the comments of each entry and collection (by node id)."""
    entries: list[_Entry] = []
    _entries(text, root, 0, entries)
    entries.sort(key=lambda e: (e.start, e.depth))
    notes: dict[int, _Notes] = {}
    header: list[str] = []
    first = root.start_mark.index
    for index, line, comment in comments_of(text):
        line_start = text.rfind("\n", 0, index) + 1
        col = index - line_start
        if text[line_start:index].strip() == "":  # a comment on a line of its own
            if index < first:
                header.append(comment)
                continue
            after = next((e for e in entries if e.start > index), None)
            if after is None or after.col < col:
                # Indented deeper than what follows: it closes the block it is indented with.
                block = [e for e in entries if e.start < index and e.col == col]
                if block:
                    notes.setdefault(block[-1].parent, _Notes()).end.append(comment)
                    continue
            if after is None:
                notes.setdefault(id(root), _Notes()).end.append(comment)
            else:
                notes.setdefault(after.key, _Notes()).above.append(comment)
            continue
        same = [e for e in entries if e.line == line and e.start < index]
        if same:
            target = min(same, key=lambda e: (e.depth, e.start))
        else:
            before = [e for e in entries if e.start < index]
            if not before:
                header.append(comment)
                continue
            target = before[-1]
        notes.setdefault(target.key, _Notes()).beside.append(comment)
    return header, notes


# -- layout ------------------------------------------------------------------------------------


class _Formatter:
    def __init__(self, notes: dict[int, _Notes]):
        self.notes = notes
        self.constructor = yaml.constructor.SafeConstructor()

    # scalars
    def value_of(self, node: yaml.ScalarNode) -> Any:
        if node.tag in (_STR, _TIMESTAMP):
            return node.value
        return self.constructor.construct_object(node)

    def inline(self, node: yaml.Node, flow: bool, quote: bool = False, in_map: bool = True) -> str | None:
        """A scalar on one line, or None if it takes a block of its own."""
        if not isinstance(node, yaml.ScalarNode):
            return None
        if node.tag == _TIMESTAMP and node.style is None:
            return node.value
        value = self.value_of(node)
        if value is None:
            return "" if in_map and not flow else "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return _float_text(value)
        return _inline_string(str(value), flow, quote)

    def scalar_lines(self, node: yaml.ScalarNode, lead: str, indent: int, quote: bool, in_map: bool = True) -> list[str]:
        """``lead`` ("key: " or "- ") followed by the scalar, on one line or as a block scalar."""
        text = self.inline(node, flow=False, quote=quote, in_map=in_map)
        assert text is not None
        s = node.value if node.tag == _STR else None
        if s is not None and not quote:
            if "\n" in s and _literal_ok(s):
                body = s[:-1] if s.endswith("\n") else s
                return [f"{lead}|{'' if s.endswith(chr(10)) else '-'}"] + [(" " * (indent + 2) + ln) if ln else "" for ln in body.split("\n")]
            if len(lead) + len(text) > WIDTH and _foldable(s):
                return [f"{lead}>-"] + [" " * (indent + 2) + ln for ln in _fold(s, max(40, FOLD - indent - 2))]
        return [f"{lead}{text}".rstrip() if text == "" else f"{lead}{text}"]

    def flow_list(self, node: yaml.SequenceNode, used: int) -> str | None:
        if not node.value:
            return "[]"
        if id(node) in self.notes or any(not isinstance(i, yaml.ScalarNode) or id(i) in self.notes for i in node.value):
            return None  # comments need a line of their own
        parts = [self.inline(i, flow=True) for i in node.value]
        if any(p is None or p == "" for p in parts):
            return None
        text = "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]
        return text if used + len(text) <= WIDTH else None

    # collections
    def ordered(self, node: yaml.MappingNode, ann: Any) -> list[tuple[yaml.Node, yaml.Node, Any]]:
        if isinstance(ann, MapOf):
            return [(k, v, ann.model) for k, v in node.value]
        models = models_in(ann)
        if not models:
            return [(k, v, None) for k, v in node.value]
        fields = models[0].model_fields
        order = {name: i for i, name in enumerate(fields)}
        pairs = sorted(enumerate(node.value), key=lambda p: (order.get(str(p[1][0].value), len(order)), p[0]))
        return [(k, v, fields[str(k.value)].annotation if str(k.value) in fields else None) for _, (k, v) in pairs]

    def with_notes(self, key: int, lines: list[str], indent: int, extra_above: list[str] | None = None) -> list[str]:
        n = self.notes.get(key)
        if not n:
            return (extra_above or []) + lines
        pad = " " * indent
        out = [pad + c for c in n.above] + (extra_above or [])
        first = lines[0]
        out.append(f"{first}  {n.beside[0]}" if n.beside else first)
        out.extend(lines[1:])
        out.extend(pad + c for c in n.beside[1:])
        return out

    def mapping(self, node: yaml.MappingNode, ann: Any, indent: int) -> list[str]:
        out: list[str] = []
        pad = " " * indent
        parent = models_in(ann)[0] if models_in(ann) else None
        for k, v, child in self.ordered(node, ann):
            key = _inline_string(str(k.value), flow=False)
            lines = self.value(v, child, indent, f"{pad}{key}: ", quote=parent is S.Claim and k.value == "quote")
            out.extend(self.with_notes(id(k), lines, indent))
        return out + self.end(node, indent)

    def end(self, node: yaml.Node, indent: int) -> list[str]:
        n = self.notes.get(id(node))
        return [" " * indent + c for c in n.end] if n else []

    def value(self, v: yaml.Node, ann: Any, indent: int, lead: str, quote: bool = False) -> list[str]:
        """The lines of one mapping value after ``lead`` ("<pad>key: ")."""
        if isinstance(v, yaml.ScalarNode):
            return self.scalar_lines(v, lead, indent, quote)
        if isinstance(v, yaml.MappingNode):
            if not v.value:
                return [lead + "{}"]
            return [lead.rstrip()] + self.mapping(v, ann, indent + 2)
        flow = self.flow_list(v, len(lead))
        if flow is not None:
            return [lead + flow]
        return [lead.rstrip()] + self.sequence(v, list_item(ann), indent + 2)

    def sequence(self, node: yaml.SequenceNode, item_ann: Any, indent: int) -> list[str]:
        out: list[str] = []
        pad = " " * indent
        for item in node.value:
            flow = self.flow_list(item, indent + 2) if isinstance(item, yaml.SequenceNode) else None
            if isinstance(item, yaml.ScalarNode):
                lines = self.scalar_lines(item, f"{pad}- ", indent, quote=False, in_map=False)
            elif not item.value:
                lines = [f"{pad}- {{}}" if isinstance(item, yaml.MappingNode) else f"{pad}- []"]
            elif flow is not None:
                lines = [f"{pad}- {flow}"]
            else:
                if isinstance(item, yaml.MappingNode):
                    body = self.mapping(item, item_ann, indent + 2)
                else:
                    body = self.sequence(item, list_item(item_ann), indent + 2)
                # The item's first line goes beside the dash ("- id: P1", "- - a"); comments above
                # that first line go above the dash, after the item's own.
                lead = 0
                while lead < len(body) and body[lead].startswith(" " * (indent + 2) + "#"):
                    lead += 1
                lines = [f"{pad}- {body[lead][indent + 2:]}"] + body[lead + 1:]
                out.extend(self.with_notes(id(item), lines, indent, extra_above=[pad + ln.lstrip() for ln in body[:lead]]))
                continue
            out.extend(self.with_notes(id(item), lines, indent))
        return out + self.end(node, indent)


def _root_annotation(kind: str | None) -> Any:
    if kind == "case":
        return S.CaseReport
    if kind == "source":
        return S.Source
    if kind and kind.startswith("vocabulary:") and kind.split(":", 1)[1] in S.VOCABULARY_KINDS:
        return MapOf(S.VOCABULARY_KINDS[kind.split(":", 1)[1]])
    return None


def format_text(text: str, kind: str | None = None, path: str = "<string>") -> str:
    """The canonical layout of a kb file's text. ``kind`` is "case", "source" or "vocabulary:<kind>".

    Raises FormatError when the text is not YAML the kb accepts, or (a bug) when the result
    would not load to the same data with the same comments; nothing is lost either way.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    doc, problems = load_yaml_text(text, path)
    if doc is None or problems:  # a duplicate key: formatting would drop one of the two values
        raise FormatError("; ".join(d.text() for d in problems) or f"{path}: cannot read the YAML")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    header, notes = _attach(text, root)
    f = _Formatter(notes)
    ann = _root_annotation(kind)
    if isinstance(root, yaml.MappingNode):
        body = f.mapping(root, ann, 0) if root.value else ["{}", *f.end(root, 0)]
    elif isinstance(root, yaml.SequenceNode):
        body = f.sequence(root, list_item(ann), 0) if root.value else ["[]", *f.end(root, 0)]
    else:
        body = f.scalar_lines(root, "", 0, quote=False, in_map=False) + f.end(root, 0)
    out = "\n".join([*header, *body]) + "\n"
    again, _ = load_yaml_text(out, path)
    if again is None or again.data != doc.data:
        raise FormatError(f"{path}: formatting would change the data; the file was left as it is (a bug in evidence fmt: please report it)")
    if Counter(c for _, _, c in comments_of(out)) != Counter(c for _, _, c in comments_of(text)):
        raise FormatError(f"{path}: formatting would lose a comment; the file was left as it is (a bug in evidence fmt: please report it)")
    return out


def _kind_of(path: Path, config: Config) -> str | None:
    return file_kind(path, config.kb_dir)


def _out_of_kb(p: Path, config: Config) -> str | None:
    """Why a file named in the kb must not be read or written: a symbolic link (its own, or a
    folder's) leads out of the kb (see load.leaves_kb). A file outside the kb (a test fixture) is
    formatted where it is."""
    here = Path(os.path.abspath(p))
    if not (here.is_relative_to(os.path.abspath(config.kb_dir)) or here.is_relative_to(config.kb_dir.resolve())):
        return None
    return leaves_kb(p, config.kb_dir.resolve())


def _paths(config: Config, given: list[str]) -> list[Path]:
    if not given:
        return [p for kind, p in discover(config.kb_dir) if kind != REFUSED]  # a link out of the kb is never rewritten (validate reports it)
    out: list[Path] = []
    for g in given:
        p = Path(g)
        if p.is_dir():
            out.extend(yaml_files_under(p))
        else:
            out.append(p)
    return out


# ============================================================================ the commands


def cmd_new(args: argparse.Namespace) -> int:
    config = load_config(args.root)
    try:
        written = write_new(config, args.id, args.patients, args.existing_source)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in written:
        print(_shown(p, config))
    shown = " ".join(_shown(p, config) for p in written)
    print(f"wrote {len(written)} file(s). Fill them in from the publication, then run: evidence validate {shown}", file=sys.stderr)
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    config = load_config(args.root)
    paths = _paths(config, args.paths)
    changed: list[str] = []
    failed = 0
    for p in paths:
        shown = _shown(p, config)
        refused = _out_of_kb(p, config)
        if refused:  # never read, never written through
            print(f"{shown}:1:1: error: {refused}; not formatted (put the file itself in the kb folder, in place of the link)", file=sys.stderr)
            failed += 1
            continue
        try:
            with open(p, encoding="utf-8", newline="") as fh:  # as it is: CRLF line ends are not the canonical layout
                text = fh.read()
            new = format_text(text, _kind_of(p, config), shown)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{shown}:1:1: error: cannot read the file: {exc}", file=sys.stderr)
            failed += 1
            continue
        except FormatError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if new == text:
            continue
        changed.append(shown)
        if args.check:
            print(f"{shown}: not in the canonical layout; to fix it, run: evidence fmt {shown}")
        else:
            write_whole(p, new.encode("utf-8"))  # a curator's file: never left half-written
            print(f"formatted {shown}")
    n = len(changed)
    if args.check:
        verdict = f"{n} of {len(paths)} file(s) not in the canonical layout" + (f"; fix them all with: evidence fmt {' '.join(changed)}" if n else "")
        print(verdict, file=sys.stderr)
        return 1 if n or failed else 0
    print(f"{n} of {len(paths)} file(s) reformatted", file=sys.stderr)
    return 1 if failed else 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    n = sub.add_parser("new", help="start a new case: write kb/<id>.yaml and kb/sources/<id>.yaml from a template",
                       description="Write a case file and its source record from a template of every field (each with a comment saying "
                                   "what it holds). Never overwrites a file. Then fill them in and run `evidence validate`.")
    n.add_argument("id", type=_new_id, help="the new case's id: first author and year, such as smith-2021 (lower-case letters, digits, hyphens)")
    n.add_argument("--patients", type=_patients, default=1, metavar="N", help="how many patient blocks to write, 1 to 100 (default 1)")
    n.add_argument("--existing-source", action="store_true", help="write only the case file, citing the source record kb/sources/<id>.yaml that exists")
    n.set_defaults(func=cmd_new)

    f = sub.add_parser("fmt", help="put kb files in the canonical layout (keeps every comment)",
                       description="Rewrite kb files in one layout: keys in the schema's order, 2-space indentation, consistent quoting, "
                                   "comments kept. The data never changes. With --check, only report the files that are not in it.")
    f.add_argument("paths", nargs="*", help="files or folders (default: every file of the kb)")
    f.add_argument("--check", action="store_true", help="change nothing; exit 1 and name each file that is not in the canonical layout")
    f.set_defaults(func=cmd_fmt)
