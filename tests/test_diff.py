"""`evidence diff`: two real git revisions in a temporary repository, two folders, the working tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evidence.config import load_config
from evidence.diff import diff_specs, render_markdown, render_text
from evidence.pipeline import compile_checked
from evidence.validate import validate_kb

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "tests" / "data" / "valid"
GIT_ENV = {"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org", "GIT_COMMITTER_NAME": "Test",
           "GIT_COMMITTER_EMAIL": "test@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def git(repo: Path, *args: str) -> str:
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env={**os.environ, **GIT_ENV}, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "evidence", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def _change(project: Path) -> None:
    """The change under review: a case added, a dose changed, a quote edited, a finding removed."""
    shutil.copy(VALID / "dose-timeline.yaml", project / "kb" / "dose-timeline.yaml")
    z = project / "kb" / "zimmermann-2019.yaml"
    z.write_text(z.read_text().replace("          value: 4\n", "          value: 2\n"))
    b = project / "kb" / "briand-2019.yaml"
    text = b.read_text()
    assert 'quote: "Patient consent Parental/guardian obtained."' in text
    b.write_text(text.replace('quote: "Patient consent Parental/guardian obtained."', 'quote: "Patient consent Parental/guardian obtained"'))
    w = project / "kb" / "wenzel-2016.yaml"
    text = w.read_text()
    assert "      - positive ANA; all other autoantibodies negative\n" in text
    w.write_text(text.replace("      - positive ANA; all other autoantibodies negative\n", ""))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, str, str]:
    """A git repository with the project's kb at one commit and the change at the next."""
    project = tmp_path_factory.mktemp("repo")
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    shutil.copytree(ROOT / "kb", project / "kb")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "the founding kb")
    before = git(project, "rev-parse", "HEAD")
    _change(project)
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "the change")
    after = git(project, "rev-parse", "HEAD")
    return project, before, after


def _check_the_change(text: str) -> None:
    assert "+ dose-timeline: Test fixture - ruxolitinib increased, then reduced for moderate thrombocytopenia (case report, 1 patient)" in text
    assert "+ dose-timeline/P1: sex male, age 30 years, genotype not reported" in text
    assert "+ dose-timeline/P1/T1: ruxolitinib, 10 mg, frequency twice daily, route oral, duration P6M" in text
    assert "+ dose-timeline/P1/T1/PH3: dose reduced because of moderate thrombocytopenia" in text
    assert "+ dose-timeline/P1/O1: skin-lesions-clinical improved, response complete" in text
    assert "+ dose-timeline/P1/AE1: thrombocytopenia after T1, severity moderate, action dose reduced" in text
    for p in ("P1", "P2", "P3"):
        assert f"  ~ zimmermann-2019/{p}/T1\n      dose.value: 4 -> 2\n" in text
    assert "  ~ wenzel-2016/P1\n      findings: positive ANA; all other autoantibodies negative, acral" in text
    assert '  + briand-2019/P1 evidence: briand-2019, footnotes, Patient consent: "Patient consent Parental/guardian obtained"\n' in text
    assert '  - briand-2019/P1 evidence: briand-2019, footnotes, Patient consent: "Patient consent Parental/guardian obtained."\n' in text


def test_diff_of_two_git_revisions_in_words(repo):
    project, before, after = repo
    r = run("diff", before, after, cwd=project)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    assert text.startswith(f"evidence diff: {before[:7]} -> {after[:7]}\n")
    _check_the_change(text)
    table = dict((line[:18].strip(), line[18:].split()) for line in text.splitlines()[2:12] if line[:18].strip())
    assert table["cases"] == ["1", "0", "0"]
    assert table["patients"] == ["1", "0", "1"]
    assert table["treatments"] == ["1", "0", "3"]
    assert table["treatment phases"] == ["3", "0", "0"]
    assert table["outcomes"] == ["1", "0", "0"] and table["adverse events"] == ["1", "0", "0"]
    assert table["claims"] == ["10", "1"]
    assert "RDF quads" in table
    # The repository itself is left as it was: no worktree, nothing changed.
    assert git(project, "status", "--porcelain") == ""
    assert len(git(project, "worktree", "list").splitlines()) == 1


def test_the_quad_counts_are_those_of_the_two_compiled_kbs(repo, tmp_path):
    project, before, after = repo
    d = diff_specs(before, after, project)
    old = tmp_path / "before"
    shutil.copytree(ROOT / "kb", old / "kb")
    shutil.copy(ROOT / "evidence.toml", old / "evidence.toml")
    sides = [{str(q) for q in compile_checked(validate_kb(load_config(folder))).quads} for folder in (old, project)]
    assert d.quads_added == len(sides[1] - sides[0]) > 0
    assert d.quads_removed == len(sides[0] - sides[1]) > 0
    assert "graph/case/dose-timeline" in render_text(d)


