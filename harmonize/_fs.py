"""Safe file writing shared by every writer: temporary file in the target folder, then rename.

Nothing half-written is ever left at the destination, and nothing already written is
replaced silently: an identical file is kept as it is, a different one is replaced only
with ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_bytes_atomic"]


def write_bytes_atomic(path: Path, data: bytes, overwrite: bool) -> Path:
    """Write ``data`` to ``path`` atomically; keep an identical file; refuse a different one
    unless ``overwrite``."""
    if path.exists():
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory, expected a file path")
        if path.read_bytes() == data:
            return path
        if not overwrite:
            raise FileExistsError(
                f"{path} exists with different content; pass --overwrite (overwrite=True in "
                "Python) to replace it"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
