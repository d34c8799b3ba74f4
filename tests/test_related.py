"""Related cases, ranked again only where an edit can change them (site_related.related_scores).

The reference is the ranking from scratch: for every case, the other cases that share something
with it, by Jaccard score of their entity sets, best first, ties by IRI, the first ``limit``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence.site_related import related_scores

ENTITIES = [f"e{i}" for i in range(12)]  # few entities, so that cases share a lot and scores tie


def _reference(ents, limit):
    out = {}
    for a in sorted(ents):
        scored = []
        for b in ents:
            if b != a and ents[a] & ents[b]:
                scored.append((-(len(ents[a] & ents[b]) / len(ents[a] | ents[b])), b))
        out[a] = [(b, -s) for s, b in sorted(scored)[:limit]]
    return out


entity_sets = st.frozensets(st.sampled_from(ENTITIES), min_size=0, max_size=5)
kbs = st.dictionaries(st.sampled_from([f"case/{i:02d}" for i in range(40)]), entity_sets, min_size=1, max_size=40)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=kbs, after_edits=st.dictionaries(st.sampled_from([f"case/{i:02d}" for i in range(44)]), st.none() | entity_sets, max_size=6),
       limit=st.sampled_from([1, 3, 10]), common_size=st.sampled_from([2, 48]))
def test_ranking_again_from_the_previous_answer_is_ranking_from_scratch(before, after_edits, limit, common_size):
    """Cases edited, added (a new IRI) and deleted (None) between two builds."""
    after = dict(before)
    for c, e in after_edits.items():
        if e is None:
            after.pop(c, None)
        else:
            after[c] = e
    old = related_scores(before, limit, common_size=common_size, max_common=4)
    assert old == _reference(before, limit)
    for share in (1.0, 0.05):  # always from the previous answer; or from scratch when many changed
        assert related_scores(after, limit, previous=(before, old), common_size=common_size, max_common=4, max_changed=share) == _reference(after, limit)


def test_an_edit_ranks_few_cases_again(monkeypatch):
    """After one edit only the cases whose list can change are ranked again, not every case."""
    import evidence.site_related as site_related

    ents = {f"case/{i:03d}": frozenset({f"drug{i % 3}", f"variant{i}"}) for i in range(300)}
    old = related_scores(ents, 10)
    ranked = []
    real = site_related._Ranker.top
    monkeypatch.setattr(site_related._Ranker, "top", lambda self, a, limit: (ranked.append(a), real(self, a, limit))[1])
    edited = dict(ents)
    edited["case/150"] = frozenset({"drug1", "variant7"})  # now the same as case/007
    new = related_scores(edited, 10, previous=(ents, old))
    assert new == _reference(edited, 10)
    assert sorted(ranked) == ["case/007", "case/150"]
