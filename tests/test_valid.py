"""The real kb validates without an error, file by file and as a whole, and so do the minimal
valid cases in tests/data/valid/, which use forms the real kb does not (yet)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from evidence import schema as S
from evidence.config import load_config
from evidence.validate import Kb, validate_kb

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "tests" / "data" / "valid"


@functools.cache
def _config():
    return load_config(ROOT)


@functools.cache
def _kb() -> Kb:
    return validate_kb(_config())


def _kb_files() -> list[Path]:
    kb_dir = _config().kb_dir
    return sorted([*kb_dir.glob("*.yaml"), *kb_dir.glob("sources/*.yaml"), *kb_dir.glob("vocabulary/*.yaml")])


def _display(path: Path) -> str:
    return path.resolve().relative_to(ROOT.resolve()).as_posix()


KB_FILES = _kb_files()
VALID_FILES = sorted(VALID.glob("*.yaml"))


def test_the_kb_has_files() -> None:
    assert KB_FILES, "no kb files found"


@pytest.mark.parametrize("path", KB_FILES, ids=[_display(p) for p in KB_FILES])
def test_kb_file_has_no_error(path: Path) -> None:
    kb = _kb()
    shown = _display(path)
    assert shown in {f.display for f in kb.files.values()}, f"{shown} was not read as part of the kb"
    errors = [d.text() for d in kb.diagnostics if d.path == shown and d.level == "error"]
    assert errors == []


def test_the_whole_kb_validates_without_errors() -> None:
    kb = _kb()
    assert [d.text() for d in kb.diagnostics if d.level == "error"] == []
    assert kb.ok


@pytest.mark.parametrize("path", VALID_FILES, ids=[p.name for p in VALID_FILES])
def test_valid_case_is_clean(path: Path) -> None:
    kb = validate_kb(_config(), [path])
    assert [d.text() for d in kb.diagnostics] == []  # no error and no warning, here or in the kb
    assert path.stem in kb.cases


def test_valid_cases_exercise_the_forms_the_kb_does_not_use() -> None:
    """Keep the valid fixtures honest: together they must use each of these forms."""
    kb = validate_kb(_config(), VALID_FILES)
    assert kb.ok
    cases = [kb.cases[p.stem] for p in VALID_FILES]
    patients = [p for c in cases for p in c.patients]
    treatments = [t for p in patients for t in p.treatments]
    forms = {
        "age range": any(isinstance(p.age, S.Age) and p.age.min is not None and p.age.max is not None for p in patients),
        "dose in mg/kg": any(isinstance(t.dose, S.Dose) and t.dose.unit == "mg/kg" for t in treatments),
        "outcome with before and after values": any(
            isinstance(o.before, S.Measurement) and isinstance(o.after, S.Measurement) for p in patients for o in p.outcomes
        ),
        "adverse event with a severity": any(a.severity != S.NOT_REPORTED for p in patients for a in p.adverse_events),
        "dose increased phase": any(ph.kind == "dose increased" for t in treatments for ph in t.phases),
        "age over 120 in a unit other than years": any(isinstance(p.age, S.Age) and p.age.unit != "years" and (p.age.value or 0) > 120
                                                       for p in patients),
        "measured value below 0.0001": any(isinstance(o.before, S.Measurement) and 0 < o.before.value < 0.0001 for p in patients for o in p.outcomes),
    }
    assert [name for name, used in forms.items() if not used] == []


def test_a_pickled_model_is_the_same_and_shares_its_set_of_given_fields():
    """The build cache and the validation workers pickle models: what comes back equals the model,
    dumps the same (exclude_unset uses the set of given fields), and the sets of given fields are
    one object per distinct set, across separately pickled files (schema._Model.__reduce_ex__)."""
    import pickle

    cases = sorted(_kb().cases.values(), key=lambda c: c.id)
    back = [pickle.loads(pickle.dumps(c)) for c in cases]
    assert back == cases
    assert [b.model_dump(mode="json", exclude_unset=True) for b in back] == [c.model_dump(mode="json", exclude_unset=True) for c in cases]
    sets: dict[frozenset, set[int]] = {}

    def walk(node):
        if isinstance(node, S._Model):
            sets.setdefault(frozenset(node.model_fields_set), set()).add(id(node.model_fields_set))
            for name in type(node).model_fields:
                walk(getattr(node, name))
        elif isinstance(node, list):
            for x in node:
                walk(x)

    for b in back:
        walk(b)
    assert len(sets) > 10 and all(len(ids) == 1 for ids in sets.values())
    with pytest.raises(TypeError, match="cannot be changed"):
        back[0].title = "changed"  # the shared set would change for every model that has it
    assert back[0].title == cases[0].title  # refused before anything changed
    copied = back[0].model_copy(update={"title": "a copy"})  # a copy is a model of its own
    assert copied.title == "a copy" and back[0].title == cases[0].title
    assert [set(b.model_fields_set) for b in back] == [set(c.model_fields_set) for c in cases]  # no shared set changed


def test_a_model_pickles_as_its_values_and_a_model_of_another_shape_as_pydantic_does():
    """A validated model pickles as (class, values in the class's field order, given names); one
    whose fields are not the class's (model_construct without some) falls back to pydantic's way
    and still comes back equal; values that do not fit the class are an unreadable entry."""
    import pickle

    case = sorted(_kb().cases.values(), key=lambda c: c.id)[0]
    data = pickle.dumps(case)
    assert b"_restore" in data and b"__pydantic_fields_set__" not in data
    partial = S.Curator.model_construct(name="A. Curator")
    object.__setattr__(partial, "__dict__", {"name": "A. Curator"})  # no orcid: not the class's fields
    data = pickle.dumps(partial)
    assert b"_restore" not in data
    back = pickle.loads(data)
    assert back.__dict__ == {"name": "A. Curator"} and back.model_fields_set == {"name"}
    with pytest.raises(TypeError, match="has 1 fields"):
        S._restore(S.Curator, ("A. Curator",), ("name",))


def test_a_validated_file_forgets_its_bytes_and_reads_them_again_when_asked(tmp_path):
    import hashlib

    from evidence.load import KbFile

    data = b"id: case-x\ntitle: A case\n"
    path = tmp_path / "case-x.yaml"
    path.write_bytes(data)
    f = KbFile("case", path, "kb/case-x.yaml", sha=hashlib.sha256(data).hexdigest(), raw=data)
    assert f.doc.where(("title",)) == (2, 8)
    f.forget_bytes()
    assert f._raw is None and f._doc is None
    assert f.doc.where(("title",)) == (2, 8)  # read again: the same bytes
    f.forget_bytes()  # nothing left to forget: the parsed YAML stays
    assert f.doc is not None
    g = KbFile("case", path, "kb/case-x.yaml", sha=hashlib.sha256(data).hexdigest(), raw=data)
    g.forget_bytes()
    path.write_bytes(b"id: case-x\n\ntitle: Changed since\n")
    assert g.doc is None and g.problems == []  # changed since it was checked: no positions
    # A file the build did not read (its hash was known, see load.FileShas) that changed since it
    # was listed: an error that names it, never a file silently left out.
    from evidence.errors import LoadError

    h = KbFile("case", path, "kb/case-x.yaml", sha=hashlib.sha256(data).hexdigest(), unread=True)
    with pytest.raises(LoadError) as changed:
        _ = h.doc
    assert [(d.path, d.rule) for d in changed.value.diagnostics] == [("kb/case-x.yaml", "file-read")]
    path.write_bytes(data)
    read = KbFile("case", path, "kb/case-x.yaml", sha=hashlib.sha256(data).hexdigest(), unread=True)
    assert read.doc.where(("title",)) == (2, 8)
    read.release()  # read once and as listed: a file like any other (its YAML can be dropped, its bytes forgotten)
    assert read._doc is None and read.doc.where(("title",)) == (2, 8)
    read.forget_bytes()
    path.write_bytes(b"id: case-x\n\ntitle: Changed since\n")
    assert read.doc is None, "checked already: a change since means no positions, not an error"


def test_the_kb_holds_no_file_bytes_after_validation():
    kb = validate_kb(_config())
    assert kb.files and all(f._raw is None for f in kb.files.values())
