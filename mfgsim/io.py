"""File output shared by every package: atomic writes, a lock per output folder, and an
up-front check that an output folder can be written.

A reader never sees a half-written file: each file is written under a hidden temporary
name in its target folder and renamed (``os.replace`` is atomic on POSIX). An interrupted
write leaves at most a hidden ``.*.tmp`` file behind, which readers skip. Files get the
mode ``0o666`` less the process umask, as ``open()`` would give them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(RuntimeError):
    """An output folder cannot be used; the message says which and why."""


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` (folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            # 0o666 through the umask, like open(); mkstemp would force 0o600
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse, with one clear message, a folder that is a file, lies under a file, or
    cannot be created or written; creates nothing."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == folder else f"lies under {probe}, which is a file"
        raise OutputError(f"{what} {folder} {where}; choose a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {folder} cannot be written: {probe} is not writable "
                                        "(check its permissions, or choose another folder)")
    return folder


@contextmanager
def output_lock(folder: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a ``.lock`` file inside it) while writing.

    A second process asking for the same folder gets an :class:`OutputError` at once
    instead of redoing the same runs; the lock goes with the process (``flock``), so a
    killed run never leaves a stale lock behind.
    """
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise OutputError(f"{folder} is in use by another mfgsim process (pid {holder}); "
                                           "wait for it to finish or choose another output folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
