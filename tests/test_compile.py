"""Compilation: the graph holds every value of the YAML, uses standard IRIs, conforms to its
shapes, and two builds are byte-identical."""

from __future__ import annotations

import datetime as dt
import filecmp
import re
from pathlib import Path

import pyoxigraph as ox
import pytest

from evidence import schema as S
from evidence.compile import compile_kb
from evidence.errors import CompileError
from evidence.ontology import CLASSES, PROPERTIES
from evidence.pipeline import build, shapes_turtle
from evidence.shapes import _compiled_shapes, validate_shapes

from .yamlplaces import leaves

EV = "https://w3id.org/evidence-kb/vocab/"


def _graph_values(compiled, graphs: set[str]) -> tuple[set[str], set[float], set[str]]:
    literals: set[str] = set()
    numbers: set[float] = set()
    iris: set[str] = set()
    for q in compiled.quads:
        if q.graph_name.value not in graphs:
            continue
        for t in (q.subject, q.object):
            if isinstance(t, ox.Literal):
                literals.add(t.value)
                try:
                    numbers.add(float(t.value))
                except ValueError:
                    pass
            elif isinstance(t, ox.NamedNode):
                iris.add(t.value)
    return literals, numbers, iris


def _found(value, key, literals, numbers, iris, compiled, kb) -> bool:
    if isinstance(value, bool):
        return ("true" if value else "false") in literals
    if isinstance(value, (int, float)):
        return float(value) in numbers
    text = value.isoformat() if isinstance(value, (dt.date,)) else str(value)
    if text in literals:
        return True
    if key == "role":  # a source's role in a case is the predicate that links them
        return any(q.predicate.value == f"{EV}{text}Source" for q in compiled.quads)
    if text == S.NOT_REPORTED:
        return any(q.predicate.value == EV + "notReported" for q in compiled.quads)
    # a vocabulary key, a source key or a local id becomes (part of) an IRI
    for (_kind, k), iri in compiled.term_iris.items():
        if k == text and iri in iris:
            return True
    if any(i.endswith("/" + text) or f"/{text}/" in i for i in iris):
        return True
    # a value from a fixed list becomes a concept whose label is the value
    return any(label == text for _, label in compiled.concepts.values())


def test_every_yaml_value_is_in_the_graph(kb, compiled):
    """Lossless: each scalar of each case and source file is found again in its named graph."""
    ns = compiled.ns
    missing = []
    for kind, store in (("case", kb.cases), ("source", kb.sources)):
        for key in store:
            f = kb.files[f"{kind}:{key}"]
            graphs = {ns.graph(kind, key), ns.graph("vocabulary"), ns.graph("shared")}
            literals, numbers, iris = _graph_values(compiled, graphs)
            for path, value in leaves(f.doc.data):
                if not _found(value, path[-1], literals, numbers, iris, compiled, kb):
                    missing.append(f"{f.display}: {'.'.join(map(str, path))} = {value!r}")
    assert not missing, "values lost in compilation:\n" + "\n".join(missing)


def test_every_vocabulary_value_is_in_the_graph(kb, compiled):
    literals, numbers, iris = _graph_values(compiled, {compiled.ns.graph("vocabulary")})
    missing = []
    for kind in kb.vocab:
        f = kb.files[f"vocabulary:{kind}"]
        for path, value in leaves(f.doc.data):
            if not _found(value, path[-1], literals, numbers, iris, compiled, kb):
                missing.append(f"{f.display}: {'.'.join(map(str, path))} = {value!r}")
    assert not missing, "\n".join(missing)


def test_lossless_check_catches_a_dropped_field(kb, compiled):
    """The check above can fail: drop every followedBy triple and it must notice."""
    ns = compiled.ns
    stripped = type(compiled).from_quads(ns, [q for q in compiled.quads if q.predicate.value != EV + "followedBy"],
                              concepts=compiled.concepts, term_iris=compiled.term_iris)
    literals, numbers, iris = _graph_values(stripped, {ns.graph("case", "wenzel-2016"), ns.graph("vocabulary")})
    assert not _found("her skin got worse", "followed_by", literals, numbers, iris, stripped, kb)


