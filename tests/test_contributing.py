"""CONTRIBUTING.md works as written: a new user follows it on a fresh copy of the repository.

Every shell block of CONTRIBUTING.md is marked for this test with an HTML comment before it:

    <!-- test: run -->               run each command, in order, in the copy; each must succeed
    <!-- test: check -->             do not run (network, minutes): check that the command exists,
                                     its `evidence` subcommand and flags parse, its make target exists
    <!-- test: file PATH -->         the block is a file the user writes (PATH under $TEXTS/ is the
                                     source-text folder): the test writes it, as the user would
    <!-- test: mistake FILE "OLD" "NEW" -->
                                     the block is a console transcript: with OLD replaced by NEW in
                                     FILE, the command after `$ ` prints exactly the lines shown
    <!-- test: same-as FILE KEY -->  the block shows entry KEY of FILE, with the same data

The walkthrough adds a made-up publication, example-2099 (a test fixture that the document marks
as such, never part of kb/), with one deliberate mistake: the error must say exactly what to fix;
after the fix the build includes the case and `evidence diff` describes it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from evidence.cli import parser
from evidence.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "CONTRIBUTING.md"
GIT_ENV = {"GIT_AUTHOR_NAME": "New Contributor", "GIT_AUTHOR_EMAIL": "new@example.org", "GIT_COMMITTER_NAME": "New Contributor",
           "GIT_COMMITTER_EMAIL": "new@example.org", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


@dataclass
class Block:
    marker: str  # the words after "test:"
    lang: str
    text: str
    line: int  # where the block starts in CONTRIBUTING.md


def blocks(text: str) -> tuple[list[Block], list[tuple[int, str]]]:
    """The marked code blocks, and the unmarked shell blocks (line, language)."""
    lines = text.splitlines()
    out: list[Block] = []
    unmarked: list[tuple[int, str]] = []
    marker = None
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        m = re.fullmatch(r"<!-- test: (.+?) -->", stripped)
        if m:
            marker = m.group(1)
        elif stripped.startswith("```"):
            lang = stripped[3:].strip()
            indent = len(lines[i]) - len(lines[i].lstrip())
            j = i + 1
            while not lines[j].strip().startswith("```"):
                j += 1
            body = "\n".join(ln[indent:] for ln in lines[i + 1:j]) + "\n"
            if marker is not None:
                out.append(Block(marker, lang, body, i + 1))
            elif lang in ("sh", "bash", "shell", "console"):
                unmarked.append((i + 1, lang))
            marker = None
            i = j
        i += 1
    return out, unmarked


BLOCKS, UNMARKED = blocks(DOC.read_text(encoding="utf-8"))


def commands(block: Block) -> list[str]:
    return [ln.strip() for ln in block.text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_every_shell_block_is_marked_for_this_test():
    assert UNMARKED == [], f"CONTRIBUTING.md: shell blocks without a <!-- test: ... --> marker at lines {UNMARKED}"
    kinds = {b.marker.split()[0] for b in BLOCKS}
    assert kinds == {"run", "check", "file", "mistake", "same-as"}, kinds


def _check_command(command: str) -> None:
    """The command exists: evidence subcommands and flags parse; make targets exist; programs are installed."""
    for part in re.split(r"\s*(?:&&|\|\||;)\s*", command):
        words = shlex.split(part)
        if not words:
            continue
        prog = words[0]
        if prog.endswith("evidence"):
            try:
                parser().parse_args(words[1:])
            except SystemExit as exc:  # argparse exits 2 on an unknown subcommand or flag
                pytest.fail(f"CONTRIBUTING.md: `{part}` does not parse (exit {exc.code})")
        elif prog == "make":
            makefile = (ROOT / "Makefile").read_text()
            for target in words[1:]:
                assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"`{part}`: no make target {target}"
        elif prog == "git":
            assert shutil.which("git") and words[1] in {"clone", "switch", "add", "commit", "push", "fetch", "status", "diff"}, part
        elif prog in ("cd", "echo"):
            continue
        else:
            assert shutil.which(prog), f"`{part}`: {prog} is not installed"


def test_every_command_of_contributing_exists():
    seen = 0
    for b in BLOCKS:
        if b.marker.split()[0] in ("run", "check"):
            for c in commands(b):
                _check_command(c)
                seen += 1
        elif b.marker.startswith("mistake"):
            _check_command(b.text.splitlines()[0].removeprefix("$ "))
    assert seen >= 10


def test_the_vocabulary_example_is_the_kb_entry():
    for b in BLOCKS:
        if b.marker.startswith("same-as"):
            _, path, key = b.marker.split()
            shown = yaml.safe_load(b.text)
            assert list(shown) == [key]
            assert shown[key] == yaml.safe_load((ROOT / path).read_text())[key], f"CONTRIBUTING.md line {b.line}: differs from {path} {key}"


# ============================================================================ the walkthrough


_NOT_IN_A_CLONE = (".git", ".venv", "_site", "__pycache__", ".hypothesis", ".pytest_cache", ".ruff_cache", ".cache", "artifacts")


def _fresh_copy(dest: Path) -> None:
    """What a fresh clone would hold: the files git tracks or would add (the work in progress too)."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], capture_output=True, timeout=60)
    if listed.returncode == 0:
        names = [n for n in listed.stdout.decode().split("\0") if n]
    else:  # not a git repository (an unpacked archive): everything but what a build or a tool leaves
        names = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*")
                 if p.is_file() and not any(part in _NOT_IN_A_CLONE or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)]
    for name in names:
        src = ROOT / name
        if not src.is_file() or name.startswith((".hypothesis/", "tests/artifacts/")):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


