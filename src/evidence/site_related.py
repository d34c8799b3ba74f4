"""Related cases for every case at once, with the same answer as :func:`evidence.graph.related_cases`.

``related_cases`` compares one case with every other case: called for each case page that is
quadratic (10,000 cases: 10^8 set operations). Here every case's entity set is computed once,
and the comparison is split in two, which gives the same scores and the same order:

- entities shared by many cases ("common": drugs, genes, conditions) are few, so the cases are
  grouped by (their common entities, the size of their entity set); every case of a group has the
  same Jaccard score against a given case, computed once per group;
- cases that share a rare entity (a variant) are found through an inverted index and scored one
  by one.

A rebuild starts from the previous build's answer (:func:`related_scores` with ``previous``): a
case's list depends only on the entity sets, so only the cases whose list an edit can change are
ranked again: the edited cases, the cases that listed one of them, and the cases that an edited
case now scores high enough to enter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from .graph import Network

__all__ = ["case_entities", "all_related", "related_scores", "Related", "Scores"]

_PATIENT_KINDS = ("drug", "gene", "variant", "disease")

Entities = dict[str, frozenset[str]]  # case IRI -> what it involves
Scores = dict[str, list[tuple[str, float]]]  # case IRI -> [(case IRI, Jaccard score)], best first, ties by IRI


def case_entities(net: Network) -> Entities:
    """Case IRI -> the drugs, genes, variants and diseases it involves (as ``related_cases`` sees them)."""
    nodes = net.nodes
    out: dict[str, frozenset[str]] = {}
    for case in net.of_kind("case"):
        found: set[str] = set()
        for _, x, _l in net.out(case):
            kx = nodes[x][0]
            if kx == "disease":
                found.add(x)
            elif kx == "patient":
                found.update(y for _, y, _l in net.out(x) if nodes[y][0] in _PATIENT_KINDS)
        out[case] = frozenset(found)
    return out


class Related(Mapping[str, list[tuple[str, float, list[str]]]]):
    """Case IRI -> [(case IRI, Jaccard score, labels of what they share)], best first, ties by IRI.

    A case's list is put together when it is first asked for: a rebuild after one edit asks for
    the few of the case pages it works out again (see evidence.site_memo), not for 10,000."""

    def __init__(self, ents: Entities, scores: Scores, labels: dict[str, str]):
        self.ents, self.scores, self.labels = ents, scores, labels
        self._made: dict[str, list[tuple[str, float, list[str]]]] = {}

    def __getitem__(self, a: str) -> list[tuple[str, float, list[str]]]:
        got = self._made.get(a)
        if got is None:
            mine, ents, labels = self.ents[a], self.ents, self.labels
            got = self._made[a] = [(b, s, sorted(labels[x] for x in (mine & ents[b]))) for b, s in self.scores[a]]
        return got

    def __iter__(self) -> Iterator[str]:
        return iter(self.scores)

    def __len__(self) -> int:
        return len(self.scores)


def all_related(net: Network, limit: int = 10, common_size: int = 48, max_common: int = 24,
                previous: tuple[Entities, Scores] | None = None) -> tuple[Related, tuple[Entities, Scores]]:
    """Every case's related cases (:class:`Related`), and the state to pass as ``previous`` to
    the next build's call. The answer holds the labels of the entities it needs, not the network."""
    ents = case_entities(net)
    scores = related_scores(ents, limit, previous, common_size, max_common)
    nodes = net.nodes
    labels = {x: nodes[x][1] for x in set().union(*ents.values())}
    return Related(ents, scores, labels), (ents, scores)