def test_standard_identifiers_become_standard_iris(compiled):
    iris = {q.object.value for q in compiled.quads if isinstance(q.object, ox.NamedNode)}
    assert "http://purl.obolibrary.org/obo/MONDO_0018827" in iris  # familial chilblain lupus
    assert "http://purl.obolibrary.org/obo/CHEBI_95341" in iris  # baricitinib
    assert "http://purl.obolibrary.org/obo/HP_0001873" in iris  # thrombocytopenia
    assert "https://identifiers.org/hgnc:12269" in iris  # TREX1
    assert "https://doi.org/10.1001/jamadermatol.2018.5077" in iris
    assert "https://identifiers.org/pubmed:30673078" in iris


def test_each_file_has_its_own_named_graph(kb, compiled):
    graphs = {q.graph_name.value for q in compiled.quads}
    for cid in kb.cases:
        assert compiled.ns.graph("case", cid) in graphs
    for sid in kb.sources:
        assert compiled.ns.graph("source", sid) in graphs
    assert all(isinstance(q.graph_name, ox.NamedNode) for q in compiled.quads)


def test_each_part_knows_its_chunks_digest_and_quads(compiled):
    """The digest and count a part carries are those of its chunk: the SHACL units, the export
    keys and the home page's triple count use them instead of reading the chunk again."""
    import hashlib

    assert compiled.parts
    for g, part in compiled.parts.items():
        assert part.sha == hashlib.sha256(compiled.chunks[g]).digest()
        assert part.lines == len(list(ox.parse(compiled.chunks[g], format=ox.RdfFormat.N_QUADS)))
    assert compiled.quad_count() == len(compiled.quads)


@pytest.mark.parametrize("batch", [1, 1 << 26])
def test_the_store_holds_every_quad_whatever_the_batches(compiled, monkeypatch, batch):
    import evidence.compile as compile_module
    from evidence.compile import Compiled

    monkeypatch.setattr(compile_module, "STORE_BATCH", batch)
    fresh = Compiled(ns=compiled.ns, chunks=compiled.chunks, parts=compiled.parts)
    store = fresh.store()
    assert len(store) == compiled.quad_count()
    assert set(store) == set(compiled.quads)


def test_no_blank_nodes(compiled):
    assert not any(isinstance(t, ox.BlankNode) for q in compiled.quads for t in (q.subject, q.object))


def test_every_ev_term_is_defined_in_the_ontology(compiled):
    defined = {EV + p.name for p in PROPERTIES} | {EV + c for c in CLASSES}
    used = {q.predicate.value for q in compiled.quads if q.predicate.value.startswith(EV)}
    used |= {q.object.value for q in compiled.quads if q.predicate.value.endswith("#type") and q.object.value.startswith(EV)}
    assert used <= defined, sorted(used - defined)


def test_graph_conforms_to_its_shapes(compiled):
    validate_shapes(compiled.union_graph(), shapes_turtle(compiled))


def test_shapes_catch_a_violation(compiled):
    """A treatment without a drug breaks the shapes, and the build says so."""
    broken = type(compiled).from_quads(compiled.ns, [q for q in compiled.quads if q.predicate.value != EV + "drug"])
    with pytest.raises(CompileError, match="MinCount"):
        validate_shapes(broken.union_graph(), shapes_turtle(compiled))


