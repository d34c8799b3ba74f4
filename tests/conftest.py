"""Shared fixtures: the repository, its config, the compiled founding kb and one real build."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # so the tests run without an install, too

from evidence.config import load_config  # noqa: E402
from evidence.pipeline import build, compile_checked, load_and_validate  # noqa: E402

# Every build the tests make checks the entity pages' memo against the keys worked out in full
# (evidence.site_memo): a memo that would serve a stale page fails the build instead.
os.environ.setdefault("EVIDENCE_CHECK_MEMO", "1")


def texts_required() -> bool:
    """In CI the source texts must be there: a quote check that silently skips proves nothing."""
    return os.environ.get("CI", "").lower() == "true"


# The source texts, as .ci/run and the Makefile find them (beside the checkout, or named by
# EVIDENCE_SOURCE_TEXTS). A contributor's clone may not have them.
SEEDS = Path(os.environ.get("EVIDENCE_SOURCE_TEXTS") or ROOT.parent / "shared" / "seeds")


def seeds_env() -> dict[str, str]:
    """EVIDENCE_SOURCE_TEXTS for a copy of the project (its evidence.toml's relative default
    does not reach the texts from there): the texts, when they are here or must be (CI); none
    otherwise, so that the copy builds with a note that they are missing, as the project does.
    Named when missing, the setting was an error, and a clone without ../shared failed 10 tests."""
    return {"EVIDENCE_SOURCE_TEXTS": str(SEEDS)} if SEEDS.is_dir() or texts_required() else {}


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def config():
    return load_config(ROOT)


@pytest.fixture(scope="session")
def kb(config):
    return load_and_validate(config)


@pytest.fixture(scope="session")
def compiled(kb):
    return compile_checked(kb)


@pytest.fixture(scope="session")
def site(config, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "_site"
    build(config, out)
    return out


@pytest.fixture
def linker_processes(monkeypatch) -> list[int]:
    """The processes started by evidence.linker while the test runs (their PIDs, in order)."""
    started: list[int] = []
    real = os.posix_spawn

    def counted(path, argv, *args, **kwargs):
        pid = real(path, argv, *args, **kwargs)
        if any("os.link(" in a for a in argv):
            started.append(pid)
        return pid

    monkeypatch.setattr(os, "posix_spawn", counted)
    return started
