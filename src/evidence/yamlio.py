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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Diagnostic

__all__ = ["YamlDoc", "load_yaml", "load_yaml_text", "MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "LIBYAML"]

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
    def __init__(self, node: yaml.Node, message: str, hint: str = "", rule: str = "yaml"):
        self.node = node
        self.message = message
        self.hint = hint
        self.rule = rule


def _pos(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self) -> None:
        self.positions: dict[Path_, tuple[int, int]] = {}
        self.key_positions: dict[Path_, tuple[int, int]] = {}
        self.seen: set[int] = set()
        self.count = 0
        self.scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, loc: Path_, depth: int) -> Any:
        if id(node) in self.seen:
            raise _Refused(
                node,
                "YAML aliases (*name) are not allowed in kb files",
                "write the value out in full; aliases can expand without bound",
                "yaml-alias",
            )
        self.seen.add(id(node))
        self.count += 1
        if self.count > MAX_NODES:
            raise _Refused(node, f"the file has more than {MAX_NODES} YAML nodes", "split it into smaller files", "yaml-size")
        if depth > MAX_DEPTH:
            raise _Refused(node, f"the YAML is nested deeper than {MAX_DEPTH} levels", "flatten the structure", "yaml-depth")
        self.positions[loc] = _pos(node)
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP:
                raise self._bad_tag(node)
            out: dict[str, Any] = {}
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    raise _Refused(knode, "YAML merge keys (<<) are not allowed in kb files", "write the keys out in full", "yaml-merge")
                if not isinstance(knode, yaml.ScalarNode) or knode.tag not in _SCALAR_TAGS:
                    raise _Refused(knode, "a mapping key must be a plain word", "write the key as text, such as `dose:`", "yaml-key")
                key = str(knode.value)
                if key == "<<":
                    raise _Refused(knode, "YAML merge keys (<<) are not allowed in kb files", "write the keys out in full", "yaml-merge")
                if key in out:
                    first = self.key_positions[loc + (key,)]
                    raise _Refused(
                        knode,
                        f"duplicate key '{key}' (first at line {first[0]})",
                        "keep one of the two; YAML would silently drop the first",
                        "yaml-duplicate-key",
                    )
                self.key_positions[loc + (key,)] = _pos(knode)
                out[key] = self.build(vnode, loc + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise self._bad_tag(node)
            return [self.build(item, loc + (i,), depth + 1) for i, item in enumerate(node.value)]
        if node.tag not in _SCALAR_TAGS:
            raise self._bad_tag(node)
        if node.tag in (_STR, "tag:yaml.org,2002:timestamp"):
            return str(node.value)
        return self.scalars.construct_object(node)

    @staticmethod
    def _bad_tag(node: yaml.Node) -> _Refused:
        return _Refused(
            node,
            f"the YAML tag '{node.tag}' is not allowed",
            "kb files hold plain text, numbers, lists and mappings; remove the tag",
            "yaml-tag",
        )


def _diag(path: str, line: int, col: int, message: str, hint: str = "", rule: str = "yaml") -> Diagnostic:
    return Diagnostic(path=path, line=line, col=col, message=message, hint=hint, rule=rule)


def _alias_position(text: str) -> tuple[int, int]:
    """Where the first alias (``*name``) stands: composed nodes only know their anchor."""
    try:
        for token in yaml.scan(text, Loader=_Loader):
            if isinstance(token, yaml.AliasToken):
                return (token.start_mark.line + 1, token.start_mark.column + 1)
    except yaml.YAMLError:
        pass
    return (1, 1)


def load_yaml_text(text: str, path: str = "<string>") -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Parse ``text``; return the document, or ``None`` and the reasons it was refused."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return None, [_diag(path, line, 1, "the file holds a NUL byte", "save the file as UTF-8 text", "encoding")]
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        return None, [_diag(path, line, col, f"YAML syntax error: {problem}", "check indentation, colons and quotes near here", "yaml-syntax")]
    except yaml.YAMLError as exc:
        return None, [_diag(path, 1, 1, f"YAML error: {exc}", "", "yaml-syntax")]
    except RecursionError:
        return None, [_diag(path, 1, 1, "the YAML is nested too deeply to read", "flatten the structure", "yaml-depth")]
    if root is None:
        return None, [_diag(path, 1, 1, "the file is empty", "a kb file is a YAML mapping; see README.md", "yaml-empty")]
    builder = _Builder()
    try:
        data = builder.build(root, (), 0)
    except _Refused as r:
        line, col = _alias_position(text) if r.rule == "yaml-alias" else _pos(r.node)
        return None, [_diag(path, line, col, r.message, r.hint, r.rule)]
    except RecursionError:
        return None, [_diag(path, 1, 1, "the YAML is nested too deeply to read", "flatten the structure", "yaml-depth")]
    doc = YamlDoc(path=path, data=data, text=text, positions=builder.positions, key_positions=builder.key_positions)
    return doc, []


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
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [_diag(shown, line, col, f"the file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", "save the file as UTF-8", "encoding")]
    if text.startswith("\ufeff"):
        text = text[1:]
    return load_yaml_text(text, shown)
