"""The networkx evidence graph and related cases."""

from __future__ import annotations

import pytest

from evidence.graph import evidence_graph, evidence_network, related_cases


def test_graph_links_genes_variants_diseases_drugs_cases(compiled):
    g = evidence_graph(compiled)
    base = compiled.ns.base
    briand = base + "case/briand-2019"
    patient = briand + "/patient/P1"
    assert g.nodes[briand]["kind"] == "case"
    variant = next(o for _, o, k in g.out_edges(patient, keys=True) if k == "carries")
    assert g.nodes[variant]["label"] == "TREX1 NM_033629.6:c.52G>A"
    assert ("https://identifiers.org/hgnc:12269") in g.successors(variant)
    drugs = [g.nodes[o]["label"] for _, o, k in g.out_edges(patient, keys=True) if k == "treated with"]
    assert drugs == ["ruxolitinib"]
    assert g.nodes["http://purl.obolibrary.org/obo/CHEBI_66919"]["kind"] == "drug"
    targets = sorted(g.nodes[o]["label"] for _, o, k in g.out_edges("http://purl.obolibrary.org/obo/CHEBI_66919", keys=True) if k == "targets")
    assert targets == ["JAK1", "JAK2"]


def test_related_cases(compiled):
    g = evidence_graph(compiled)
    base = compiled.ns.base
    rel = related_cases(g, base + "case/briand-2019")
    assert [r[0].rsplit("/", 1)[1] for r in rel] == ["wenzel-2016", "zimmermann-2019"]
    assert rel[0][2] == ["ruxolitinib"] and rel[1][2] == ["TREX1"]
    assert related_cases(g, base + "case/nope") == []


# ------------------------------------------------------------------ the network from fragments
# The network is put together from per-file fragments (graph.network_fragment, made when each
# file is compiled). The reference below queries the whole store instead, pattern by pattern, as
# the network was made before fragments: both must give the same nodes, kinds, labels and edges.

def _network_from_store(compiled):
    from evidence.graph import _EDGES

    query = "PREFIX ev: <{ev}>\nSELECT ?s ?o WHERE {{ {pattern} }}"
    store = compiled.store()
    kinds, edges = {}, set()
    for skind, label, okind, pattern in _EDGES:
        for row in store.query(query.format(ev=compiled.ns.ev, pattern=pattern), use_default_graph_as_union=True):
            kinds.setdefault(row["s"].value, skind)
            kinds.setdefault(row["o"].value, okind)
            edges.add((row["s"].value, row["o"].value, label))
    q = ("PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\nPREFIX dcterms: <http://purl.org/dc/terms/>\n"
         f"PREFIX ev: <{compiled.ns.ev}>\nSELECT ?s ?l WHERE {{ {{ ?s rdfs:label ?l }} UNION {{ ?s dcterms:title ?l }} "
         "UNION { ?s ev:localId ?l FILTER NOT EXISTS { ?s rdfs:label ?x } } }")
    labels = {}
    for row in store.query(q, use_default_graph_as_union=True):
        labels.setdefault(row["s"].value, row["l"].value)
    return {n: (k, labels.get(n, n.rsplit("/", 1)[-1])) for n, k in kinds.items()}, edges


def _assert_same_network(compiled):
    g = evidence_graph(compiled)
    nodes, edges = _network_from_store(compiled)
    assert {n: (d["kind"], d["label"]) for n, d in g.nodes(data=True)} == nodes
    assert {(s, o, k) for s, o, k in g.edges(keys=True)} == edges
    assert len(edges) == g.number_of_edges() and edges
    # The build walks evidence_network: the same nodes and edges, in networkx's order.
    net = evidence_network(compiled)
    assert net.nodes == nodes and list(net.nodes) == sorted(nodes)
    assert net.edges == sorted(edges)
    for n in g:
        assert net.out(n) == list(g.out_edges(n, keys=True)), n


def test_network_from_fragments_equals_the_network_of_the_whole_store(compiled):
    _assert_same_network(compiled)
    # a graph made from quads alone (no parts, as the tests that break a graph make it) too
    _assert_same_network(type(compiled).from_quads(compiled.ns, compiled.quads))
    # every file's part carries its fragment, made when it was compiled; a case's names its own nodes
    cases = [p for p in compiled.parts.values() if "/case/" in p.graph]
    assert cases and all(p.network is not None and p.network.own_edges and p.network.scope for p in cases)


