"""Hard links from the previous site into the new one, made by a process of its own.

A rebuild after one edit of a 10,000-case kb links about 60,000 unchanged files from the previous
site into its new folder (pages, per-case downloads, search bundles): a ``link(2)`` each, about
10 µs on ext4, 0.6 s of the build's own process, while the machine's other core had nothing to
do. The build still checks each old file itself (:meth:`evidence.outputs.Outputs.old`: the file
is the one the record names, with its key), then hands its path (the same in both folders) to a
:class:`Linker`, which passes it to a small Python process that makes the links as the build
goes on. A thread would
not do: a thread that needs the GIL back after each system call waits for the build's own
thread to give it up, up to 5 ms a link.

Nothing reads a file linked this way before :meth:`Linker.finish` (the build waits for it before
it walks the new folder, see :mod:`evidence.pipeline`). A link that cannot be made (a full disk,
too many links to one file) is made a copy of the old file instead, whose bytes are those
recorded; one that cannot be copied either is an OSError naming the file concerned (the new
one; the old one when it cannot be read). Should the process
fail in any way (it cannot start, it is killed), every file is linked here instead, those
it made being kept. Below ``START_FROM`` files no process is started: they are linked here, at
the end.
"""

from __future__ import annotations

import errno
import filecmp
import os
import shutil
import sys
import threading
import weakref

__all__ = ["Linker", "START_FROM"]

START_FROM = 2000  # files: fewer are linked here, in a few milliseconds
_BATCH = 500  # files handed over at a time

# The process: the two folders as its arguments; each file's path in them, NUL-separated, on
# stdin; at the end of its input, each link it could neither make nor replace by a copy, as
# (path, errno, message) on stdout. Ctrl-C is the build's to handle: the build stops the process.
_HELPER = r"""
import os, shutil, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
old_root, new_root = os.fsencode(sys.argv[1]) + b"/", os.fsencode(sys.argv[2]) + b"/"
def put(old, new):
    try:
        os.link(old, new)
        return None
    except FileExistsError as exc:
        return exc
    except OSError:
        pass
    try:
        with open(old, "rb") as src, open(new, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except OSError as exc:
        return exc
failed, rest = [], b""
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    got = (rest + chunk).split(b"\0")
    rest = got.pop()
    for rel in got:
        if not rel:
            continue
        exc = put(old_root + rel, new_root + rel)
        if exc is not None:
            failed.append(b"\0".join([new_root + rel, str(exc.errno or 0).encode(), (exc.strerror or str(exc)).encode()]) + b"\0")
out = b"".join(failed)
while out:
    out = out[os.write(1, out):]
"""

_LIVE: weakref.WeakSet[Linker] = weakref.WeakSet()


