"""Serialise the compiled graph: Turtle, N-Triples, N-Quads, TriG, JSON-LD, GraphML.

pyoxigraph writes every RDF format (it is about 50 times faster than rdflib's writers, see
PERFORMANCE.md). Each named graph is written on its own from its canonical N-Quads chunk, and the
files are the pieces put together in graph order: the same kb gives byte-identical files, a graph
that did not change is taken from the build cache, and no list of every quad is ever held.

The five whole-graph files are gzip files (``evidence.ttl.gz`` ...), as large knowledge graphs
publish their dumps: each graph's piece is a gzip member of its own, and gzip files put one after
another are one valid gzip file, so a rebuild splices the members of the graphs that did not change
from the previous file as it spliced plain text before, 8 to 17 times fewer bytes. At 10,000
synthetic cases the plain files were 2.87 GB, all of it copied again after every edit; gzip, 231 MB.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from .cache import BuildCache, code_digest, digest
from .compile import Compiled
from .errors import RenderError
from .outputs import Outputs, Splice, relative_name
from .perf import parallel_imap

__all__ = ["FORMATS", "DUMPS", "GZIP_LEVEL", "serialize", "jsonld_context", "write_exports", "iter_pieces", "graph_file", "prefix_header"]

# format name -> (file name, media type of the content); the whole-graph files (DUMPS) are gzip
FORMATS: dict[str, tuple[str, str]] = {
    "ttl": ("evidence.ttl.gz", "text/turtle"),
    "nt": ("evidence.nt.gz", "application/n-triples"),
    "nq": ("evidence.nq.gz", "application/n-quads"),
    "trig": ("evidence.trig.gz", "application/trig"),
    "jsonld": ("evidence.jsonld.gz", "application/ld+json"),
    "graphml": ("evidence.graphml", "application/graphml+xml"),
}

# The whole-graph files, each put together from every graph's piece.
DUMPS = ("ttl", "nt", "nq", "trig", "jsonld")

# zlib's level for the whole-graph files. Measured on 100 MB of each file at 10,000 synthetic cases,
# in members of 50 KB: level 3 compresses 256-349 MB/s to a 10-14th of the size, level 6 (gzip's
# default) 139-167 MB/s to a 12-17th. The cold build compresses every byte once: the faster level.
GZIP_LEVEL = 3


def _gz(data: bytes) -> bytes:
    """``data`` as one gzip member (no time stamp: the same bytes every build); nothing for nothing."""
    return gzip.compress(data, GZIP_LEVEL, mtime=0) if data else b""


def _sort_prefix_header(data: bytes) -> bytes:
    """Put @prefix lines in alphabetical order, whatever order the writer chose."""
    lines = data.split(b"\n")
    head = [ln for ln in lines if ln.startswith(b"@prefix ")]
    rest = lines[len(head):] if lines[: len(head)] == head else None
    if rest is None:
        return data
    return b"\n".join(sorted(head) + rest)


def prefix_header(prefixes: dict[str, str]) -> bytes:
    return b"".join(f"@prefix {p}: <{iri}> .\n".encode() for p, iri in sorted(prefixes.items()))


def _body(data: bytes) -> bytes:
    """Turtle or TriG without the writer's @prefix lines (the file has one header)."""
    lines = data.split(b"\n")
    i = 0
    while i < len(lines) and lines[i].startswith(b"@prefix "):
        i += 1
    return b"\n".join(lines[i:])


def jsonld_context(compiled: Compiled) -> dict:
    return {"@context": dict(sorted(compiled.ns.prefixes().items()))}


