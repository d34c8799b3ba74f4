"""Safe, fast YAML loading that keeps the position of every key and value.

libyaml's C composer (``CSafeLoader``) builds the node tree when it is installed; we then
construct plain Python values ourselves so that we can refuse what a kb file must never hold:

* tags that construct objects (``!!python/object``, ``!custom``, ``!!binary``, ``!!set`` ...),
* aliases (``*name``), the carrier of "billion laughs" bombs,
* duplicate keys, which YAML would otherwise resolve silently to the last one,
* nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` nodes, files over
  :data:`MAX_BYTES`, bytes that are not UTF-8, and more than one document per file.

Timestamps stay the strings they were written as; the schema parses dates itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Diagnostic

__all__ = ["YamlDoc", "field_name", "load_yaml", "load_yaml_bytes", "load_yaml_text", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "LIBYAML"]

try:  # libyaml is about 8 times faster; fall back to the pure-Python loader where it is absent.
    from yaml import CSafeLoader as _Loader

    LIBYAML = True
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

    LIBYAML = False

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 40
MAX_NODES = 200_000

_STR = "tag:yaml.org,2002:str"
_SCALAR_TAGS = {
    _STR,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
}
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
# The event classes, compared by identity in _Builder.build (the loaders make these exact classes).
_SCALAR_EVENT, _MAPPING_START, _SEQUENCE_START = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
_MAPPING_END, _SEQUENCE_END, _ALIAS = yaml.MappingEndEvent, yaml.SequenceEndEvent, yaml.AliasEvent
_DOCUMENT_START, _DOCUMENT_END, _STREAM_START, _STREAM_END = yaml.DocumentStartEvent, yaml.DocumentEndEvent, yaml.StreamStartEvent, yaml.StreamEndEvent
# The first characters of a plain scalar that some implicit resolver of the loader matches (the
# empty string: the empty scalar, null); any other plain scalar resolves to text.
_RESOLVED_FIRST = frozenset(_Loader.yaml_implicit_resolvers)
if _Loader.yaml_path_resolvers or None in _RESOLVED_FIRST:  # a resolver by path, or one for any first character
    raise ImportError("the YAML loader resolves some scalars by path or by a wildcard: _Builder._scalar must call resolve for every scalar")

Path_ = tuple  # a path into the document: keys and list indices


@dataclass
class YamlDoc:
    """A loaded file: its data, and where each value and key stands (1-based line, column)."""

    path: str
    data: Any
    text: str = ""
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: Path_, key: bool = False) -> tuple[int, int]:
        """The position of ``loc``, or of its nearest ancestor that has one."""
        loc = tuple(loc)
        table = self.key_positions if key else self.positions
        while True:
            if loc in table:
                return table[loc]
            if key and loc in self.positions:
                return self.positions[loc]
            if not loc:
                return (1, 1)
            loc = loc[:-1]


class _Refused(Exception):
    def __init__(self, mark: yaml.Mark | None, message: str, hint: str = "", rule: str = "yaml"):
        self.mark = mark
        self.message = message
        self.hint = hint
        self.rule = rule
        self.field = ""  # the value's place in the file, where it has one (see field_name)


def field_name(data: Any, loc: tuple) -> str:
    """A readable path: ``patients[P1].treatments[T1].dose.unit`` (a list item by its id, where
    it has one by then, else by its place)."""
    parts: list[str] = []
    cur = data
    for seg in loc:
        if isinstance(seg, int):
            item = cur[seg] if isinstance(cur, list) and seg < len(cur) else None
            ident = item.get("id") if isinstance(item, dict) else None
            parts.append(f"[{ident}]" if isinstance(ident, str) else f"[{seg}]")
            cur = item
        else:
            parts.append(("." if parts else "") + str(seg))
            cur = cur.get(seg) if isinstance(cur, dict) else None
    return "".join(parts) or "(file)"


def _pos(mark: yaml.Mark | None) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


# Bidirectional controls reorder how text is displayed ("Trojan Source"): a name or a quote
# could show one thing and say another. Zero-width characters hide text. Neither belongs in a kb.
# Direction controls (U+061C, U+200E-F, U+202A-E, U+2066-9), zero-width and joining characters
# (U+200B-D, U+2060, U+FEFF), line and paragraph separators, Unicode tag characters (which can
# smuggle hidden text), and control characters written as escapes in double quotes ("\e", "\0",
# "\x7f", C1), which a raw byte check never sees.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u202a-\u202e\u2066-\u2069\u200b-\u200f\u2060\u2028\u2029\ufeff\U000e0000-\U000e007f]")


class _Frame:
    __slots__ = ("container", "loc", "key", "depth", "dropped")

    def __init__(self, container: dict | list, loc: Path_, depth: int, dropped: bool = False):
        self.container = container
        self.loc = loc
        self.key: str | None = None  # a mapping's pending key
        self.depth = depth
        self.dropped = dropped  # the value of a duplicate key, read and dropped (see _Builder.build)


_DUPLICATE: Any = object()  # a mapping's pending key when the key was a duplicate (compared by identity: one test an event)


class _Builder:
    """Builds plain values from parser events, iteratively.

    libyaml's composer recurses once per nesting level in C, so a hostile file of 100,000 nested
    brackets crashes the process; reading events keeps an explicit stack of our own and refuses
    the file at MAX_DEPTH instead.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.positions: dict[Path_, tuple[int, int]] = {}
        self.key_positions: dict[Path_, tuple[int, int]] = {}
        self.scalars = yaml.constructor.SafeConstructor()
        # Duplicate keys: each is reported, its value read and dropped, and the first kept, so
        # that the file's other problems are found in the same run.
        self.duplicates: list[_Refused] = []

    def _scalar(self, ev: yaml.ScalarEvent) -> Any:
        tag = ev.tag
        if tag is None or tag == "!":
            value = ev.value
            # What the resolver would say, without calling it for most scalars: a quoted or block
            # scalar, or a plain one whose first character no implicit resolver of the loader
            # starts with, is text (PyYAML's BaseResolver.resolve; the loader has no path
            # resolvers, checked at import).
            if not ev.implicit[0] or value[:1] not in _RESOLVED_FIRST:
                tag = _STR
            else:
                tag = self.loader.resolve(yaml.ScalarNode, value, ev.implicit)
        if tag not in _SCALAR_TAGS:
            raise _Refused(ev.start_mark, f"the YAML tag '{tag}' is not allowed", "kb files hold plain text, numbers, lists and mappings; remove the tag", "yaml-tag")
        if tag == _STR or tag == "tag:yaml.org,2002:timestamp":
            found = _INVISIBLE.search(ev.value)
            if found:
                raise _Refused(ev.start_mark, f"the text holds an invisible, direction-changing or control character U+{ord(found.group(0)):04X}",
                               "delete it: it can make text display differently from what it says", "text-control")
            return ev.value
        try:
            return self.scalars.construct_object(yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark))
        except ValueError:
            raise _Refused(ev.start_mark, f"the number '{ev.value[:20]}...' is too large", "check the value against the source", "plausible-value") from None

    def build(self) -> tuple[Any, bool]:
        """The document's value, and whether there was a document at all.

        The loop dispatches on the event's exact class, scalars first (two events in three): this
        ran in about 1 ms a case file at 1,000 synthetic cases, most of validating a kb cold."""
        check, get = self.loader.check_event, self.loader.get_event
        positions, key_positions = self.positions, self.key_positions
        stack: list[_Frame] = []
        root: Any = None
        seen_doc = False
        count = 0  # the document's nodes so far (MAX_NODES)
        while check():
            ev = get()
            kind = type(ev)
            if kind is not _SCALAR_EVENT and kind is not _MAPPING_START and kind is not _SEQUENCE_START:
                if kind is _DOCUMENT_START:
                    if seen_doc:
                        raise _Refused(ev.start_mark, "the file holds more than one YAML document", "keep one document per file; remove the '---' line", "yaml-documents")
                    seen_doc = True
                    continue
                if kind is _STREAM_START or kind is _STREAM_END or kind is _DOCUMENT_END:
                    continue
                if kind is _MAPPING_END or kind is _SEQUENCE_END:
                    done = stack.pop()
                    if not stack:
                        root = done.container
                    continue
                if kind is _ALIAS:
                    raise _Refused(ev.start_mark, "YAML aliases (*name) are not allowed in kb files", "write the value out in full; aliases can expand without bound", "yaml-alias")
            count += 1
            if count > MAX_NODES:
                raise _Refused(ev.start_mark, f"the file has more than {MAX_NODES} YAML nodes", "split it into smaller files", "yaml-size")
            parent = stack[-1] if stack else None
            in_map = parent is not None and type(parent.container) is dict
            # A scalar in key position of a mapping is the key.
            if in_map and parent.key is None:
                if kind is not _SCALAR_EVENT:
                    raise _Refused(ev.start_mark, "a mapping key must be a plain word", "write the key as text, such as `dose:`", "yaml-key")
                if ev.tag == "tag:yaml.org,2002:merge" or (ev.value == "<<" and ev.implicit[0]):
                    raise _Refused(ev.start_mark, "YAML merge keys (<<) are not allowed in kb files", "write the keys out in full", "yaml-merge")
                try:
                    self._scalar(ev)  # refuses tags and hidden characters in keys too
                except _Refused as r:
                    r.field = field_name(stack[0].container, parent.loc)  # the mapping the key is in
                    r.message = f"a key: {r.message}"
                    raise
                key = ev.value  # keys stay text as written: `1:` is the key '1'
                if not key:
                    raise _Refused(ev.start_mark, "a mapping key is empty", "write the key as text, such as `dose:`", "yaml-key")
                if key in parent.container and not parent.dropped:
                    first = key_positions[parent.loc + (key,)]
                    self.duplicates.append(_Refused(ev.start_mark, f"duplicate key '{key}' (first at line {first[0]})",
                                                    "keep one of the two; YAML would silently drop the first", "yaml-duplicate-key"))
                    parent.key = _DUPLICATE
                    continue
                parent.key = key
                mark = ev.start_mark
                if not parent.dropped:
                    key_positions[parent.loc + (key,)] = (mark.line + 1, mark.column + 1)
                continue
            if parent is None:
                loc: Path_ = ()
                dropped = False
            elif in_map:
                loc = parent.loc + (parent.key,)
                dropped = parent.dropped or parent.key is _DUPLICATE
            else:
                loc = parent.loc + (len(parent.container),)
                dropped = parent.dropped
            mark = ev.start_mark
            if not dropped:
                positions[loc] = (mark.line + 1, mark.column + 1)
            if kind is _MAPPING_START or kind is _SEQUENCE_START:
                is_map = kind is _MAPPING_START
                if ev.tag not in (None, "!", _MAP if is_map else _SEQ):
                    raise _Refused(ev.start_mark, f"the YAML tag '{ev.tag}' is not allowed", "kb files hold plain text, numbers, lists and mappings; remove the tag", "yaml-tag")
                depth = (parent.depth + 1) if parent else 0
                if depth > MAX_DEPTH:
                    raise _Refused(ev.start_mark, f"the YAML is nested deeper than {MAX_DEPTH} levels", "flatten the structure", "yaml-depth")
                value: Any = {} if is_map else []
                frame = _Frame(value, loc, depth, dropped)
            else:
                try:
                    value = self._scalar(ev)
                except _Refused as r:
                    r.field = field_name(stack[0].container if stack else None, loc)
                    raise
                frame = None
            if parent is not None:
                if in_map:
                    if parent.key is not _DUPLICATE:
                        parent.container[parent.key] = value
                    parent.key = None
                else:
                    parent.container.append(value)
            elif frame is None:
                root = value
            if frame is not None:
                stack.append(frame)
        return root, seen_doc


