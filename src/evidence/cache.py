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

The stages with an entry per kb file (``PACKED_STAGES``: a checked model and a compiled part for
each kb file, which every build reads; what the evidence table needs of each case and its rows;
the words of each case and source for the search index, read for the search bundles remade; the
export pieces of every graph, which every build keeps) keep their entries in *packs*, not in
single files: ``<stage>/pack-<time>-<pid>``, the entries' pickles one after another and an
index of their byte ranges at the end, read through one open file each. Opening 20,000 single
entries took 1.7 s of a 10,000-case rebuild for each stage. A build appends what it makes to a new pack as it goes (a temporary file, sealed with its
index and renamed when the build ends, successful or not), so a cold build writes one file per
stage instead of 20,000, and the first rebuild after it reads them as fast as any other. A key is
looked up in the newest pack first. One that cannot be read is ignored, and deleted by the next
build that prunes; an interrupted build leaves its entries unsealed, never read, and deleted once a
day old. When a stage has more than ``MAX_PACKS`` packs, those newer than its largest are merged
into one; when at least half the entries its packs hold are unused, the used ones are packed anew
(see :meth:`BuildCache.prune`). A packed stage may also hold *raw* entries, bytes kept as they are
(:meth:`BuildCache.put_raw`): a compiled chunk, which the build names where it lies in the pack
(:meth:`BuildCache.raw_range`, :meth:`evidence.spool.Spool.add_ref`) instead of reading it.

Only the process that made a cache writes into it: in a forked worker :meth:`BuildCache.put` keeps
nothing (a pack is its writer's own, and a worker's would never be sealed).
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import shutil
import tempfile
import time
import weakref
import zlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["BuildCache", "digest", "code_digest", "library_versions", "CACHE_ENV", "PACKED_STAGES", "TRASH", "TEMPLATES"]

CACHE_ENV = "EVIDENCE_CACHE"
KEPT_STAGES = ("outputs",)  # never pruned, see BuildCache.prune
TRASH = "trash"  # replaced site folders being deleted, not a stage (see outputs.discard_tree)
TEMPLATES = "templates"  # the site templates compiled by Jinja2 (its bytecode cache, see render.environment): a folder per
# version of the code, the key a build touches; prune deletes the others
# Kept in packs: the stages with an entry per kb file that every build reads or keeps (a file's
# checked model and compiled part, what the evidence table needs of a case and its rows, a case's
# or source's words for the search index, the export pieces of every graph: as single files,
# listing the export stage's 20,000 for BuildCache.prune took 0.85 s of a 10,000-case rebuild).
PACKED_STAGES = ("validate", "compile", "evidence-summary", "evidence-rows", "search-text", "export")
_PACK_MAGIC = b"evidence-pack 2\n"  # 2: each entry has its CRC-32 in the index (see _Indexed.read)
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
_LIBRARIES = ("jinja2", "markupsafe", "networkx", "pagefind", "pagefind_bin_extended", "pydantic", "pydantic_core", "pyoxigraph", "pyshacl_turbo", "PyYAML")


@functools.cache
def library_versions() -> str:
    """The versions of the libraries whose output the cache keeps, the interpreter's and zlib's
    (as every key holds them, see :func:`code_digest`): for an entry that depends on them but
    not on the package's code (what Pagefind reads of a page, see evidence.site_search)."""
    return _versions()


def _versions() -> str:
    """The libraries' versions, and the interpreter's and zlib's: the whole-graph files' gzip
    members carry an OS byte that Python 3.13 writes differently from 3.11, and another zlib
    may compress the same bytes differently."""
    import sys
    import zlib
    from importlib.metadata import PackageNotFoundError, version

    out = [f"python={sys.version_info[0]}.{sys.version_info[1]}", f"zlib={zlib.ZLIB_RUNTIME_VERSION}"]
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
        _CODE[memo] = digest(library_versions(), *(f"{f.name}\0".encode() + f.read_bytes() for f in files if f.is_file()))
    return _CODE[memo]


