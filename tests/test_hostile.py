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

from tests.conftest import seeds_env

from .yamlplaces import places, put

ROOT = Path(__file__).resolve().parents[1]
# The source texts: where this run has them (.ci/run and the Makefile set the variable), else beside the repository.
HOSTILE = ROOT / "tests" / "data" / "hostile"
FILES = sorted(p for p in HOSTILE.rglob("*.yaml"))
MEMORY_LIMIT = 2 * 1024**3


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _validate(*paths: Path, root: Path = ROOT) -> subprocess.CompletedProcess:
    """``evidence validate`` (every file of the kb at ``root`` when no path is given)."""
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


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(ROOT / "kb", project / "kb")
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    return project


def test_a_link_out_of_the_kb_is_refused_and_never_read(tmp_path):
    """A pull request may hold symbolic links: one in the kb that leads out of its folder (to a
    file of the machine, to a folder, to nothing, or round in a loop) is an error naming the link
    and where it leads, and its target is never read (its text is never shown); validate, build
    and fmt say so without a traceback. A link to another file of the kb is read as that file."""
    project = _project(tmp_path)
    secret = tmp_path / "secret.yaml"
    secret.write_text("title:    a file outside the kb\nid:    secret-text-never-shown\n")  # not in the canonical layout: fmt would rewrite it
    kb = project / "kb"
    (kb / "outside.yaml").symlink_to(secret)
    (kb / "sources" / "passwd.yaml").symlink_to("/etc/passwd")
    (kb / "loop.yaml").symlink_to("loop.yaml")
    (kb / "nothing.yaml").symlink_to("missing.yaml")
    (kb / "folder.yaml").symlink_to(tmp_path, target_is_directory=True)
    (kb / "inside-folder.yaml").symlink_to("sources", target_is_directory=True)
    (kb / "vocabulary" / "again.yaml").symlink_to(kb / "vocabulary" / "drugs.yaml")
    r = _validate(root=project)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    lines = sorted(r.stdout.splitlines())
    expected = {
        "kb/folder.yaml": f"the file leads to {tmp_path}, outside the kb folder",
        "kb/inside-folder.yaml": "the file is a symbolic link to sources, a folder",
        "kb/loop.yaml": "the file is a symbolic link to loop.yaml, which leads back to itself (a loop)",
        "kb/nothing.yaml": "the file is a symbolic link to missing.yaml, which does not exist",
        "kb/outside.yaml": f"the file leads to {secret}, outside the kb folder",
        "kb/sources/passwd.yaml": "the file leads to /etc/passwd, outside the kb folder",
    }
    for shown, what in expected.items():
        assert any(ln.startswith(f"{shown}:1:1: error: {what}") and "put the file or folder itself in the kb folder" in ln for ln in lines), (shown, r.stdout)
    assert "secret-text-never-shown" not in r.stdout + r.stderr and "root:" not in r.stdout + r.stderr
    assert "unknown vocabulary file 'again.yaml'" in r.stdout  # a link inside the kb is read as the file it names
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    secret_bytes = secret.read_bytes()
    for command in (["build"], ["fmt"], ["fmt", "kb"], ["fmt", "--check", "kb/outside.yaml"], ["validate", "kb/loop.yaml", "kb/outside.yaml"]):
        c = subprocess.run([sys.executable, "-m", "evidence", "--root", str(project), *command], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120)
        assert "Traceback" not in c.stderr and "internal error" not in c.stderr, (command, c.stderr)
        assert "secret-text-never-shown" not in c.stdout + c.stderr, command
    assert secret.read_bytes() == secret_bytes  # fmt, given the kb or the link itself, never wrote through it
    assert not (project / "_site").exists()


