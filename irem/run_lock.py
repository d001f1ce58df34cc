"""The lock on a run directory: one training writes into a run directory at a time.

Two trainings in one directory would interleave checkpoints, configs and logs. The lock is an
operating-system lock (`fcntl.flock`) on `<run_dir>/train.lock`, which the kernel releases when its
process ends, however it ends (SIGKILL included), so a crashed run never leaves a lock behind and no
two processes can hold it at once. The file also records the holder's pid and host, for the message
that refuses a second run, and for irem versions that locked by the file's existence alone: a file
naming a live process on this host, or any process on another host, is respected even when no OS
lock is held on it.

The file is removed on release, after a check that it is still the file this process locked, and
a process that locked a file that was removed meanwhile tries again; so the file at the path and
the lock held are always the same.

Filesystems without `flock` (some network and FUSE filesystems report ENOLCK or EOPNOTSUPP): the
lock falls back to creating the file exclusively. A file left there by a killed run is then not
taken over automatically (two processes could take it over at once); the message says to delete it.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from irem.checkpoint import CheckpointError, write_failure

LOCK = "train.lock"
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)

_held: dict[Path, tuple[int, int]] = {}  # lock path -> (file descriptor, how many `run_lock` blocks hold it)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _owner(text: str) -> dict[str, Any]:
    try:
        pid, host = text.split()[:2]
        return {"pid": int(pid), "host": host}
    except ValueError:
        return {}  # empty (a write that failed), being written, or not ours


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 256, 0).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _in_use(lock: Path, owner: dict[str, Any], fallback: bool = False) -> CheckpointError:
    who = f"process {owner['pid']} on host {owner['host']}" if owner else "another process"
    gone = (
        f"This filesystem does not support OS locks, so a lock left by a killed run is not taken over: if that "
        f"process is gone, delete {lock}."
        if fallback
        else f"If that process is gone (e.g. on another host), delete {lock}."
    )
    return CheckpointError(
        f"Run directory {lock.parent} is in use by {who} (lock file {lock}): two trainings in one directory "
        "would overwrite each other's checkpoints and configs. Wait for it to finish, or give this run another "
        f"directory (name=... or hydra.run.dir=...). {gone}"
    )


def _respected(owner: dict[str, Any], me: int, host: str) -> bool:
    """Whether a lock file's recorded owner holds it although no OS lock is on the file (an older
    irem, which locked by the file alone): a live process here, or any process on another host."""
    if not owner or (owner["pid"] == me and owner["host"] == host):
        return False
    return owner["host"] != host or _alive(owner["pid"])


def _write_owner(fd: int, lock: Path, me: int, host: str) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{me} {host}\n".encode(), 0)
    except OSError as err:
        raise write_failure(
            err, "the run's lock file", lock, None, "nothing was written in the run directory", "run it again"
        ) from None


def _open(lock: Path) -> tuple[int, bool] | None:
    """The lock file opened for writing, and whether this call created it; None if it vanished."""
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
    except FileExistsError:
        try:
            return os.open(lock, os.O_RDWR), False
        except FileNotFoundError:  # removed by its holder between the two calls
            return None


def _claim(fd: int, lock: Path, me: int, host: str) -> int:
    """Write this process into the lock file it holds; a lock that cannot be written is removed, so
    nothing of a failed start stays behind to refuse the next one."""
    try:
        _write_owner(fd, lock, me, host)
    except CheckpointError:
        os.unlink(lock)
        os.close(fd)
        raise
    return fd


def _take(lock: Path, me: int, host: str) -> int:
    """The locked lock file's descriptor: an OS lock where the filesystem has them, else the file's
    exclusive creation."""
    try:
        import fcntl
    except ImportError:  # no fcntl on this platform
        fcntl = None
    while True:
        opened = _open(lock)
        if opened is None:
            continue
        fd, created = opened
        try:
            if fcntl is None:
                raise OSError(errno.ENOSYS, "no fcntl")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(_read(fd))
            os.close(fd)
            raise _in_use(lock, owner) from None
        except OSError as err:
            if err.errno not in NO_FLOCK:
                os.close(fd)
                raise
            if created:  # no OS locks: having created the file exclusively is the lock
                return _claim(fd, lock, me, host)
            owner = _owner(_read(fd))
            os.close(fd)
            raise _in_use(lock, owner, fallback=True) from None
        try:  # the holder before us may have removed the path after we opened it: lock what is there now
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        owner = _owner(_read(fd))
        if _respected(owner, me, host):
            os.close(fd)
            raise _in_use(lock, owner)
        if owner and owner["pid"] != me:
            print(
                f"Note: taking over the stale lock {lock} of process {owner['pid']} on {host}, which no longer runs "
                "(a killed run).",
                file=sys.stderr,
            )
        return _claim(fd, lock, me, host)


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold the run directory's lock (<run_dir>/train.lock) for the block. Another process holding it:
    refused with its pid, host and the lock's path. Re-entrant within a process (irem-train takes it
    before Hydra writes the run's config, the trainer again around its loop)."""
    lock = (Path(run_dir) / LOCK).resolve()
    if lock in _held:
        fd, depth = _held[lock]
        _held[lock] = (fd, depth + 1)
        try:
            yield lock
        finally:
            fd, depth = _held[lock]
            _held[lock] = (fd, depth - 1)
        return
    me, host = os.getpid(), socket.gethostname()
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise write_failure(
            err, "the run directory", lock.parent, None, "nothing was written there", "run it again"
        ) from None
    fd = _take(lock, me, host)
    _held[lock] = (fd, 1)
    try:
        yield lock
    finally:
        del _held[lock]  # the blocks nested in this one have all ended
        try:  # remove the path while still locked, and only if it is still our file
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                os.unlink(lock)
        except FileNotFoundError:
            pass
        os.close(fd)
