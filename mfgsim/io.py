"""The application's output folders: a lock per folder, and an up-front check that a
folder can be written. Files themselves are written with :func:`mfg.io.atomic_write`,
which every package uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(RuntimeError):
    """An output folder cannot be used; the message says which and why.

    Parameters
    ----------
    message : str
    """


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse, with one clear message, a folder that is a file, lies under a file, or cannot be created or written.

    Creates nothing.

    Parameters
    ----------
    folder : str or os.PathLike
    what : str
        What the folder is, for the message.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    OutputError
    """
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

    A second process asking for the same folder gets an :class:`OutputError` at once instead
    of redoing the same runs; the lock goes with the process (``flock``), so a killed run
    never leaves a stale lock behind.

    Parameters
    ----------
    folder : str or os.PathLike

    Yields
    ------
    None
    """
    import fcntl  # POSIX only: deferred so that the package imports elsewhere

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
