"""Atomic file writes: a reader, or a kill at any moment, finds the previous file or the whole new
one, never a part of it."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a deletion in the directory `path` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", unique: bool = False) -> Iterator[IO[Any]]:
    """Open a hidden temporary file next to `path` (`.<name>.tmp`); when the block ends without an
    error, fsync it, rename it over `path` and fsync the directory; on an error remove it.
    unique: a temporary name of this process's own, for a file that several processes may write."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp" if unique else f".{path.name}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
