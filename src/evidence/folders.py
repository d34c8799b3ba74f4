"""The site folder's siblings that a build makes: its unfinished folder ``.NAME.tmp-PID`` and the
replaced site ``.NAME.old-PID``. A build holds them with a lock while it runs
(:func:`lock_folder`), and the next build removes those that a killed build left
(:func:`left_behind`)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: folders left behind are told by their PID
    fcntl = None  # type: ignore[assignment]

__all__ = ["left_behind", "lock_folder", "unlock_folder"]


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
