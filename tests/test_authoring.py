"""`evidence new` (templates made from the schema) and `evidence fmt` (one layout, nothing lost)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import typing
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from evidence import schema as S
from evidence.authoring import FormatError, case_template, comments_of, format_text, source_template
from evidence.config import load_config
from evidence.load import discover, file_kind
from evidence.yamlio import load_yaml_text

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_config(ROOT)
KB_FILES = [p for _, p in discover(CONFIG.kb_dir)]
VALID = sorted((ROOT / "tests" / "data" / "valid").glob("*.yaml"))
INVALID = sorted((ROOT / "tests" / "data" / "invalid").rglob("*.yaml"))


def rel(p: Path) -> str:
    return p.resolve().relative_to(ROOT).as_posix()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "evidence", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the project's kb, to write into."""
    shutil.copy(ROOT / "evidence.toml", tmp_path / "evidence.toml")
    shutil.copytree(ROOT / "kb", tmp_path / "kb")
    return tmp_path


# ============================================================================ evidence new


def _models_and_fields(model: type[BaseModel], seen: set | None = None) -> dict[type[BaseModel], list[str]]:
    seen = seen if seen is not None else {}
    if model in seen:
        return seen
    seen[model] = list(model.model_fields)

    def walk(ann: typing.Any) -> None:
        origin = typing.get_origin(ann)
        if origin is not None:
            for a in typing.get_args(ann):
                walk(a)
        elif isinstance(ann, type) and issubclass(ann, BaseModel):
            _models_and_fields(ann, seen)

    for info in model.model_fields.values():
        walk(info.annotation)
    return seen


def _template_keys(text: str) -> set[str]:
    keys = set()
    for line in text.splitlines():
        m = re.match(r"^[\s#]*(?:-\s+)?([a-z_]+):(\s|$)", line)
        if m:
            keys.add(m.group(1))
    return keys


@pytest.mark.parametrize("model,make", [(S.CaseReport, case_template), (S.Source, source_template)], ids=["case", "source"])
def test_the_template_shows_every_field_of_the_schema_with_its_description(model, make):
    text = make("smith-2021")
    keys = _template_keys(text)
    for m, fields in _models_and_fields(model).items():
        missing = [f for f in fields if f not in keys]
        assert missing == [], f"{m.__name__}: fields missing from the template: {missing}"
        for name, info in m.model_fields.items():
            if info.description:
                assert info.description.rstrip(".") in text, f"{m.__name__}.{name}: its description is not in the template"


def test_the_template_is_valid_yaml_already_in_the_canonical_layout():
    for text, kind in ((case_template("smith-2021", patients=2), "case"), (source_template("smith-2021"), "source")):
        doc, problems = load_yaml_text(text)
        assert problems == [] and isinstance(doc.data, dict)
        assert format_text(text, kind) == text


def test_patients_option_writes_that_many_patient_blocks():
    data = yaml.safe_load(case_template("smith-2021", patients=3))
    assert [p["id"] for p in data["patients"]] == ["P1", "P2", "P3"]


