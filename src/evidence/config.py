"""The project's configuration, read from ``evidence.toml`` at the root of the repository."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import LoadError

__all__ = ["Config", "load_config", "SOURCE_TEXTS_ENV"]

SOURCE_TEXTS_ENV = "EVIDENCE_SOURCE_TEXTS"


@dataclass(frozen=True)
class Config:
    root: Path
    base_iri: str = "https://w3id.org/evidence-kb/"
    kb: str = "kb"
    source_texts: str = "../shared/seeds"
    repository: str = ""
    branch: str = "main"

    @property
    def kb_dir(self) -> Path:
        return self.root / self.kb

    def texts_dir(self) -> Path | None:
        """The folder of source texts, if it exists: the environment variable wins (one that
        names no folder is refused by :func:`load_config`)."""
        folder = self.texts_wanted()
        return folder if folder.is_dir() else None

    def texts_wanted(self) -> Path:
        """Where the source texts are looked for, whether or not they are there."""
        env = os.environ.get(SOURCE_TEXTS_ENV)
        return Path(env) if env else (self.root / self.source_texts)


def find_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for p in [here, *here.parents]:
        if (p / "evidence.toml").is_file():
            return p
    return here


def load_config(root: Path | str | None = None) -> Config:
    """Read ``evidence.toml`` from ``root`` (or the nearest parent that has one)."""
    base = find_root(Path(root) if root else None)
    env = os.environ.get(SOURCE_TEXTS_ENV)
    if env and not Path(env).is_dir():  # a typo would have turned every quote check off without a word
        raise LoadError(f"{SOURCE_TEXTS_ENV}={env} is not a folder: set it to the folder of source texts, or unset it "
                        f"(the default is source_texts in evidence.toml)")
    path = base / "evidence.toml"
    if not path.is_file():
        return Config(root=base)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8")).get("evidence", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise LoadError(f"{path}: cannot read the configuration: {exc}") from None
    known = {"base_iri", "kb", "source_texts", "repository", "branch"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LoadError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    base_iri = str(data.get("base_iri", Config.base_iri))
    if not base_iri.startswith(("http://", "https://")) or not base_iri.endswith(("/", "#")):
        raise LoadError(f"{path}: base_iri must be an http(s) IRI ending in / or #, found {base_iri!r}")
    return Config(root=base, **{k: str(v) for k, v in data.items()})