def test_diff_of_two_folders_and_of_the_working_tree(repo, tmp_path):
    project, before, after = repo
    old = tmp_path / "old"
    shutil.copytree(ROOT / "kb", old / "kb")
    shutil.copy(ROOT / "evidence.toml", old / "evidence.toml")
    r = run("diff", str(old), str(project), cwd=project)
    assert r.returncode == 0, r.stderr
    _check_the_change(r.stdout)
    # kb folders work as well as project folders
    r = run("diff", str(old / "kb"), "kb", cwd=project)
    assert r.returncode == 0, r.stderr
    _check_the_change(r.stdout)
    # HEAD left out: the working tree, uncommitted changes included
    (project / "kb" / "dose-timeline.yaml").unlink()
    try:
        r = run("diff", "main", cwd=project)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(f"evidence diff: main ({after[:7]}) -> the working tree\n")
        assert "  - dose-timeline: Test fixture" in r.stdout
        assert "dose-timeline/P1/T1/PH1" in r.stdout
    finally:
        git(project, "checkout", "--", "kb")
    r = run("diff", "HEAD", cwd=project)
    assert r.stdout.endswith("No change to the evidence.\n")


def test_markdown_for_a_pull_request_comment(repo):
    project, before, after = repo
    r = run("diff", before, after, "--format", "markdown", cwd=project)
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert md.startswith("<!-- evidence-diff -->\n### What this change does to the evidence\n")
    assert "| | added | removed | changed |" in md and "| cases | 1 | 0 | 0 |" in md and "| claims | 10 | 1 | |" in md
    assert "#### Treatments" in md and "- **changed** `zimmermann-2019/P1/T1`\n  - `dose.value`: 4 → 2" in md
    assert "<details><summary>Claims: 10 added, 1 removed</summary>" in md


def test_markdown_makes_text_from_a_pull_request_inert(repo, tmp_path):
    project, before, after = repo
    shutil.copytree(project, tmp_path / "p", ignore=shutil.ignore_patterns(".git"))
    case = tmp_path / "p" / "kb" / "dose-timeline.yaml"
    text = case.read_text()
    title = next(line for line in text.splitlines() if line.startswith("title: "))
    case.write_text(text.replace(title, 'title: "@someone [click](https://example.org) <b>x</b> #12 `code`"'))
    d = diff_specs(str(project), str(tmp_path / "p"), project)
    assert d.head.problems == []
    md = render_markdown(d)
    assert "&#64;someone \\[click\\](https://example.org) \\<b\\>x\\</b\\> \\#12 \\`code\\`" in md
    assert "@someone" not in md and "<b>" not in md


def test_a_side_with_validation_errors_is_described_but_its_rdf_not_compared(repo, tmp_path):
    project, before, after = repo
    shutil.copytree(project, tmp_path / "p", ignore=shutil.ignore_patterns(".git"))
    case = tmp_path / "p" / "kb" / "dose-timeline.yaml"
    case.write_text(case.read_text().replace("drug: ruxolitinib", "drug: ruxolitnib", 1))
    r = run("diff", str(project), str(tmp_path / "p"), cwd=project)
    assert r.returncode == 0, r.stderr
    assert "has 1 validation error (run `evidence validate`): its RDF is not compared" in r.stdout
    assert "drug: ruxolitinib -> ruxolitnib" in r.stdout
    assert "RDF quads" not in r.stdout
    # A file that cannot be read at all is named, so that its records are not taken for removed ones.
    case.write_text("id: [\n")
    r = run("diff", str(project), str(tmp_path / "p"), cwd=project)
    assert "kb/dose-timeline.yaml could not be read or do not match the schema, so their records are missing from it" in r.stdout


def test_a_wrong_revision_is_a_clear_error(repo):
    project, _, _ = repo
    r = run("diff", "no-such-branch", cwd=project)
    assert r.returncode == 1
    assert "'no-such-branch' is neither a folder nor a git revision" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_revision_with_links_out_of_the_kb_is_compared_and_the_links_reported(tmp_path):
    """A pull request may commit symbolic links: kb/passwd.yaml -> /etc/passwd, and kb/sources ->
    a folder elsewhere. The diff extracts them as links once every file is out (none is written
    through), and the revision's validation reports each, as in a working tree; before, tarfile's
    filter refused the link and the diff ended with an internal error."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    shutil.copytree(ROOT / "kb", project / "kb")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "the founding kb")
    (project / "kb" / "passwd.yaml").symlink_to("/etc/passwd")
    (project / "kb" / "vocabulary" / "elsewhere.yaml").symlink_to("../../../elsewhere.yaml")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "links")
    r = run("diff", "HEAD~1", "HEAD", cwd=project)
    assert r.returncode == 0 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert "kb/passwd.yaml" in r.stdout and "validation error" in r.stdout, r.stdout
    assert "root:" not in r.stdout
    assert not (tmp_path / "elsewhere.yaml").exists()
