"""The networkx evidence graph and related cases."""

from __future__ import annotations

from evidence.graph import evidence_graph, related_cases


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