def test_new_writes_both_files_and_refuses_to_overwrite(project: Path):
    r = run("new", "smith-2021", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["kb/smith-2021.yaml", "kb/sources/smith-2021.yaml"]
    assert "evidence validate kb/smith-2021.yaml kb/sources/smith-2021.yaml" in r.stderr
    case = project / "kb" / "smith-2021.yaml"
    case.write_text(case.read_text() + "# my work\n")
    before = case.read_text()
    again = run("new", "smith-2021", cwd=project)
    assert again.returncode == 1
    assert "kb/smith-2021.yaml already exists" in again.stderr
    assert case.read_text() == before


def test_new_refuses_an_existing_source_unless_asked_and_a_bad_id(project: Path):
    r = run("new", "zimmermann-2019", cwd=project)
    assert r.returncode == 1 and "already exists" in r.stderr
    r = run("new", "heymann-2016", cwd=project)
    assert r.returncode == 1 and "--existing-source" in r.stderr
    assert not (project / "kb" / "heymann-2016.yaml").exists()
    r = run("new", "heymann-2016", "--existing-source", cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["kb/heymann-2016.yaml"]
    for args in (["Smith 2021"], ["Smith-2024"], ["smith-2024", "--patients", "-1"], ["smith-2024", "--patients", "0"]):
        r = run("new", *args, cwd=project)
        assert r.returncode == 2, (args, r.stderr)  # a wrong command line, as the README says
        assert "not a usable id" in r.stderr or "not a number of patients from 1 to 100" in r.stderr, r.stderr
    assert not (project / "kb" / "smith-2024.yaml").exists()


def _placeholder_lines(text: str) -> dict[int, str]:
    """Line number -> field, for each required field the template leaves empty (a scalar or [])."""
    lines = text.splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(?:- )?([a-z_]+):( \[\])?  # .*; required$", line)
        if not m or line.lstrip().startswith("#"):
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        indent = len(line) - len(line.lstrip(" -"))
        deeper = len(nxt) - len(nxt.lstrip(" ")) > indent and not nxt.lstrip().startswith("- ") or nxt.startswith(" " * (indent + 2) + "- ")
        if not deeper:
            out[i + 1] = m.group(2)
    return out


def test_validate_reports_every_placeholder_of_the_untouched_template_at_its_line(project: Path):
    assert run("new", "smith-2021", cwd=project).returncode == 0
    r = run("validate", "--format", "json", "kb/smith-2021.yaml", "kb/sources/smith-2021.yaml", cwd=project)
    assert r.returncode == 1, r.stdout + r.stderr
    import json

    diags = json.loads(r.stdout)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    for path in ("kb/smith-2021.yaml", "kb/sources/smith-2021.yaml"):
        expected = _placeholder_lines((project / path).read_text())
        assert expected, path
        errors = {d["line"]: d for d in diags if d["path"] == path and d["level"] == "error"}
        missing = {line: name for line, name in expected.items() if line not in errors}
        assert missing == {}, f"{path}: placeholders not reported: {missing}"
        for line, name in expected.items():
            d = errors[line]
            assert d["field"].endswith(name) or name in d["message"], d
            # The message says what is wrong with the blank: empty, or not one of the listed values.
            assert re.search(r"nothing \(null\)|is empty|give ", d["message"] + d["found"]), d
    # The two structures whose blanks are checked as a whole (age, dose) say what to write.
    messages = " ".join(d["message"] for d in diags)
    assert "age: give exactly one of value, min and max, or category" in messages
    assert "dose: give value and unit, or a qualifier, or write 'not reported'" in messages


# ============================================================================ evidence fmt


def _kind(p: Path) -> str | None:
    return file_kind(p, CONFIG.kb_dir)


def _load(text: str):
    doc, problems = load_yaml_text(text)
    assert problems == [], problems
    return doc.data


@pytest.mark.parametrize("path", KB_FILES, ids=[rel(p) for p in KB_FILES])
def test_kb_file_is_in_the_canonical_layout(path: Path):
    text = path.read_text(encoding="utf-8")
    assert format_text(text, _kind(path), rel(path)) == text, (
        f"{rel(path)} is not in the canonical layout; fix it with: .venv/bin/evidence fmt {rel(path)}")


@pytest.mark.parametrize("path", KB_FILES + VALID, ids=[rel(p) for p in KB_FILES + VALID])
def test_fmt_never_changes_the_data_keeps_every_comment_and_is_idempotent(path: Path):
    text = path.read_text(encoding="utf-8")
    once = format_text(text, _kind(path), rel(path))
    assert _load(once) == _load(text)
    assert Counter(c for _, _, c in comments_of(once)) == Counter(c for _, _, c in comments_of(text))
    assert format_text(once, _kind(path), rel(path)) == once


@pytest.mark.parametrize("path", INVALID, ids=[rel(p) for p in INVALID])
def test_fmt_on_a_broken_file_refuses_or_keeps_the_data(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return
    try:
        out = format_text(text, _kind(path), rel(path))
    except FormatError as exc:
        assert rel(path) in str(exc)  # refused, and said where
        return
    assert _load(out) == _load(text)
    assert format_text(out, _kind(path)) == out


def test_fmt_layout_rules():
    text = """\
# header comment
title: 'a title'
id: "x-2020"
patients:
  - {id: P1, sex: female, age: {value: 40.0}, diagnoses: [a, b], evidence: [], label: "yes"}
sources: [{source: x-2020, role: primary}]
conditions:
- alpha
- "beta: gamma"
curation:
    created: 2020-01-01
    curators: [{name: N}]
    notes: "one\\ntwo\\n"
unknown_b: 1
unknown_a: 2
"""
    expected = """\
# header comment
id: x-2020
title: a title
sources:
  - source: x-2020
    role: primary
conditions: [alpha, "beta: gamma"]
patients:
  - id: P1
    label: "yes"
    age:
      value: 40.0
    sex: female
    diagnoses: [a, b]
    evidence: []
curation:
  curators:
    - name: N
  created: 2020-01-01
  notes: |
    one
    two
unknown_b: 1
unknown_a: 2
"""
    assert format_text(text, "case") == expected


def test_fmt_moves_comments_with_their_field():
    text = """\
curation:  # who
  created: 2020-01-01
id: x-2020  # the id
# the title, above it
title: T
patients:
  - id: P1
    # the sex, above it
    sex: female
    # the label goes first, its comment with it
    label: L
    # the end of the patient
"""
    out = format_text(text, "case")
    assert out == """\
id: x-2020  # the id
# the title, above it
title: T
patients:
  - id: P1
    # the label goes first, its comment with it
    label: L
    # the sex, above it
    sex: female
    # the end of the patient
curation:  # who
  created: 2020-01-01
"""


def test_fmt_folds_long_text_quotes_verbatim_quotes_and_keeps_yaml11_words_text():
    long = " ".join(["word"] * 60)
    text = f"""\
evidence:
  - source: s
    locator: "on: a colon"
    quote: plain words
    note: {long}
findings: [no, 'off', "1:20", "0777", "2019-03-01", "~", "null", "", " lead"]
"""
    out = format_text(text, "case")
    assert _load(out) == _load(text)
    assert '    locator: "on: a colon"\n    quote: "plain words"\n    note: >-\n      word word' in out  # verbatim quotes: always in quotes
    assert max(len(line) for line in out.splitlines()) <= 100
    # YAML 1.1 (PyYAML, the kb's reader) reads no/off as booleans: what was a boolean is written as one,
    # and text that a reader of YAML 1.1 or 1.2 would take for something else is quoted.
    assert out.endswith('findings: [false, "off", "1:20", "0777", 2019-03-01, "~", "null", "", " lead"]\n')


def test_fmt_refuses_what_the_kb_refuses():
    with pytest.raises(FormatError, match="aliases"):
        format_text("a: &x 1\nb: *x\n", "case", "kb/x.yaml")
    with pytest.raises(FormatError, match="duplicate key"):
        format_text("a: 1\na: 2\n", "case", "kb/x.yaml")


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40),
    st.sampled_from(["yes", "No", "on", "1:20", "0x1F", "1e3", "- a", "a: b", "a #b", "#c", "[x]", "{y}", "'q'", '"d"', "2019-03-01", " s", "t ",
                     "multi\nline\n", "trail \nx", "\ttab", "…", "line\u2028sep", "null", "~", "!tag", "&a", "*b", "%p", "@at", "`tick`"]),
)
_keys = st.one_of(st.sampled_from(["id", "title", "quote", "evidence", "patients", "age", "dose", "value", "1", "yes", "a b", "x: y"]),
                  st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=10))
