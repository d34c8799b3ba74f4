"""Hostile input: every file in tests/data/hostile/ gives a clear error (or, for text that is
merely nasty, validates and renders inert), in bounded time and memory, with no traceback.

Each file's first line is ``# expect: <substring of the message>`` (``VALID`` for files that must
pass). Files run through the real command in a child process with a 2 GB address-space limit and
a 30 s timeout, so that a crash or a blow-up fails the test instead of the test run.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ROOT / "tests" / "data" / "hostile"
FILES = sorted(p for p in HOSTILE.rglob("*.yaml"))
MEMORY_LIMIT = 2 * 1024**3


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _validate(*paths: Path, root: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "evidence", "--root", str(root), "validate", *map(str, paths)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=30, preexec_fn=_limits)


def _expect(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode("utf-8", errors="replace")
    if not first.startswith("# expect: "):
        first = path.read_text(encoding="utf-16", errors="replace").split("\n", 1)[0]
    return first.removeprefix("# expect: ").strip()


def test_the_corpus_is_there():
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(HOSTILE).as_posix() for p in FILES])
def test_hostile_file_gives_a_clear_answer(path, tmp_path):
    expect = _expect(path)
    marker = Path("/tmp/evidence-pwned")
    marker.unlink(missing_ok=True)
    r = _validate(path)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert not marker.exists(), "a YAML tag ran code"
    if expect == "VALID":
        assert r.returncode == 0, r.stdout + r.stderr
    else:
        assert r.returncode == 1, r.stdout + r.stderr
        assert expect in r.stdout, f"expected {expect!r} in:\n{r.stdout}"
        assert r.stdout.startswith(f"tests/data/hostile/{path.relative_to(HOSTILE).as_posix()}:"), r.stdout


def test_a_50_mb_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.write(b"id: big\ntitle: ")
        f.write(b"x" * (50 * 1024 * 1024))
        f.write(b"\n")
    r = _validate(big)
    assert r.returncode == 1
    assert "over the limit of 2,097,152" in r.stdout and "Traceback" not in r.stderr


def test_script_in_text_is_inert_in_the_built_site(tmp_path):
    """The text is valid data, so it is kept; on every page it must come out escaped."""
    project = tmp_path / "project"
    for name in ("kb", "site_templates"):
        shutil.copytree(ROOT / name, project / name)
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    shutil.copy(HOSTILE / "script-in-text.yaml", project / "kb" / "script-in-text.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "EVIDENCE_SOURCE_TEXTS": str(ROOT.parent / "shared" / "seeds")}
    out = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "evidence", "--root", str(project), "build", "--out", str(out)], cwd=project, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pages = list(out.rglob("*.html"))
    assert pages
    hits = [p for p in pages if "<script>alert(" in p.read_text(encoding="utf-8") or "onerror=alert" in p.read_text(encoding="utf-8").replace("&#34;", "")]
    raw = [p for p in hits if "<img src=x onerror" in p.read_text(encoding="utf-8") or "<script>alert(" in p.read_text(encoding="utf-8")]
    assert not raw, [str(p.relative_to(out)) for p in raw]
    case_page = next(p for p in pages if "script-in-text" in p.name or "script-in-text" in str(p.parent))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in case_page.read_text(encoding="utf-8")
