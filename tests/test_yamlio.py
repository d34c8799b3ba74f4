"""The loader refuses what a kb file must never hold, with a message, in bounded time."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evidence import yamlio
from evidence.yamlio import load_yaml, load_yaml_text

from .yamlplaces import places


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


def test_every_duplicate_key_is_an_error_and_the_file_is_read_on():
    """A duplicate key stopped the file's reading: its other duplicates, and every other problem
    of the file, waited for the fix. Each is an error now, the first value kept (the second is
    read and dropped, its positions too), and the document is returned for the other checks."""
    text = "a: 1\nb: {x: 1, x: 2}\na:\n  deep: [1, {y: 2}]\nc: 3\n"
    doc, diags = load_yaml_text(text, "f.yaml")
    assert doc is not None and doc.data == {"a": 1, "b": {"x": 1}, "c": 3}
    assert [d.text() for d in diags] == [
        "f.yaml:2:11: error: duplicate key 'x' (first at line 2) (hint: keep one of the two; YAML would silently drop the first)",
        "f.yaml:3:1: error: duplicate key 'a' (first at line 1) (hint: keep one of the two; YAML would silently drop the first)",
    ]
    assert doc.where(("c",)) == (5, 4) and ("a", "deep") not in doc.positions


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


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")) | st.text(max_size=100).map(lambda t: t.encode("utf-16")))
def test_fuzz_loader_bytes_never_raises(raw):
    """Any bytes (not UTF-8, UTF-16 with its mark, lone surrogates, NUL ...) give a document or
    diagnostics that each name a place, never an exception."""
    doc, diags = yamlio.load_yaml_bytes(raw, "fuzz.yaml")
    assert (doc is None) == bool(diags)
    assert all(d.path == "fuzz.yaml" and d.line >= 1 and d.col >= 1 and d.message for d in diags)


_ODD = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=30) | st.sampled_from(["not reported", "", " ", "P3M", "10.1000/x", "HGNC:1", "<script>x</script>", "../x.txt"])
        | st.lists(st.text(max_size=5), max_size=3) | st.dictionaries(st.sampled_from(["id", "value", "unit", "source", "x"]), st.text(max_size=5), max_size=3))


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(which=st.integers(min_value=0), where=st.integers(min_value=0), how=st.sampled_from(["replace", "delete", "repeat"]), value=_ODD)
def test_fuzz_nearly_valid_files_give_diagnostics_never_an_exception(tmp_path_factory, which, where, how, value):
    """A real kb file (a case, a source or a vocabulary) with one place changed, deleted or
    repeated: the validator answers with diagnostics naming a place in that file, or passes it;
    never an exception. Reaches the rules across files, which an arbitrary document does not."""
    import copy

    import yaml

    from evidence.config import load_config
    from evidence.validate import validate_kb

    config = load_config()
    kb = config.kb_dir
    files = sorted(kb.glob("*.yaml")) + sorted((kb / "sources").glob("*.yaml")) + sorted((kb / "vocabulary").glob("*.yaml"))
    path = files[which % len(files)]
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    spots = [loc for loc, _value in places(data) if loc]
    loc = spots[where % len(spots)]
    parent = data
    for seg in loc[:-1]:
        parent = parent[seg]
    key = loc[-1]
    if how == "replace":
        parent[key] = value
    elif how == "delete":
        del parent[key]
    elif isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    else:
        parent[key] = [copy.deepcopy(parent[key]), copy.deepcopy(parent[key])]
    folder = tmp_path_factory.mktemp("near")
    if path.parent.name == "vocabulary":  # validated with the kb, a second file of its kind
        (folder / "vocabulary").mkdir()
        target = folder / "vocabulary" / path.name
    else:  # a copy under a name and id of its own, so that it is not the kb's file again
        kind = "sources" if path.parent.name == "sources" else "cases"
        (folder / kind).mkdir()
        target = folder / kind / "fuzz-copy.yaml"
        if isinstance(data, dict) and "id" in data and loc[:1] != ("id",):
            data["id"] = "fuzz-copy"
    target.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    result = validate_kb(config, [target])
    mine = [d for d in result.diagnostics if d.path.endswith(target.name)]
    assert all(d.line >= 1 and d.col >= 1 and d.message and "Traceback" not in d.message for d in result.diagnostics)
    assert all(d.level in ("error", "warning", "info") for d in mine)
