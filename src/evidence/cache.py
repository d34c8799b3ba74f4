"""A build cache keyed by content: what a stage made from a file is kept under a hash of
everything it was made from, so an unchanged input is never worked on twice and a changed one
is never served stale.

A key is a SHA-256 over the stage's name, the code that runs it (every module of the package and
every site template), and the stage's own inputs (file bytes, the vocabulary, the source texts,
...). Entries are pickles in ``.cache/build/`` (``EVIDENCE_CACHE`` names another folder, ``off``
turns the cache off). The folder is local to the machine that built it: it is never committed and
never read from a contribution, so unpickling it runs only what this build itself wrote. Entries
are written to a temporary file and renamed, so an interrupted build leaves no torn entry; one
that cannot be read is treated as missing.

The stages that every build reads whole (``PACKED_STAGES``: a checked model and a compiled part
for each kb file) are kept in one *pack* per stage once a build has read many entries from single
files (not those it made itself, so that a cold build does not pay for a pack): ``<stage>/pack``, the entries' pickles one after another and an index of their byte
ranges at the end, read through one open file. Opening 20,000 single entries took 1.7 s of a
10,000-case rebuild for each stage. A pack is written whole into a temporary file and renamed, like
an entry; one that cannot be read is ignored. Entries made since are single files until the next
pack.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["BuildCache", "digest", "code_digest", "CACHE_ENV", "PACKED_STAGES"]

CACHE_ENV = "EVIDENCE_CACHE"
KEPT_STAGES = ("outputs",)  # never pruned, see BuildCache.prune
PACKED_STAGES = ("validate", "compile")  # read whole by every build: kept in packs
_PACK_MAGIC = b"evidence-pack 1\n"
_PACKAGE = Path(__file__).resolve().parent


def digest(*parts: bytes | str) -> str:
    """SHA-256 of the parts, each length-prefixed so that no two lists of parts collide."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8") if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "big"))
        h.update(b)
    return h.hexdigest()


_CODE: dict[tuple, str] = {}
# Libraries whose output ends up in what the cache keeps (models, graphs, pages, RDF pieces): a new
# version of one may change it, so their versions are part of every key.
_LIBRARIES = ("jinja2", "lxml", "markupsafe", "networkx", "pagefind", "pagefind_bin_extended", "pydantic", "pydantic_core", "pyoxigraph", "pyshacl_turbo", "PyYAML")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in _LIBRARIES:
        try:
            out.append(f"{name}={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name}=none")
    return ",".join(out)


def code_digest(extra: Iterable[Path] = ()) -> str:
    """A hash of the package's own code (and ``extra`` files, such as templates) and of the
    versions of the libraries it builds with: a new version of either never reuses what an older
    one made. Remembered while no file changes (size and modification time), so a template edited
    between two builds in one process is seen."""
    files = sorted(_PACKAGE.glob("*.py")) + sorted(extra)
    stats = []
    for f in files:
        try:
            st = f.stat()
            stats.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((str(f), -1, -1))
    memo = tuple(stats)
    if memo not in _CODE:
        _CODE[memo] = digest(_versions(), *(f"{f.name}\0".encode() + f.read_bytes() for f in files if f.is_file()))
    return _CODE[memo]