def test_network_from_fragments_on_a_synthetic_kb(tmp_path):
    import sys
    from pathlib import Path

    from evidence.config import load_config
    from evidence.pipeline import compile_checked, load_and_validate

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import synth

    synth.generate(tmp_path / "kb", 40, seed=11)
    compiled = compile_checked(load_and_validate(load_config(tmp_path / "kb")))
    _assert_same_network(compiled)


def _assert_graphml_is_the_network(compiled):
    """The GraphML export (written piece by piece, see export._graphml_pieces) reads back, with
    networkx, as exactly the network: every node with its kind and label, every edge with its key."""
    import io

    import networkx as nx

    from evidence.export import serialize

    g = evidence_graph(compiled)
    back = nx.read_graphml(io.BytesIO(serialize(compiled, "graphml")), force_multigraph=True)
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
    assert sorted(back.edges(keys=True, data=True)) == sorted(g.edges(keys=True, data=True))
    assert back.number_of_edges() == g.number_of_edges() > 0


def test_graphml_reads_back_as_the_network(compiled):
    _assert_graphml_is_the_network(compiled)
    _assert_graphml_is_the_network(type(compiled).from_quads(compiled.ns, compiled.quads))  # no parts: fragments made here


def test_graphml_reads_back_as_the_network_on_a_synthetic_kb(tmp_path):
    """40 cases that share drugs, genes, variants and sources: what a case's piece says of its
    own nodes (made from its fragment alone) is what the whole network says of them."""
    import sys
    from pathlib import Path

    from evidence.config import load_config
    from evidence.pipeline import compile_checked, load_and_validate

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import synth

    synth.generate(tmp_path / "kb", 40, seed=11)
    _assert_graphml_is_the_network(compile_checked(load_and_validate(load_config(tmp_path / "kb"))))


def test_graphml_pieces_escape_what_xml_cannot_hold_as_it_is():
    import io
    import xml.etree.ElementTree as ET

    from evidence.graph import GRAPHML_HEAD, GRAPHML_TAIL, graphml_piece

    label = 'a <b> & "c" \x01 \ufffe\r\nnext\tline'
    piece = graphml_piece([('node "1" <&>\t\n', ("case", label))], [('node "1" <&>\t\n', "x&y", "has <patient>")])
    root = ET.parse(io.BytesIO(GRAPHML_HEAD + piece + GRAPHML_TAIL)).getroot()
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    node = root.find("g:graph/g:node", ns)
    assert node.get("id") == 'node "1" <&>\t\n'
    assert [d.text for d in node.findall("g:data", ns)] == ["case", 'a <b> & "c" \ufffd \ufffd\r\nnext\tline']
    edge = root.find("g:graph/g:edge", ns)
    assert (edge.get("source"), edge.get("target"), edge.find("g:data", ns).text) == ('node "1" <&>\t\n', "x&y", "has <patient>")


def test_fragments_keep_the_first_kind_and_the_best_label():
    from evidence.graph import Fragment, network_from_fragments

    # ev:condition (pattern 1) makes its object a disease; the same node as the object of
    # ev:diagnosis (pattern 4) in another file does not change that. A label beats a title, which
    # beats a local id, whichever file gives it.
    a = Fragment.of(edges=((4, "p", "d"),), labels=(("d", 2, "local"),))
    b = Fragment.of(edges=((1, "c", "d"),), labels=(("d", 1, "title"), ("c", 1, "Case title")))
    c = Fragment.of(labels=(("d", 0, "zeta"), ("d", 0, "alpha"), ("x", 0, "not a node")))
    for order in ([a, b, c], [c, b, a]):
        net = network_from_fragments(order)
        assert net.nodes == {"c": ("case", "Case title"), "d": ("disease", "alpha"), "p": ("patient", "p")}
        assert net.edges == [("c", "d", "condition"), ("p", "d", "diagnosis")]
        g = net.to_networkx()
        assert dict(g.nodes(data=True)) == {
            "c": {"kind": "case", "label": "Case title"},
            "d": {"kind": "disease", "label": "alpha"},
            "p": {"kind": "patient", "label": "p"},
        }
        assert sorted(g.edges(keys=True)) == [("c", "d", "condition"), ("p", "d", "diagnosis")]


