"""What a rebuild takes from the previous build's entity and case pages without working them out again.

A *unit* is an entity that has a page (a drug, gene, variant, condition, outcome measure or
phenotype) with the numbered pages of its long lists, or a source's page. Each of its pages is
made from a key over what it shows (:meth:`evidence.site_pages.SitePages.entity_page`; a source
page's shows the cases citing it and counts their claims), and a rebuild after one edit of a
10,000-case kb worked out every unit's lists and keys to find the few that changed (about 1 s:
440 entities, every row of their lists fingerprinted, and the source pages), and every case
page's key (about 0.5 s, with its related cases put together).

The memo, kept in the build cache, holds what the last build found: each unit's pages with their
keys; each case's file hash, the units its facts *name*, and its page's key. A case names a unit
when a text of its site facts (:class:`evidence.site_facts.SiteFacts`) is the unit's key. Every
list of an entity page is indexed by such a text (:class:`evidence.site_model.SiteModel`: a
treatment's drug, a genotype's gene and variant, a diagnosis, an outcome's measure, an adverse
event's term, a source it cites, ...), so a case that does not name a unit is in none of its
lists, and adds nothing to its counts (a claim cites one of its case's sources: rule
claim-source).

A rebuild works a unit out again when a case that named it before, or names it now, changed (its
file's hash differs, or it was added or deleted), or when the memo has no record of it. It works
a case page's key out again when the case changed, or when its related cases are not the ones,
with the same scores, that the memo's key was made with, or one of them changed (its title is on
the page). The related cases' scores are the previous build's (kept by
:meth:`~evidence.site_pages.SitePages.rank_related`, tagged per build; the memo notes the tag, and
a memo whose tag is not theirs has no case keys). The other pages are linked from the previous
build under the keys the memo holds, each checked against the previous build's record
(:meth:`evidence.outputs.Outputs.old`), which has the key of every file it wrote. The memo holds
only while what every entity and case page shows besides is unchanged (its ``context``: the
templates, the settings, the vocabulary, the code, the number of kb files, every source file and
every variant's name); otherwise every page is worked out again, as without it.

``EVIDENCE_CHECK_MEMO=1`` (the tests set it) works out every key as well, and fails the build
when the memo's differ: a memo that served a stale key would say so there.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

from .cache import BuildCache, code_digest, digest

__all__ = ["UNIT_KINDS", "CHECK_ENV", "Unit", "Page", "PageMemo", "texts_of", "names_index", "units_named", "check_enabled"]

UNIT_KINDS = ("drugs", "genes", "variants", "diseases", "measures", "phenotypes", "sources")  # in the order their pages are made
CHECK_ENV = "EVIDENCE_CHECK_MEMO"
_STAGE = "page-memo"

Unit = tuple[str, str]  # (kind, key)
Page = tuple[str, str, str, str]  # (file in the site, template, origin, key)


def texts_of(x: Any, out: set[str]) -> set[str]:
    """Every text in ``x``, a case's site facts (nested tuples of texts, numbers and dates)."""
    stack = [x]
    while stack:
        y = stack.pop()
        if type(y) is str:
            out.add(y)
        elif isinstance(y, tuple):
            stack.extend(y)
    return out


class PageMemo:
    """The units' pages, the cases' names of units and the keys of the case pages, as the last
    build found them (see the module)."""

    def __init__(self, context: str, units: dict[Unit, tuple[Page, ...]], cases: dict[str, tuple[str, frozenset[Unit]]],
                 case_keys: dict[str, str] | None = None, related: str = ""):
        self.context = context
        self.units = units  # unit -> its pages, in the order they were made
        self.cases = cases  # case id -> (its file's hash, the units it names)
        self.case_keys = case_keys or {}  # case id -> the key of its page
        self.related = related  # the related cases' state the case keys were made with (SitePages.rank_related)
        self.dirty: set[Unit] | None = None  # the units to work out again (None: every one); see changed()
        self.edited: set[str] = set()  # the cases changed, added or deleted since (see changed())

    # -- the state in the build cache: one entry per version of the code, replaced by every build
    @staticmethod
    def _key() -> str:
        return digest(_STAGE, code_digest())

    @classmethod
    def load(cls, cache: BuildCache | None, context: str) -> PageMemo | None:
        """The last build's memo, if it was made in this ``context``; None otherwise."""
        if cache is None or not cache.enabled:
            return None
        state = cache.get(_STAGE, cls._key())
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == context):
            return None
        _context, names, units, cases, related = state
        if not (isinstance(names, list) and isinstance(units, dict) and isinstance(cases, dict) and isinstance(related, str)):
            return None
        try:
            named = {cid: (sha, frozenset(names[i] for i in ix)) for cid, (sha, ix, _key) in cases.items()}
            keys = {cid: key for cid, (_sha, _ix, key) in cases.items() if key}
        except (TypeError, ValueError, IndexError):
            return None
        return cls(context, units, named, keys, related)

    def save(self, cache: BuildCache | None) -> None:
        if cache is None or not cache.enabled:
            return
        names = sorted({u for _sha, us in self.cases.values() for u in us})
        index = {u: i for i, u in enumerate(names)}
        # A unit a case names is stored as its place in ``names``: 10,000 cases name about 80,000.
        cases = {cid: (sha, tuple(sorted(index[u] for u in us)), self.case_keys.get(cid, "")) for cid, (sha, us) in sorted(self.cases.items())}
        cache.put(_STAGE, self._key(), (self.context, names, dict(sorted(self.units.items())), cases, self.related))

    # -- what changed
    def changed(self, shas: dict[str, str], named: Any) -> set[Unit]:
        """The units to work out again, given every case's file hash now (``shas``) and
        ``named(case id)``, the units a case names now; the memo's cases are brought up to date."""
        dirty: set[Unit] = set()
        self.edited = {c for c, sha in shas.items() if self.cases.get(c, ("",))[0] != sha} | {c for c in self.cases if c not in shas}
        for cid in sorted(self.edited):
            self.case_keys.pop(cid, None)
            old = self.cases.pop(cid, None)
            if old is not None:
                dirty |= old[1]
            if cid in shas:
                now = frozenset(named(cid))
                dirty |= now
                self.cases[cid] = (shas[cid], now)
        self.dirty = dirty
        return dirty

    def case_key(self, cid: str) -> str | None:
        """The key of a case's page as the last build made it, unless the case changed since.
        The page also shows its related cases: the caller checks that they are the same, with
        the same scores, and that none of them changed (SitePages._memo_case_key)."""
        return None if self.dirty is None or cid in self.edited else self.case_keys.get(cid)

    def clean(self, unit: Unit) -> tuple[Page, ...] | None:
        """The pages of ``unit`` as the last build made them, if no change touches it."""
        if self.dirty is None or unit in self.dirty:
            return None
        return self.units.get(unit)


def names_index(urls: Iterable[Unit]) -> dict[str, tuple[Unit, ...]]:
    """Each key of a unit -> the units with that key (a text may be, say, a drug's and a phenotype's)."""
    index: dict[str, list[Unit]] = {}
    for kind, key in urls:
        if kind in UNIT_KINDS:
            index.setdefault(key, []).append((kind, key))
    return {k: tuple(v) for k, v in index.items()}


def units_named(facts: Any, index: dict[str, tuple[Unit, ...]]) -> Iterator[Unit]:
    """The units a case's site facts name (see the module)."""
    for text in texts_of(facts, set()):
        yield from index.get(text, ())


def check_enabled() -> bool:
    return os.environ.get(CHECK_ENV, "") not in ("", "0")