class BuildCache:
    """Entries by key; ``None`` as the folder is a cache that keeps nothing."""

    # A stage is packed again when this many of the entries a build used are not in its pack
    # (and they are at least PACK_SHARE of those used), or when most of the pack is unused.
    PACK_FROM = 64
    PACK_SHARE = 0.02

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.hits = 0
        self.misses = 0
        self.used: set[tuple[str, str]] = set()
        self._made: dict[str, int] = {}
        self._packs: dict[str, _Pack | None] = {}
        self._replaced: set[tuple[str, str]] = set()  # packed entries that a single file overrides
        self._from_files: dict[str, int] = {}  # entries of a packed stage read from single files

    @classmethod
    def for_root(cls, root: Path) -> BuildCache:
        env = os.environ.get(CACHE_ENV, "")
        if env.lower() in ("off", "0", "no", "false"):
            return cls(None)
        return cls(Path(env) if env else root / ".cache" / "build")

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def _path(self, stage: str, key: str) -> Path:
        assert self.folder is not None
        return self.folder / stage / key[:2] / f"{key}.pickle"

    def get(self, stage: str, key: str) -> Any:
        """The entry, or ``None`` if there is none (or it cannot be read)."""
        if self.folder is None:
            return None
        self.used.add((stage, key))
        try:
            raw = self._pack(stage).read(key) if stage in PACKED_STAGES and (stage, key) not in self._replaced else None
            if raw is not None:
                try:
                    value = pickle.loads(raw)
                except _UNREADABLE:
                    self._replaced.add((stage, key))  # a damaged packed entry: the single file, or a miss
                    raw = None
            if raw is None:
                with open(self._path(stage, key), "rb") as fh:
                    value = pickle.load(fh)
                self._from_files[stage] = self._from_files.get(stage, 0) + 1
        except _UNREADABLE:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def _pack(self, stage: str) -> _Pack:
        if stage not in self._packs:
            assert self.folder is not None
            self._packs[stage] = _Pack.open(self.folder / stage / "pack")
        return self._packs[stage] or _NO_PACK

    def touch(self, stage: str, key: str) -> None:
        """Keep an entry that this build did not need to read (see :meth:`prune`)."""
        if self.folder is not None:
            self.used.add((stage, key))

    def put(self, stage: str, key: str, value: Any) -> None:
        if self.folder is None:
            return
        self.used.add((stage, key))
        self._made[stage] = self._made.get(stage, 0) + 1
        if stage in PACKED_STAGES and key in self._pack(stage).index:
            # Made again under a key the pack holds (a validated file whose cited sources
            # changed): the single file is the entry now, and the next pack takes it.
            self._replaced.add((stage, key))
        path = self._path(stage, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            # A cache that cannot be written (read-only checkout, full disk) only costs speed.
            try:
                os.unlink(tmp)
            except (OSError, UnboundLocalError):
                pass

    def made(self, stage: str) -> int:
        """How many entries of ``stage`` this cache object has had to make (and store)."""
        return self._made.get(stage, 0)

    def prune(self) -> int:
        """Delete every entry this build did not use (call after a build that succeeded), so the
        folder holds one build's worth, not every build's; return how many were deleted. The
        records of site folders (stage ``outputs``, one small entry per folder built into) stay,
        so that builds into two folders do not undo each other's. A packed stage is packed again
        first when this build read many of its entries from single files, when an entry of its
        pack was made again, or when less than half of the pack was used (see the module's text);
        until then a pack may hold entries that this build did not use."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        for stage in PACKED_STAGES:
            self._repack(stage)
        gone = 0
        for path in self.folder.glob("*/*/*.pickle"):
            if path.parent.parent.name not in KEPT_STAGES and (path.parent.parent.name, path.stem) not in self.used:
                try:
                    path.unlink()
                    gone += 1
                except OSError:
                    pass
        return gone

    def _repack(self, stage: str) -> None:
        """Write a new pack of the entries of ``stage`` this build used, when it is worth it."""
        assert self.folder is not None
        used = sorted(key for st, key in self.used if st == stage)
        pack = self._pack(stage)
        if pack is _NO_PACK and (self.folder / stage / "pack").exists():
            try:  # a pack that cannot be read: the entries made instead are single files now
                (self.folder / stage / "pack").unlink()
            except OSError:
                pass
        replaced = {key for st, key in self._replaced if st == stage}
        # Entries this build made are not counted: a cold build (every build in CI) does not pay
        # for a pack (about 8 s at 10,000 cases); the first build that reads them does.
        read = self._from_files.get(stage, 0)
        if not used or not (replaced or read >= max(self.PACK_FROM, self.PACK_SHARE * len(used))
                            or len(pack.index) > 2 * len(used) >= self.PACK_FROM):
            return
        folder = self.folder / stage
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-pack-")
        except OSError:
            return
        try:
            index: dict[str, tuple[int, int]] = {}
            with os.fdopen(fd, "wb") as fh:
                fh.write(_PACK_MAGIC)
                for key in used:
                    raw = pack.read(key) if key not in replaced else None
                    if raw is None:
                        try:
                            raw = self._path(stage, key).read_bytes()
                        except OSError:
                            continue  # used, but not kept (a cache that could not be written)
                    index[key] = (fh.tell(), len(raw))
                    fh.write(raw)
                tail = pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL)
                fh.write(tail)
                fh.write(len(tail).to_bytes(8, "big"))
            os.replace(tmp, folder / "pack")
        except BaseException as exc:  # an interrupted or failed pack leaves no temporary file
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, (OSError, ValueError)):
                return  # a cache that cannot be written only costs speed
            raise
        pack.close()
        self._packs.pop(stage, None)
        for path in folder.glob("*/*.pickle"):  # every entry used is in the pack now, the rest unused
            try:
                path.unlink()
            except OSError:
                pass


_UNREADABLE = (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, IndexError, TypeError, ValueError)


class _Pack:
    """A stage's pack (see the module's text): an open file and the byte range of each entry."""

    def __init__(self, fd: int | None = None, index: dict[str, tuple[int, int]] | None = None):
        self.fd = fd
        self.index = index or {}

    @classmethod
    def open(cls, path: Path) -> _Pack | None:
        """The pack at ``path``; None if there is none or it cannot be read whole."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            size = os.fstat(fd).st_size
            if os.pread(fd, len(_PACK_MAGIC), 0) != _PACK_MAGIC or size < len(_PACK_MAGIC) + 8:
                raise ValueError("not a pack")
            n = int.from_bytes(os.pread(fd, 8, size - 8), "big")
            if n > size - 8 - len(_PACK_MAGIC):
                raise ValueError("a torn pack")
            index = pickle.loads(os.pread(fd, n, size - 8 - n))
            if not isinstance(index, dict) or any(off < len(_PACK_MAGIC) or length < 0 or off + length > size - 8 - n for off, length in index.values()):
                raise ValueError("an entry lies outside the pack")
        except _UNREADABLE:
            os.close(fd)
            return None
        return cls(fd, index)

    def read(self, key: str) -> bytes | None:
        where = self.index.get(key)
        if where is None or self.fd is None:
            return None
        raw = os.pread(self.fd, where[1], where[0])
        return raw if len(raw) == where[1] else None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __del__(self) -> None:
        self.close()


_NO_PACK = _Pack()