def chunk_exports(chunk: bytes, prefixes: dict[str, str], graph: str) -> dict[str, bytes]:
    """One named graph (canonical N-Quads) as Turtle, N-Triples, TriG and JSON-LD text, without
    headers (the N-Quads piece is the chunk itself).

    No triple stands in two graphs (the compiler sees to it), so the whole graph in Turtle or
    N-Triples is the graphs' triples one after another, and no triple is written twice. N-Triples
    is the chunk with the graph term taken off each line: it is the last term, and a line break
    inside a literal is always escaped, so " <graph> .\n" occurs nowhere else.
    """
    quads = list(ox.parse(chunk, format=ox.RdfFormat.N_QUADS))
    triples = [q.triple for q in quads]
    jsonld = ox.serialize(quads, format=ox.RdfFormat.JSON_LD)
    return {
        "ttl": _body(ox.serialize(triples, format=ox.RdfFormat.TURTLE, prefixes=prefixes)),
        "nt": chunk.replace(f" <{graph}> .\n".encode(), b" .\n"),
        "trig": _body(ox.serialize(quads, format=ox.RdfFormat.TRIG, prefixes=prefixes)),
        "jsonld": jsonld[1:-1] if jsonld.startswith(b"[") else jsonld,
    }


def _frames(compiled: Compiled, packed: bool = False) -> dict[str, tuple[bytes, bytes, bytes]]:
    """How a file of each format is put together from graphs' pieces: (head, separator, tail);
    with ``packed``, each as a gzip member, as the whole-graph files are written.

    JSON-LD is expanded (full IRIs, written by pyoxigraph) under the project's @context: rdflib's
    compacting writer took 122 s of a 221 s build at 1,000 synthetic cases, pyoxigraph well under
    a second. The context declares the prefixes, so a consumer can compact the document with any
    JSON-LD processor; as it stands it is valid JSON-LD whose named graphs are objects with @id and
    @graph.
    """
    header = prefix_header(compiled.ns.prefixes())
    ctx = json.dumps(jsonld_context(compiled)["@context"], sort_keys=True, ensure_ascii=False).encode("utf-8")
    frames = {
        "ttl": (header, b"", b""),
        "nt": (b"", b"", b""),
        "nq": (b"", b"", b""),
        "trig": (header, b"", b""),
        "jsonld": (b'{"@context":' + ctx + b',\n"@graph":[', b",\n", b"]}\n"),
    }
    if packed:
        return {fmt: (_gz(head), _gz(sep), _gz(tail)) for fmt, (head, sep, tail) in frames.items()}
    return frames


def _piece_keys(compiled: Compiled) -> dict[str, str]:
    """Graph IRI -> the key of its pieces: its chunk, the prefixes and the code that writes them."""
    prefixes = compiled.ns.prefixes()
    context = digest("export", code_digest(), json.dumps(sorted(prefixes.items())))
    return {g: digest(context, sha) for g, sha in compiled.chunk_digests().items()}


def _frames_key(frames: dict[str, tuple[bytes, bytes, bytes]], fmt: str) -> str:
    return digest("frames", fmt, *frames[fmt])


@dataclass
class Pieces:
    """One graph in every whole-graph format (DUMPS), each a gzip member (``packed``, what the
    cache keeps), and, when just made, its Turtle and JSON-LD as text (``text``, for the per-case
    files; unpacked from ``packed`` when the pieces came from the cache)."""

    packed: dict[str, bytes]
    text: dict[str, bytes] = field(default_factory=dict)

    def plain(self, fmt: str) -> bytes:
        got = self.text.get(fmt)
        return got if got is not None else gzip.decompress(self.packed[fmt]) if self.packed[fmt] else b""


def iter_pieces(compiled: Compiled, cache: BuildCache | None = None, workers: int | None = None, graphs: list[str] | None = None,
                keys: dict[str, str] | None = None) -> Iterator[tuple[str, Pieces]]:
    """The pieces of every graph (or of ``graphs``), in graph order, one at a time: from the cache
    when the graph did not change, the rest made (and compressed) in forked workers when there are
    many. Nothing holds them all."""
    cache = cache or BuildCache(None)
    prefixes = compiled.ns.prefixes()
    keys = keys or _piece_keys(compiled)
    graphs = compiled.graphs() if graphs is None else graphs
    hits: dict[str, dict[str, bytes] | None] = {}
    for g in graphs:
        hit = cache.get("export", keys[g]) if cache.enabled else None
        hits[g] = hit if isinstance(hit, dict) and set(hit) == set(DUMPS) else None
    todo = [g for g in graphs if hits[g] is None]
    # The workers read each chunk themselves: a list of every chunk to hand them was 1 GB at
    # 10,000 cases, all of it pickled through pipes.
    made = parallel_imap(_pieces_of, todo, workers=workers, shared=(compiled.chunks, prefixes))
    try:
        for g in graphs:
            hit = hits.pop(g)
            if hit is None:
                piece = next(made)
                cache.put("export", keys[g], piece.packed)
            else:
                piece = Pieces(hit)
            yield g, piece
    finally:
        made.close()  # the workers are stopped here, not whenever the collector gets to it