def test_a_fragments_own_nodes_are_taken_as_they_are_only_when_no_other_names_them():
    """The network is the same whether the fragments name their own nodes (a scope) or not: taken
    as they are when no other fragment names them, merged with the rest when one does (an edge
    into another file's case, two files with one scope). 200 random sets of fragments take both
    ways."""
    import random

    from evidence.graph import _EDGES, Fragment, network_from_fragments

    iris = ["c1", "c1/p1", "c1/p2", "c2", "c2/p1", "c10", "d1", "d2", "g1", "s1"]
    ways = {True: 0, False: 0}
    for seed in range(200):
        rnd = random.Random(seed)
        fragments = []
        for _ in range(rnd.randint(1, 5)):
            edges = [(rnd.randrange(len(_EDGES)), rnd.choice(iris), rnd.choice(iris)) for _ in range(rnd.randint(0, 6))]
            labels = [(rnd.choice(iris), rnd.randrange(3), rnd.choice(["", "a", "b", "Zed"])) for _ in range(rnd.randint(0, 4))]
            fragments.append((edges, labels, rnd.choice(["", "c1", "c2", "c10"])))
        scoped = network_from_fragments([Fragment.of(e, labels, scope) for e, labels, scope in fragments])
        merged = network_from_fragments([Fragment.of(e, labels) for e, labels, _scope in fragments])
        assert scoped.nodes == merged.nodes and list(scoped.nodes) == list(merged.nodes), seed
        assert scoped.edges == merged.edges, seed
        ways[scoped.scoped] += 1
    assert ways[True] > 20 and ways[False] > 20, ways


def test_a_network_whose_case_nodes_another_file_names_is_written_whole(compiled):
    """No validated kb has an edge into another file's case, but a graph might: the network then
    merges every fragment (not scoped), and the GraphML is one piece made from it, which reads
    back as the network; a case's piece is made only from its own fragment."""
    import dataclasses

    from evidence.graph import Fragment, case_graphml, forget_evidence_graph

    ns = compiled.ns
    cases = sorted(g for g in compiled.parts if g.startswith(ns.graph("case") + "/"))
    assert len(cases) >= 2 and evidence_network(compiled).scoped
    first, other = cases[0], cases[1]
    other_case = ns.case(other.rsplit("/", 1)[-1])
    part = compiled.parts[first]
    f = part.network
    foreign = Fragment(own=f.own, others=tuple(sorted(f.others + ((other_case, 0, 0, "claimed by another file"),))),
                       own_edges=f.own_edges, other_edges=f.other_edges, scope=f.scope)
    compiled.parts[first] = dataclasses.replace(part, network=foreign)
    try:
        forget_evidence_graph(compiled)
        net = evidence_network(compiled)
        assert not net.scoped and net.nodes[other_case] == ("case", "claimed by another file")
        _assert_graphml_is_the_network(compiled)
        with pytest.raises(ValueError, match="is not the fragment of"):
            case_graphml(foreign, other_case)
    finally:
        compiled.parts[first] = part
        forget_evidence_graph(compiled)


def test_an_empty_label_is_a_label():
    from evidence.graph import Fragment, network_from_fragments

    net = network_from_fragments([Fragment.of(edges=((1, "c", "x/d"),), labels=(("x/d", 0, ""),), scope="c")])
    assert net.nodes == {"c": ("case", "c"), "x/d": ("disease", "")}


def test_the_network_is_made_with_the_collector_paused():
    """A large network is a million objects that all stay alive: no collection runs while it is
    made (each walked every object made since the models were frozen), and the collector is
    running again afterwards (its first allocation may start one: the count went on rising)."""
    import gc

    from evidence.graph import Fragment, network_from_fragments

    fragments = [Fragment.of(edges=tuple((0, f"case{i}", f"case{i}/p{j}") for j in range(20)), labels=((f"case{i}", 1, f"Case {i}"),), scope=f"case{i}")
                 for i in range(500)]
    runs: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            runs.append(info["generation"])

    assert gc.isenabled()
    gc.callbacks.append(count)
    try:
        net = network_from_fragments(fragments)
    finally:
        gc.callbacks.remove(count)
    assert len(net.edges) == 10_000 and len(net) == 10_500
    assert len(runs) <= 1 and gc.isenabled(), runs  # unpaused: 88 collections