def _diag(path: str, line: int, col: int, message: str, hint: str = "", rule: str = "yaml", field: str = "") -> Diagnostic:
    return Diagnostic(path=path, line=line, col=col, message=f"{field}: {message}" if field else message, hint=hint, rule=rule, field=field)


def load_yaml_text(text: str, path: str = "<string>") -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Parse ``text``; return the document, or ``None`` and the reasons it was refused. A document
    with duplicate keys is returned with an error for each (its first value of each kept)."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return None, [_diag(path, line, 1, "the file holds a NUL byte", "save the file as UTF-8 text", "encoding")]
    loader = _Loader(text)
    builder = _Builder(loader)
    try:
        data, seen_doc = builder.build()
    except _Refused as r:
        line, col = _pos(r.mark)
        return None, [_diag(path, line, col, r.message, r.hint, r.rule, r.field)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        if "maximum nesting depth" in problem:
            # The libyaml of PyYAML 6.0.4's wheels has a depth limit of its own (1,000 levels of
            # brackets, measured), which its scanner reaches while it reads ahead, before the
            # builder sees the level past MAX_DEPTH: "exceeded maximum nesting depth".
            return None, [_diag(path, line, col, f"the YAML is nested deeper than {MAX_DEPTH} levels", "flatten the structure", "yaml-depth")]
        hint = "check indentation, colons and quotes near here"
        if "escape" in problem:  # "\ud83d" (half of a surrogate pair), "\q"...: not an escape YAML reads as a character
            hint = ("in double quotes a backslash starts an escape: write \\\\ for a backslash, or the character itself "
                    "(a code point is \\UXXXXXXXX, never half of a UTF-16 pair such as \\ud83d), or use single quotes")
        return None, [_diag(path, line, col, f"YAML syntax error: {problem}", hint, "yaml-syntax")]
    except yaml.reader.ReaderError as exc:
        where = max(0, min(exc.position, len(text)))
        line = text.count("\n", 0, where) + 1
        col = where - (text.rfind("\n", 0, where) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character) if isinstance(exc.character, int) else "?"
        return None, [_diag(path, line, col, f"the file holds the control character U+{ord(char):04X}, which YAML does not allow",
                            "delete it (it is invisible in most editors)", "text-control", _field_at(text.replace(char, " "), line, col))]
    except yaml.YAMLError as exc:
        return None, [_diag(path, 1, 1, f"YAML error: {exc}", "", "yaml-syntax")]
    finally:
        loader.dispose()
    if data is None:
        return None, [_diag(path, 1, 1, "the file is empty", "a kb file is a YAML mapping; see README.md", "yaml-empty")]
    doc = YamlDoc(path=path, data=data, text=text, positions=builder.positions, key_positions=builder.key_positions)
    # A duplicate key is an error, and the document (with the first value of each) is read on.
    return doc, [_diag(path, *_pos(r.mark), r.message, r.hint, r.rule, r.field) for r in builder.duplicates]


def _field_at(text: str, line: int, col: int) -> str:
    """The field whose value is at (or last begins before) ``line``:``col`` of ``text``, a file the
    reader refused, with the refused character taken out; "" if it cannot be told."""
    doc, diags = load_yaml_text(re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", " ", text), "")  # every such character at once
    if doc is None or diags:
        return ""
    before = [(pos, loc) for loc, pos in doc.positions.items() if loc and pos <= (line, col)]
    return field_name(doc.data, max(before)[1]) if before else ""


def load_yaml(path: Path | str, display: str | None = None) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Read and parse one file, refusing oversized or non-UTF-8 input with a diagnostic."""
    p = Path(path)
    shown = display or str(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            return None, [
                _diag(shown, 1, 1, f"the file is {size:,} bytes, over the limit of {MAX_BYTES:,}", "split it into one file per publication", "file-size")
            ]
        raw = p.read_bytes()
    except OSError as exc:
        return None, [_diag(shown, 1, 1, f"cannot read the file: {exc.strerror or exc}", "", "file-read")]
    return load_yaml_bytes(raw, shown)


def load_yaml_bytes(raw: bytes, shown: str) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Parse the bytes of a file, refusing non-UTF-8 input with a diagnostic."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [_diag(shown, line, col, f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", "save the file as UTF-8", "encoding")]
    if text.startswith("\ufeff"):
        text = text[1:]
    return load_yaml_text(text, shown)
