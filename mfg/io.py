"""Atomic file output, on the ground floor so that every package can write with it.

A reader never sees a half-written file: each file is written under a hidden temporary
name in its target folder and renamed (``os.replace`` is atomic on POSIX). An interrupted
write leaves at most a hidden ``.*.tmp`` file behind, which readers skip. Files get the
mode ``0o666`` less the process umask, as ``open()`` would give them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write a file atomically: call ``write(tmp_path)``, then rename the result to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; missing parent folders are created.
    write : callable
        Called once with a temporary path (str) in the same folder; it writes the whole file
        there (``DataFrame.write_parquet``, ``Figure.savefig``, ...).

    Returns
    -------
    Path
        ``path``, once the file is in place. On any exception the temporary file is removed
        and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        # the name is bound before the file exists, so that an interrupt landing between the
        # creation and the write (Ctrl-C checked on os.open's return) still removes it
        while True:
            tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
            try:
                # 0o666 through the umask, like open(); mkstemp would force 0o600
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                break
            except FileExistsError:
                tmp = None  # another writer's file, never ours to remove
        write(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    return path


def memory_limit() -> int | None:
    """The memory one piece of work may take: 80% of this machine's physical memory.

    Returns
    -------
    int or None
        Bytes; None where the platform does not say (no check then).
    """
    try:
        return int(0.8 * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None
