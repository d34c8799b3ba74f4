"""Stage 1: find the kb's files and read them as YAML, keeping positions.

Layout of a kb folder::

    kb/<case-id>.yaml              case reports, one per publication
    kb/sources/<source-id>.yaml    publication records
    kb/vocabulary/<kind>.yaml      genes, drugs, diseases, measures, phenotypes
    kb/queries/*.rq                the SPARQL query library (read by the query stage)

Nothing else of the kb is read, so anything a curator may have meant as a kb file is reported
rather than left out without a word: a YAML file named ``.yml`` or ``.YAML``, a folder of YAML
files anywhere else, a file named on the command line that is not in one of those places.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Diagnostic, LoadError
from .schema import VOCABULARY_KINDS
from .yamlio import MAX_BYTES, YamlDoc, load_yaml_bytes

__all__ = ["KbFile", "RawKb", "FileShas", "REFUSED", "Refusal", "discover", "leaves_kb", "read_kb", "real_path", "file_kind", "yaml_files_under"]


class KbFile:
    """One kb file: what kind it is, where it is, the SHA-256 of its bytes, and its YAML (None if
    it could not be read).

    The YAML is parsed on first use: a file whose checked model comes from the build cache is
    never parsed, unless a check across files needs the position of one of its fields.
    """

    def __init__(self, kind: str, path: Path, display: str, doc: YamlDoc | None = None, sha: str = "", raw: bytes | None = None,
                 unread: bool = False):
        """``unread``: the file was not read, its ``sha`` is known (see :class:`FileShas`); it is
        read when its YAML is asked for, as a file whose bytes were forgotten is, and if its bytes
        are not those any more, asking for its YAML is a LoadError (validate_kb reports it)."""
        self.kind = kind  # "case" | "source" | "vocabulary:<kind>"
        self.path = path
        self.display = display
        self.sha = sha
        self.model: Any = None  # set by the validate stage; None for a case whose model the build cache has (see Kb.cases)
        self.problems: list[Diagnostic] = []  # what reading it found (set when it is parsed)
        self._doc = doc
        self._raw = raw
        self._parsed = not unread and (doc is not None or raw is None)  # not parsed and no bytes: forgotten (forget_bytes)
        self._unread = unread

    @property
    def doc(self) -> YamlDoc | None:
        if not self._parsed:
            data = self._raw if self._raw is not None else self._read_again()
            if data is None and self._unread:  # never read, and changed or gone since it was listed
                raise LoadError(f"{self.display}: the file changed or went while the build read it", [
                    Diagnostic(self.display, 1, 1, "the file changed or went while the build read it", rule="file-read",
                               hint="build again once nothing is writing to the kb")])
            if data is None:  # changed or gone since it was validated: no positions
                self._doc = None
            else:
                if self._unread:  # read now, and the bytes are those listed: a file like any other from here on
                    self._raw, self._unread = data, False
                self._doc, self.problems = load_yaml_bytes(data, self.display)
            self._parsed = True
        return self._doc

    def forget_bytes(self) -> None:
        """Drop the file's bytes and parsed YAML once it is validated (at 10,000 cases the bytes
        were 100 MB, kept to the end of the build). Asked for its YAML again (a command that
        reports the position of a field), it reads the file again; if the file has changed since,
        its YAML is None, as for a file that could not be read."""
        self.release()
        self._raw = None

    def _read_again(self) -> bytes | None:
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == self.sha else None

    def release(self) -> None:
        """Drop the parsed YAML (it is most of a kb's memory); it is parsed again if needed."""
        if self._raw is not None:
            self._doc, self._parsed = None, False

    def __repr__(self) -> str:
        return f"KbFile({self.kind!r}, {self.display!r})"


@dataclass
class RawKb:
    root: Path
    files: list[KbFile] = field(default_factory=list)

    def of_kind(self, prefix: str) -> list[KbFile]:
        return [f for f in self.files if f.kind.startswith(prefix)]


class _Resolver:
    """``Path.resolve`` for the many files of a few folders: each folder is resolved once (at
    10,000 cases, resolving every file twice took 4 s of a rebuild). A file that is a symbolic
    link is resolved in full."""

    def __init__(self) -> None:
        self.folders: dict[Path, Path] = {}
        self.done: dict[Path, Path] = {}  # each path is resolved once (the kb folder, asked for every file)

    def __call__(self, p: Path) -> Path:
        got = self.done.get(p)
        if got is not None:
            return got
        if p.name in ("", ".", "..") or p.is_symlink():
            got = real_path(p)
        else:
            real = self.folders.get(p.parent)
            if real is None:
                real = self.folders[p.parent] = p.parent.resolve()
            got = real / p.name
        self.done[p] = got
        return got


def file_kind(path: Path, kb_dir: Path, resolve: Callable[[Path], Path] = Path.resolve) -> str | None:
    """The kind of a file from its place in the kb, or None if it is not a kb YAML file (named
    ``*.yaml``, in the kb folder, its sources/ or its vocabulary/)."""
    if path.suffix != ".yaml":
        return None
    try:
        rel = resolve(path).relative_to(resolve(kb_dir))
    except ValueError:
        # A file outside the kb (a test fixture): guess from its parent folder's name.
        parent = path.parent.name
        if parent == "sources":
            return "source"
        if parent == "vocabulary":
            return f"vocabulary:{path.stem}"
        return "case"
    parts = rel.parts
    if len(parts) == 1:
        return "case"
    if len(parts) == 2 and parts[0] == "sources":
        return "source"
    if len(parts) == 2 and parts[0] == "vocabulary":
        return f"vocabulary:{path.stem}"
    return None


def _display(path: Path, base: Path, resolve: Callable[[Path], Path] = Path.resolve) -> str:
    try:
        return str(resolve(path).relative_to(resolve(base)))
    except ValueError:
        return str(path)


_FOLDERS = (("", "case"), ("sources", "source"), ("vocabulary", "vocabulary:"))  # where each kind of file is, in the kb
_OTHER_FOLDERS = {"queries"}  # the kb's folders of other files (see the module's text)
REFUSED = "refused"  # the kind discover() gives what it will not read (see Refusal)
_KB_FILES = "kb/<id>.yaml, kb/sources/<id>.yaml and kb/vocabulary/<kind>.yaml"


@dataclass(frozen=True)
class Refusal:
    """Why discover() will not read a path, as :func:`read_kb` reports it."""

    message: str
    rule: str
    hint: str


_NOT_A_FILE = Refusal("not a file: it is named like a kb file, but is a folder or another kind of file", "file-name",
                      "a kb file is a YAML text file: remove it, or rename it")


def _link_refusal(problem: str) -> Refusal:
    return Refusal(problem, "file-link", "put the file or folder itself in the kb folder, in place of the link")


def _looks_yaml(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml")) and not name.startswith(".")


def _misnamed(name: str) -> Refusal:
    stem = name.rsplit(".", 1)[0]
    return Refusal(f"'{name}' is not read: kb files are named *.yaml", "file-name", f"rename it to {stem}.yaml")


def yaml_files_under(folder: Path) -> list[Path]:
    """Every YAML file under a folder named on the command line, misnamed ones too (validate says
    they are not read), sorted; not the query library's (``queries/``, relative to ``folder``)."""
    return sorted(q for q in folder.rglob("*") if _looks_yaml(q.name) and q.is_file() and "queries" not in q.relative_to(folder).parts)


def _holds_yaml(folder: str) -> bool:
    for _dirpath, _dirs, names in os.walk(folder):
        if any(_looks_yaml(n) for n in names):
            return True
    return False


_STRAY_FOLDER = Refusal("this folder is not part of the kb: its YAML files are not read", "file-name",
                        "put case files in kb/, source records in kb/sources/ and vocabulary files in kb/vocabulary/")


def real_path(p: Path) -> Path:
    """``p`` resolved, or as it is where it cannot be (a loop of links: reading it, or
    :func:`leaves_kb`, says so)."""
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python 3.11's word for a loop
        return p.absolute()


def leaves_kb(path: Path, kb_real: Path, folder: bool = False) -> str | None:
    """Why ``path``, a file of the kb (or with ``folder``, one of its folders), must not be read:
    through a symbolic link (its own, or a folder's on its way) it leads out of the kb folder
    ``kb_real`` (resolved), to nothing, round in a loop, or to a folder where a file belongs (or the
    reverse). None when it may be read, or does not exist. Pull requests may hold links: a link to
    /etc/passwd, read as a case, showed its first line in an error."""
    what = "the folder" if folder else "the file"
    try:
        target = os.readlink(path)
    except OSError:
        target = None
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        return f"{what} is a symbolic link to {target}, which does not exist" if os.path.islink(path) else None
    except RuntimeError:  # Python 3.11's word for a loop
        return f"{what} is a symbolic link to {target}, which leads back to itself (a loop)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{what} is a symbolic link to {target}, which leads back to itself (a loop)"
        return f"{what} cannot be read: {exc.strerror or exc}"
    shown = target if target is not None else str(real)
    if not real.is_relative_to(kb_real):
        return f"{what} leads to {shown}, outside the kb folder: the kb is read from its own folder only"
    if folder != real.is_dir():
        return f"{what} is a symbolic link to {shown}, a {'file' if folder else 'folder'}"
    return None


def discover(kb_dir: Path, extra: list[Path] | None = None, resolve: Callable[[Path], Path] | None = None,
             why: dict[Path, Refusal] | None = None) -> list[tuple[str, Path]]:
    """Every kb file, sorted, as (kind, path); ``extra`` files are added to the kb as well.

    Each folder is listed once (``os.scandir``): a regular file's kind is its folder's, and only
    a symbolic link is resolved to find it (at 10,000 cases, a glob and a ``resolve`` per file took
    about a second of every build). Listed with the kind ``REFUSED``, never read, and reported by
    :func:`read_kb` (``why``, if given, gets a :class:`Refusal` for each): a symbolic link in the kb
    that does not lead to a file inside the kb folder (see :func:`leaves_kb`), a folder of the kb
    linked out of it, a YAML file not named ``*.yaml``, a folder of YAML files that is not one of
    the kb's, and a file of ``extra`` that is not a kb file."""

    def refuse(p: Path, refusal: Refusal) -> None:
        found.append((REFUSED, p))
        if why is not None:
            why[p] = refusal

    resolve = resolve or _Resolver()
    found: list[tuple[str, Path]] = []
    inside = resolve(kb_dir)
    for folder, kind in _FOLDERS:
        where = kb_dir / folder if folder else kb_dir
        problem = leaves_kb(where, inside, folder=True) if folder and os.path.islink(where) else None
        if problem:
            refuse(where, _link_refusal(problem))  # none of its files is read
            continue
        try:
            with os.scandir(where) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except FileNotFoundError:  # a folder the kb does not have (no sources yet): no file
            continue
        except OSError as exc:  # there, but not listed: every file in it would be missing without a word
            refuse(where, Refusal(f"cannot read the folder: {exc.strerror or exc}", "unreadable",
                                  "check the folder's permissions: none of its files was read"))
            continue
        for e in entries:
            p = where / e.name
            if not (e.name.endswith(".yaml") and e.name != ".yaml"):
                if _looks_yaml(e.name) and not e.is_dir():
                    refuse(p, _misnamed(e.name))
                elif (e.is_dir(follow_symlinks=False) and not e.name.startswith(".") and (folder or e.name not in _OTHER_FOLDERS)
                      and (folder or e.name not in dict(_FOLDERS)) and _holds_yaml(e.path)):
                    refuse(p, _STRAY_FOLDER)
                continue
            if e.is_symlink():
                problem = leaves_kb(p, inside)
                if problem:
                    refuse(p, _link_refusal(problem))
                    continue
                k = file_kind(p, kb_dir, resolve)
            else:
                k = kind + e.name[: -len(".yaml")] if kind == "vocabulary:" else kind
            if k and e.is_file():
                found.append((k, p))
            elif k and not e.is_symlink():  # a folder, a FIFO ... named like a kb file: not read, and said so
                refuse(p, _NOT_A_FILE)
    strays = [resolve(q) for q in (why or {}) if why is not None and why[q] is _STRAY_FOLDER]
    for p in extra or []:
        if any(resolve(p) == resolve(q) for _, q in found) or any(top in resolve(p).parents for top in strays):
            continue  # listed already, or in a folder reported as not part of the kb
        kind = file_kind(p, kb_dir, resolve)
        if kind:
            found.append((kind, p))
        else:  # named on the command line, and not a kb file: checked by nothing, so said
            refuse(p, _misnamed(p.name) if _looks_yaml(p.name) and p.suffix != ".yaml" else
                   Refusal(f"not a kb file: only {_KB_FILES} are read", "file-name", "move it into the kb folder, or name a kb file"))
    return found


class FileShas:
    """The SHA-256 of each kb file as a build read it, with the file's identity on disk then
    (inode, size, modification and change times in ns), so that the next build need not read a
    file whose identity is the same (as git's index and make trust a file's times): at 10,000
    cases reading every file took 0.8 s of a rebuild after one edit.

    The change time is set by the kernel on every write and cannot be set back. A file changed
    less than ``SETTLE_NS`` before the record was made is read again all the same: two writes
    within one tick of the file system's clock can leave the same times (git's "racily clean"
    files)."""

    SETTLE_NS = 2_000_000_000

    def __init__(self, previous: dict[str, tuple] | None = None, made_ns: int = 0):
        self.previous = previous or {}  # path -> (*identity, sha)
        self.made_ns = made_ns  # when the previous record was begun
        self.now_ns = self._now()  # this record's
        self.record: dict[str, tuple] = {}

    @staticmethod
    def _identity(st: os.stat_result) -> tuple[int, ...]:
        """(device, inode, size, modification time, change time): the change time last."""
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @staticmethod
    def _now() -> int:
        return time.time_ns()

    def known(self, path: Path, st: os.stat_result) -> str | None:
        """The SHA-256 of the file at ``path`` if its identity is the one recorded and it had
        settled when the record was made; None otherwise (read it)."""
        rec = self.previous.get(str(path))
        if rec is None:
            return None
        identity = self._identity(st)
        if rec[:-1] != identity or identity[-1] >= self.made_ns - self.SETTLE_NS:
            return None
        self.record[str(path)] = rec
        return rec[-1]

    def note(self, path: Path, st: os.stat_result, sha: str) -> None:
        self.record[str(path)] = (*self._identity(st), sha)

    def state(self) -> tuple[int, dict[str, tuple]]:
        """What to keep for the next build (see :meth:`from_state`)."""
        return (self.now_ns, self.record)

    @classmethod
    def from_state(cls, state: Any) -> FileShas:
        """The record :meth:`state` made; an empty one if ``state`` is not one."""
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], int) and isinstance(state[1], dict):
            return cls(state[1], state[0])
        return cls()


