"""Every broken file in tests/data/invalid/ gives exactly the diagnostics its header promises.

Each fixture breaks one rule and starts with a comment header::

    # <what is broken>
    # xfail: <why>               optional: a known validator bug; the expect lines are what it
    #                            should say, and the test turns red the day it does (strict)
    # requires: source-texts     optional: the check needs the folder of source texts
    # expect: <Diagnostic.text()> one line per diagnostic, in the validator's (sorted) order

A fixture is validated together with the real kb, so it may cite kb sources and vocabulary.
Fixtures in a folder named sources/ are source records, in vocabulary/ vocabulary files (which
replace the kb's file of that kind for the run); every other fixture is a case file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from evidence.config import load_config
from evidence.errors import Diagnostic
from evidence.validate import validate_kb

ROOT = Path(__file__).resolve().parents[1]
INVALID = ROOT / "tests" / "data" / "invalid"
FIXTURES = sorted(p for p in INVALID.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
IDS = [p.relative_to(INVALID).as_posix() for p in FIXTURES]
MIN_FIXTURES = 25


@dataclass
class Header:
    description: str = ""
    expect: list[str] = field(default_factory=list)
    xfail: str = ""
    requires: set[str] = field(default_factory=set)


def read_header(path: Path) -> Header:
    """The leading comment lines; read as bytes, since some fixtures are not valid UTF-8."""
    h = Header()
    for raw in path.read_bytes().splitlines():
        if not raw.startswith(b"#"):
            break
        line = raw.decode("utf-8", errors="replace")[1:].strip()
        key, sep, value = line.partition(": ")
        if sep and key == "expect":
            h.expect.append(value)
        elif sep and key == "xfail":
            h.xfail = value
        elif sep and key == "requires":
            h.requires.update(v.strip() for v in value.split(","))
        elif not h.description:
            h.description = line
    return h


@functools.cache
def _config():
    return load_config(ROOT)


def display(path: Path) -> str:
    return path.resolve().relative_to(ROOT.resolve()).as_posix()


@functools.cache
def diagnostics_for(path: Path) -> tuple[Diagnostic, ...]:
    """The diagnostics of ``path`` when it is validated together with the real kb."""
    kb = validate_kb(_config(), [path])
    return tuple(d for d in kb.diagnostics if d.path == display(path))


def _skip_without_texts(h: Header) -> None:
    if "source-texts" in h.requires and _config().texts_dir() is None:
        reason = "the source texts are not available (set EVIDENCE_SOURCE_TEXTS or see evidence.toml source_texts); quotes cannot be checked"
        if os.environ.get("CI", "").lower() == "true":  # as in conftest.texts_required(): CI must have them
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
def test_fixture_gives_its_expected_diagnostics(path: Path, request: pytest.FixtureRequest) -> None:
    h = read_header(path)
    assert h.expect, f"{display(path)} has no '# expect:' line in its header"
    _skip_without_texts(h)
    if h.xfail:
        request.applymarker(pytest.mark.xfail(reason=h.xfail, strict=True))
    got = [d.text() for d in diagnostics_for(path)]
    assert got == h.expect


@pytest.mark.parametrize("path", FIXTURES, ids=IDS)
def test_fixture_gives_at_least_one_error(path: Path) -> None:
    h = read_header(path)
    _skip_without_texts(h)
    errors = [d for d in diagnostics_for(path) if d.level == "error"]
    if not errors and h.xfail:
        pytest.xfail(h.xfail)
    assert errors, f"{display(path)} validates without an error"
    assert any(": error: " in line for line in h.expect), "the header promises no error"


def test_there_are_enough_fixtures() -> None:
    assert len(FIXTURES) >= MIN_FIXTURES


def test_headers_name_their_own_file() -> None:
    for path in FIXTURES:
        h = read_header(path)
        assert h.description, f"{display(path)}: the header's first line should say what is broken"
        for line in h.expect:
            assert line.startswith(display(path) + ":"), f"{display(path)}: expect line names another file: {line}"


def test_fixture_ids_match_their_file_names() -> None:
    """Only the id-filename fixture may break the id rule; the others would test two rules."""
    for path in FIXTURES:
        if path.name == "id-filename.yaml" or path.parent.name == "vocabulary":
            continue
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, ValueError):
            continue  # the YAML-level fixtures are not meant to load
        if isinstance(data, dict) and "id" in data:
            assert data["id"] == path.stem, display(path)


_CASE_CITING_BROKEN_SOURCE = """\
id: cites-broken-source
title: A case that quotes a source whose own record is broken
sources:
  - {source: zimmermann-2019, role: primary}
  - {source: broken-source, role: secondary}