class Linker:
    """Links files from the folder ``old`` to the same paths in ``new``, in a process of its own
    once there are many."""

    def __init__(self, old: str, new: str, start_from: int | None = None) -> None:
        self.old, self.new = os.fspath(old), os.fspath(new)
        self.start_from = START_FROM if start_from is None else start_from
        self.rels: list[str] = []
        self._sent = 0
        self._pid: int | None = None
        self._to: int | None = None  # the write end of the process's input
        self._back: int | None = None  # the read end of its output
        self._failed = False  # the process could not start, or its input broke: link here
        self._lock = threading.Lock()  # a search bundle may be linked from a thread of the search index
        self._owner = os.getpid()
        _LIVE.add(self)

    def here(self) -> bool:
        """Whether this is the process that made the Linker (a process forked from it, such as a
        render worker, has no process of links to hand files to: it links them itself)."""
        return os.getpid() == self._owner

    def add(self, rel: str) -> None:
        """Link ``old/rel`` to ``new/rel`` (``rel`` with ``/``)."""
        with self._lock:
            self.rels.append(rel)
            pending = len(self.rels) - self._sent
            if pending >= _BATCH and (self._pid is not None or len(self.rels) >= self.start_from):
                self._hand_over()

    def _hand_over(self) -> None:
        if self._failed or self._sent == len(self.rels):
            return
        if self._pid is None and not self._start():
            self._failed = True
            return
        data = "\0".join(self.rels[self._sent:]).encode("utf-8", "surrogateescape") + b"\0"
        try:
            while data:
                data = data[os.write(self._to, data):]  # type: ignore[arg-type]
        except OSError:  # the process ended (killed): what it did not link is linked here, at the end
            self._failed = True
            return
        self._sent = len(self.rels)

    def _start(self) -> bool:
        if not hasattr(os, "posix_spawn"):
            return False
        to_child, self._to = os.pipe()
        self._back, from_child = os.pipe()
        try:
            actions = [(os.POSIX_SPAWN_DUP2, to_child, 0), (os.POSIX_SPAWN_DUP2, from_child, 1),
                       (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
            self._pid = os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", _HELPER, self.old, self.new], os.environ,
                                       file_actions=actions)
        except (OSError, ValueError, TypeError, NotImplementedError):  # no process to be had (a process limit; no sys.executable): linked here
            self._close_fds()
            return False
        finally:
            os.close(to_child)
            os.close(from_child)
        return True

    def finish(self) -> None:
        """Wait until every file is linked (or copied); the first that could not be is an OSError
        naming the new path."""
        _LIVE.discard(self)
        if self._pid is None:
            self._link_here(made=False)
            return
        said = bytearray()
        try:
            self._hand_over()
            os.close(self._to)  # type: ignore[arg-type]
            self._to = None
            try:
                while chunk := os.read(self._back, 1 << 16):  # type: ignore[arg-type]
                    said += chunk
            except OSError:
                self._failed = True
            status = self._wait()
        except BaseException:  # Ctrl-C while waiting: the process is stopped and waited for, never left a zombie
            self.abort()
            raise
        finally:
            self._close_fds()
        if self._failed or status != 0:
            self._link_here(made=True)
            return
        fields = bytes(said).split(b"\0")
        if len(fields) >= 3:
            path, code, message = fields[0], fields[1], fields[2]
            raise OSError(int(code or 0) or errno.EIO, message.decode("utf-8", "replace"), os.fsdecode(path))

    def abort(self) -> None:
        """Stop the process, the links not made left unmade (the build is failing)."""
        _LIVE.discard(self)
        if self._pid is not None:
            try:
                os.kill(self._pid, 9)
            except OSError:
                pass
            self._wait()
        self._close_fds()

    def _wait(self) -> int:
        """Wait for the process; its exit code. ``_pid`` is cleared once it is reaped: a Ctrl-C
        within the wait leaves it for abort() to kill and reap."""
        if self._pid is None:
            return 0
        while True:
            try:
                status = os.waitstatus_to_exitcode(os.waitpid(self._pid, 0)[1])
            except InterruptedError:
                continue
            except ChildProcessError:
                status = -1
            self._pid = None
            return status

    def _close_fds(self) -> None:
        for name in ("_to", "_back"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _link_here(self, made: bool) -> None:
        """Link the files in this process (a copy where a link cannot be made; an OSError naming
        the file concerned where neither can). ``made``: the process may have made some already:
        a link, or a copy with the same bytes, is kept; a copy cut short when the process was
        killed (the old file's first bytes) is made again; anything else there is a
        FileExistsError, as without the process."""
        for rel in self.rels:
            old, new = os.path.join(self.old, rel), os.path.join(self.new, rel)
            try:
                try:
                    os.link(old, new)
                    continue
                except FileExistsError:
                    if not made:
                        raise FileExistsError(errno.EEXIST, "a file is already there", new) from None
                    if os.path.samefile(old, new) or filecmp.cmp(old, new, shallow=False):
                        continue
                    if not _begins(old, new):
                        raise FileExistsError(errno.EEXIST, "a file is already there", new) from None
                    os.unlink(new)  # the process's copy, cut short: this build's own folder
                    try:
                        os.link(old, new)
                        continue
                    except OSError:
                        pass
                except OSError:
                    pass
                with open(old, "rb") as src, open(new, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            except OSError as exc:
                if exc.filename is None:
                    exc.filename = new
                raise


def _begins(old: str, new: str) -> bool:
    """Whether the file ``new`` holds the first bytes of ``old`` (a copy cut short)."""
    with open(new, "rb") as fh:
        part = fh.read()
    with open(old, "rb") as fh:
        return len(part) <= os.fstat(fh.fileno()).st_size and fh.read(len(part)) == part


def _close_in_child() -> None:
    """A process forked by the build (a render worker) must not hold the process's input open:
    it would wait for that worker to end before it saw the end of its input."""
    for linker in list(_LIVE):
        linker._close_fds()
        linker._pid = None  # the parent's process: never waited for or stopped here
        linker._failed = True
    _LIVE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)