def test_a_yaml_file_the_kb_would_not_read_is_an_error_not_left_out(tmp_path):
    """Only kb/<id>.yaml, kb/sources/<id>.yaml and kb/vocabulary/<kind>.yaml are read. A case saved
    as .yml or .YAML, or in a folder of its own, was left out without a word (and the build
    published the kb without it), while `validate kb` read it: now each is an error naming the
    file and how to put it right, whether the kb is validated whole or the file is named. A folder
    of other files (notes) and the query library are not the kb's YAML, and pass."""
    project = _project(tmp_path)
    kb = project / "kb"
    case = (kb / "zimmermann-2019.yaml").read_text()
    (kb / "zimmermann-2019.yaml").rename(kb / "zimmermann-2019.yml")
    (kb / "sources" / "extra.YAML").write_text("id: extra\n")
    (kb / "cases").mkdir()
    (kb / "cases" / "smith-2024.yaml").write_text(case.replace("id: zimmermann-2019", "id: smith-2024"))
    (kb / "notes").mkdir()
    (kb / "notes" / "todo.md").write_text("to check\n")
    (tmp_path / "elsewhere.txt").write_text("id: x\n")
    expected = {
        "kb/zimmermann-2019.yml": "'zimmermann-2019.yml' is not read: kb files are named *.yaml (hint: rename it to zimmermann-2019.yaml)",
        "kb/sources/extra.YAML": "'extra.YAML' is not read: kb files are named *.yaml (hint: rename it to extra.yaml)",
        "kb/cases": "this folder is not part of the kb: its YAML files are not read (hint: put case files in kb/",
    }
    (kb / "queries" / "notes.yaml").write_text("a: 1\n")  # the query library's folder: not a kb file's place, and not said to be
    runs = (_validate(root=project), _validate(kb, root=project))
    for r in runs:
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        for shown, what in expected.items():
            assert any(ln.startswith(f"{shown}:1:1: error: {what}") for ln in r.stdout.splitlines()), (shown, r.stdout)
        assert "kb/notes" not in r.stdout and "kb/queries" not in r.stdout
        assert "kb/cases/smith-2024.yaml" not in r.stdout  # its folder is reported, once
    assert runs[0].stdout == runs[1].stdout  # the kb validated whole, or named: the same answer
    r = _validate(kb / "cases" / "smith-2024.yaml", tmp_path / "elsewhere.txt", root=project)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "kb/cases:1:1: error: this folder is not part of the kb: its YAML files are not read" in r.stdout  # where the named file is
    assert f"{tmp_path / 'elsewhere.txt'}:1:1: error: not a kb file" in r.stdout
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    b = subprocess.run([sys.executable, "-m", "evidence", "--root", str(project), "build"], cwd=project, env=env, capture_output=True, text=True,
                       timeout=300)
    assert b.returncode == 1 and "kb/zimmermann-2019.yml" in b.stderr and not (project / "_site").exists(), b.stderr


# A reference to another file or term. (A source's text_file, the one file name, has a pattern of
# its own, so "../" there is a schema error that stops the rules of its file: tests/data/hostile/
# sources/path-traversal.yaml.)
REFERENCES = {"source", "reports_on", "drug", "gene", "measure", "term", "indication", "conditions", "diagnoses", "comorbidities"}
TRAVERSAL = "../../../../etc/passwd"


def _refs(node) -> list[tuple]:
    """The place of every reference to another file or term: the value of a key of REFERENCES, or
    an item of one (a list of terms)."""
    return [loc for loc, v in places(node) if isinstance(v, str) and v != "not reported" and loc
            and (loc[-1] in REFERENCES or (isinstance(loc[-1], int) and len(loc) > 1 and loc[-2] in REFERENCES))]


def test_a_folder_of_the_kb_linked_out_of_it_is_refused_and_none_of_its_files_read(tmp_path):
    """kb/sources, kb/vocabulary or kb/queries as a link to a folder elsewhere: an error naming
    the folder; the files there are never read (their text is never shown, a query never run)."""
    project = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(project / "kb" / "sources", elsewhere / "sources")
    (elsewhere / "sources" / "secret.yaml").write_text("id: secret-text-never-shown\n")
    shutil.rmtree(project / "kb" / "sources")
    (project / "kb" / "sources").symlink_to(elsewhere / "sources", target_is_directory=True)
    r = _validate(root=project)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"kb/sources:1:1: error: the folder leads to {elsewhere / 'sources'}, outside the kb folder" in r.stdout, r.stdout
    assert "secret-text-never-shown" not in r.stdout + r.stderr
    assert not [ln for ln in r.stdout.splitlines() if ln.startswith("kb/sources/")]  # no file there was read
    (project / "kb" / "sources").unlink()
    shutil.copytree(elsewhere / "sources", project / "kb" / "sources")
    (project / "kb" / "sources" / "secret.yaml").unlink()
    shutil.move(project / "kb" / "queries", elsewhere / "queries")
    (project / "kb" / "queries").symlink_to(elsewhere / "queries", target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **seeds_env()}
    q = subprocess.run([sys.executable, "-m", "evidence", "--root", str(project), "query", "--list"], cwd=project, env=env,
                       capture_output=True, text=True, timeout=120)
    assert q.returncode == 1 and "outside the kb folder" in q.stderr and "Traceback" not in q.stderr, q.stderr


