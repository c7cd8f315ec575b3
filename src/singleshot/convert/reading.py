"""Reading other programs' files without running them: PyTorch ``.pt``/``.pth`` state dicts
(``torch.load(weights_only=True)`` only) and torchvision's weights API (its cache, or a download)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import Tensor


def read_torch_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.pt``/``.pth`` file, read with ``torch.load(weights_only=True)`` only (plain
    containers, tensors and numbers; nothing in the file is executed). A checkpoint that wraps its state dict
    (``{"model": ...}``, ``{"state_dict": ...}``) is unwrapped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file whose unpickling would run code (refused, with the reason), or one that is truncated
            or not a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: refused: loading it would need arbitrary unpickling, which can run code hidden in the file "
            f"({reason}); singleshot reads .pt/.pth files with torch.load(weights_only=True) only. Re-save it as a "
            "plain state dict (torch.save(model.state_dict(), path)) where you trust it."
        ) from exc
    except Exception as exc:
        raise ValueError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from exc
    for key in ("model", "state_dict", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    return state


def download_state_dict(weights: object, what: str) -> dict[str, Tensor]:
    """A torchvision weights enum's state dict: from torchvision's cache, or downloaded; offline, the error names
    the file to fetch and where to put it."""
    try:
        return weights.get_state_dict(progress=False)  # type: ignore[attr-defined]  # a torchvision weights enum member
    except Exception as exc:  # offline: urllib's URLError, or any download failure
        url = weights.url  # type: ignore[attr-defined]  # a torchvision weights enum member
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        raise ValueError(
            f"{what}: could not download {url} ({type(exc).__name__}: {exc}). Offline, fetch that file "
            f"elsewhere and put it at {cache} (torchvision's cache), or give the file's path instead"
        ) from exc