study_design: case report
evidence_level: {scale: civic, level: C}
conditions: [familial-chilblain-lupus]
evidence:
  - source: broken-source
    locator: Abstract
    quote: "any words at all"
patients:
  - id: P1
    age: not reported
    sex: not reported
    genotype: not reported
    diagnoses: [familial-chilblain-lupus]
    evidence:
      - {source: zimmermann-2019, locator: Abstract}
    treatments:
      - id: T1
        drug: baricitinib
        indication: familial-chilblain-lupus
        dose: not reported
        frequency: not reported
        route: not reported
        duration: not reported
        evidence:
          - {source: zimmermann-2019, locator: Abstract}
curation:
  curators: [{name: test curator}]
  created: 2026-11-22
"""

_BROKEN_SOURCE = """\
id: broken-source
kind: commentary
title: A source record with a year that is not a number
authors: [Tester T]
authors_complete: true
year: twenty
reports_on: zimmermann-2019
text_held: full text
text_file: broken-source.txt
curation:
  curators: [{name: test curator}]
  created: 2026-11-22
"""


def test_a_quote_citing_a_broken_source_does_not_crash(tmp_path: Path) -> None:
    (tmp_path / "sources").mkdir()
    source = tmp_path / "sources" / "broken-source.yaml"
    case = tmp_path / "cites-broken-source.yaml"
    source.write_text(_BROKEN_SOURCE, encoding="utf-8")
    case.write_text(_CASE_CITING_BROKEN_SOURCE, encoding="utf-8")
    kb = validate_kb(_config(), [source, case])
    by_file = {p: [d.text() for d in kb.diagnostics if d.path == str(p)] for p in (source, case)}
    assert len(by_file[source]) == 1 and "year: wrong type" in by_file[source][0]
    assert by_file[case] == []  # the source's own error is enough; the case is not blamed for it


def test_reading_in_worker_processes_gives_the_same_models_and_diagnostics(tmp_path, monkeypatch):
    """Case and source files the cache does not have are parsed and checked against the schema in
    forked workers (from 200 files on): the models and every diagnostic, with its line, are those
    of reading the files one by one in this process, broken files included."""
    import sys

    import evidence.validate as validate_module
    from evidence.config import load_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import synth

    synth.generate(tmp_path / "kb", 110, seed=5)  # 110 cases and their sources: over 200 files
    cases = sorted((tmp_path / "kb" / "kb").glob("synth-*.yaml"))
    (cases[3]).write_bytes(cases[3].read_bytes().replace(b"title: ", b"titel: ", 1))  # a schema error
    (cases[50]).write_bytes(b"id: broken\n  - not: [yaml\n")  # a YAML error
    (cases[70]).write_bytes(cases[70].read_bytes() + b"\xff\xfe")  # not UTF-8
    (cases[90]).write_bytes(cases[90].read_bytes().replace(b"source: ", b"source: nowhere-", 1))  # a cross-file error
    config = load_config(tmp_path / "kb")
    forked = []
    real = validate_module.parallel_imap
    monkeypatch.setattr(validate_module, "parallel_imap", lambda fn, items, **kw: (forked.append(len(items)), real(fn, items, **kw))[1])
    parallel = validate_module.validate_kb(config)
    assert forked and forked[0] >= 200
    monkeypatch.setattr(validate_module, "parallel_imap", lambda fn, items, shared: (fn(shared, i) for i in items))
    serial = validate_module.validate_kb(config)

    def shown(kb):
        return [(d.path, d.line, d.col, d.level, d.rule, d.field, d.message) for d in kb.diagnostics]

    assert shown(parallel) == shown(serial)
    assert {d.path for d in parallel.diagnostics if d.level == "error"} >= {f"kb/{cases[i].name}" for i in (3, 50, 70, 90)}
    assert all(d.line > 0 for d in parallel.diagnostics)
    assert parallel.cases == serial.cases and parallel.sources == serial.sources and len(parallel.cases) >= 107
