"""One exception tree for the whole pipeline, and the diagnostics it carries.

::

    EvidenceError
     ├── LoadError          a file could not be read or parsed as safe YAML
     ├── ValidationError    the kb breaks one or more rules (carries every Diagnostic)
     ├── CompileError       the graph could not be built or fails its SHACL shapes
     ├── QueryError         a SPARQL query is malformed or failed
     ├── RenderError        the site or an export could not be written
     └── WorkerError        the machine could not start a worker process (out of processes or memory)

Every error formats itself for a curator: where, what, expected versus found, and a hint.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass

__all__ = [
    "Diagnostic",
    "EvidenceError",
    "LoadError",
    "ValidationError",
    "CompileError",
    "QueryError",
    "RenderError",
    "WorkerError",
    "Terminated",
    "Level",
    "FILE_ERRNOS",
    "RESOURCE_ERRNOS",
    "os_error_text",
]

# Errors of the machine's files that a user can set right, and its shortages (see cli: exit 1 and
# 4). Any other OSError (a file that exists where the code made sure none did ...) is a bug.
FILE_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT,
               errno.EIO, errno.ELOOP, errno.ENAMETOOLONG, errno.EXDEV, errno.ETXTBSY, errno.EBUSY}
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN}


def os_error_text(exc: OSError) -> str:
    """An error of the machine's files as a user can act on it: what failed, on which path, and
    what to check (used by the command line, and by the render workers, which send it back as text)."""
    what = exc.strerror or str(exc) or type(exc).__name__
    paths = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p is not None)
    if exc.errno in RESOURCE_ERRNOS:
        from .perf import worker_limit  # (perf needs this module first)

        alone = worker_limit() == 1  # the advice would be what is set already
        check = ("the machine ran short of memory, processes or open files: close other programs, or raise the limit (ulimit -u, ulimit -n)"
                 if alone else "the machine ran short of memory, processes or open files: run again, or set EVIDENCE_WORKERS=1")
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        check = "the disk that holds it (or your quota there) is full: free space on it, or build into a folder on another disk"
    else:
        check = "check that the folder exists, that you may write there and that the disk has room"
    return f"{what}" + (f": {paths}" if paths else "") + f" ({check})"


Level = str  # "error" | "warning" | "info"
_LEVEL_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, order=False)
class Diagnostic:
    """One problem found in one place of one file."""

    path: str
    line: int
    col: int
    message: str
    level: Level = "error"
    rule: str = ""
    field: str = ""
    expected: str = ""
    found: str = ""
    hint: str = ""

    def sort_key(self) -> tuple:
        return (self.path, self.line, self.col, _LEVEL_ORDER.get(self.level, 9), self.rule, self.message)

    def text(self) -> str:
        """The human form: ``path:line:col: level: message; expected ..., found ...; hint``."""
        parts = [self.message]
        if self.expected:
            parts.append(f"expected {self.expected}")
        if self.found:
            parts.append(f"found {self.found}")
        msg = "; ".join(parts)
        if self.hint:
            msg += f" (hint: {self.hint})"
        return f"{self.path}:{self.line}:{self.col}: {self.level}: {msg}"

    def github(self) -> str:
        """A GitHub Actions workflow command, so the problem shows on the changed line."""
        kind = {"error": "error", "warning": "warning"}.get(self.level, "notice")
        body = self.text().split(": ", 2)[-1]
        body = body.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        title = (self.rule or "evidence").replace(",", "%2C").replace("::", "%3A%3A")
        return f"::{kind} file={self.path},line={self.line},col={self.col},title={title}::{body}"

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "line": self.line,
            "col": self.col,
            "level": self.level,
            "rule": self.rule,
            "field": self.field,
            "message": self.message,
            "expected": self.expected,
            "found": self.found,
            "hint": self.hint,
        }


def sort_diagnostics(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Sorted, with exact repeats removed."""
    seen: set[tuple] = set()
    out = []
    for d in sorted(diags, key=Diagnostic.sort_key):
        k = (d.sort_key(), d.field)
        if k not in seen:
            seen.add(k)
            out.append(d)
    return out


class EvidenceError(Exception):
    """Base of every error the pipeline raises on purpose."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None):
        super().__init__(message)
        self.message = message
        self.diagnostics = sort_diagnostics(list(diagnostics or []))

    def __str__(self) -> str:
        if not self.diagnostics:
            return self.message
        return "\n".join([d.text() for d in self.diagnostics] + [self.message])

    def to_json(self) -> str:
        return json.dumps({"message": self.message, "diagnostics": [d.as_dict() for d in self.diagnostics]}, indent=2)


class LoadError(EvidenceError):
    """A file could not be read, or is not safe, well-formed YAML."""


class ValidationError(EvidenceError):
    """The kb breaks one or more rules; ``diagnostics`` lists them all."""


class CompileError(EvidenceError):
    """The graph could not be built, or the built graph violates its SHACL shapes."""


class QueryError(EvidenceError):
    """A SPARQL query is malformed, names an unknown prefix, or failed to run."""


class RenderError(EvidenceError):
    """The site or an export could not be written."""


class WorkerError(EvidenceError):
    """A worker process could not be started (fork failed: the machine is out of processes or
    memory), after the build had handed it work; nothing was written in place of the old output."""


class Terminated(BaseException):
    """SIGTERM arrived (``kill``, ``timeout``, ``docker stop``, systemd, a CI job cancelled).

    Raised in the command's main thread by the handler that :func:`evidence.cli.main` installs, so
    that the stack unwinds as on Ctrl-C (a ``KeyboardInterrupt``): a build removes its unfinished
    folder and stops its workers, the server its temporary files. Like ``KeyboardInterrupt``, it is
    not an ``Exception``: no ``except Exception`` swallows it."""