_data = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_keys, inner, max_size=5)), max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(_keys, _data, min_size=1, max_size=6), flow=st.booleans(), kind=st.sampled_from(["case", "source", None]))
def test_fmt_round_trips_any_data(data, flow, kind):
    text = yaml.safe_dump(data, allow_unicode=True, default_flow_style=flow, sort_keys=False)
    doc, problems = load_yaml_text(text)
    if doc is None:
        return  # the kb loader refuses it (e.g. keys it cannot tell apart); so does fmt
    out = format_text(text, kind)
    assert _load(out) == doc.data
    assert format_text(out, kind) == out


def test_fmt_check_names_each_file_and_the_command_then_fmt_fixes_it(project: Path):
    case = project / "kb" / "briand-2019.yaml"
    source = project / "kb" / "sources" / "heymann-2016.yaml"
    case.write_text(case.read_text().replace("sources:\n  - source: briand-2019\n    role: primary\n", "sources: [{source: briand-2019, role: primary}]\n"))
    source.write_text(source.read_text().replace("id: heymann-2016\n", "").replace("kind: commentary\n", "kind: commentary\nid: heymann-2016\n"))
    data = (_load(case.read_text()), _load(source.read_text()))
    r = run("fmt", "--check", cwd=project)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "kb/briand-2019.yaml: not in the canonical layout; to fix it, run: evidence fmt kb/briand-2019.yaml",
        "kb/sources/heymann-2016.yaml: not in the canonical layout; to fix it, run: evidence fmt kb/sources/heymann-2016.yaml",
    ]
    assert "2 of" in r.stderr and "evidence fmt kb/briand-2019.yaml kb/sources/heymann-2016.yaml" in r.stderr
    r = run("fmt", "kb/briand-2019.yaml", str(source), cwd=project)
    assert r.returncode == 0, r.stderr
    assert (_load(case.read_text()), _load(source.read_text())) == data
    assert run("fmt", "--check", cwd=project).returncode == 0