def test_shapes_read_nquads_bytes_as_they_read_a_store(compiled):
    """The build hands each batch to the engine as N-Quads bytes (shapes._nquads_input): the
    verdict and every violation are those of the same quads loaded into a Store."""
    broken = [q for q in compiled.quads if q.predicate.value != EV + "drug"]
    data = ox.serialize(broken, format=ox.RdfFormat.N_QUADS)
    store = ox.Store()
    store.bulk_load(data, format=ox.RdfFormat.N_QUADS)
    found = []
    for given in (data, store):
        with pytest.raises(CompileError) as err:
            validate_shapes(given, shapes_turtle(compiled))
        found.append(sorted(ln for ln in err.value.message.splitlines() if ln.strip()))
    assert found[0] == found[1]
    assert any("MinCount" in ln for ln in found[0])
    validate_shapes(ox.serialize(compiled.quads, format=ox.RdfFormat.N_QUADS), shapes_turtle(compiled))


def test_dechallenge_and_rechallenge_are_derived(compiled):
    res = compiled.store().query(
        f"SELECT ?t WHERE {{ ?t <{EV}hasDechallenge> true ; <{EV}hasRechallenge> true }}", use_default_graph_as_union=True
    )
    assert [r["t"].value.split("/case/")[1] for r in res] == ["wenzel-2016/patient/P1/treatment/T1"]


def test_secondary_source_claims_are_marked(compiled):
    res = list(compiled.store().query(
        f"SELECT DISTINCT ?case WHERE {{ ?c <{EV}viaSecondarySource> true ; <{EV}inCase> ?case }}", use_default_graph_as_union=True
    ))
    assert [r["case"].value.rsplit("/", 1)[1] for r in res] == ["wenzel-2016"]


def test_compile_refuses_an_invalid_kb(config):
    from evidence.validate import validate_kb

    kb = validate_kb(config, [Path(__file__).parent / "data" / "invalid" / "unit-unknown.yaml"])
    with pytest.raises(CompileError):
        compile_kb(kb)


def test_two_builds_are_byte_identical(config, site, tmp_path):
    second = tmp_path / "again"
    build(config, second)
    cmp = filecmp.dircmp(site, second)

    def diffs(c) -> list[str]:
        out = list(c.diff_files) + list(c.left_only) + list(c.right_only)
        for sub in c.subdirs.values():
            out += diffs(sub)
        return out

    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert len(files) > 20
    for rel in files:
        assert (site / rel).read_bytes() == (second / rel).read_bytes(), rel
    assert diffs(cmp) == []


def test_no_triple_stands_in_two_graphs(compiled):
    """A union default graph (Oxigraph's, Fuseki's) would count such a triple twice."""
    seen: dict[tuple, str] = {}
    for q in compiled.quads:
        key = (q.subject, q.predicate, q.object)
        assert seen.setdefault(key, q.graph_name.value) == q.graph_name.value, f"{key} is in {seen[key]} and {q.graph_name.value}"


def test_parallel_shape_validation_agrees(compiled, monkeypatch):
    """Split across worker processes (forced here on the small kb), the shapes still pass on the
    real graph and still catch a violation that sits in one partition only."""
    from evidence import shapes as shapes_module
    from evidence.shapes import validate_compiled

    monkeypatch.setattr(shapes_module, "BATCH", 1)
    validate_compiled(compiled, shapes_turtle(compiled), workers=2)
    broken = type(compiled).from_quads(compiled.ns, [q for q in compiled.quads if not (q.predicate.value == EV + "drug" and "/wenzel-2016/" in q.subject.value)])
    with pytest.raises(CompileError, match="wenzel-2016"):
        validate_compiled(broken, shapes_turtle(compiled), workers=2)


@pytest.mark.parametrize(("iso", "xsd"), [("P6W", "P42D"), ("P1M2W", "P1M14D"), ("P2W3D", "P17D"), ("P1W2DT3H", "P9DT3H"), ("P1Y", "P1Y"), ("PT1.5S", "PT1.5S")])
def test_durations_are_written_as_xsd_durations(iso, xsd):
    """XML Schema has no weeks: the graph writes them as days, so the literal is well typed."""
    from evidence.compile import xsd_duration

    assert xsd_duration(iso) == xsd


