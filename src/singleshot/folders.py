"""Run folders (``runs/<task>/<name>``, never overwriting an earlier run unless asked to) and atomic file writes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def new_run_dir(project: str | Path, name: str, exist_ok: bool) -> Path:
    """``project/name``, or ``project/name2``, ``name3``... when taken (unless ``exist_ok``)."""
    base = Path(project) / name
    if exist_ok or not base.exists():
        return base
    k = 2
    while (Path(project) / f"{name}{k}").exists():
        k += 1
    return Path(project) / f"{name}{k}"


def file_sha256(path: str | Path) -> str:
    """The SHA-256 (hex) of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the finished file onto ``path`` in one rename (same folder, flushed
    to disk first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
