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
    }
    assert [name for name, used in forms.items() if not used] == []