def _pieces_of(job: tuple[Mapping[str, bytes], dict[str, str]], graph: str) -> Pieces:
    chunks, prefixes = job
    chunk = chunks[graph]
    text = chunk_exports(chunk, prefixes, graph)
    packed = {fmt: _gz(chunk if fmt == "nq" else text[fmt]) for fmt in DUMPS}
    return Pieces(packed, {fmt: text[fmt] for fmt in ("ttl", "jsonld")})


def serialize(compiled: Compiled, fmt: str, cache: BuildCache | None = None) -> bytes:
    """The whole graph in one of FORMATS, as text (the whole-graph files are these bytes, gzip)."""
    if fmt == "graphml":
        from .graph import GRAPHML_HEAD, GRAPHML_TAIL

        return GRAPHML_HEAD + b"".join(make() for _n, _k, make in _graphml_pieces(compiled)) + GRAPHML_TAIL
    if fmt == "nq":
        return compiled.nquads()
    if fmt not in FORMATS:
        raise RenderError(f"unknown export format '{fmt}'; expected one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    keys = _piece_keys(compiled)
    with Splice(buf, None, _frames(compiled, packed=True)[fmt][1]) as sp:
        _write_dumps(compiled, {fmt: (sp, {})}, iter_pieces(compiled, cache, keys=keys), keys)
    return gzip.decompress(buf.getvalue())


def graph_file(compiled: Compiled, fmt: str, piece: Pieces, frames: dict[str, tuple[bytes, bytes, bytes]] | None = None) -> bytes:
    """One named graph (a case's) as a file of its own: Turtle or JSON-LD, as text. ``frames`` is
    ``_frames(compiled)``, when the caller writes many."""
    if fmt not in ("ttl", "jsonld"):
        raise RenderError(f"a graph is written alone as ttl or jsonld, not '{fmt}'")
    head, _sep, tail = (frames or _frames(compiled))[fmt]
    return head + piece.plain(fmt) + tail


def _write_dumps(compiled: Compiled, splices: dict[str, tuple[Splice, dict[str, tuple[str, int, int]]]],
                 pieces: Iterator[tuple[str, Pieces]], keys: dict[str, str],
                 on_piece: Callable[[str, Pieces], None] | None = None, frames: dict[str, tuple[bytes, bytes, bytes]] | None = None) -> None:
    """Write the files in ``splices`` (format -> (writer, the old file's pieces)), graph by graph,
    as gzip members: a graph whose old piece has the same key is copied from the old file, the
    others are written from ``pieces`` (which must hold every graph that is not copied in every
    format). The caller closes the writers. ``frames`` is ``_frames(compiled, packed=True)``,
    when the caller has it."""
    frames = frames or _frames(compiled, packed=True)
    for fmt, (sp, _old) in splices.items():
        sp.write(frames[fmt][0])
    nxt = next(pieces, None)
    for g in compiled.graphs():
        piece = None
        if nxt is not None and nxt[0] == g:
            piece = nxt[1]
            nxt = next(pieces, None)
        for fmt, (sp, old) in splices.items():
            before = old.get(g)
            if before is not None and before[0] == keys[g]:
                sp.copy(g, keys[g], before[1], before[2])
            else:
                assert piece is not None, f"no piece of {g} for {fmt}"
                sp.piece(g, keys[g], piece.packed[fmt])
        if piece is not None and on_piece is not None:
            on_piece(g, piece)
    for fmt, (sp, _old) in splices.items():
        sp.write(frames[fmt][2])
        sp.settle()


def write_exports(compiled: Compiled, out: Path, cache: BuildCache | None = None, graph_files: dict[str, Path] | None = None,
                  outputs: Outputs | None = None, finish: Finishing | None = None) -> list[str]:
    """Write every export format into ``out``, graph by graph; return the names of the files
    written, relative to ``out`` (with ``/``: a Path each took 0.15 s at 10,000 cases).

    ``graph_files`` maps a graph IRI to a path without suffix: that graph is also written alone, as
    ``.ttl`` and ``.jsonld`` (the per-case downloads). The pieces of one graph at a time are in
    memory, never all of them. With ``outputs`` (the previous build's record, see
    :mod:`evidence.outputs`), what did not change is linked or copied from the previous build.

    With ``finish``, the five whole-graph files and the GraphML are completed by threads of their
    own while the caller goes on (to render the site): see :class:`Finishing`. Without it, every
    file is whole when this returns.
    """
    out.mkdir(parents=True, exist_ok=True)
    outputs = outputs or Outputs(out=out)
    graph_files = graph_files or {}
    keys = _piece_keys(compiled)
    frames = _frames(compiled)
    packed = _frames(compiled, packed=True)
    fkeys = {fmt: _frames_key(packed, fmt) for fmt in DUMPS}
    alone_keys = {fmt: _frames_key(frames, fmt) for fmt in ("ttl", "jsonld")}
    graphs = compiled.graphs()
    written: list[str] = []
    needed: set[str] = set()
    splices: dict[str, tuple[Splice, dict[str, tuple[str, int, int]]]] = {}
    with ExitStack() as local:
        stack = finish.stack if finish is not None else local
        every_graph = digest(*(f"{g}\0{keys[g]}" for g in graphs))  # once for the five files, not once each
        for fmt in DUMPS:
            name = FORMATS[fmt][0]
            written.append(name)
            whole = digest("dump", fkeys[fmt], every_graph)
            opened = _open_splice(outputs, out / name, fkeys[fmt], whole, packed[fmt][1], stack, background=True)
            if opened is None:
                continue
            sp, before = splices[fmt] = opened
            needed.update(g for g in graphs if before.get(g, ("",))[0] != keys[g])
        alone: dict[str, list[tuple[str, str, str, str]]] = {}
        for g, base in graph_files.items():
            stem, rel_stem = os.fspath(base), relative_name(base, out)
            for fmt in ("ttl", "jsonld"):
                p, rel = f"{stem}.{fmt}", f"{rel_stem}.{fmt}"
                key = digest("graph file", alone_keys[fmt], keys[g])
                written.append(rel)
                if not outputs.link(p, rel, key, later=True):
                    alone.setdefault(g, []).append((fmt, p, rel, key))
                    needed.add(g)
        for g in graphs:
            if g not in needed and cache is not None and cache.enabled:
                cache.touch("export", keys[g])  # copied from the old files: keep its entry for a build without them

        def write_alone(g: str, piece: Pieces) -> None:
            for fmt, p, rel, key in alone.get(g, []):
                outputs.link_or_write(Path(p), rel, graph_file(compiled, fmt, piece, frames), key, try_link=False)  # tried above

        pieces = iter_pieces(compiled, cache, graphs=[g for g in graphs if g in needed], keys=keys)
        _write_dumps(compiled, splices, pieces, keys, write_alone, packed)
        for fmt, (sp, _before) in splices.items():
            outputs.layouts[FORMATS[fmt][0]] = {"frames": fkeys[fmt], "pieces": sp.pieces}
    graphml = out / FORMATS["graphml"][0]
    with ExitStack() as local:
        _write_graphml(compiled, graphml, outputs, finish.stack if finish is not None else local, background=finish is not None)
    context = (json.dumps(jsonld_context(compiled), indent=1, sort_keys=True) + "\n").encode("utf-8")
    outputs.link_or_write(out / "context.jsonld", "context.jsonld", context)
    return written + [graphml.name, "context.jsonld"]


class Finishing:
    """The export files that :func:`write_exports` leaves to finish while the caller goes on: the
    whole-graph files and the GraphML are completed by threads (:class:`~evidence.outputs.Splice`),
    and have their final size once write_exports returns. Leaving the ``with`` block waits for
    them, or, on an error, stops them."""

    def __init__(self) -> None:
        self.stack = ExitStack()

    def __enter__(self) -> Finishing:
        self.stack.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        return self.stack.__exit__(exc_type, exc, tb)


def _graphml_pieces(compiled: Compiled) -> list[tuple[str, str, Callable[[], bytes]]]:
    """The GraphML file's pieces in order: (name, key, how to make it). First what is under no
    case (made from the whole network, keyed by its bytes), then each case file's own nodes and
    edges, keyed by the file's graph and its share of the shared graph (which its network
    fragment is made from)."""
    from .graph import case_graphml, case_scope, common_graphml, evidence_network, graphml_piece, network_fragment

    ns = compiled.ns
    net = evidence_network(compiled)
    context = digest("graphml", code_digest())
    if not net.scoped:  # a file names another case's nodes (no validated kb does): one piece, the whole network
        whole = graphml_piece(net.nodes.items(), net.edges)
        return [("whole", digest(context, whole), lambda: whole)]
    common = common_graphml(net, ns.case(""))
    pieces: list[tuple[str, str, Callable[[], bytes]]] = [("common", digest(context, common), lambda: common)]
    sha = compiled.chunk_digests()
    for g in compiled.graphs():
        case_iri = case_scope(ns, g)
        if not case_iri:  # not a case file's graph
            continue
        part = compiled.parts.get(g)
        if part is None or part.network is None:  # a graph made without parts: its chunk alone
            fragment = network_fragment(compiled.chunks[g], ns.ev, case_iri)
            pieces.append((g, digest(context, sha[g], repr(fragment)), functools.partial(case_graphml, fragment, case_iri)))
        else:
            key = digest(context, sha[g], hashlib.sha256(part.shared).digest())
            pieces.append((g, key, functools.partial(case_graphml, part.network, case_iri)))
    return pieces


def _write_graphml(compiled: Compiled, path: Path, outputs: Outputs, stack: ExitStack, background: bool) -> None:
    """The GraphML of the evidence network, spliced like the whole-graph files: a case whose
    piece has the same key as in the previous file is copied from it, the others are written.
    networkx wrote the whole file each build (3 s at 10,000 cases, in a forked process whose
    copy-on-write pages slowed the build's own process by as much again)."""
    from .graph import GRAPHML_HEAD, GRAPHML_TAIL

    pieces = _graphml_pieces(compiled)
    frames = digest("graphml frames", GRAPHML_HEAD, GRAPHML_TAIL)
    whole = digest("graphml file", frames, *(f"{n}\0{k}" for n, k, _ in pieces))
    opened = _open_splice(outputs, path, frames, whole, b"", stack, background)
    if opened is None:
        return
    sp, before = opened
    sp.write(GRAPHML_HEAD)
    for n, key, make in pieces:
        was = before.get(n)
        if was is not None and was[0] == key:
            sp.copy(n, key, was[1], was[2])
        else:
            sp.piece(n, key, make())
    sp.write(GRAPHML_TAIL)
    sp.settle()
    outputs.layouts[path.name] = {"frames": frames, "pieces": sp.pieces}


def _open_splice(outputs: Outputs, path: Path, frames_key: str, whole: str, sep: bytes, stack: ExitStack,
                 background: bool) -> tuple[Splice, dict[str, tuple[str, int, int]]] | None:
    """The writer of a spliced export file (a whole-graph file or the GraphML), and where each
    piece lies in the previous build's file, usable only if that file was put together the same
    way (``frames_key``); None when the previous build's file, whose key is ``whole``, is linked
    instead. The caller records ``{"frames": frames_key, "pieces": writer.pieces}`` as the
    file's layout once every piece is written."""
    name = path.name
    if outputs.link(path, name, whole):
        outputs.layouts[name] = outputs.previous_layouts.get(name, {})
        return None
    layout = outputs.previous_layouts.get(name, {})
    old = outputs.old(name) if layout.get("frames") == frames_key else None
    before = layout.get("pieces", {}) if old is not None else {}
    fh = stack.enter_context(open(path, "xb", buffering=0))
    sp = stack.enter_context(Splice(fh, old, sep, background=background))
    outputs.keys[name] = whole
    return sp, before
