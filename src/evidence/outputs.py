"""What the previous build wrote into the site folder, so that a rebuild reuses it instead of
writing it again.

A build writes into a new folder beside the site and swaps it in at the end (see
:mod:`evidence.pipeline`). Without help, every rebuild would write every file again, and the swap
would have to read the old and the new file to find those that did not change (18 s of a
10,000-case rebuild, see bench/README.md). Instead, each build leaves a record in the build cache:
for every file of the site, a *content key* and the file's identity on disk (inode, size,
modification time, as git's index and make do). The next build then

- links an old file into the new folder, without writing it, when a writer knows the key of what
  it is about to write and the record holds the same key (:meth:`Outputs.link_or_write`);
- splices the large RDF files: a graph that did not change is copied from the old file's byte
  range (``copy_file_range``, in the kernel) instead of being serialised and written again
  (:class:`Splice`, used by :func:`evidence.export.write_exports`);
- at the end, hashes what was written without a key and links the old file over any new file with
  the same key (:meth:`Outputs.finish`), so unchanged files keep one copy on disk.

An old file is trusted only while its inode, size and modification time are those recorded; a file
edited, replaced or touched by hand is simply written again. Without a cache (``EVIDENCE_CACHE=off``)
nothing is recorded: everything is written, and files with the same bytes as the old ones are
linked at the end, after comparing them byte for byte.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import queue
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .cache import TRASH, BuildCache, digest
from .interrupts import deferred
from .linker import Linker

__all__ = ["Outputs", "Splice", "content_key", "discard_tree", "relative_name", "walk_names"]

_STAGE = "outputs"
_RECORD_VERSION = 1


_DELETER = "import shutil, sys\nfor p in sys.argv[1:]:\n    shutil.rmtree(p, ignore_errors=True)\n"


def discard_tree(tree: Path, cache: BuildCache, here: bool = True) -> bool:
    """Delete a site folder that a build has replaced, without the build waiting for it.

    The folder is moved (renamed) into the build cache's ``trash`` folder, and a process of its
    own, detached from the build, deletes everything there: at 10,000 cases that is 60,000
    unlinks, 0.5 to 0.8 s that a rebuild no longer waits for. Whatever an earlier deleter left
    (a machine stopped midway) is deleted with it. Without a cache folder, when the rename fails
    (the cache on another file system) or the process cannot be started, the folder is deleted
    here, as before, unless ``here`` is false: a caller that holds signals while it discards
    (interrupts.deferred) deletes it itself after, since an rmtree takes seconds at 10,000
    cases. Returns whether the folder is gone or on its way."""
    if cache.folder is not None and hasattr(os, "posix_spawn"):
        trash = cache.folder / TRASH
        try:
            trash.mkdir(parents=True, exist_ok=True)
            tree.rename(trash / f"{tree.name}-{os.getpid()}-{os.urandom(4).hex()}")
        except OSError:
            pass
        else:
            _reap()
            try:
                quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
                _DELETERS.append(os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", _DELETER, *sorted(str(p) for p in trash.iterdir())],
                                                os.environ, file_actions=quiet, setsid=True))
            except (OSError, ValueError, NotImplementedError):  # no process of its own (no setsid here, say): here, then
                shutil.rmtree(trash, ignore_errors=True)
            return True
    if not here:
        return False
    shutil.rmtree(tree, ignore_errors=True)
    return True


_DELETERS: list[int] = []  # deleters started by this process and not yet waited for


def _reap() -> None:
    """Wait for the deleters that have ended (a long-lived process, such as a test run, would
    otherwise keep one finished process entry per build)."""
    for pid in list(_DELETERS):
        try:
            ended = os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            ended = True
        if ended:
            _DELETERS.remove(pid)


def content_key(data: bytes) -> str:
    """The key of a file that is known only by its bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _file_key(path: str) -> str:
    with open(path, "rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def _same_bytes(a: str, b: Path) -> bool:
    try:
        return not b.is_symlink() and b.is_file() and filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class Outputs:
    """The previous build's record for one site folder, and this build's record in the making.

    ``files`` maps a root-relative path to ``(key, inode, size, mtime_ns)``; ``layouts`` maps a
    spliced file's path to ``{"frames": key, "pieces": {graph: (key, offset, length)}}``.
    """

    out: Path
    cache: BuildCache | None = None
    previous: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    previous_layouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)  # this build: path -> key, noted by writers
    layouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    record: dict[str, tuple[str, int, int, int]] = field(default_factory=dict)
    linked: set[str] = field(default_factory=set)  # this build: paths where link() put the old file
    # Small facts about the build's output that the next build into the folder reads (the key each
    # search bundle was made under, see evidence.site_search.SearchIndex): the previous build's, and this one's.
    previous_notes: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    linker: Linker | None = field(default=None, repr=False)  # while linking(): makes the links of link(later=True)

    @classmethod
    def load(cls, out: Path, cache: BuildCache | None) -> Outputs:
        """The record the last build into ``out`` left in ``cache`` (empty when there is none)."""
        self = cls(out=out, cache=cache if cache is not None and cache.enabled else None)
        if self.cache is not None and out.is_dir():
            rec = self.cache.get(_STAGE, self._key())
            if isinstance(rec, dict) and rec.get("version") == _RECORD_VERSION:
                self.previous = rec.get("files", {})
                self.previous_layouts = rec.get("layouts", {})
                notes = rec.get("notes", {})
                self.previous_notes = notes if isinstance(notes, dict) else {}
        return self

    def _key(self) -> str:
        return digest(_STAGE, str(self.out.resolve()))

    @property
    def enabled(self) -> bool:
        return self.cache is not None

    # ------------------------------------------------------------------------------ old files
    def old(self, rel: str, key: str | None = None) -> str | None:
        """The path of the previous build's file at ``rel`` if it is still the file recorded (and,
        with ``key``, has that key); None otherwise."""
        rec = self.previous.get(rel)
        if rec is None or (key is not None and rec[0] != key):
            return None
        path = os.path.join(self.out, rel)
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        return path if _identity(st) == tuple(rec[1:]) else None

    def link_or_write(self, dest: Path, rel: str, data: bytes, key: str | None = None, try_link: bool = True) -> None:
        """Write ``data`` to ``dest`` (path ``rel`` in the site), or link the old file there when
        it holds the same content. ``key`` defaults to the hash of ``data``. ``try_link=False``:
        the caller has tried :meth:`link` with this key already (a keyed page, before rendering it)."""
        key = key or content_key(data)
        if try_link and self.link(dest, rel, key):
            return
        self.keys[rel] = key
        # "x": a new file, never one that exists (on a file system that ignores case, a name that
        # differs only in case could otherwise be a link to the published site's file).
        try:
            with open(dest, "xb") as fh:
                fh.write(data)
        except OSError as exc:  # a write names no file (a full disk said only "No space left on device")
            if exc.filename is None:
                exc.filename = str(dest)
            raise

    def link(self, dest: Path | str, rel: str, key: str, later: bool = False) -> bool:
        """Link the old file with ``key`` to ``dest``; False if there is none (write it then).

        ``later``: the caller does not read ``dest`` during the build. Within :meth:`linking`, the
        link is then made by a process of its own (:class:`evidence.linker.Linker`), or a copy
        where it cannot be; the old file is checked here, now."""
        old = self.old(rel, key) if self.enabled else None
        return old is not None and self._put(old, dest, rel, key, later)

    def _put(self, old: str, dest: Path | str, rel: str, key: str, later: bool) -> bool:
        """Link ``old``, checked, to ``dest`` (see :meth:`link`)."""
        if later and self.linker is not None and self.linker.here() and os.fspath(dest) == os.path.join(self.linker.new, rel):
            self.linker.add(rel)
        else:
            try:
                os.link(old, dest)
            except FileExistsError:
                raise
            except OSError:
                return False
        self.keys[rel] = key
        self.linked.add(rel)
        return True

    def link_all(self, items: list[tuple[str, str, str]], later: bool = False) -> bool:
        """Link every (dest, rel, key) of ``items`` as :meth:`link` does; False when one old file
        is not the one recorded, and then nothing is linked or handed over. Every old file is
        checked before any is handed to the linker, which cannot take one back: a search bundle
        linked file by file had handed over its first files when one failed, and the linker
        linked them into the bundle Pagefind remade (FileExistsError). Linked here, a link that
        fails after its check (the old file changed meanwhile) also gives False, the links before
        it made: the caller removes the bundle's folder, as it does for any bundle remade."""
        if not self.enabled:
            return False
        olds = [self.old(rel, key) for _dest, rel, key in items]
        if any(old is None for old in olds):
            return False
        return all(self._put(old, dest, rel, key, later) for (dest, rel, key), old in zip(items, olds, strict=True))  # type: ignore[arg-type]

    @contextmanager
    def linking(self, new: Path, start_from: int | None = None) -> Iterator[None]:
        """Within: the links of :meth:`link` with ``later`` into the folder ``new`` are made as
        the build goes on, by a process of their own; on leaving, waited for (an OSError names a
        file neither linked nor copied), or, on an error, stopped."""
        self.linker = Linker(str(self.out), str(new), start_from)
        try:
            yield
        except BaseException:
            self.linker.abort()
            raise
        else:
            self.linker.finish()  # stops the process itself if interrupted while it waits
        finally:
            self.linker = None

    # ------------------------------------------------------------------------------ the end
    def finish(self, new: Path) -> int:
        """Walk the new folder: where a file has the same key as the old one (its bytes' hash, or
        for a keyed page or spliced file, the key of what it was made from), keep the old file (a
        hard link in the new tree); note every file's key and identity for the next build.
        Without a cache (so without a record) files are compared byte for byte instead. Returns
        how many files the new tree shares with the old one."""
        if not self.enabled:
            return self._share_same_bytes(new)
        shared = 0
        linked = self.linked
        for p, rel, inode in _walk_inodes(new):
            prev = self.previous.get(rel)
            # Linked from the old tree by a writer, and still that file (the directory entry's
            # inode, which costs no system call): recorded as it was, without a stat. A stat a
            # file took 0.3 s of a 10,000-case rebuild (60,000 files). Should the old file have
            # changed in place since, its record no longer matches it and the next build writes
            # it again.
            if prev is not None and inode == prev[1] and rel in linked:
                self.record[rel] = prev
                shared += 1
                continue
            st = os.stat(p, follow_symlinks=False)
            if prev is not None and _identity(st) == tuple(prev[1:]):
                self.record[rel] = prev  # linked from the old tree (a writer's file the walk's inode missed)
                shared += 1
                continue
            key = self.keys.get(rel) or _file_key(p)
            old = self.old(rel, key) if prev is not None else None
            if old is not None and _replace_with_link(old, p):
                self.record[rel] = prev
                shared += 1
                continue
            self.record[rel] = (key, *_identity(st))
        return shared

    def _share_same_bytes(self, new: Path) -> int:
        shared = 0
        for dirpath, _dirs, names in os.walk(new):
            for name in names:
                p = os.path.join(dirpath, name)
                old = self.out / os.path.relpath(p, new)
                if _same_bytes(p, old) and _replace_with_link(old, p):
                    shared += 1
        return shared

    def save(self) -> None:
        """Store this build's record (call once the new tree is in place)."""
        if self.cache is None:
            return
        layouts = {rel: lay for rel, lay in self.layouts.items() if rel in self.record}
        self.cache.put(_STAGE, self._key(), {"version": _RECORD_VERSION, "files": self.record, "layouts": layouts,
                                             "notes": dict(sorted(self.notes.items()))})


