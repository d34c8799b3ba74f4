"""The graph view: the evidence network of :func:`evidence.graph.evidence_network`, laid out at build
time as a static SVG.

Patients and outcomes are contracted into their case (a case links to the drugs, genes, variants,
conditions, measures and adverse-event terms of its patients), so the picture shows what a reader
navigates. The layout is layered: one column per kind, nodes ordered within a column by the
barycentre of their neighbours (a few sweeps, ties by label and IRI). It uses no random numbers,
so it is the same on every machine; networkx's force layouts would need numpy, which the project
does not depend on. Above ``MAX_CASES`` cases the view shows the entities only, linked by the
number of cases that connect them, and each case page keeps its own neighbourhood.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .graph import Network

__all__ = ["GraphView", "graph_view", "shows_cases", "MAX_CASES"]

MAX_CASES = 120
MAX_PER_KIND = 40
_CASE_EDGES = {"condition": "disease", "primary source": "source", "secondary source": "source"}
_PATIENT_EDGES = {"diagnosis": "disease", "carries": "variant", "genotype at": "gene", "treated with": "drug", "adverse event": "phenotype"}
KIND_LABELS = {"source": "sources", "case": "case reports", "drug": "drugs", "disease": "conditions", "gene": "genes", "variant": "variants",
               "measure": "outcome measures", "phenotype": "adverse events"}


@dataclass
class Node:
    id: str
    iri: str
    kind: str
    label: str
    title: str
    url: str | None
    x: float = 0.0
    y: float = 0.0
    weight: int = 0


@dataclass
class GraphView:
    mode: str  # "cases" | "entities"
    nodes: list[Node]
    edges: list[tuple[str, str, str, int]]  # (node id, node id, label, weight)
    width: int
    height: int
    columns: list[tuple[float, str]] = field(default_factory=list)  # (x, heading)
    hidden: dict[str, int] = field(default_factory=dict)  # kind -> nodes left out
    groups: list[tuple[float, float, str]] = field(default_factory=list)  # (x, y, heading) of each kind in a shared column

    def paths(self) -> list[dict]:
        pos = {n.id: n for n in self.nodes}
        out = []
        for s, t, label, w in self.edges:
            a, b = pos[s], pos[t]
            if abs(a.x - b.x) < 1:  # same column: an arc to the right
                bend = 40 + abs(a.y - b.y) / 4
                d = f"M{a.x:.1f},{a.y:.1f} C{a.x + bend:.1f},{a.y:.1f} {b.x + bend:.1f},{b.y:.1f} {b.x:.1f},{b.y:.1f}"
            else:
                mx = (a.x + b.x) / 2
                d = f"M{a.x:.1f},{a.y:.1f} C{mx:.1f},{a.y:.1f} {mx:.1f},{b.y:.1f} {b.x:.1f},{b.y:.1f}"
            out.append({"s": s, "t": t, "d": d, "label": label, "w": min(1 + w // 2, 6)})
        return out

    def adjacency(self) -> list[tuple[Node, list[tuple[str, Node]]]]:
        """Every node with its neighbours (the text alternative of the picture)."""
        pos = {n.id: n for n in self.nodes}
        nbrs: dict[str, list[tuple[str, Node]]] = defaultdict(list)
        for s, t, label, _w in self.edges:
            nbrs[s].append((label, pos[t]))
            nbrs[t].append((label, pos[s]))
        return [(n, sorted(nbrs[n.id], key=lambda x: (x[1].kind, x[1].label.lower(), x[1].iri))) for n in self.nodes]


def _contract(net: Network, with_cases: bool) -> tuple[dict[str, str], dict[tuple[str, str], tuple[str, int]]]:
    """Nodes (IRI -> kind) and edges ((IRI, IRI) -> (label, weight)) of the picture."""
    kinds = {n: k for n, (k, _l) in net.nodes.items()}
    nodes: dict[str, str] = {}
    edges: dict[tuple[str, str], tuple[str, int]] = {}

    def add(a: str, b: str, label: str) -> None:
        nodes.setdefault(a, kinds[a])
        nodes.setdefault(b, kinds[b])
        old = edges.get((a, b))
        edges[(a, b)] = (label, (old[1] if old else 0) + 1)

    for case in net.of_kind("case"):  # in IRI order
        linked: dict[str, str] = {}
        for _, x, label in net.out(case):
            kx = kinds[x]
            if kx in ("disease", "source"):
                linked.setdefault(x, "condition" if kx == "disease" else label)
            elif kx == "patient":
                for _, y, plabel in net.out(x):
                    ky = kinds[y]
                    if ky in ("disease", "variant", "gene", "drug", "phenotype"):
                        linked.setdefault(y, plabel)
                    elif ky == "outcome":
                        for _, z, _l in net.out(y):
                            if kinds[z] == "measure":
                                linked.setdefault(z, "outcome measured by")
        if with_cases:
            for x, label in sorted(linked.items()):
                add(case, x, label)
        else:
            drugs = sorted(x for x in linked if kinds[x] == "drug")
            for d in drugs:
                for x in sorted(linked):
                    if kinds[x] in ("disease", "gene", "variant", "measure", "phenotype"):
                        add(d, x, {"disease": "given in", "gene": "given to carriers of", "variant": "given to carriers of",
                                   "measure": "outcome measured by", "phenotype": "adverse event"}[kinds[x]])
    for s, o, label in net.edges:
        if (kinds[s], kinds[o]) in (("variant", "gene"), ("drug", "gene")) and (s in nodes or o in nodes):
            if kinds[s] == "drug" and s not in nodes:
                continue
            add(s, o, label)
    return nodes, edges


def shows_cases(net: Network) -> bool:
    """Whether the view draws each case (at most MAX_CASES of them), or the entities only."""
    return len(net.of_kind("case")) <= MAX_CASES


def graph_view(net: Network, url_of: dict[str, str], label_of: dict[str, tuple[str, str]]) -> GraphView:
    """Lay out the network. ``label_of`` maps an IRI to (short label, full title)."""
    with_cases = shows_cases(net)
    nodes, edges = _contract(net, with_cases)
    hidden: dict[str, int] = {}
    if not with_cases:
        # Keep the most connected entities of each kind; say how many were left out.
        weight: dict[str, int] = defaultdict(int)
        for (a, b), (_l, w) in edges.items():
            weight[a] += w
            weight[b] += w
        by_kind: dict[str, list[str]] = defaultdict(list)
        for iri, kind in nodes.items():
            by_kind[kind].append(iri)
        keep: set[str] = set()
        for kind, iris in by_kind.items():
            ranked = sorted(iris, key=lambda i: (-weight[i], i))
            keep.update(ranked[:MAX_PER_KIND])
            if len(ranked) > MAX_PER_KIND:
                hidden[kind] = len(ranked) - MAX_PER_KIND
        nodes = {i: k for i, k in nodes.items() if i in keep}
        edges = {e: v for e, v in edges.items() if e[0] in keep and e[1] in keep}

    layout = ([["source"], ["case"], ["drug", "disease", "gene", "variant", "measure", "phenotype"]] if with_cases
              else [["disease"], ["drug"], ["gene", "variant", "measure", "phenotype"]])
    column_of = {kind: i for i, kinds in enumerate(layout) for kind in kinds}
    nbrs: dict[str, list[str]] = defaultdict(list)
    for a, b in edges:
        nbrs[a].append(b)
        nbrs[b].append(a)

    def key(iri: str) -> tuple[str, str]:
        return (label_of.get(iri, (iri, iri))[0].lower(), iri)

    # Initial order: by label; then barycentre sweeps, left to right and back.
    order: dict[str, list[str]] = {kind: sorted((i for i, k in nodes.items() if k == kind), key=key) for kinds in layout for kind in kinds}
    pos: dict[str, float] = {}

    def place() -> None:
        for kinds in layout:
            y = 0
            for kind in kinds:
                for iri in order[kind]:
                    pos[iri] = y
                    y += 1
                y += 1.5 if order[kind] else 0

    place()
    for sweep in range(6):
        cols = range(len(layout)) if sweep % 2 == 0 else reversed(range(len(layout)))
        for ci in cols:
            for kind in layout[ci]:
                def bary(iri: str, ci: int = ci) -> tuple[float, str, str]:
                    ys = [pos[n] for n in nbrs[iri] if column_of.get(nodes[n]) != ci]
                    return (sum(ys) / len(ys) if ys else pos[iri], *key(iri))
                order[kind] = sorted(order[kind], key=bary)
            place()

    row_h = 24
    col_x = [150.0, 470.0, 790.0]
    rows = max((sum(len(order[k]) for k in kinds) + 1.5 * sum(1 for k in kinds if order[k]) for kinds in layout), default=1)
    height = int(rows * row_h + 60)
    out_nodes: list[Node] = []
    ids: dict[str, str] = {}
    groups: list[tuple[float, float, str]] = []
    for ci, kinds in enumerate(layout):
        column_rows = sum(len(order[k]) for k in kinds) + 1.5 * sum(1 for k in kinds if order[k])
        offset = (rows - column_rows) / 2  # centre each column
        for kind in kinds:
            if len(kinds) > 1 and order[kind]:
                groups.append((col_x[ci] - 8, round(60 + (pos[order[kind][0]] + offset) * row_h - 14, 1), KIND_LABELS[kind]))
            for iri in order[kind]:
                nid = f"n{len(ids)}"
                ids[iri] = nid
                short, title = label_of.get(iri, (net.label(iri), net.label(iri)))
                out_nodes.append(Node(nid, iri, kind, short, title, url_of.get(iri), col_x[ci], round(60 + (pos[iri] + offset) * row_h, 1)))
    out_edges = [(ids[a], ids[b], label, w) for (a, b), (label, w) in sorted(edges.items())]
    columns = [(col_x[i], KIND_LABELS[kinds[0]]) for i, kinds in enumerate(layout) if len(kinds) == 1]
    return GraphView("cases" if with_cases else "entities", out_nodes, out_edges, 1000, height + 20, columns, hidden, groups)