@dataclass
class Walk:
    clone: Path
    texts: Path
    outputs: dict[str, subprocess.CompletedProcess]
    mistakes: list[tuple[str, subprocess.CompletedProcess]]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory) -> Walk:
    base = tmp_path_factory.mktemp("contributing")
    clone, texts = base / "evidence", base / "texts"
    _fresh_copy(clone)
    # The source texts the kb's quotes are checked against, plus the one the walkthrough adds.
    texts.mkdir()
    real = load_config(ROOT).texts_dir()
    if real:
        for p in real.glob("*.txt"):
            shutil.copy(p, texts / p.name)
    env = {**os.environ, **GIT_ENV, "EVIDENCE_SOURCE_TEXTS": str(texts)}
    env.pop("PYTHONPATH", None)
    # `make site` made .venv/bin/evidence; here it runs the copy's own code with this interpreter.
    shim = clone / ".venv" / "bin" / "evidence"
    shim.parent.mkdir(parents=True)
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{clone / "src"}" exec "{sys.executable}" -m evidence "$@"\n')
    shim.chmod(0o755)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "the repository as it is"]):
        subprocess.run(["git", *args], cwd=clone, env=env, check=True, capture_output=True, timeout=120)

    # A publication that is not in the kb yet.
    assert not (clone / "kb" / "example-2099.yaml").exists() and not (clone / "kb" / "sources" / "example-2099.yaml").exists()

    outputs: dict[str, subprocess.CompletedProcess] = {}
    mistakes = []
    for b in BLOCKS:
        words = shlex.split(b.marker)
        if words[0] == "run":
            for command in commands(b):
                r = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
                assert r.returncode == 0, f"CONTRIBUTING.md line {b.line}: `{command}` failed:\n{r.stdout}{r.stderr}"
                outputs[command] = r
        elif words[0] == "file":
            target = texts / words[1].removeprefix("$TEXTS/") if words[1].startswith("$TEXTS/") else clone / words[1]
            if target.suffix == ".yaml":
                assert target.exists(), f"CONTRIBUTING.md line {b.line}: {words[1]} should have been written by `evidence new`"
            target.write_text(b.text, encoding="utf-8")
        elif words[0] == "mistake":
            _, path, old, new = words
            file = clone / path
            good = file.read_text()
            assert good.count(old) == 1, f"CONTRIBUTING.md line {b.line}: '{old}' must occur once in {path}"
            file.write_text(good.replace(old, new))
            try:
                first, *expected = b.text.splitlines()
                command = first.removeprefix("$ ")
                r = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
                mistakes.append((command, r))
                assert r.returncode == 1, r.stdout + r.stderr
                assert (r.stdout + r.stderr).splitlines() == expected, f"CONTRIBUTING.md line {b.line}: the output shown is not what it prints"
            finally:
                file.write_text(good)
    return Walk(clone, texts, outputs, mistakes)