class BuildCache:
    """Entries by key; ``None`` as the folder is a cache that keeps nothing."""

    # A stage's packs are merged when it has more than MAX_PACKS of them (those newer than the
    # largest: the edits since it was written), and its used entries packed anew when fewer than
    # half of its entries were used and at least PACK_FROM were not.
    MAX_PACKS = 8
    PACK_FROM = 64

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.pid = os.getpid()  # the process that keeps what is made (see put)
        self.hits = 0
        self.misses = 0
        self.used: set[tuple[str, str]] = set()
        self._made: dict[str, int] = {}
        self._stages: dict[str, _Stage] = {}
        # A cache dropped without close() (compile_kb(kb, BuildCache(folder)), say) still keeps
        # what it made; in a forked worker this does nothing (a pack is its writer's own).
        weakref.finalize(self, _close_stages, self._stages)

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

    def _packed(self, stage: str) -> _Stage:
        got = self._stages.get(stage)
        if got is None:
            assert self.folder is not None
            got = self._stages[stage] = _Stage(self.folder / stage)
        return got

    def get(self, stage: str, key: str) -> Any:
        """The entry, or ``None`` if there is none (or it cannot be read)."""
        if self.folder is None:
            return None
        self.used.add((stage, key))
        try:
            if stage in PACKED_STAGES:
                raw = self._packed(stage).read(key)
                if raw is None:
                    raise OSError("not in a pack")
                value = pickle.loads(raw)  # a damaged entry is a miss: the one made again is newer
            else:
                with open(self._path(stage, key), "rb") as fh:
                    value = pickle.load(fh)
        except _UNREADABLE:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put_raw(self, stage: str, key: str, data: bytes) -> tuple[int, int, int, int] | None:
        """Keep ``data`` as it is (not pickled) under ``key`` in a packed stage, to be named where
        it is in the pack without being read into the process (:meth:`raw_range`). Returns where
        it was written, as :meth:`raw_range` does (None if it was not). It belongs to an entry
        made with :meth:`put`, so it is not counted in :meth:`made`."""
        assert stage in PACKED_STAGES, f"raw entries live in packs, and {stage!r} is not a packed stage"
        if self.folder is None or os.getpid() != self.pid:
            return None
        self.used.add((stage, key))
        return self._packed(stage).write(key, data)

    def raw_range(self, stage: str, key: str) -> tuple[int, int, int, int] | None:
        """Where a raw entry (:meth:`put_raw`) lies: (an open descriptor, offset, length, CRC-32); None if
        there is none. The descriptor is the cache's: it may be closed by the next write that
        fails, or when the cache is closed, so use it at once (a :class:`~evidence.spool.Spool`
        takes a descriptor of its own). A pack's index was checked when it was opened (every
        entry lies inside it), and a pack is never written again once sealed. Not counted in
        :attr:`hits` and :attr:`misses`: it belongs to an entry, which is."""
        assert stage in PACKED_STAGES, f"raw entries live in packs, and {stage!r} is not a packed stage"
        if self.folder is None:
            return None
        self.used.add((stage, key))
        return self._packed(stage).where(key)

    def touch(self, stage: str, key: str) -> None:
        """Keep an entry that this build did not need to read (see :meth:`prune`)."""
        if self.folder is not None:
            self.used.add((stage, key))

    def put(self, stage: str, key: str, value: Any) -> None:
        """Keep ``value`` under ``key``. In a process forked from the one that made the cache
        (a render or validation worker), nothing is kept: a pack is its writer's own, and a
        worker's would never be sealed."""
        if self.folder is None or os.getpid() != self.pid:
            return
        self.used.add((stage, key))
        self._made[stage] = self._made.get(stage, 0) + 1
        if stage in PACKED_STAGES:
            self._packed(stage).write(key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
            return
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

    def close(self) -> None:
        """Seal the packs being written (their entries are kept for the next build) and close
        every pack. :meth:`prune` calls it, ``pipeline.build`` calls it when it ends (whether
        the build succeeded or not), and so does the garbage collector for a cache dropped
        without it."""
        _close_stages(self._stages)

    def tidy(self) -> None:
        """What a command other than build does when it ends (validate, export, query): seal its
        packs and, past MAX_PACKS packs in a stage it used, merge them, keeping every entry (only
        a build knows which entries the site still needs). Each such command adds a pack to the
        stages it wrote; without a build between them, packs piled up, and every command opened
        them all: at 66 packs and a limit of 60 open files, validate reported every file as
        changed while it read it."""
        if self.folder is None or os.getpid() != self.pid:
            self.close()
            return
        try:
            for stage in list(self._stages.values()):
                stage.compact(None, self.MAX_PACKS, self.PACK_FROM)
        except OSError:  # a cache that cannot be written only costs speed; the packs stay as they are
            pass
        self.close()

    def prune(self) -> int:
        """Delete every entry this build did not use (call after a build that succeeded), so the
        folder holds one build's worth, not every build's; return how many single entries were
        deleted. The records of site folders (stage ``outputs``, one small entry per folder built
        into) stay, so that builds into two folders do not undo each other's. A packed stage's
        packs are merged or packed anew by the rules of :data:`MAX_PACKS` and :data:`PACK_FROM`;
        until then a pack may hold entries that this build did not use."""
        if self.folder is None or not self.folder.is_dir():
            return 0
        used: defaultdict[str, set[str]] = defaultdict(set)
        for stage, key in self.used:
            used[stage].add(key)
        for stage in PACKED_STAGES:
            if (self.folder / stage).is_dir():
                self._packed(stage).compact(used[stage], self.MAX_PACKS, self.PACK_FROM)
                _drop_singles(self.folder / stage)
        _drop_unused_folders(self.folder / TEMPLATES, used[TEMPLATES])
        self.close()
        gone = 0
        try:
            stages = [p for p in self.folder.iterdir() if p.name not in KEPT_STAGES and p.name not in (TRASH, TEMPLATES)]
        except OSError:
            stages = []
        for folder in stages:
            try:
                found = list(folder.glob("*/*.pickle"))
            except OSError:  # a folder going while it is listed
                continue
            kept = used[folder.name]
            for path in found:
                if path.stem not in kept:
                    try:
                        path.unlink()
                        gone += 1
                    except OSError:
                        pass
        return gone


def _drop_singles(folder: Path) -> None:
    """Delete the single-file entries a packed stage may hold from before it was packed (the
    export stage until session 12): ``<stage>/xx/<key>.pickle``, never read again."""
    try:
        found = [e.path for e in os.scandir(folder) if len(e.name) == 2 and e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for path in found:
        shutil.rmtree(path, ignore_errors=True)


def _drop_unused_folders(folder: Path, used: set[str]) -> None:
    """Delete the folders in ``folder`` that this build did not use (the compiled templates of
    another version of the code, with any temporary file a stopped writer left in them)."""
    try:
        found = [e for e in os.scandir(folder) if e.name not in used]
    except OSError:
        return
    for e in found:
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            try:
                os.unlink(e.path)
            except OSError:
                pass


def _close_stages(stages: dict[str, _Stage]) -> None:
    try:
        for st in list(stages.values()):
            try:
                st.seal()
            finally:
                st.close()
    finally:
        stages.clear()


_UNREADABLE = (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, IndexError, TypeError, ValueError)


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError("the cache's pack could not be written")
        view, offset = view[n:], offset + n


class _Indexed:
    """A pack file open as ``fd`` (None once closed) and the byte range of each entry in it."""

    fd: int | None
    index: dict[str, tuple[int, int, int]]

    def where(self, key: str) -> tuple[int, int, int, int] | None:
        """(descriptor, offset, length, CRC-32) of the entry; None if there is none (or the file is
        closed). Whoever reads the bytes checks the CRC (:meth:`read`; a Spool for a raw entry)."""
        at = self.index.get(key)
        return (self.fd, *at) if at is not None and self.fd is not None else None

    def read(self, key: str) -> bytes | None:
        """The entry's bytes; None if there is none, or if they are not what was written (their
        CRC-32 differs): damage inside a pickled entry that still unpickles (a byte of a gzip
        member, a model's text) would have been served as it was, into the published files."""
        found = self.where(key)
        if found is None:
            return None
        fd, offset, length, crc = found
        raw = os.pread(fd, length, offset)
        return raw if len(raw) == length and zlib.crc32(raw) == crc else None


class _Pack(_Indexed):
    """A sealed pack (see the module's text): an open file and the byte range of each entry."""

    def __init__(self, path: Path, fd: int, index: dict[str, tuple[int, int, int]]):
        self.path = path
        self.fd: int | None = fd
        self.index = index

    @classmethod
    def open(cls, path: Path) -> _Pack | None:
        """The pack at ``path``; None if it cannot be opened (see :meth:`damaged`)."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        index = _index_of(fd)
        if index is None:
            os.close(fd)
            return None
        return cls(path, fd, index)

    @staticmethod
    def damaged(path: Path) -> bool:
        """True when the file at ``path`` opens but is not a whole pack (torn, or lying about
        where its entries are); False when it is one, or cannot be opened at all."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            return _index_of(fd) is None
        finally:
            os.close(fd)

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


def _index_of(fd: int) -> dict[str, tuple[int, int, int]] | None:
    """The index of the pack open as ``fd``; None if it is not a whole pack."""
    try:
        size = os.fstat(fd).st_size
        if os.pread(fd, len(_PACK_MAGIC), 0) != _PACK_MAGIC or size < len(_PACK_MAGIC) + 8:
            return None
        n = int.from_bytes(os.pread(fd, 8, size - 8), "big")
        if n > size - 8 - len(_PACK_MAGIC):
            return None  # torn
        index = pickle.loads(os.pread(fd, n, size - 8 - n))
        end = size - 8 - n
        if not isinstance(index, dict) or not all(isinstance(at, tuple) and len(at) == 3 and len(_PACK_MAGIC) <= at[0] and 0 <= at[1]
                                                  and at[0] + at[1] <= end for at in index.values()):
            return None  # not an index, or an entry lies outside the pack
    except _UNREADABLE:
        return None
    return index


class _Writer(_Indexed):
    """The pack a build is writing: entries are appended as they are made and can be read back
    at once; :meth:`seal` adds the index and gives the file its name."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-pack-")
        self.fd = fd
        self.folder = folder
        self.pid = os.getpid()  # a forked worker never writes into its parent's pack
        self.index: dict[str, tuple[int, int, int]] = {}
        self.end = 0
        try:
            self.add_raw(_PACK_MAGIC)
        except BaseException:
            self.discard()
            raise

    def add_raw(self, data: bytes) -> int:
        at = self.end
        if self.fd is None:
            raise OSError("the cache's pack is closed")
        _write_all(self.fd, data, at)
        self.end += len(data)
        return at

    def add(self, key: str, raw: bytes) -> None:
        self.index[key] = (self.add_raw(raw), len(raw), zlib.crc32(raw))

    def seal(self, name: str) -> Path:
        """Write the index and rename the file to ``name``; on any failure or interrupt, the
        temporary file is deleted and the error raised."""
        try:
            tail = pickle.dumps(self.index, protocol=pickle.HIGHEST_PROTOCOL)
            self.add_raw(tail + len(tail).to_bytes(8, "big"))
            fd, self.fd = self.fd, None
            if fd is not None:
                os.close(fd)
            path = self.folder / name
            os.replace(self.tmp, path)
        except BaseException:
            self.discard()
            raise
        return path

    def discard(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


class _Stage:
    """The packs of one packed stage, newest first, and the one this build is writing."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.packs: list[_Pack] = []
        self.unread: list[Path] = []  # packs that could not be opened: damaged, or (EMFILE ...) not
        for path in sorted(folder.glob("pack-*"), reverse=True) if folder.is_dir() else []:
            pack = _Pack.open(path)
            if pack is not None:
                self.packs.append(pack)
            else:
                self.unread.append(path)
        self.writer: _Writer | None = None
        self.failed = False  # the pack could not be written: this build keeps nothing more

    def read(self, key: str) -> bytes | None:
        """``key``'s bytes, from the pack being written or the newest pack that has them."""
        for pack in self._newest_first():
            raw = pack.read(key)
            if raw is not None:
                return raw
        return None

    def where(self, key: str) -> tuple[int, int, int, int] | None:
        """(descriptor, offset, length, CRC-32) of ``key``'s bytes, in the newest pack that has them."""
        for pack in self._newest_first():
            found = pack.where(key)
            if found is not None:
                return found
        return None

    def _newest_first(self) -> list[_Indexed]:
        return ([self.writer] if self.writer is not None else []) + self.packs

    def write(self, key: str, raw: bytes) -> tuple[int, int, int, int] | None:
        """Append an entry to the pack being written; where it is (see :meth:`where`), or None
        if it was not written (a forked worker's, or a cache that cannot be written)."""
        if self.failed:
            return None
        try:
            if self.writer is None:
                self.writer = _Writer(self.folder)
            if self.writer.pid != os.getpid():
                return None
            self.writer.add(key, raw)
            return self.writer.where(key)
        except OSError:  # a cache that cannot be written (read-only checkout, full disk) only costs speed
            self.failed = True
            if self.writer is not None:
                self.writer.discard()
                self.writer = None
            return None

    def _name(self, after: _Pack | None = None) -> str:
        """A new pack's name (``pack-<time ns>-<pid>``), which sorts after every pack's; with
        ``after``, one that sorts right after that pack's (a merge of it and older packs, which
        must stay older than any pack another build sealed since)."""
        if after is not None:
            return after.path.name + "m"
        times = (p.path.name.split("-")[1] for p in self.packs)  # pack-<time>-<pid>[m...]
        newest = max((int(x) for x in times if x.isdigit()), default=0)
        return f"pack-{max(time.time_ns(), newest + 1):020d}-{os.getpid()}"

    def seal(self) -> None:
        """Give the pack being written its index and name (it becomes the newest)."""
        w, self.writer = self.writer, None
        if w is None or w.pid != os.getpid():
            return
        if not w.index:
            w.discard()
            return
        try:
            path = w.seal(self._name())
        except OSError:
            return
        pack = _Pack.open(path)
        if pack is not None:
            self.packs.insert(0, pack)

    def compact(self, used: set[str] | None, max_packs: int, pack_from: int) -> None:
        """Seal, then merge: every pack into one of the used entries when at least half the
        entries held (and ``pack_from``) are unused; else, past ``max_packs`` packs, those newer
        than the largest (or all, when fewer than two are newer). Damaged packs, the pack of the
        cache's earlier format and the temporary files of interrupted builds (a day old) are
        deleted. ``used`` None: every entry held is kept (see :meth:`BuildCache.tidy`)."""
        self.seal()
        _unlink(self.folder / "pack")  # the cache's earlier format
        for path in self.unread:  # only these: the packs read at the start are whole
            if _Pack.damaged(path):
                _unlink(path)
        now = time.time()
        for path in self.folder.glob(".tmp-pack-*"):
            try:
                if now - path.stat().st_mtime > 86400:
                    path.unlink()
            except OSError:
                pass
        if not self.packs:
            return
        held = set().union(*(p.index for p in self.packs))
        if used is None:
            used = held
        if len(held) - len(held & used) >= max(pack_from, len(held) / 2):
            self._merge(self.packs, used)
        elif len(self.packs) > max_packs:
            largest = max(range(len(self.packs)), key=lambda i: len(self.packs[i].index))
            newer = self.packs[:largest]  # all newer than the largest: merged, they still shadow it
            self._merge(newer if len(newer) >= 2 else self.packs, used)

    def _merge(self, packs: list[_Pack], used: set[str]) -> None:
        """Replace ``packs`` (the newest of this stage's) by one pack of their entries that were
        used or that shadow an entry of an older pack, each as the newest of them holds it."""
        rest = [p for p in self.packs if p not in packs]
        shadowing = set().union(*(p.index for p in rest))
        keys = sorted(set().union(*(p.index for p in packs)) & (used | shadowing))
        try:
            w = _Writer(self.folder)
        except OSError:
            return
        try:
            for key in keys:
                raw = next((r for r in (p.read(key) for p in packs) if r is not None), None)
                if raw is not None:
                    w.add(key, raw)
            path = w.seal(self._name(after=packs[0]))
        except OSError:  # a cache that cannot be written only costs speed
            w.discard()
            return
        except BaseException:  # an interrupted merge leaves no temporary file
            w.discard()
            raise
        for p in packs:
            p.close()
            _unlink(p.path)
        merged = _Pack.open(path)
        self.packs = ([merged] if merged is not None else []) + rest

    def close(self) -> None:
        for p in self.packs:
            p.close()
        if self.writer is not None and self.writer.pid == os.getpid():
            self.writer.discard()
        self.writer = None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
