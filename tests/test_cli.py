"""The `evidence` command as a user runs it: a real process, real files, real output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rdflib import Dataset, Graph

from tests.conftest import SEEDS, seeds_env, texts_required

ROOT = Path(__file__).resolve().parents[1]
# The source texts: where this run has them (.ci/run and the Makefile set the variable), else beside the repository.
INVALID = ROOT / "tests" / "data" / "invalid"


def run(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    # Not the repository's own build cache (validate, export and query use it too): what these
    # tests see must not depend on what a developer's cache holds. The cache has tests of its own.
    e = {**os.environ, "EVIDENCE_CACHE": "off", **(env or {})}
    e["PYTHONPATH"] = str(ROOT / "src")
    return subprocess.run([sys.executable, "-m", "evidence", *args], cwd=cwd, capture_output=True, text=True, env=e, timeout=300)


def test_validate_the_founding_kb_exits_0():
    r = run("validate")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""
    assert "0 errors, 0 warnings" in r.stderr


def test_validate_reports_every_problem_sorted_and_exits_1(tmp_path):
    r = run("validate", str(INVALID / "unit-unknown.yaml"), str(INVALID / "enum-value.yaml"), str(INVALID / "hgvs.yaml"))
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert len(lines) >= 3
    assert lines == sorted(lines, key=lambda ln: (ln.split(":")[0], int(ln.split(":")[1]), int(ln.split(":")[2])))
    assert {ln.split(":")[0] for ln in lines} == {f"tests/data/invalid/{n}.yaml" for n in ("unit-unknown", "enum-value", "hgvs")}
    assert "Traceback" not in r.stderr


def test_validate_github_annotations():
    r = run("validate", "--format", "github", str(INVALID / "unit-unknown.yaml"))
    assert r.returncode == 1
    assert r.stdout.startswith("::error file=tests/data/invalid/unit-unknown.yaml,line=")
    assert "did you mean 'mg'?" in r.stdout


def test_validate_json():
    r = run("validate", "--format", "json", str(INVALID / "unit-unknown.yaml"))
    data = json.loads(r.stdout)
    assert data and data[0]["rule"] == "unit" and data[0]["field"].endswith("dose.unit")


def test_a_source_texts_setting_that_names_no_folder_is_an_error_and_missing_texts_are_said(tmp_path):
    """EVIDENCE_SOURCE_TEXTS with a typo turned every quote check off without a word; the texts
    missing where the configuration looks for them is allowed (a contributor may not have them),
    and said."""
    r = run("validate", env={"EVIDENCE_SOURCE_TEXTS": str(tmp_path / "seed")})
    assert r.returncode == 1 and f"EVIDENCE_SOURCE_TEXTS={tmp_path / 'seed'} is not a folder" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    shutil.copytree(ROOT / "kb", tmp_path / "project" / "kb")
    (tmp_path / "project" / "evidence.toml").write_text('[evidence]\nsource_texts = "no-texts-here"\n')
    r = run("--root", str(tmp_path / "project"), "validate", env={"EVIDENCE_SOURCE_TEXTS": ""})
    assert r.returncode == 0, r.stderr
    assert f"note: no source texts at {tmp_path / 'project' / 'no-texts-here'}: quotes were not checked" in r.stderr
    if SEEDS.is_dir() or texts_required():
        assert "note:" not in run("validate").stderr  # the texts are here (.ci/run and the Makefile set them)


def test_a_broken_vocabulary_term_is_one_error_not_one_per_case_that_names_it(tmp_path):
    """A term the schema refuses (here a malformed CHEBI identifier) was dropped, and every case
    naming it got 'unknown drug', with a hint to add the term (it is there) or a wrong guess."""
    shutil.copytree(ROOT / "kb", tmp_path / "kb")
    shutil.copy(ROOT / "evidence.toml", tmp_path / "evidence.toml")
    drugs = tmp_path / "kb" / "vocabulary" / "drugs.yaml"
    drugs.write_text(drugs.read_text().replace("CHEBI:66919", "CHEBI:6691X"))
    r = run("--root", str(tmp_path), "validate")
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "kb/vocabulary/drugs.yaml:6:17: error: ruxolitinib.identifiers[0]: 'CHEBI:6691X' does not match the CHEBI pattern ^CHEBI:\\d+$; "
        "found 'CHEBI:6691X'"], r.stdout


@pytest.mark.parametrize("copy", ["zimmermann-2019-v2", "aaa-2024"])
def test_a_copied_case_with_its_id_unchanged_is_the_one_told_to_change_it(tmp_path, copy):
    """The duplicate id was put on whichever file sorted first: for a copy named zimmermann-2019-v2
    that was the untouched original (whose own checks were then skipped)."""
    shutil.copytree(ROOT / "kb", tmp_path / "kb")
    shutil.copy(ROOT / "evidence.toml", tmp_path / "evidence.toml")
    shutil.copy(tmp_path / "kb" / "zimmermann-2019.yaml", tmp_path / "kb" / f"{copy}.yaml")
    r = run("--root", str(tmp_path), "validate")
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        f"kb/{copy}.yaml:4:5: error: case id 'zimmermann-2019' is already used by kb/zimmermann-2019.yaml "
        f"(hint: ids are unique across the kb: give this file an id of its own such as '{copy}', its file name)"], r.stdout


def test_a_treatment_that_starts_after_its_publication_is_a_warning(tmp_path):
    """A year typed wrong (2031 in a case published in 2019) was accepted without a word."""
    shutil.copytree(ROOT / "kb", tmp_path / "kb")
    shutil.copy(ROOT / "evidence.toml", tmp_path / "evidence.toml")
    case = tmp_path / "kb" / "zimmermann-2019.yaml"
    lines = case.read_text().splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.strip() == "route: not reported")
    lines.insert(at + 1, lines[at].replace("route: not reported", "start: 2031-01-15"))
    case.write_text("".join(lines))
    r = run("--root", str(tmp_path), "validate")
    assert r.returncode == 0, r.stdout + r.stderr  # a warning: the reviewer decides
    assert r.stdout.splitlines() == [
        f"kb/zimmermann-2019.yaml:{at + 2}:16: warning: patients[P1].treatments[T1].start: 2031-01-15 is after the publication that "
        "reports it (2019) (hint: check the date against the source)"], r.stdout


def test_validate_missing_file_is_an_error_not_a_traceback():
    r = run("validate", "no/such/file.yaml")
    assert r.returncode == 1
    assert "no such file" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["validate", "build", "export", "query", "schema"])
def test_every_command_has_help(command):
    r = run(command, "--help")
    assert r.returncode == 0
    assert "usage: evidence" in r.stdout


def test_bad_command_line_exits_2():
    r = run("export", "--format", "pdf")
    assert r.returncode == 2
    assert "invalid choice" in r.stderr


@pytest.mark.parametrize("fmt,parser", [("ttl", "turtle"), ("nt", "nt"), ("trig", "trig"), ("nq", "nquads"), ("jsonld", "json-ld")])
def test_export_formats_parse_back_to_the_same_graph(fmt, parser, compiled):
    r = subprocess.run([sys.executable, "-m", "evidence", "export", "--format", fmt], cwd=ROOT, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=300)
    assert r.returncode == 0, r.stderr
    triples = {(q.subject.value, q.predicate.value, str(q.object)) for q in compiled.quads}
    if parser in ("trig", "nquads", "json-ld"):
        ds = Dataset()
        ds.parse(data=r.stdout, format=parser)
        n = len({(s, p, o) for s, p, o, _ in ds.quads((None, None, None, None))})
        graphs = {str(g.identifier) for g in ds.graphs() if len(g)}
        assert compiled.ns.graph("case", "wenzel-2016") in graphs
    else:
        g = Graph()
        g.parse(data=r.stdout, format=parser)
        n = len(g)
    assert n == len(triples)


def test_export_graphml_opens_in_networkx(tmp_path):
    import networkx as nx

    out = tmp_path / "g.graphml"
    r = run("export", "--format", "graphml", "--out", str(out))
    assert r.returncode == 0, r.stderr
    g = nx.read_graphml(out)
    kinds = {d["kind"] for _, d in g.nodes(data=True)}
    assert {"case", "patient", "drug", "gene", "variant", "disease", "outcome", "measure"} <= kinds


def test_build_writes_the_site_and_build_py_does_the_same(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = run("build", "--out", str(a))
    assert r.returncode == 0, r.stderr
    r2 = subprocess.run([sys.executable, "build.py", "--out", str(b)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0, r2.stderr
    for name in ("index.html", "evidence.ttl.gz", "evidence.nt.gz", "evidence.nq.gz", "evidence.jsonld.gz", "evidence.trig.gz", "evidence.graphml",
                 "shapes.ttl", "ontology.ttl", "context.jsonld", "schema/case.schema.json", "cases/wenzel-2016.ttl"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    html = (a / "index.html").read_text()
    for cid in ("zimmermann-2019", "briand-2019", "wenzel-2016"):
        assert f'id="{cid}"' in html
    assert 'href="https://doi.org/10.1001/jamadermatol.2018.5077"' in html


def test_a_failed_build_leaves_the_previous_site_untouched(tmp_path):
    out = tmp_path / "_site"
    assert run("build", "--out", str(out)).returncode == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    project = tmp_path / "project"
    shutil.copytree(ROOT / "kb", project / "kb")
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    shutil.copytree(ROOT / "site_templates", project / "site_templates")
    case = project / "kb" / "zimmermann-2019.yaml"
    text, n = re.subn(r"unit: mg\b(?!/)", "unit: mgs", case.read_text(), count=1)
    assert n == 1
    case.write_text(text)
    r = run("--root", str(project), "build", "--out", str(out), env=seeds_env())
    assert r.returncode == 1
    assert "zimmermann-2019.yaml:" in r.stderr and "'mgs' is not a known unit" in r.stderr
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("._site")]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("target,why", [
    ("kb", "is the kb folder"),
    (".", "is the project folder"),
    ("..", "is the project folder or holds it"),
    ("kb/sources", "holds files that no build of evidence wrote (it has no .evidence-site)"),
    ("notes", "holds files that no build of evidence wrote (it has no .evidence-site)"),
    ("notes/mine.txt", "is a file, not a folder"),
], ids=["kb", "root", "parent", "kb-sources", "other-files", "a-file"])
def test_build_refuses_an_output_folder_it_would_lose_data_in(tmp_path, target, why):
    """A build replaces its output folder whole: into the kb, the project or any of its parents,
    a folder with other files (the kb's sources), or a file, it refuses at once, with exit code 1,
    the reason and the fix, and deletes nothing."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "kb", project / "kb")
    shutil.copy(ROOT / "evidence.toml", project / "evidence.toml")
    shutil.copytree(ROOT / "site_templates", project / "site_templates")
    (project / "notes").mkdir()
    (project / "notes" / "mine.txt").write_text("my notes\n")
    before = _tree(tmp_path)
    r = run("--root", str(project), "build", "--out", target, cwd=project, env=seeds_env())
    assert r.returncode == 1, r.stderr
    assert why in r.stderr and "Choose" in r.stderr and "Traceback" not in r.stderr
    assert _tree(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"] and not [p for p in project.iterdir() if p.name.startswith(".")]


def test_build_replaces_its_own_site_an_empty_folder_and_a_site_from_before_the_marker(tmp_path):
    """What a build may replace: a site it wrote (it holds .evidence-site), an empty folder, and a
    site written before that file existed, while the build cache's record of it names everything
    in it; with a file of someone else's among it, the site is refused."""
    env = {"EVIDENCE_CACHE": str(tmp_path / "cache")}
    out = tmp_path / "site"
    out.mkdir()
    assert run("build", "--out", str(out), env=env).returncode == 0  # empty
    assert (out / ".evidence-site").read_text().startswith("This folder is a site written by evidence")
    assert run("build", "--out", str(out), env=env).returncode == 0  # its own
    (out / ".evidence-site").unlink()
    r = run("build", "--out", str(out), env=env)  # from before the marker, recorded by the cache
    assert r.returncode == 0, r.stderr
    (out / ".evidence-site").unlink()
    for mine in (out / "mine.txt", out / "cases" / "mine.txt"):  # at the top, or deeper
        mine.write_text("mine")
        r = run("build", "--out", str(out), env=env)
        assert r.returncode == 1 and "holds files that no build of evidence wrote" in r.stderr
        assert mine.read_text() == "mine"
        mine.unlink()


@pytest.mark.parametrize("args,path", [
    (["export", "--out", "{tmp}/no/such/folder/x.ttl"], "{tmp}/no/such/folder/x.ttl"),
    (["build", "--out", "{tmp}/a-file/site"], "{tmp}/a-file/site cannot be made: a part of its path is a file"),
    pytest.param(["build", "--out", "/proc/evidence-test-site"], "cannot write the site beside /proc/evidence-test-site",
                 marks=pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="/proc, where no folder can be made (Linux)")),
], ids=["export-into-a-missing-folder", "build-under-a-file", "build-where-nothing-can-be-written"])
def test_a_path_that_cannot_be_written_is_exit_1_naming_it_not_a_bug(tmp_path, args, path):
    (tmp_path / "a-file").write_text("not a folder")
    r = run(*[a.format(tmp=tmp_path) for a in args])
    assert r.returncode == 1, r.stderr
    assert path.format(tmp=tmp_path) in r.stderr and "Traceback" not in r.stderr and "bug" not in r.stderr
    assert (tmp_path / "a-file").read_text() == "not a folder"


@pytest.mark.parametrize("raised,code,said", [
    ("ZeroDivisionError('division by zero')", 3, "internal error: ZeroDivisionError: division by zero"),
    ("FileExistsError(17, 'File exists', 'x.html')", 3, "internal error: FileExistsError"),
    ("PermissionError(13, 'Permission denied', '/srv/site')", 1, "error: Permission denied: /srv/site (check that"),
    ("OSError(24, 'Too many open files')", 4, "error: Too many open files (the machine ran short"),
], ids=["bug", "file-exists-is-a-bug", "permission", "out-of-files"])
def test_what_a_build_raises_gets_its_exit_code_without_a_traceback(raised, code, said):
    """Exit code 3 is kept for what the code did not expect; an error of the machine's files that a
    user can set right is 1, and its shortage 4, each naming what to check."""
    script = ("import sys, evidence.pipeline as p\n"
              f"def broken(*args, **kwargs):\n    raise {raised}\n"
              "p.build = broken\n"
              "from evidence.cli import main\n"
              "sys.exit(main(['build', '--out', sys.argv[1]]))\n")
    r = subprocess.run([sys.executable, "-c", script, "unused-site"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == code, r.stderr
    assert said in r.stderr and "Traceback" not in r.stderr
    assert ("please report it" in r.stderr) == (code == 3)


def test_schema_check_passes_on_the_committed_schema():
    r = run("schema", "--check")
    assert r.returncode == 0, r.stderr


# ---- the questions the core issue names, answered by `evidence query` ----------------------------

def _csv(*args: str) -> list[list[str]]:
    r = run("query", *args, "--format", "csv")
    assert r.returncode == 0, r.stderr
    import csv
    import io

    return list(csv.reader(io.StringIO(r.stdout)))


def test_query_drugs_given_to_trex1_carriers():
    rows = _csv("kb/queries/drugs-by-gene.rq", "--param", "gene=TREX1")
    assert rows[0] == ["gene", "drugLabel", "patients", "cases"]
    assert rows[1:] == [["TREX1", "baricitinib", "3", "1"], ["TREX1", "ruxolitinib", "1", "1"]]


def test_query_baricitinib_regimen():
    rows = _csv("kb/queries/regimens-by-drug.rq", "--param", "drug=baricitinib")
    assert rows[0] == ["drug", "case", "patient", "dose", "unit", "frequency", "route", "duration"]
    assert {tuple(r[3:8]) for r in rows[1:]} == {("4", "mg", "daily", "not reported", "P3M")}
    assert [r[2] for r in rows[1:]] == ["P1", "P2", "P3"]


def test_query_complete_remission_within_4_months_and_its_phases():
    rows = _csv("kb/queries/complete-response-timeline.rq")
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    assert {r[col["case"]] for r in body} == {"wenzel-2016"}
    assert {(r[col["qualifier"]], r[col["timepoint"]]) for r in body} == {("within", "P4M")}
    assert [r[col["phase"]] for r in body] == ["start", "dose reduced", "stopped", "restarted"]
    assert body[-1][col["dose"]] == "full dose"


def test_query_json_is_sparql_results_json():
    r = run("query", "SELECT ?d WHERE { ?t a ev:Treatment ; ev:drug ?d } ORDER BY ?d LIMIT 1", "--format", "json")
    data = json.loads(r.stdout)
    assert data["head"]["vars"] == ["d"]
    assert data["results"]["bindings"][0]["d"]["type"] == "uri"


def test_query_errors_name_line_column_and_prefix():
    r = run("query", "SELECT * WHERE {\n ?x foo:bar ?y }")
    assert r.returncode == 1
    assert "line 2" in r.stderr and "unknown prefix 'foo:'" in r.stderr and "Traceback" not in r.stderr
    r = run("query", "SELECT * WHERE { ?x ev:bar ?y ")
    assert r.returncode == 1 and "line 1, column" in r.stderr


# (query, the token the mistake is in): the error shows the line with a caret at the column where
# Oxigraph's parser stopped, which is at the end of that token or after it.
MALFORMED_QUERIES = [
    ("SELECT ?x WHRE { ?x ?y ?z }", "WHRE"),
    ("SELECT ?s\nWHERE {\n  ?s ?p \n}", "}"),
    ("SELECT ?x WHERE {\n  ?x ?y ?z .\n  FILTER(?x = ) }", ")"),
    ("SELECT * WHERE {\n ?x foo:bar ?y }", "foo:bar"),
    ("SELEC ?x", "SELEC"),
    ("SELECT ?x WHERE { " + "?x <https://example.org/p> ?y . " * 10 + "?x ?y }", "}"),
    ("SELECT ?x WHERE {\t?x \x1b[31m ?y }", "\x1b"),
    ("# a form feed\x0c and a line separator\u2028 are not line breaks\nSELECT ?x WHERE { ?x ?p ?o !! }", "!!"),
    ("SELECT ?x\r\nWHERE {\r\n  ?x ?y\r\n}", "}"),
]


@pytest.mark.parametrize("query,token", MALFORMED_QUERIES)
def test_a_query_syntax_error_shows_the_line_and_a_caret_at_its_column(compiled, query, token):
    from evidence.errors import QueryError
    from evidence.query import run_query

    with pytest.raises(QueryError) as err:
        run_query(compiled, query)
    head, shown, caret = err.value.message.split("\n")
    m = re.match(r"line (\d+), column (\d+): ", head)
    assert m, head
    line, col = int(m.group(1)), int(m.group(2))
    text = query.split("\n")[line - 1].removesuffix("\r")
    assert token in text, (token, text)
    assert shown.startswith("  ") and caret.startswith("  ") and caret.endswith("^ where the parser stopped (the mistake is at or before it)")
    at = caret.index("^") - 2
    assert caret[2:2 + at].strip(" \t") == ""  # only blanks (and the line's own tabs) before the caret
    if shown.startswith("  ..."):  # a long line: a window around the column
        assert len(shown) <= 2 + 3 + 72 and shown[5:] in text
        window = text.index(shown[5:])
        assert at - 3 == col - 1 - window
    else:
        assert shown[2:] == "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in text)
        assert at == col - 1, (at, col)
        assert text.index(token) < col  # the mistake is at or before the caret
    assert all(c.isprintable() or c == "\t" for c in shown)  # nothing that would act on a terminal


# A query line with characters that a terminal shows wider or narrower than one place, and how
# many places the line before the parser's column takes beyond (or short of) one per character.
WIDE_QUERIES = [
    ('SELECT ?x WHERE { ?x ?y "漢字" FILTR }', 2),  # two CJK characters, two places each
    ('SELECT ?x WHERE { ?x ?y "🙂" FILTR }', 1),  # an emoji, two places
    ('SELECT ?x WHERE { ?x ?y "e\u0301" FILTR }', -1),  # a combining accent, drawn on the e
]


@pytest.mark.parametrize("query,extra", WIDE_QUERIES)
def test_the_caret_stands_under_its_column_after_wide_characters(compiled, query, extra):
    from evidence.errors import QueryError
    from evidence.query import run_query

    with pytest.raises(QueryError) as err:
        run_query(compiled, query)
    head, shown, caret = err.value.message.split("\n")
    col = int(re.match(r"line 1, column (\d+): ", head).group(1))
    assert shown == "  " + query
    assert caret.index("^") - 2 == col - 1 + extra


def test_a_parser_message_with_a_position_and_nothing_else_is_explained():
    from evidence.query import explain_syntax_error

    assert explain_syntax_error("ab\ncd", "error at 2:2", {}) == (
        "line 2, column 2: SPARQL syntax error\n  cd\n   ^ where the parser stopped (the mistake is at or before it)")
    assert explain_syntax_error("ab", "error at 5:1: expected WHERE", {}) == "line 5, column 1: SPARQL syntax error: expected WHERE"
    assert explain_syntax_error("ab", "something else", {}) == "something else"


def test_query_parameter_is_bound_as_a_term_not_pasted():
    """A value that would break out of the query if it were pasted is only a literal."""
    rows = _csv("kb/queries/drugs-by-gene.rq", "--param", 'gene=TREX1" } UNION { ?patient ?p ?o } #')
    assert rows[1:] == []


def test_query_with_from_runs_on_the_graphs_it_names(compiled):
    """FROM was replaced by the union of every graph: a count FROM one case counted the kb."""
    graph = "https://w3id.org/evidence-kb/graph/case/briand-2019"
    in_graph = sum(1 for q in compiled.quads if q.graph_name.value == graph)
    r = run("query", "--format", "csv", f"SELECT (COUNT(*) AS ?n) FROM <{graph}> WHERE {{ ?s ?p ?o }}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["n", str(in_graph)]
    r = run("query", "--format", "csv", "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }")
    assert r.stdout.split() == ["n", str(len(compiled.quads))]


def test_query_refuses_service_unless_allowed(tmp_path):
    """SERVICE makes this machine fetch from the address a query names; a contributed library
    query runs in every build, so it is refused unless the user asks for it on the command line."""
    import socket

    with socket.socket() as listener:  # a local port that accepts and never answers: no outside traffic
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        for query in (f"SELECT * WHERE {{ SERVICE <http://127.0.0.1:{port}/sparql> {{ ?s ?p ?o }} }}",
                      # A line that starts with # inside a long string is text, not a comment.
                      f"SELECT * WHERE {{ BIND('''\n# ''' AS ?x) SERVICE <http://127.0.0.1:{port}/sparql> {{ ?s ?p ?o }} }}"):
            r = run("query", query)
            assert r.returncode == 1, r.stderr
            assert "SERVICE (federated query) is not allowed" in r.stderr and "--allow-service" in r.stderr
            assert "Traceback" not in r.stderr
        listener.settimeout(0.5)
        with pytest.raises(TimeoutError):
            listener.accept()  # nothing tried to connect
    library = tmp_path / "kb" / "queries"
    shutil.copytree(ROOT / "kb", tmp_path / "kb")
    shutil.copytree(ROOT / "site_templates", tmp_path / "site_templates")
    shutil.copy(ROOT / "evidence.toml", tmp_path / "evidence.toml")
    (library / "fetch.rq").write_text("# title: fetches\n# question: does the build fetch?\n# params: none\nSELECT * WHERE { SERVICE <http://127.0.0.1:9/> { ?s ?p ?o } }\n",
                                     encoding="utf-8")
    r = run("build", "--out", str(tmp_path / "_site"), cwd=tmp_path)
    assert r.returncode == 1 and "SERVICE (federated query) is not allowed" in r.stderr, r.stderr
    assert not (tmp_path / "_site").exists()


def test_an_ask_query_answers_true_or_false():
    """pyoxigraph answers ASK with a QueryBoolean, not a bool: it was taken for solutions (an
    internal error) until session 9."""
    for query, answer in (("ASK { ?c a ev:CaseReport }", "true"), ("ASK { ?c a ev:NoSuchClass }", "false")):
        r = run("query", query)
        assert r.returncode == 0 and r.stdout.strip() == answer, (query, r.stdout, r.stderr)


def test_a_sigterm_that_the_callers_handler_survives_returns_143():
    """main() unwinds a SIGTERM, then sends it again to the handler it found: when that handler (a
    caller's own) lets the process live, main returns EXIT_TERMINATED (143), as a shell reports."""
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGTERM, lambda *a: print('caller handled it', file=sys.stderr))\n"
              "import evidence.pipeline as p\n"
              "from evidence.errors import Terminated\n"
              "def stopped(*args, **kwargs):\n    raise Terminated()\n"
              "p.build = stopped\n"
              "from evidence.cli import main\n"
              "sys.exit(main(['build', '--out', sys.argv[1]]))\n")
    r = subprocess.run([sys.executable, "-c", script, "unused-site"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert r.returncode == 143, r.stderr
    assert "terminated" in r.stderr and "caller handled it" in r.stderr and "Traceback" not in r.stderr


def test_output_cut_short_by_a_closed_pipe_is_exit_0_without_a_traceback():
    """`evidence export | head -c 100`: the reader goes away; the command ends quietly."""
    p = subprocess.Popen([sys.executable, "-m", "evidence", "export", "--format", "nt"], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert p.stdout is not None and len(p.stdout.read(100)) == 100
    p.stdout.close()  # as head does when it has its bytes
    assert p.stderr is not None
    with p.stderr:
        err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "error" not in err


def test_a_missing_kb_folder_is_an_error_and_the_site_stays(tmp_path):
    """kb = "kbx" (a typo) or a kb folder moved away: read as an empty kb, this passed validate
    ("0 errors in 0 files") and a build replaced the site with an empty one, exit 0."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ROOT / "kb", project / "kb")
    shutil.copytree(ROOT / "site_templates", project / "site_templates")
    (project / "evidence.toml").write_text((ROOT / "evidence.toml").read_text(encoding="utf-8"), encoding="utf-8")
    site = tmp_path / "site"
    assert run("--root", str(project), "build", "--out", str(site)).returncode == 0
    before = {p: p.read_bytes() for p in site.rglob("*") if p.is_file()}
    toml = project / "evidence.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('kb = "kb"', 'kb = "kbx"', 1), encoding="utf-8")
    for args in (("validate",), ("build", "--out", str(site))):
        r = run("--root", str(project), *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "the kb folder" in r.stdout + r.stderr and "kbx" in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert {p: p.read_bytes() for p in site.rglob("*") if p.is_file()} == before


def test_a_shortage_does_not_advise_the_setting_already_in_force(monkeypatch):
    """With EVIDENCE_WORKERS=1 set, the advice was to set EVIDENCE_WORKERS=1."""
    import errno

    from evidence.errors import os_error_text

    short = OSError(errno.EAGAIN, "Resource temporarily unavailable")
    monkeypatch.delenv("EVIDENCE_WORKERS", raising=False)
    assert "set EVIDENCE_WORKERS=1" in os_error_text(short)
    monkeypatch.setenv("EVIDENCE_WORKERS", "1")
    said = os_error_text(short)
    assert "EVIDENCE_WORKERS" not in said and "ulimit -u" in said, said