def related_scores(ents: Entities, limit: int = 10, previous: tuple[Entities, Scores] | None = None,
                   common_size: int = 48, max_common: int = 24, max_changed: float = 0.05) -> Scores:
    """Every case's best ``limit`` other cases by Jaccard score of their entity sets (only cases
    that share something), best first, ties by IRI. With ``previous`` (the entity sets and scores
    of an earlier call, with the same ``limit``), only the lists that can differ are ranked again;
    the answer is the same as without. When more than ``max_changed`` of the cases changed (a
    vocabulary edit, another kb's state), comparing each case with every changed one would cost
    more than ranking every case, which is done instead."""
    redo = set(ents)
    result: Scores = {}
    changed: set[str] = set()
    if previous is not None:
        old_ents, old_scores = previous
        changed = {c for c in set(ents) | set(old_ents) if ents.get(c) != old_ents.get(c)}
    if previous is not None and len(changed) <= max_changed * max(len(ents), 1):
        present = sorted(c for c in changed if c in ents)
        redo = set(present)
        for a, mine in ents.items():
            top = old_scores.get(a)
            if a in redo or top is None or any(b in changed for b, _ in top):
                redo.add(a)
                continue
            # An edited case enters a's list if it now beats the last of it (or fills a short one).
            last = (-top[-1][1], top[-1][0]) if len(top) >= limit else None
            for c in present:
                if c == a:
                    continue
                theirs = ents[c]
                shared = len(mine & theirs)
                if shared and (last is None or (-(shared / len(mine | theirs)), c) < last):
                    redo.add(a)
                    break
            else:
                result[a] = top
    if redo:
        rank = _Ranker(ents, common_size, max_common)
        for a in sorted(redo):
            result[a] = rank.top(a, limit)
    return {a: result[a] for a in sorted(ents)}


class _Ranker:
    """The indexes that rank one case's related cases without comparing it with every case."""

    def __init__(self, ents: Entities, common_size: int, max_common: int):
        self.ents = ents
        cases = sorted(ents)
        posting: dict[str, list[str]] = defaultdict(list)
        for c in cases:
            for x in ents[c]:
                posting[x].append(c)
        self.posting = posting
        by_size = sorted(posting, key=lambda x: (-len(posting[x]), x))
        self.common = frozenset(x for x in by_size[:max_common] if len(posting[x]) > common_size)
        groups: dict[tuple[frozenset[str], int], list[str]] = defaultdict(list)
        for c in cases:  # sorted, so each group's members are in IRI order
            groups[(ents[c] & self.common, len(ents[c]))].append(c)
        self.groups = sorted(groups.items(), key=lambda kv: (sorted(kv[0][0]), kv[0][1]))
        # A case's scores against the groups depend only on its common entities and the size of
        # its entity set: worked out once for each such pair, not for each case. At 10,000
        # synthetic cases (816 groups) ranking every case took 4.2 s, scoring every group again.
        self._scored: dict[tuple[frozenset[str], int], list[tuple[float, list[str]]]] = {}

    def _scored_groups(self, mine_common: frozenset[str], a_len: int) -> list[tuple[float, list[str]]]:
        """The groups that share a common entity with such a case, with their score, best first
        (groups of one score in their order)."""
        key = (mine_common, a_len)
        found = self._scored.get(key)
        if found is None:
            found = []
            for (gcommon, b_len), members in self.groups:
                shared = len(mine_common & gcommon)
                if shared:
                    found.append((shared / (a_len + b_len - shared), members))
            found.sort(key=lambda sg: -sg[0])
            self._scored[key] = found
        return found

    def top(self, a: str, limit: int) -> list[tuple[str, float]]:
        ents, common = self.ents, self.common
        mine = ents[a]
        a_len = len(mine)
        # Cases that share a rare entity: exact scores.
        exact: dict[str, float] = {}
        for x in mine - common:
            for b in self.posting[x]:
                if b != a and b not in exact:
                    theirs = ents[b]
                    exact[b] = len(mine & theirs) / len(mine | theirs)
        candidates: list[tuple[float, str]] = [(-s, b) for b, s in exact.items()]
        scored_groups = self._scored_groups(mine & common, a_len)
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
        return [(b, -neg) for neg, b in candidates[:limit]]


def related_view(related: list[tuple[str, float, list[str]]], iri_url: dict[str, str], titles: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows for a template: url, title, score (as a percentage), what is shared."""
    out = []
    for iri, score, shared in related:
        out.append({"url": iri_url.get(iri), "title": titles.get(iri, iri), "score": round(score * 100), "shared": shared})
    return out
