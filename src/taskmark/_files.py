"""Files shared between processes: written whole or not at all, and held by one process.

The local server's state file and the watch folder's claims and summaries are read by other
processes while they are written, and their lock files stop two processes doing one job.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["locked", "write_whole"]


def write_whole(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never half
    of one, even after a power cut: a temporary file beside it, fsync, rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = True) -> Iterator[IO[str]]:
    """Hold an exclusive lock on ``path`` across processes (released if the process dies).

    Yields the lock file, open for reading and writing (a holder may say who it is in it).

    Raises:
        BlockingIOError: ``wait`` is False and another process holds the lock.
    """
    with path.open("a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
