"""Named byte strings kept in files instead of memory, read back when asked for.

The compiled graph is about 100 KB of N-Quads per case: 1 GB at 10,000 cases, which the build's
process held from compiling to the end, through the SHACL check, the exports and the site. A
:class:`Spool` holds the same bytes in an unlinked temporary file, or, for a value that is
already in a file (a chunk in the build cache's pack), where it is there: it keeps a descriptor of
that file of its own, so the bytes stay readable even if the file is renamed, merged or deleted
meanwhile. Each reader reads the value it needs and lets it go. Reading uses ``pread``, which does
not move a shared file offset, so threads and forked workers (which inherit the descriptors) read
at once safely.
"""

from __future__ import annotations

import os
import tempfile
import weakref
import zlib
from collections.abc import Iterable, Iterator, Mapping

from .errors import CompileError

__all__ = ["Spool"]


class Spool(Mapping[str, bytes]):
    """A read-only mapping from name to bytes, whose values live in an unlinked temporary file
    (in ``dir``, or the system's temporary folder) or in other files (:meth:`add_ref`). Names keep
    the order they were added in until :meth:`sort`. The files go when the spool is closed or
    collected, or at the latest when the process ends."""

    def __init__(self, items: Iterable[tuple[str, bytes]] = (), dir: str | None = None):
        self._fh = tempfile.TemporaryFile(prefix="evidence-spool-", dir=dir)
        self._fds: list[int] = [self._fh.fileno()]  # where values are: the spool's own file, then copies of others' descriptors
        self._files: dict[tuple[int, int, int], int] = {}  # (descriptor, device, inode) of another file -> its index in _fds
        self._closed = weakref.finalize(self, _close, self._fh, self._fds)  # the files go with the spool
        self._at: dict[str, tuple[int, int, int]] = {}  # name -> (index in _fds, offset, length)
        self._crc: dict[str, int] = {}  # name -> the CRC-32 its bytes must have (add_ref)
        self._end = 0
        for name, data in items:
            self.add(name, data)

    def add(self, name: str, data: bytes) -> None:
        """Write ``data`` under a new ``name`` (a name is written once: values never change)."""
        self._new(name)
        fd, view, at = self._fds[0], memoryview(data), self._end
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n
        self._at[name] = (0, self._end, len(data))
        self._end = at

    def add_ref(self, name: str, fd: int, offset: int, length: int, crc: int | None = None) -> None:
        """Name ``length`` bytes at ``offset`` of the open file ``fd`` without copying them; with
        ``crc``, their CRC-32, checked each time they are read (a CompileError if it differs: the
        build cache's packs give it, so damage there is never served). The
        spool keeps a descriptor of the file of its own (one per file), so ``fd`` may be closed
        and the file renamed or deleted; the bytes must not be overwritten (the build cache's
        packs are written once). OSError if the file is shorter; the name is not added then.
        Files are told apart by the descriptor given and its device and inode, so a descriptor
        number used again for another file gets a copy of its own."""
        self._new(name)
        st = os.fstat(fd)
        if offset < 0 or length < 0 or offset + length > st.st_size:
            raise OSError(f"{name!r}: bytes {offset}-{offset + length} are past the end of the file ({st.st_size} bytes)")
        which = (fd, st.st_dev, st.st_ino)
        at = self._files.get(which)
        if at is None:
            self._fds.append(os.dup(fd))
            at = self._files[which] = len(self._fds) - 1
        self._at[name] = (at, offset, length)
        if crc is not None:
            self._crc[name] = crc

    def _new(self, name: str) -> None:
        if name in self._at:
            raise KeyError(f"{name!r} is already in the spool")

    def __getitem__(self, name: str) -> bytes:
        at, start, size = self._at[name]
        fd = self._fds[at]
        data = os.pread(fd, size, start)
        while len(data) < size:  # a short read is allowed; the files do not shrink
            more = os.pread(fd, size - len(data), start + len(data))
            if not more:
                raise OSError(f"the spool's file ended early reading {name!r}")
            data += more
        crc = self._crc.get(name)
        if crc is not None and zlib.crc32(data) != crc:
            raise CompileError(f"the bytes of {name!r}, named where the build cache keeps them, are not what was written there "
                               "(their CRC-32 differs): the build cache is damaged; delete its folder (.cache/build) and build again")
        return data

    def sort(self) -> None:
        """Put the names in sorted order (the bytes stay where they are)."""
        self._at = dict(sorted(self._at.items()))

    def segments(self) -> list[tuple[int, int, int]]:
        """Where every value is, in sorted name order: (descriptor, offset, length). The descriptors are the spool's own (valid while it is open). Read one after
        another, they are the values back to back (see library_run), in an order that does not
        depend on which values were named where they were and which were written."""
        return [(self._fds[at], start, size) for at, start, size in (self._at[n] for n in sorted(self._at))]

    def size(self, name: str) -> int:
        """The length of ``name``'s bytes, without reading them."""
        return self._at[name][2]

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, name: object) -> bool:
        return name in self._at

    def close(self) -> None:
        self._closed()

    def __reduce__(self):  # pickled (a copy to another process): the bytes themselves
        return (dict, (dict(self.items()),))


def _close(fh, fds: list[int]) -> None:
    fh.close()
    for fd in fds[1:]:
        try:
            os.close(fd)
        except OSError:
            pass
    del fds[:]