def relative_name(path: Path | str, folder: Path) -> str:
    """``path``'s name under ``folder``, with ``/`` (``Path.relative_to(folder).as_posix()``, without
    pathlib's parsing: a build names 60,000 files at 10,000 cases)."""
    text, prefix = str(path), str(folder) + os.sep
    if text.startswith(prefix):
        return text[len(prefix):].replace(os.sep, "/")
    return Path(path).relative_to(folder).as_posix()


def walk_names(folder: Path) -> Iterator[tuple[str, str]]:
    """Every file under ``folder`` (os.walk's, so symbolic links to folders are not followed), as
    (path, name relative to ``folder`` with ``/``), the names made from strings: at 10,000 cases
    (60,000 files) a relative path per file took 0.3 s, a glob with pathlib about 1 s."""
    for path, rel, _inode in _walk_inodes(folder):
        yield path, rel


def _walk_inodes(folder: Path) -> Iterator[tuple[str, str, int]]:
    """:func:`walk_names`, with each file's inode as its directory entry gives it (no system
    call). Top down, as os.walk: a folder's files, then its folders in turn; a symbolic link to a
    folder is not followed, and a folder that cannot be read is skipped."""
    todo = [(str(folder), "")]
    while todo:
        top, prefix = todo.pop(0)
        dirs: list[tuple[str, str]] = []
        files: list[tuple[str, str, int]] = []
        try:
            it = os.scandir(top)
        except OSError:
            continue
        with it:  # read whole before any is yielded: the caller may add files to the folder
            for entry in it:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                if is_dir:
                    if not entry.is_symlink():
                        dirs.append((entry.path, prefix + entry.name + "/"))
                else:
                    files.append((entry.path, prefix + entry.name, entry.inode()))
        yield from files
        todo[0:0] = dirs


