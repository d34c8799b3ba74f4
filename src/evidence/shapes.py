"""The ontology (labels and comments of every ``ev:`` term) and the SHACL shapes, both
generated from :mod:`evidence.ontology`, and SHACL validation of a compiled graph (pyshacl-turbo)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping

import pyoxigraph as ox

from .cache import BuildCache, code_digest, digest
from .errors import CompileError
from .namespaces import STANDARD, Namespaces
from .ontology import CLASSES, INDIVIDUALS, PROPERTIES
from .perf import parallel_map

__all__ = ["ontology_triples", "shape_triples", "validate_shapes", "validate_compiled"]

_RDF = STANDARD["rdf"]
_RDFS = STANDARD["rdfs"]
_OWL = STANDARD["owl"]
_SH = STANDARD["sh"]
_XSD = STANDARD["xsd"]
_SCHEMA = STANDARD["schema"]


def _n(iri: str) -> ox.NamedNode:
    return ox.NamedNode(iri)


def _expand(ns: Namespaces, name: str) -> str:
    if name.startswith("xsd:"):
        return _XSD + name[4:]
    if name.startswith("rdfs:"):
        return _RDFS + name[5:]
    if name.startswith("rdf:"):
        return _RDF + name[4:]
    return ns.ev + name


def ontology_triples(ns: Namespaces) -> list[ox.Triple]:
    """The project vocabulary as OWL/RDFS, with a label and a comment for every term."""
    t: list[ox.Triple] = []
    onto = _n(ns.ev)
    t.append(ox.Triple(onto, _n(_RDF + "type"), _n(_OWL + "Ontology")))
    t.append(ox.Triple(onto, _n(_RDFS + "label"), ox.Literal("evidence project vocabulary")))
    t.append(ox.Triple(onto, _n(_RDFS + "comment"), ox.Literal("Classes and properties of the evidence knowledge base graph.")))
    for name, (label, comment) in sorted(CLASSES.items()):
        c = _n(ns.ev + name)
        t += [
            ox.Triple(c, _n(_RDF + "type"), _n(_OWL + "Class")),
            ox.Triple(c, _n(_RDFS + "label"), ox.Literal(label, language="en")),
            ox.Triple(c, _n(_RDFS + "comment"), ox.Literal(comment, language="en")),
            ox.Triple(c, _n(_RDFS + "isDefinedBy"), onto),
        ]
    for p in sorted(PROPERTIES, key=lambda p: p.name):
        node = _n(ns.ev + p.name)
        literal = p.range.startswith("xsd:")
        t += [
            ox.Triple(node, _n(_RDF + "type"), _n(_OWL + ("DatatypeProperty" if literal else "ObjectProperty"))),
            ox.Triple(node, _n(_RDFS + "label"), ox.Literal(p.label, language="en")),
            ox.Triple(node, _n(_RDFS + "comment"), ox.Literal(p.comment, language="en")),
            ox.Triple(node, _n(_RDFS + "isDefinedBy"), onto),
            ox.Triple(node, _n(_SCHEMA + "rangeIncludes"), _n(_expand(ns, p.range))),
        ]
        # schema:domainIncludes, not rdfs:domain: several domains must not mean their intersection.
        for d in p.domain:
            t.append(ox.Triple(node, _n(_SCHEMA + "domainIncludes"), _n(ns.ev + d)))
    for name, (label, comment) in sorted(INDIVIDUALS.items()):
        i = _n(ns.ev + name)
        t += [
            ox.Triple(i, _n(_RDF + "type"), _n(_OWL + "NamedIndividual")),
            ox.Triple(i, _n(_RDFS + "label"), ox.Literal(label, language="en")),
            ox.Triple(i, _n(_RDFS + "comment"), ox.Literal(comment, language="en")),
        ]
    return t


def shape_triples(ns: Namespaces) -> list[ox.Triple]:
    """One sh:NodeShape per class, one property shape per (class, property), all with IRIs."""
    t: list[ox.Triple] = []
    sh = _SH
    integer = _XSD + "integer"
    for cname in sorted(CLASSES):
        props = [p for p in PROPERTIES if cname in p.domain]
        shape = _n(f"{ns.shapes}{cname}")
        t += [
            ox.Triple(shape, _n(_RDF + "type"), _n(sh + "NodeShape")),
            ox.Triple(shape, _n(sh + "targetClass"), _n(ns.ev + cname)),
            ox.Triple(shape, _n(_RDFS + "label"), ox.Literal(f"Shape of {CLASSES[cname][0]}")),
        ]
        for p in sorted(props, key=lambda p: p.name):
            ps = _n(f"{ns.shapes}{cname}-{p.name}")
            t += [
                ox.Triple(shape, _n(sh + "property"), ps),
                ox.Triple(ps, _n(sh + "path"), _n(ns.ev + p.name)),
                ox.Triple(ps, _n(sh + "name"), ox.Literal(p.label)),
            ]
            if p.range.startswith("xsd:"):
                t.append(ox.Triple(ps, _n(sh + "datatype"), _n(_expand(ns, p.range))))
            elif p.range in CLASSES:
                t.append(ox.Triple(ps, _n(sh + "class"), _n(ns.ev + p.range)))
            else:
                t.append(ox.Triple(ps, _n(sh + "nodeKind"), _n(sh + "IRI")))
            if p.required:
                t.append(ox.Triple(ps, _n(sh + "minCount"), ox.Literal("1", datatype=_n(integer))))
            if p.single:
                t.append(ox.Triple(ps, _n(sh + "maxCount"), ox.Literal("1", datatype=_n(integer))))
    return t


def validate_shapes(data, shapes_turtle: str) -> None:
    """Validate ``data`` (N-Quads bytes, a pyoxigraph Store or an rdflib graph: the union of its
    graphs is checked; bytes go to the engine as they are, see :func:`_nquads_input`) against the shapes; raise CompileError listing the violations.

    The engine is pyshacl-turbo, pySHACL's API on a Rust engine: 5 times faster than pyshacl at
    1,000 cases, it finds the same violations on broken graphs, and it checks literals more
    strictly (it, not pyshacl, found 'P6W'^^xsd:duration ill-typed; see bench/README.md). The
    shapes are compiled once (:func:`_compiled_shapes`) and reused for every batch.
    """
    from pyshacl_turbo import ValidationFailure

    if isinstance(data, bytes):
        data = _nquads_input(data)
    try:
        conforms, _graph, report_text = _compiled_shapes(shapes_turtle).validate(data, inference=None, allow_warnings=True)
    except ValidationFailure as failure:  # what pyshacl_turbo.validate reports as a result
        conforms, report_text = False, f"Validation Failure - {failure}"
    if conforms:
        return
    lines = [ln for ln in str(report_text).splitlines() if ln.strip()]
    raise CompileError("the compiled graph violates its SHACL shapes:\n" + "\n".join(lines[:80]))


def _nquads_input(data: bytes):
    """N-Quads bytes as pyshacl-turbo's own input (its ``rdf.Input``), read by its Rust engine as
    they are. Loaded into a pyoxigraph Store first, as before, the engine took the Store's N-Quads
    dump: the load built indexes that nothing used and the dump wrote the same lines again. A
    batch of 100 synthetic cases (52,843 quads) was checked in 0.21 s instead of 0.33 s, with the
    same verdict and the same violations (bench/README.md, session 21)."""
    from pyshacl_turbo.rdf import Input

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # compiled parts are read from the build cache by their place, unchecked
        raise CompileError(f"the compiled graph is not UTF-8 text (byte {exc.start}): the build cache may be damaged; "
                           "delete its folder (.cache/build) and build again") from None
    return Input(text, "nquads", None, {}, preserve_ids=True)


@functools.lru_cache(maxsize=4)
def _compiled_shapes(shapes_turtle: str):
    """The shapes, parsed and compiled (pyshacl-turbo's CompiledShapes, reusable and immutable).
    ``pyshacl_turbo.validate`` did this on every call: it parsed the shapes' Turtle into an rdflib
    graph again each time, 82 ms of each batch of 100 graphs (measured at 1,000 cases, in one
    process: 1.7 of SHACL's 6.2 s). Compiled in the parent before the workers fork, so that they
    share it."""
    from pyshacl_turbo import compile_shapes

    return compile_shapes(shapes_turtle)


# Graphs validated together in one call: enough that the engine's fixed cost per call is small,
# few enough that a worker holds little. The engine's time per quad grows with the batch: 400
# synthetic cases took 0.78 s in batches of 25, 0.82 s of 10, 0.90 s of 5, 1.75 s of 1, 0.98 s of
# 100 and 1.22 s of 400 (session 21, bytes handed over as they are, in one process).
BATCH = 25


def _check_batch_at(job: tuple[Mapping[str, bytes], dict[str, tuple[str, list[str], bytes]], list[str], bytes, str], start: int) -> str | None:
    """In a worker (or not): check the units todo[start:start + BATCH] together; None if they
    conform, else the report."""
    chunks, units, todo, common, shapes_turtle = job
    names = todo[start : start + BATCH]
    graphs = sorted({g for n in names for g in units[n][1]})
    data = common + b"".join(chunks[g] for g in graphs) + b"".join(units[n][2] for n in names)
    try:
        validate_shapes(data, shapes_turtle)
    except CompileError as exc:
        return exc.message
    return None


def validate_compiled(compiled, shapes_turtle: str, workers: int | None = None, cache: BuildCache | None = None) -> None:
    """Validate the compiled graph against the shapes, graph by graph, caching what conforms.

    A shape looks at a node and at the nodes it points to. A kb file's nodes all live in its own
    graph; what they point to lives in the vocabulary and ontology graphs, in the sources the file
    cites, and in what the file itself adds to the shared graph (a variant's type and facts). So a
    file's graph is checked together with exactly those: that is its unit, and a unit whose bytes
    did not change since it last conformed is not checked again. The shared graph as a whole is a
    unit of its own, so a node that several files describe is checked with all its triples.
    Units are checked in batches, in forked workers when there are many. The cache keeps the keys
    of the units of the last build that conformed (only those: a unit of an older build is checked
    again).
    """
    cache = cache or BuildCache(None)
    ns = compiled.ns
    case_prefix, source_prefix, shared_graph = ns.graph("case", ""), ns.graph("source", ""), ns.graph("shared")
    chunks: Mapping[str, bytes] = compiled.chunks  # a Spool: each chunk is read where it is used
    files = [g for g in compiled.graphs() if g.startswith((case_prefix, source_prefix))]
    in_files = set(files)
    common = b"".join(chunks[g] for g in compiled.graphs() if g not in in_files and g != shared_graph)
    sha = compiled.chunk_digests()
    context = digest("shacl", code_digest(), shapes_turtle, hashlib.sha256(common).digest())
    all_sources = [g for g in files if g.startswith(source_prefix)]
    units: dict[str, tuple[str, list[str], bytes]] = {}  # name -> (key, graphs, extra bytes)
    for g in files:
        part = compiled.parts.get(g)
        cited = sorted(c for c in {ns.graph("source", s) for s in part.sources} if c in chunks) if part else all_sources
        extra = part.shared if part else chunks.get(shared_graph, b"")
        graphs = [g] + [c for c in cited if c != g]
        units[g] = (digest(context, *(sha[x] for x in graphs), extra), graphs, extra)
    if shared_graph in chunks:
        units[shared_graph] = (digest(context, "shared", sha[shared_graph]), [shared_graph], b"")
    # The keys of the units that conformed, in one entry per version of the code (20,000 entries
    # of one verdict each took 2 s to read at 10,000 cases); one that cannot be read is empty.
    verdicts_key = digest("shacl-verdicts", code_digest())
    passed = cache.get("shacl", verdicts_key)
    passed = passed if isinstance(passed, frozenset) else frozenset()
    todo = [name for name, (key, _, _) in units.items() if key not in passed]
    # Each batch's bytes are put together where it is checked (a forked worker sees these): made
    # all at once here, they were a second copy of every chunk in the parent, 1 GB at 10,000 cases.
    if todo:
        _compiled_shapes(shapes_turtle)  # here, once, before the workers fork
    reports = parallel_map(_check_batch_at, list(range(0, len(todo), BATCH)), workers=workers, minimum=2,
                           shared=(chunks, units, todo, common, shapes_turtle))
    failed = [r for r in reports if r]
    if failed:
        raise CompileError("\n".join(failed))
    cache.put("shacl", verdicts_key, frozenset(key for key, _, _ in units.values()))