def test_every_duration_literal_in_the_graph_is_a_valid_xsd_duration(compiled):
    xsd_lexical = re.compile(r"^-?P(?!$)(\d+Y)?(\d+M)?(\d+D)?(T(?!$)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
    durations = [q.object.value for q in compiled.quads if isinstance(q.object, ox.Literal) and q.object.datatype.value.endswith("#duration")]
    assert durations, "the founding kb has durations"
    assert [d for d in durations if not xsd_lexical.match(d)] == []


def _results(report) -> set[tuple[str, str]]:
    from rdflib import URIRef

    sh = "http://www.w3.org/ns/shacl#"
    return {(str(report.value(r, URIRef(sh + "focusNode"))), str(report.value(r, URIRef(sh + "resultPath"))))
            for r in report.subjects(URIRef("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"), URIRef(sh + "ValidationResult"))}


@pytest.mark.parametrize("breakage", ["no drug", "two local ids", "ill-typed order", "untyped condition"])
def test_the_shacl_engine_agrees_with_pyshacl(compiled, breakage):
    """pyshacl-turbo, the build's engine, reports the same focus nodes and paths as pyshacl, the
    reference implementation, on graphs broken four ways (and both find each breakage)."""
    import pyshacl
    import pyshacl_turbo
    from rdflib import Graph

    quads = list(compiled.quads)
    t1 = next(q for q in quads if q.predicate.value == EV + "localId" and "/treatment/" in q.subject.value)
    if breakage == "no drug":
        quads = [q for q in quads if q.predicate.value != EV + "drug"]
    elif breakage == "two local ids":
        quads.append(ox.Quad(t1.subject, t1.predicate, ox.Literal("another"), t1.graph_name))
    elif breakage == "ill-typed order":
        quads = [ox.Quad(q.subject, q.predicate, ox.Literal("first"), q.graph_name) if q.predicate.value == EV + "order" else q for q in quads]
    else:
        quads = [q for q in quads if not (q.predicate.value.endswith("#type") and q.object.value == EV + "Disease")]
    shapes = shapes_turtle(compiled)
    store = ox.Store()
    store.extend(quads)
    ok_turbo, turbo_report, _ = pyshacl_turbo.validate(store, shacl_graph=shapes, inference="none")
    # As the build calls it: the shapes compiled once (evidence.shapes._compiled_shapes), reused.
    ok_build, build_report, _ = _compiled_shapes(shapes).validate(store, inference=None, allow_warnings=True)
    assert not ok_build and _results(build_report) == _results(turbo_report)
    reference = Graph().parse(data=ox.serialize([q.triple for q in quads], format=ox.RdfFormat.N_TRIPLES).decode(), format="nt")
    ok_ref, ref_report, _ = pyshacl.validate(reference, shacl_graph=Graph().parse(data=shapes, format="turtle"), inference="none")
    assert not ok_turbo and not ok_ref
    assert _results(turbo_report) == _results(ref_report) != set()


def test_every_export_piece_matches_pyoxigraph_writing_that_graph(compiled):
    """Pieces are made per graph (N-Triples by taking the graph term off each N-Quads line): each
    must say exactly what pyoxigraph says when it writes the graph's triples itself."""
    from evidence.export import chunk_exports

    for g, chunk in compiled.chunks.items():
        quads = list(ox.parse(chunk, format=ox.RdfFormat.N_QUADS))
        piece = chunk_exports(chunk, compiled.ns.prefixes(), g)
        assert piece["nt"] == ox.serialize([q.triple for q in quads], format=ox.RdfFormat.N_TRIPLES), g
        from evidence.export import prefix_header

        turtle = prefix_header(compiled.ns.prefixes()) + piece["ttl"]
        assert {q.triple for q in ox.parse(turtle, format=ox.RdfFormat.TURTLE)} == {q.triple for q in quads}, g


def test_compiling_in_worker_processes_gives_the_same_graph(tmp_path, monkeypatch):
    """Files the cache does not have are compiled in forked workers (from 200 files on): the parts
    and the whole graph are those of compiling them one by one in this process."""
    import sys

    import evidence.compile as compile_module
    from evidence.config import load_config
    from evidence.pipeline import load_and_validate

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import synth

    synth.generate(tmp_path / "kb", 110, seed=7)  # 110 cases and their sources: over 200 files
    kb = load_and_validate(load_config(tmp_path / "kb"))
    forked = []
    real = compile_module.parallel_imap
    monkeypatch.setattr(compile_module, "parallel_imap", lambda fn, items, **kw: (forked.append(len(items)), real(fn, items, **kw))[1])
    from evidence.cache import BuildCache

    parallel = compile_module.compile_kb(kb, BuildCache(tmp_path / "cache"))
    assert forked == [len(kb.cases) + len(kb.sources)] and forked[0] >= 200
    monkeypatch.setattr(compile_module, "parallel_imap", lambda fn, items, shared: (fn(shared, i) for i in items))
    serial = compile_module.compile_kb(kb)
    assert parallel.nquads() == serial.nquads() and parallel.quad_count() > 10_000
    assert list(parallel.parts.items()) == list(serial.parts.items())
    files = [parallel.ns.graph("source", s) for s in sorted(kb.sources)] + [parallel.ns.graph("case", c) for c in sorted(kb.cases)]
    assert list(parallel.parts) == files  # each file's own part, in file order
    # each part was cached under its own file's key: a compile from the cache alone is the same
    cached = BuildCache(tmp_path / "cache")
    assert list(compile_module.compile_kb(kb, cached).parts) == files and cached.misses == 0


def test_a_temporary_folder_without_room_is_a_compile_error(kb, monkeypatch):
    """The compiled chunks are kept in a temporary file (evidence.spool); a full disk there is a
    CompileError that says where and what to do, not a traceback."""
    import errno

    from evidence.spool import Spool

    def full(self, name, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Spool, "add", full)
    with pytest.raises(CompileError, match=r"cannot keep the compiled graph in a temporary file in .*No space left.*TMPDIR"):
        compile_kb(kb)


def test_small_and_large_numbers_are_plain_decimals_in_the_graph(config):
    """A number is an xsd:decimal in positional notation: repr() gave 2e-05, which SHACL (rightly)
    refused as a decimal, after `evidence validate` had passed the file (tests/data/valid/)."""
    from evidence.pipeline import compile_checked, load_and_validate

    fixture = Path(__file__).parent / "data" / "valid" / "age-months-tiny-value.yaml"
    compiled = compile_checked(load_and_validate(config, [fixture]))  # SHACL included
    graph = compiled.ns.graph("case", "age-months-tiny-value")
    decimals = {q.object.value for q in compiled.quads if q.graph_name.value == graph and isinstance(q.object, ox.Literal)
                and q.object.datatype.value.endswith("#decimal")}
    assert {"0.00002", "0.000001", "130"} <= decimals
    assert not any("e" in d.lower() for d in decimals)


@pytest.mark.parametrize(("x", "text"), [(4.0, "4"), (0.5, "0.5"), (2e-05, "0.00002"), (1e16, "10000000000000000"), (3, "3"), (-1.25e-7, "-0.000000125")])
def test_number_text_is_positional(x, text):
    assert S.number_text(x) == text


def test_bytes_that_are_not_utf8_are_a_compile_error_naming_the_cache(compiled):
    """A compiled part is read from the build cache by its place, unchecked: a damaged one stopped
    the build with 'internal error: UnicodeDecodeError'."""
    data = ox.serialize(compiled.quads, format=ox.RdfFormat.N_QUADS)
    with pytest.raises(CompileError, match=r"not UTF-8 .*build cache may be damaged"):
        validate_shapes(data[:100] + b"\xff\xfe" + data[100:], shapes_turtle(compiled))
