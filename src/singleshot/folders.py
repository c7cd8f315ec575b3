"""Run folders: ``runs/<task>/<name>``, never overwriting an earlier run unless asked to."""

from __future__ import annotations

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
