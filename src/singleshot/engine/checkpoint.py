"""``last.pt``: the resumable training state, written atomically and read without executing code.

The state (model, optimizer, scheduler, scaler, EMA, position, RNG states, config) is written with
``torch.save`` to a temporary file in the same folder, flushed to disk, then renamed over the old one
(:func:`~singleshot.folders.atomic_write`), so a kill at any moment leaves either the old or the new checkpoint,
never a torn one. It is read with ``torch.load(weights_only=True)``: plain containers, tensors and numbers only.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from singleshot.weights import atomic_write


def save_checkpoint(state: Mapping[str, Any], path: str | Path) -> None:
    """Atomically ``torch.save`` a training state (plain containers, tensors and numbers only)."""
    atomic_write(path, lambda tmp: torch.save(dict(state), tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a training state without executing code from the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which and why
        raise ValueError(f"{path}: not a readable singleshot checkpoint ({exc})") from exc


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states, as plain containers that ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": [np_state[0], np_state[1].tolist(), np_state[2], np_state[3], np_state[4]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
