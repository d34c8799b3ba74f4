"""Every quote in kb/ appears verbatim in the source text it cites (whitespace aside)."""

from __future__ import annotations

import pytest

from evidence.validate import normalise_text
from tests.conftest import texts_required


def _claims(obj, path="", out=None):
    out = [] if out is None else out
    from pydantic import BaseModel

    from evidence.schema import Claim

    if isinstance(obj, Claim):
        out.append((path, obj))
    elif isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            _claims(getattr(obj, name), f"{path}.{name}" if path else name, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _claims(v, f"{path}[{i}]", out)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _claims(v, f"{path}.{k}" if path else k, out)
    return out


def _all_quotes(kb):
    for cid, case in sorted(kb.cases.items()):
        for path, c in _claims(case):
            if c.quote:
                yield f"kb/{cid}.yaml:{path}", c
    for sid, src in sorted(kb.sources.items()):
        for path, c in _claims(src):
            if c.quote:
                yield f"kb/sources/{sid}.yaml:{path}", c
    for kind, terms in sorted(kb.vocab.items()):
        for path, c in _claims(terms):
            if c.quote:
                yield f"kb/vocabulary/{kind}.yaml:{path}", c


def test_every_quote_is_verbatim_in_its_source(kb, config):
    folder = config.texts_dir()
    if folder is None:
        if texts_required():
            pytest.fail("the source texts are missing; set EVIDENCE_SOURCE_TEXTS (.ci/run sets it to ../shared/seeds)")
        pytest.skip("source texts not available here: set EVIDENCE_SOURCE_TEXTS to check quotes")
    quotes = list(_all_quotes(kb))
    assert len(quotes) >= 30
    bad = []
    for where, c in quotes:
        src = kb.sources[c.source]
        if not src.text_file:
            bad.append(f"{where}: quotes {c.source}, of which we hold no text")
            continue
        text = normalise_text((folder / src.text_file).read_text(encoding="utf-8"))
        if normalise_text(c.quote) not in text:
            bad.append(f"{where}: {c.quote!r} not in {src.text_file}")
    assert not bad, "\n".join(bad)


def test_facts_retold_by_heymann_cite_the_commentary(kb):
    """Wenzel's case is known only through Heymann: its claims cite the text we hold."""
    sources = {c.source for _, c in _claims(kb.cases["wenzel-2016"])}
    assert sources == {"heymann-2016"}
    assert kb.sources["heymann-2016"].reports_on == "wenzel-2016"
    assert kb.sources["wenzel-2016"].text_held == "none"


def test_a_source_text_that_cannot_be_read_is_a_warning_naming_it_never_a_traceback(config, monkeypatch):
    """A text in the folder that cannot be read (its permissions, a disk error): each quote checked
    against it gets the quote-text-missing warning, and validation goes on."""
    from pathlib import Path

    from evidence.cache import BuildCache
    from evidence.validate import validate_kb

    if not texts_required() and config.texts_dir() is None:
        pytest.skip("the source texts are not here")
    real = Path.read_text
    name = "001_51c7163df5526276.txt"  # Briand et al. 2019

    def unreadable(self, *args, **kwargs):
        if self.name == name:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", unreadable)
    kb = validate_kb(config, cache=BuildCache(None))
    missing = [d for d in kb.diagnostics if d.rule == "quote-text-missing"]
    assert missing and all(d.level == "warning" and name in d.message and "cannot be read" in d.message for d in missing)
    assert kb.ok, "warnings only"