def _output(walk: Walk, prefix: str) -> subprocess.CompletedProcess:
    found = [r for c, r in walk.outputs.items() if c.startswith(prefix)]
    assert found, f"CONTRIBUTING.md runs no `{prefix}...`"
    return found[-1]


def test_the_deliberate_mistake_says_exactly_what_to_fix(walkthrough: Walk):
    [(command, r)] = walkthrough.mistakes
    [error] = [line for line in r.stdout.splitlines() if ": error: " in line]
    # Where (file, line, column of the value), what (field, unknown key), expected, found, the fix.
    path, line, col = error.split(":")[:3]
    text = (walkthrough.clone / path).read_text().splitlines()
    assert text[int(line) - 1][int(col) - 1:].startswith("ruxolitinib")
    assert "patients[P1].treatments[T1].drug: unknown drug 'ruxolitnib'" in error
    assert "expected a key of kb/vocabulary/drugs.yaml" in error and "did you mean 'ruxolitinib'?" in error


def test_after_the_fix_the_case_validates_and_is_in_the_layout(walkthrough: Walk):
    r = _output(walkthrough, ".venv/bin/evidence validate kb/example-2099.yaml")
    assert r.stdout == "" and "0 errors, 0 warnings in 2 files" in r.stderr
    assert _output(walkthrough, ".venv/bin/evidence fmt --check").returncode == 0


def test_the_build_includes_the_new_case(walkthrough: Walk):
    site = walkthrough.clone / "_site"
    ttl = (site / "cases" / "example-2099.ttl").read_text()
    assert "case/example-2099" in ttl
    pages = [p for p in site.rglob("*.html") if "example-2099" in p.read_text(encoding="utf-8")]
    assert pages, "no page of the site mentions the new case"
    assert "built" in _output(walkthrough, ".venv/bin/evidence build").stderr


def test_evidence_diff_describes_the_new_case(walkthrough: Walk):
    out = _output(walkthrough, ".venv/bin/evidence diff main").stdout
    assert out.startswith("evidence diff: main (")
    for line in (
        "  + example-2099: EXAMPLE ONLY: ruxolitinib 10 mg twice daily in a made-up 12-year-old girl with TREX1-related chilblain lupus (case report, 1 patient)",
        "  + example-2099/P1: sex female, age 12 years, genotype TREX1 NM_033629.6:c.52G>A (heterozygous); diagnoses familial-chilblain-lupus",
        "  + example-2099/P1/T1: ruxolitinib, 10 mg, frequency twice daily, route oral, duration P6M",
        "  + example-2099/P1/O1: skin-lesions-clinical improved, response complete, at P3M after T1",
        "  + example-2099/P1/AE1: thrombocytopenia after T1, severity mild, action none",
        "  + example-2099: EXAMPLE ONLY: Ruxolitinib in a made-up patient with TREX1-related chilblain lupus (2099)",
        '  + example-2099/P1/O1 evidence: example-2099, abstract, sentence 2: "Her skin lesions cleared completely within 3 months."',
    ):
        assert line in out.splitlines(), f"evidence diff does not say: {line}\n{out}"
    counts = {ln[:18].strip(): ln[18:].split() for ln in out.splitlines() if ln[:18].strip() in ("cases", "patients", "claims", "RDF quads", "sources")}
    assert counts["cases"] == ["1", "0", "0"] and counts["patients"] == ["1", "0", "0"] and counts["sources"] == ["1", "0", "0"]
    assert counts["claims"] == ["8", "0"]  # case 1, patient 1, genotype 1, treatment 2, outcome 1, adverse event 1, source 1
    added, removed = counts["RDF quads"]
    assert int(added.lstrip("+")) > 100 and removed == "-0"  # a new case only adds


def test_the_change_was_committed_on_its_branch_and_the_real_kb_is_untouched(walkthrough: Walk):
    log = subprocess.run(["git", "log", "--format=%s", "main..add-example-2099"], cwd=walkthrough.clone, capture_output=True, text=True, timeout=60)
    assert log.stdout.splitlines() == ["Add example-2099: ruxolitinib in a made-up patient"]
    assert not (ROOT / "kb" / "example-2099.yaml").exists() and not (ROOT / "kb" / "sources" / "example-2099.yaml").exists()
