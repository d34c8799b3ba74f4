"""The loader refuses what a kb file must never hold, with a message, in bounded time."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence import yamlio
from evidence.yamlio import load_yaml, load_yaml_text


def one(text: str) -> str:
    doc, diags = load_yaml_text(text, "f.yaml")
    assert doc is None and len(diags) == 1
    return diags[0].text()


def test_positions_are_kept_for_keys_and_values():
    doc, diags = load_yaml_text("a: 1\nb:\n  - x: 2\n    y: text\n", "f.yaml")
    assert not diags
    assert doc.positions[("b", 0, "y")] == (4, 8)
    assert doc.key_positions[("b", 0, "y")] == (4, 5)
    assert doc.where(("b", 0, "missing")) == (3, 5)


def test_dates_stay_text():
    doc, _ = load_yaml_text("d: 2019-03-01\n")
    assert doc.data == {"d": "2019-03-01"}


def test_billion_laughs_is_refused_quickly():
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        bomb += f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    t = time.perf_counter()
    assert "aliases (*name) are not allowed" in one(bomb)
    assert time.perf_counter() - t < 1.0


@pytest.mark.parametrize("tag", ["!!python/object:os.system", "!!python/object/apply:os.system", "!!binary", "!!set", "!custom"])
def test_constructing_tags_are_refused(tag):
    assert "is not allowed" in one(f"a: {tag} x\n")


def test_merge_keys_and_duplicates_are_refused():
    assert "merge keys" in one("a: {x: 1}\nb:\n  <<: {x: 1}\n")
    assert "duplicate key 'a' (first at line 1)" in one("a: 1\nb: 2\na: 3\n")


def test_deep_nesting_is_refused():
    assert "nested deeper than" in one("a: " + "[" * 100 + "]" * 100 + "\n")


def test_oversized_and_non_utf8_files_are_refused(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"a: " + b"x" * (yamlio.MAX_BYTES + 1))
    _, diags = load_yaml(big)
    assert "over the limit" in diags[0].message
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"a: 1\nb: caf\xe9\n")
    _, diags = load_yaml(bad)
    assert (diags[0].line, diags[0].col) == (2, 7) and "not valid UTF-8 (byte 0xe9)" in diags[0].message


def test_syntax_errors_have_positions():
    text = one("a: [1, 2\nb: 3\n")
    assert text.startswith("f.yaml:") and "YAML syntax error" in text


def test_libyaml_is_used_when_present():
    import yaml

    assert yamlio.LIBYAML == yaml.__with_libyaml__


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzz_loader_never_raises(text):
    doc, diags = load_yaml_text(text, "fuzz.yaml")
    assert (doc is None) == bool(diags) or doc is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(["id", "patients", "age", "dose", "sex", "x"]), c, max_size=4),
                    max_leaves=20))
def test_fuzz_validator_never_raises(tmp_path_factory, data):
    """Any YAML value as a case file gives diagnostics, never an exception."""
    import yaml

    from evidence.config import load_config
    from evidence.validate import validate_kb

    folder = tmp_path_factory.mktemp("fuzz")
    p = folder / "fuzz-case.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    kb = validate_kb(load_config(), [p])
    mine = [d for d in kb.diagnostics if d.path.endswith("fuzz-case.yaml")]
    assert mine, "an arbitrary value should never pass as a case file"
    assert all(d.line >= 1 and d.col >= 1 for d in mine)


def test_hostile_nesting_does_not_crash_the_process():
    """libyaml's composer recurses in C: 100,000 nested brackets used to kill the process.
    Run in a child process so that a regression shows as a failure, not a dead test run."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, 'src'); from evidence.yamlio import load_yaml_text; "
            "doc, d = load_yaml_text('a: ' + '[' * 100000 + ']' * 100000, 'f.yaml'); print(d[0].message)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    assert r.returncode == 0, r.stderr
    assert "nested deeper than" in r.stdout


def test_huge_numbers_and_hidden_characters_are_refused():
    assert "is too large" in one("n: 1" + "0" * 5000 + "\n")
    assert "direction-changing or control character U+202E" in one("name: abc\u202edef\n")
    assert "U+200B" in one("name: zero\u200bwidth\n")
    assert "control character U+0007" in one("a: b\x07c\n")
    assert one("a: 1\n---\nb: 2\n").endswith("remove the '---' line)")
