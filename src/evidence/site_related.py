"""Related cases for every case at once, with the same answer as :func:`evidence.graph.related_cases`.

``related_cases`` compares one case with every other case: called for each case page that is
quadratic (10,000 cases: 10^8 set operations). Here every case's entity set is computed once,
and the comparison is split in two, which gives the same scores and the same order:

- entities shared by many cases ("common": drugs, genes, conditions) are few, so the cases are
  grouped by (their common entities, the size of their entity set); every case of a group has the
  same Jaccard score against a given case, computed once per group;
- cases that share a rare entity (a variant) are found through an inverted index and scored one
  by one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import networkx as nx

__all__ = ["case_entities", "all_related"]

_PATIENT_KINDS = ("drug", "gene", "variant", "disease")


def case_entities(g: nx.MultiDiGraph) -> dict[str, frozenset[str]]:
    """Case IRI -> the drugs, genes, variants and diseases it involves (as ``related_cases`` sees them)."""
    kinds = g.nodes
    out: dict[str, frozenset[str]] = {}
    for case, data in g.nodes(data=True):
        if data.get("kind") != "case":
            continue
        found: set[str] = set()
        for _, x in g.out_edges(case):
            kx = kinds[x]["kind"]
            if kx == "disease":
                found.add(x)
            elif kx == "patient":
                for _, y in g.out_edges(x):
                    if kinds[y]["kind"] in _PATIENT_KINDS:
                        found.add(y)
        out[case] = frozenset(found)
    return out


def all_related(g: nx.MultiDiGraph, limit: int = 10, common_size: int = 48, max_common: int = 24) -> dict[str, list[tuple[str, float, list[str]]]]:
    """Case IRI -> [(case IRI, Jaccard score, labels of what they share)], best first, ties by IRI."""
    ents = case_entities(g)
    cases = sorted(ents)
    posting: dict[str, list[str]] = defaultdict(list)
    for c in cases:
        for x in ents[c]:
            posting[x].append(c)
    by_size = sorted(posting, key=lambda x: (-len(posting[x]), x))
    common = frozenset(x for x in by_size[:max_common] if len(posting[x]) > common_size)
    groups: dict[tuple[frozenset[str], int], list[str]] = defaultdict(list)
    for c in cases:  # sorted, so each group's members are in IRI order
        groups[(ents[c] & common, len(ents[c]))].append(c)
    group_items = sorted(groups.items(), key=lambda kv: (sorted(kv[0][0]), kv[0][1]))
    labels = {n: d.get("label", n) for n, d in g.nodes(data=True)}

    result: dict[str, list[tuple[str, float, list[str]]]] = {}
    for a in cases:
        mine = ents[a]
        a_len = len(mine)
        # Cases that share a rare entity: exact scores.
        exact: dict[str, float] = {}
        for x in mine - common:
            for b in posting[x]:
                if b != a and b not in exact:
                    theirs = ents[b]
                    exact[b] = len(mine & theirs) / len(mine | theirs)
        candidates: list[tuple[float, str]] = [(-s, b) for b, s in exact.items()]
        mine_common = mine & common
        scored_groups: list[tuple[float, list[str]]] = []
        for (gcommon, b_len), members in group_items:
            shared = len(mine_common & gcommon)
            if shared:
                scored_groups.append((shared / (a_len + b_len - shared), members))
        scored_groups.sort(key=lambda sg: -sg[0])
        # Walk groups from the best score down; stop once `limit` candidates are certain and the
        # next group scores lower than all of them.
        taken = 0
        threshold: float | None = None
        for score, members in scored_groups:
            if threshold is not None and score < threshold:
                break
            picked = 0
            for b in members:
                if b == a or b in exact:
                    continue
                candidates.append((-score, b))
                picked += 1
                if picked >= limit:
                    break
            taken += picked
            if taken >= limit and threshold is None:
                threshold = score
        candidates.sort()
        top = candidates[:limit]
        result[a] = [(b, -neg, sorted(labels[x] for x in (mine & ents[b]))) for neg, b in top]
    return result


def related_view(related: list[tuple[str, float, list[str]]], iri_url: dict[str, str], titles: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a template: url, title, score (as a percentage), what is shared."""
    out = []
    for iri, score, shared in related:
        out.append({"url": iri_url.get(iri), "title": titles.get(iri, iri), "score": round(score * 100), "shared": shared})
    return out