def _replace_with_link(old: str, p: str) -> bool:
    """Put a hard link to ``old`` in place of the file ``p``; False (``p`` unchanged) if it fails."""
    tmp = os.path.join(os.path.dirname(p), f".{os.path.basename(p)}.link")
    try:
        os.link(old, tmp)
    except OSError:
        return False
    try:
        os.replace(tmp, p)
        return True
    except OSError:
        os.unlink(tmp)
        return False


class Splice:
    """Writes one large file from new bytes and byte ranges of the previous build's file.

    Ranges that follow each other in the old file, with only ``sep`` between them, are copied in
    one call. Records where each piece landed, for the next build. ``fh`` is an unbuffered file
    (``open(path, "xb", buffering=0)``): the copies go straight to its descriptor.

    With ``background``, the writes and copies are carried out in order by a thread of their own
    while the caller goes on: both release the interpreter lock, so a rebuild's copies (8 s of
    kernel time for the five whole-graph files at 10,000 cases) overlap the rendering instead of
    coming before it. At most ``QUEUED`` operations wait, so new bytes never pile up in memory.
    :meth:`close` waits for the thread and raises what it met; a :class:`Splice` used as a context
    manager that is left by an exception stops the thread without carrying out the rest.
    """

    QUEUED = 64

    def __init__(self, fh: BinaryIO, old: str | Path | None, sep: bytes, background: bool = False):
        self.fh = fh
        self.sep = sep
        self.old_fd = os.open(old, os.O_RDONLY) if old is not None else None
        self.pos = 0
        self.pending: list[int] | None = None  # [start, end) in the old file, not yet copied
        self.pieces: dict[str, tuple[str, int, int]] = {}
        self.count = 0
        self._queue: queue.Queue[tuple[Any, ...] | None] | None = queue.Queue(self.QUEUED) if background else None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._abort = False
        self._closing = False

    def __enter__(self) -> Splice:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(abort=exc_type is not None)

    def _lead(self) -> bytes:
        return self.sep if self.count else b""

    def write(self, data: bytes) -> None:
        self._flush()
        if data:
            self._do(("write", data))
        self.pos += len(data)

    def piece(self, graph: str, key: str, data: bytes) -> None:
        """A graph's piece, from new bytes."""
        if not data:
            self.pieces[graph] = (key, 0, 0)
            return
        self.write(self._lead())
        self.pieces[graph] = (key, self.pos, len(data))
        self.write(data)
        self.count += 1

    def copy(self, graph: str, key: str, offset: int, length: int) -> None:
        """A graph's piece, from ``length`` bytes at ``offset`` in the old file."""
        if not length:
            self.pieces[graph] = (key, 0, 0)
            return
        lead = self._lead()
        if self.pending is not None and self.pending[1] + len(lead) == offset:
            self.pending[1] = offset + length  # the old file has the same separator in between
        else:
            self.write(lead)
            self.pending = [offset, offset + length]
        self.pieces[graph] = (key, self.pos + (self.pending[1] - self.pending[0]) - length, length)
        self.count += 1

    def _flush(self) -> None:
        if self.pending is None:
            return
        start, end = self.pending
        self.pending = None
        self._do(("copy", start, end))
        self.pos += end - start

    def settle(self) -> None:
        """Everything is written or queued: give the file its final size now (``pos``), so that
        its size can be read (the downloads page shows it) while the thread is still copying."""
        self._flush()
        if self._queue is not None:
            os.ftruncate(self.fh.fileno(), self.pos)

    def _do(self, op: tuple[Any, ...]) -> None:
        if self._queue is None:
            self._run(op, self.fh.fileno() if op[0] == "copy" else -1, self.old_fd)
            return
        if self._thread is None:
            # The thread works on descriptors of its own, which it closes: were the caller to stop
            # waiting for it (a second interrupt), closing the file could not pull a descriptor
            # from under it that a new file might get.
            fds = (os.dup(self.fh.fileno()), os.dup(self.old_fd) if self.old_fd is not None else None)
            self._thread = threading.Thread(target=self._work, args=fds, name="splice", daemon=True)
            self._thread.start()
        with deferred():  # a Ctrl-C inside the queue's lock handling could lose the thread's wake-up
            self._queue.put(op)

    def _work(self, fd: int, old_fd: int | None) -> None:
        assert self._queue is not None
        try:
            while True:
                try:
                    # A wait with a time limit: a Ctrl-C or SIGTERM that lands in the caller's
                    # thread inside a queue operation can lose the wake-up (the signal's exception
                    # is raised between any two instructions, lock handling included), and the
                    # thread then waited for ever while close() waited for it.
                    op = self._queue.get(timeout=0.5)
                except queue.Empty:
                    if self._closing:
                        break
                    continue
                if op is None:
                    break
                if self._error is None and not self._abort:
                    try:
                        self._run(op, fd, old_fd)
                    except BaseException as e:  # handed to close(), in the caller's thread
                        self._error = e
        finally:
            for d in (fd, old_fd):
                if d is not None:
                    os.close(d)

    def _run(self, op: tuple[Any, ...], fd: int, old_fd: int | None) -> None:
        if op[0] == "write":
            view = memoryview(op[1])
            while view:
                view = view[(os.write(fd, view) if fd >= 0 else self.fh.write(view)):]
            return
        _, start, end = op
        n = end - start
        while n > 0:
            try:
                done = os.copy_file_range(old_fd, fd, n, start)
            except OSError:
                done = 0
            if done <= 0:  # no in-kernel copy here (or across file systems): copy by hand
                chunk = os.pread(old_fd, min(n, 1 << 24), start)
                if not chunk:
                    raise OSError(f"the previous build's file ended early while copying from it ({n} bytes short)")
                done = os.write(fd, chunk)
            start += done
            n -= done

    def close(self, abort: bool = False) -> None:
        """Carry out what is left (or, with ``abort``, drop it), wait for the thread, and raise
        the first error it met (unless aborting: the caller already has an error of its own)."""
        try:
            if not abort:
                self._flush()
        finally:
            if self._thread is not None and self._queue is not None:
                self._abort = self._abort or abort
                self._closing = True  # the thread ends once the queue is empty, even if None is not seen
                with deferred():
                    self._queue.put(None)
                self._thread.join()
                self._thread = None
            if self.old_fd is not None:
                os.close(self.old_fd)
                self.old_fd = None
        if self._error is not None and not abort:
            error, self._error = self._error, None
            raise error