def test_fmt_check_finds_crlf_line_ends_and_fmt_writes_lf(project: Path):
    """Windows line ends are not the canonical layout: the file was read with its newlines
    translated, so --check passed it and fmt left it as it was."""
    case = project / "kb" / "wenzel-2016.yaml"
    canonical = case.read_bytes()
    case.write_bytes(canonical.replace(b"\n", b"\r\n"))
    r = run("fmt", "--check", cwd=project)
    assert r.returncode == 1 and "kb/wenzel-2016.yaml: not in the canonical layout" in r.stdout, r.stdout
    assert run("fmt", "kb/wenzel-2016.yaml", cwd=project).returncode == 0
    assert case.read_bytes() == canonical


def test_fmt_leaves_a_file_it_cannot_read_as_it_is(project: Path):
    bad = project / "kb" / "broken-2020.yaml"
    bad.write_text("a: &x 1\nb: *x\n")
    r = run("fmt", "kb/broken-2020.yaml", cwd=project)
    assert r.returncode == 1 and "aliases" in r.stderr
    assert bad.read_text() == "a: &x 1\nb: *x\n"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(_keys, _data, min_size=1, max_size=6), flow=st.booleans(), kind=st.sampled_from(["case", "source", None]),
       marks=st.lists(st.tuples(st.integers(0, 200), st.booleans(), st.integers(0, 8)), max_size=8))
def test_fmt_keeps_comments_anywhere(data, flow, kind, marks):
    """Comments on lines of their own (at any indentation) and beside values, anywhere in a file."""
    lines = yaml.safe_dump(data, allow_unicode=True, default_flow_style=flow, sort_keys=False, width=10**6).splitlines()
    for n, (i, own, indent) in enumerate(marks):
        i %= len(lines) + 1
        if own:
            lines.insert(i, " " * indent + f"# comment {n}")
        elif i < len(lines):
            lines[i] += f"  # beside {n}"
    text = "\n".join(lines) + "\n"
    doc, _ = load_yaml_text(text)
    if doc is None:
        return
    out = format_text(text, kind)
    assert _load(out) == doc.data
    assert Counter(c for _, _, c in comments_of(out)) == Counter(c for _, _, c in comments_of(text))
    assert format_text(out, kind) == out
