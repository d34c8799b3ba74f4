"""The site folder and its siblings that a build makes: its unfinished folder ``.NAME.tmp-PID``
and the replaced site ``.NAME.old-PID``. A build holds them with a lock while it runs
(:func:`lock_folder`), and the next build removes those that a killed build left
(:func:`left_behind`). A build replaces its output folder whole, so it first makes sure that the
folder is a site it may replace (:func:`check_out`), and puts the new one in its place with one
atomic exchange where the system has it (:func:`exchange`)."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

from .outputs import walk_names

try:
    import fcntl
except ImportError:  # not POSIX: folders left behind are told by their PID
    fcntl = None  # type: ignore[assignment]

__all__ = ["SITE_MARKER", "SITE_MARKER_TEXT", "check_out", "exchange", "left_behind", "lock_folder", "unlock_folder", "write_whole"]

# Every site a build writes holds this file: the next build replaces only a folder that has it
# (or is empty, or new), as Sphinx keeps a .buildinfo in its output.
SITE_MARKER = ".evidence-site"
SITE_MARKER_TEXT = (b"This folder is a site written by evidence (build.py, or evidence build).\n"
                    b"Each build replaces the whole folder: anything else kept here is deleted.\n")


def check_out(out: Path, keep: dict[str, Path | None], recorded: Callable[[], set[str]]) -> str | None:
    """Why a build must not write into ``out`` (a resolved path), or None if it may.

    A build replaces its output folder whole, so ``out`` must not be, or hold, any folder of
    ``keep`` (what -> path: the project, the kb, the build cache, the source texts); and if it
    exists, it must be a folder that is empty or holds a site a build wrote: one
    with :data:`SITE_MARKER`, or, for a site written before the marker, one whose every file the
    build cache's record of the last build into it names (``recorded``: those names, relative to
    ``out``, asked only then)."""
    for what, folder in keep.items():
        if folder is None:
            continue
        folder = folder.resolve()
        if out == folder or folder.is_relative_to(out):
            return (f"the output folder {out} is {what}" + ("" if out == folder else f" or holds it ({folder})")
                    + ": a build replaces its output folder whole, and would delete it. Choose another folder, such as _site")
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return f"the output folder {out} cannot be made: a part of its path is a file, not a folder. Choose a folder, such as _site"
    except OSError as exc:
        return f"cannot read the output folder {out}: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return (f"the output path {out} is a file, not a folder: a build writes a folder of pages there, and would delete the file. "
                "Choose a folder, such as _site")
    try:
        with os.scandir(out) as it:
            names = {entry.name for entry in it}
    except OSError as exc:
        return f"cannot read the output folder {out}: {exc.strerror or exc}"
    if not names or (SITE_MARKER in names and os.path.isfile(out / SITE_MARKER)) or _all_recorded(out, recorded()):
        return None
    return (f"the output folder {out} holds files that no build of evidence wrote (it has no {SITE_MARKER}): a build replaces its "
            "output folder whole, and they would be deleted. Choose a new or empty folder, or remove this one yourself first")


def left_behind(out: Path) -> list[tuple[Path, str]]:
    """The folders beside ``out`` that a build of it made and did not remove, because its process
    was killed (SIGKILL, a machine stopped; SIGTERM and Ctrl-C unwind and remove them): the
    unfinished site ``.NAME.tmp-PID``, the search index's staging folder ``..NAME.tmp-PID.search-*`` (made by builds before session 14)
    and the replaced site ``.NAME.old-PID``. Only those that no build holds: another build of the
    same folder may be going on. A build holds its folders with a lock (:func:`lock_folder`), which the
    system releases when the process ends, however it ends; the PID in the name was all there was
    to go by before, and a killed build's folder was kept while another process had its number.
    Where locks are not to be had (no ``fcntl``), by the PID."""
    pattern = re.compile(r"\.\.?" + re.escape(out.name) + r"\.(tmp|old)-([0-9]+)(?:\.search-.*)?")
    found = []
    try:
        siblings = sorted(os.scandir(out.parent), key=lambda e: e.name)
    except OSError:
        return []
    for entry in siblings:
        m = pattern.fullmatch(entry.name)
        if m and entry.is_dir(follow_symlinks=False) and not _held(Path(entry.path), int(m.group(2))):
            found.append((Path(entry.path), m.group(1)))
    return found


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h
_renameat2: Callable[..., int] | None | bool = False  # False: not looked up yet


def exchange(a: Path, b: Path) -> bool:
    """Swap the names of ``a`` and ``b`` (both must exist) in one atomic step, the system call
    renameat2 with RENAME_EXCHANGE (Linux 3.15, glibc 2.28): a process reading ``b`` finds the
    old folder or the new one there, never nothing. Two renames left a moment without the site,
    in which a server of it (``evidence serve``) answered 404, and a build killed in it left the
    site moved aside until the next build.

    False, nothing done, where the system cannot: no such call, or a file system without the
    flag (the caller renames twice). Any other failure is the OSError, naming ``a``.

    Python's os has no renameat2, and the one package for it (renameat2 on PyPI) is a compiled
    CFFI extension: one call through ctypes is all it takes here."""
    global _renameat2
    if _renameat2 is False:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):  # no C library to open, or one without renameat2 (macOS)
            _renameat2 = None
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:  # type: ignore[operator]
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # an old kernel; a file system without the flag
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def lock_folder(folder: Path, wait: bool = False) -> int | None:
    """A descriptor of ``folder`` with an exclusive lock on it (flock), or None when it cannot be
    had. The lock stays with the folder through renames, is shared by the workers this process
    forks (they hold the descriptor too), and is released by the system when they have all
    ended, killed or not (the descriptor is not handed to programs it starts: close-on-exec)."""
    try:
        return _locked(folder, wait)
    except OSError:
        return None


def _locked(folder: Path, wait: bool) -> int | None:
    """:func:`lock_folder`, raising the OSError of a lock another process holds (BlockingIOError) or that
    the file system refuses (an NFS mount, say); None without ``fcntl``."""
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BaseException:
        os.close(fd)
        raise
    return fd


def unlock_folder(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # releases the lock (the workers that shared it have ended)


# A folder that no one holds is a killed build's, unless it is this young (seconds) and its
# process runs: a build makes its folder, then locks it (see pipeline.build).
_IN_THE_MAKING = 60.0


def _held(folder: Path, pid: int) -> bool:
    """Whether a build still holds ``folder`` (see :func:`left_behind`)."""
    try:
        fd = _locked(folder, wait=False)
    except BlockingIOError:
        return True  # locked: a build is going on
    except OSError:  # a file system without flock, or a folder that cannot be opened: by the PID, as before locks
        return _running(pid)
    if fd is None:  # no fcntl
        return _running(pid)
    os.close(fd)
    try:
        young = time.time() - folder.stat().st_mtime < _IN_THE_MAKING
    except OSError:
        young = False
    return young and _running(pid)


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this build has not made its folders yet: they are an earlier process's with the same number
    try:
        os.kill(pid, 0)  # PermissionError (another user's process) means it runs too
    except (ProcessLookupError, OverflowError):  # gone, or a number no process can have
        return False
    except PermissionError:
        pass
    return True


def _all_recorded(out: Path, recorded: set[str]) -> bool:
    """Whether every file under ``out`` (in every folder) is one of ``recorded``."""
    return bool(recorded) and all(rel in recorded for _path, rel in walk_names(out))


def write_whole(path: Path | str, data: bytes) -> None:
    """Write ``data`` to the file at ``path`` whole or not at all: into a new file beside it, then
    renamed over it, so that a failure (a full disk, Ctrl-C) leaves the old file as it was, never
    a half-written one. A symbolic link is written through (the file it names is replaced, the
    link stays); a file that was there keeps its permissions."""
    target = os.path.realpath(path)
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename == tmp:
            exc.filename = str(path)  # the file the caller asked for, not the one beside it
        raise