def test_path_traversal_in_every_reference_is_an_error_naming_it(tmp_path):
    """Every reference of a case and of a source (to a source, a term, a source text) set to a path
    out of the kb: each is an error on its own field (an unknown source or term), and nothing
    outside the kb is read."""
    import yaml

    from evidence.config import load_config
    from evidence.validate import validate_kb
    from evidence.yamlio import field_name

    project = _project(tmp_path)
    placed: dict[str, set[str]] = {}
    for rel in ("kb/wenzel-2016.yaml", "kb/zimmermann-2019.yaml", "kb/sources/heymann-2016.yaml", "kb/sources/zimmermann-2019.yaml"):
        path = project / rel
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        before = yaml.safe_load(path.read_text(encoding="utf-8"))
        for loc in _refs(data):
            put(data, loc, TRAVERSAL)
            placed.setdefault(rel, set()).add(field_name(before, loc))
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert sum(len(v) for v in placed.values()) >= 40
    assert any(f.endswith("reports_on") for f in placed["kb/sources/heymann-2016.yaml"])
    diags = [d for d in validate_kb(load_config(project)).diagnostics if d.level == "error"]
    for rel, fields in placed.items():
        flagged = {d.field for d in diags if d.path == rel}
        assert fields <= flagged, (rel, sorted(fields - flagged))
    assert not any("root:" in d.text() for d in diags)


def test_script_in_text_is_inert_in_the_built_site(tmp_path):
    """The text is valid data, so it is kept; on every page it must come out escaped."""
    project = tmp_path / "project"
    for name in ("kb", "site_templates"):
        shutil.copytree(ROOT / name, project / name)
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    shutil.copy(HOSTILE / "script-in-text.yaml", project / "kb" / "script-in-text.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **seeds_env()}
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


def test_a_folder_or_fifo_named_like_a_kb_file_is_an_error(tmp_path):
    """A folder or a FIFO named kb/zz.yaml was left out without a word: validate said 0 errors."""
    import os

    from evidence.config import load_config
    from evidence.validate import validate_kb

    project = _project(tmp_path)
    (project / "kb" / "zz.yaml").mkdir()
    os.mkfifo(project / "kb" / "sources" / "pipe.yaml")
    kb = validate_kb(load_config(project))
    found = {d.path: d.message for d in kb.diagnostics if d.level == "error"}
    assert set(found) == {"kb/zz.yaml", "kb/sources/pipe.yaml"}, found
    assert all(m.startswith("not a file: it is named like a kb file") for m in found.values())


def test_a_kb_folder_that_cannot_be_listed_is_an_error_naming_it(tmp_path, monkeypatch):
    """kb/sources/ that cannot be read (its permissions) gave 54 'unknown source' errors and no
    word of the folder. Simulated: the tests may run as root, whom permissions do not stop."""
    import os

    import evidence.load as load_module
    from evidence.config import load_config
    from evidence.validate import validate_kb

    project = _project(tmp_path)
    real = os.scandir

    def scandir(path):
        if Path(path).name == "sources":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(load_module.os, "scandir", scandir)
    kb = validate_kb(load_config(project))
    first = [d for d in kb.diagnostics if d.rule == "unreadable"]
    assert [(d.path, d.message) for d in first] == [("kb/sources", "cannot read the folder: Permission denied")], kb.diagnostics[:3]
