"""A build that fails half-way, or is interrupted, leaves the previous output exactly as it was
and no partial folder behind (the build writes into a temporary folder, then swaps it in)."""

from __future__ import annotations

import pytest

from evidence import pipeline
from evidence.pipeline import build


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("fault", [RuntimeError("disk full"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_failure_while_writing_keeps_the_previous_site(config, site, tmp_path, monkeypatch, fault):
    out = tmp_path / "_site"
    build(config, out)
    before = _snapshot(out)
    assert before

    def broken(*args, **kwargs):
        raise fault

    monkeypatch.setattr(pipeline, "write_exports", broken)
    with pytest.raises(type(fault)):
        build(config, out)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["_site"], "a temporary build folder was left behind"


def test_failure_on_a_first_build_leaves_nothing(config, tmp_path, monkeypatch):
    out = tmp_path / "_site"
    monkeypatch.setattr(pipeline, "write_exports", lambda *a, **k: (_ for _ in ()).throw(OSError("no space left")))
    with pytest.raises(OSError):
        build(config, out)
    assert list(tmp_path.iterdir()) == []
