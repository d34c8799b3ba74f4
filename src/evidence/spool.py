"""Named byte strings kept in a temporary file instead of memory, read back when asked for.

The compiled graph is about 100 KB of N-Quads per case: 1 GB at 10,000 cases, which the build's
process held from compiling to the end, through the SHACL check, the exports and the site. A
:class:`Spool` holds the same bytes in an unlinked temporary file; each reader reads the chunk it
needs and lets it go. Reading uses ``pread``, which does not move a shared file offset, so threads
and forked workers (which inherit the descriptor) read at once safely.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from collections.abc import Iterable, Iterator, Mapping

__all__ = ["Spool"]


class Spool(Mapping[str, bytes]):
    """A read-only mapping from name to bytes, whose values live in an unlinked temporary file
    (in ``dir``, or the system's temporary folder). Names keep the order they were added in. The
    file goes when the spool is closed or collected, or at the latest when the process ends."""

    def __init__(self, items: Iterable[tuple[str, bytes]] = (), dir: str | None = None):
        self._fh = tempfile.TemporaryFile(prefix="evidence-spool-", dir=dir)
        self._closed = weakref.finalize(self, self._fh.close)  # the file goes with the spool
        self._at: dict[str, tuple[int, int]] = {}
        self._end = 0
        for name, data in items:
            self.add(name, data)

    def add(self, name: str, data: bytes) -> None:
        """Write ``data`` under a new ``name`` (a name is written once: values never change)."""
        if name in self._at:
            raise KeyError(f"{name!r} is already in the spool")
        fd, view, at = self._fh.fileno(), memoryview(data), self._end
        while view:
            n = os.pwrite(fd, view, at)
            view, at = view[n:], at + n
        self._at[name] = (self._end, len(data))
        self._end = at

    def __getitem__(self, name: str) -> bytes:
        start, size = self._at[name]
        data = os.pread(self._fh.fileno(), size, start)
        while len(data) < size:  # a short read is allowed; the file does not shrink
            more = os.pread(self._fh.fileno(), size - len(data), start + len(data))
            if not more:
                raise OSError(f"the spool file ended early reading {name!r}")
            data += more
        return data

    def sort(self) -> None:
        """Put the names in sorted order (the bytes stay where they are)."""
        self._at = dict(sorted(self._at.items()))

    def fileno(self) -> int:
        """The descriptor of the spool's file, which holds the values back to back in the order
        they were added (a process that inherits it can read them all as one stream)."""
        return self._fh.fileno()

    def size(self, name: str) -> int:
        """The length of ``name``'s bytes, without reading them."""
        return self._at[name][1]

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