def _read_file(p: Path) -> tuple[os.stat_result, bytes | None]:
    """The file's identity and bytes (None over MAX_BYTES), taken from one open file, so that the
    identity noted is never newer than the bytes read (a write after it changes the change time)."""
    with open(p, "rb") as fh:
        st = os.fstat(fh.fileno())
        return st, fh.read() if st.st_size <= MAX_BYTES else None


def read_kb(kb_dir: Path, base: Path, extra: list[Path] | None = None, shas: FileShas | None = None) -> tuple[RawKb, list[Diagnostic]]:
    """Read every file of the kb (and ``extra``), collecting every YAML problem. With ``shas``,
    a file whose SHA-256 it knows is not read (see :class:`FileShas`), and what is read is noted."""
    raw = RawKb(root=kb_dir)
    diags: list[Diagnostic] = []
    resolve = _Resolver()
    prefixes: dict[Path, str | None] = {}  # each folder's name relative to base, for the files of it that were not resolved

    def display(p: Path, follow: bool = True) -> str:
        if follow and p in resolve.done:  # a symbolic link, or a file named on the command line
            return _display(p, base, resolve)
        if p.parent not in prefixes:
            try:
                rel = str(resolve(p.parent).relative_to(resolve(base)))
                prefixes[p.parent] = "" if rel == "." else rel + os.sep  # as str(Path) joins
            except ValueError:
                prefixes[p.parent] = None
        prefix = prefixes[p.parent]
        return str(p) if prefix is None else prefix + p.name

    refused: dict[Path, Refusal] = {}
    for kind, p in discover(kb_dir, extra, resolve, why=refused):
        shown = display(p, follow=kind != REFUSED)  # a link out of the kb is named by its place in it
        if kind == REFUSED:
            r = refused[p]
            diags.append(Diagnostic(shown, 1, 1, r.message, rule=r.rule, hint=r.hint))
            continue
        if kind.startswith("vocabulary:") and kind.split(":", 1)[1] not in VOCABULARY_KINDS:
            diags.append(
                Diagnostic(shown, 1, 1, f"unknown vocabulary file '{p.name}'", rule="vocabulary-file",
                           expected=", ".join(f"{k}.yaml" for k in VOCABULARY_KINDS), hint="rename it or move it out of kb/vocabulary/")
            )
            continue
        try:
            known = shas.known(p, os.stat(p)) if shas is not None else None
            if known is not None:
                raw.files.append(KbFile(kind=kind, path=p, display=shown, sha=known, unread=True))
                continue
            st, data = _read_file(p)
        except OSError as exc:
            diags.append(Diagnostic(shown, 1, 1, f"cannot read the file: {exc.strerror or exc}", rule="file-read"))
            continue
        if data is None:
            diags.append(Diagnostic(shown, 1, 1, f"the file is {st.st_size:,} bytes, over the limit of {MAX_BYTES:,}", rule="file-size",
                                    hint="split it into one file per publication"))
            continue
        sha = hashlib.sha256(data).hexdigest()
        if shas is not None:
            shas.note(p, st, sha)
        raw.files.append(KbFile(kind=kind, path=p, display=shown, sha=sha, raw=data))
    return raw, diags
