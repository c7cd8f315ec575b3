"""Choosing the PyTorch inference precision: fp32, or bf16 autocast where the hardware makes it pay.

``precision="auto"`` considers bf16 only where the device has native bf16 arithmetic (a CPU with AVX512-BF16 or
AMX, read from its feature flags by :mod:`singleshot.cpu`; a GPU that supports bf16), times both precisions on
the model once, and keeps bf16 only when it is measurably faster, so ``auto`` is never slower than fp32. The
choice is cached per machine, PyTorch version, model and input size, in memory and in
``$SINGLESHOT_CACHE/precision.json`` (default ``~/.cache/singleshot``).

bf16 asked for by name (``precision="bf16"``, ``singleshot train --amp bf16``) on a CPU without native bf16 is
emulated, and slow (SSD300 inference 83x slower than fp32 on an AVX2-only CPU): :func:`bf16_or_fp32` then warns,
naming the missing CPU features, and fp32 runs instead, unless the environment sets :data:`FORCE_BF16` to 1.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import statistics
import time
import warnings
from pathlib import Path

import torch

from singleshot.cpu import cpu_features
from singleshot.ssd import SSD

PRECISIONS = ("auto", "fp32", "bf16")
#: The environment variable that runs bf16 even where it is emulated (set it to 1).
FORCE_BF16 = "SINGLESHOT_FORCE_BF16"
#: bf16 is chosen only when its median time is below this fraction of fp32's.
MIN_GAIN = 0.95

_memory: dict[str, str] = {}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (``None``: full precision)."""
    return torch.bfloat16 if precision == "bf16" else None


def use_bf16_layout(model: SSD, device: torch.device) -> None:
    """Switch ``model`` to channels-last for bf16 on the CPU: oneDNN's bf16 convolutions want that layout (SSD300
    inference measured 2.7x faster than bf16 in the default layout, training 1.8x, on an AMX CPU). Results agree
    with the default layout to float rounding."""
    if device.type == "cpu":
        model.use_channels_last(True)


def bf16_is_native(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_features().fast_bf16


def bf16_or_fp32(device: torch.device, asked_by: str, force: bool = False) -> str:
    """``bf16`` where ``device`` computes it natively, or when forced (``force``, or the environment's
    :data:`FORCE_BF16`), else ``fp32`` with a warning that names the missing CPU features and ``asked_by`` (the
    option that asked)."""
    if force or bf16_is_native(device) or os.environ.get(FORCE_BF16) == "1":
        return "bf16"
    if device.type == "cpu":
        cpu = cpu_features()
        why = f"this CPU ({cpu.name or 'unknown'}) has neither AVX512-BF16 nor AMX, so bf16 is emulated"
    else:
        why = f"{device} has no native bf16"
    warnings.warn(
        f"{asked_by}: {why} and slower than fp32 (SSD300 inference: 83x on an AVX2-only CPU); running fp32 "
        f"instead (set {FORCE_BF16}=1 to run bf16 anyway)",
        stacklevel=3,
    )
    return "fp32"


def cache_folder() -> Path:
    """Where measured choices and on-the-fly exports are kept: ``$SINGLESHOT_CACHE`` (default
    ``~/.cache/singleshot``)."""
    return Path(os.environ.get("SINGLESHOT_CACHE", Path.home() / ".cache" / "singleshot"))


def cache_file() -> Path:
    return cache_folder() / "precision.json"


def _key(model: SSD, device: torch.device) -> str:
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_features().name
    h, w = model.preprocessing.image_size
    return f"{hardware}|{device.type}|threads={torch.get_num_threads()}|torch={torch.__version__}|{model.name}|{h}x{w}"


def _median_seconds(model: SSD, x: torch.Tensor, dtype: torch.dtype | None, repeats: int = 3) -> float:
    times = []
    ctx = torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        for i in range(repeats + 1):
            start = time.perf_counter()
            model.head_outputs(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            if i:  # the first run warms up (kernel selection, allocations)
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_precisions(model: SSD, device: torch.device) -> dict[str, float]:
    """Median seconds of one batch-1 forward pass of ``model`` in fp32 (its layout) and in bf16 (the layout
    :func:`use_bf16_layout` gives it, on a copy)."""
    x = torch.rand(1, 3, *model.preprocessing.image_size, device=device)
    bf16_model = copy.deepcopy(model)
    use_bf16_layout(bf16_model, device)
    return {
        "fp32": _median_seconds(model, x.contiguous(memory_format=model.memory_format), None),
        "bf16": _median_seconds(bf16_model, x.contiguous(memory_format=bf16_model.memory_format), torch.bfloat16),
    }


def choose_precision(model: SSD, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``model`` on ``device``: see the module docstring."""
    if not bf16_is_native(device):
        return "fp32"
    key = _key(model, device)
    if key in _memory:
        return _memory[key]
    path = cache_file()
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}  # an unreadable cache is measured again and rewritten
    if key not in stored:
        times = measure_precisions(model, device)
        stored[key] = "bf16" if times["bf16"] < MIN_GAIN * times["fp32"] else "fp32"
        with contextlib.suppress(OSError):  # a read-only home only costs a measurement next time
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(stored, indent=1))
    _memory[key] = stored[key]
    return stored[key]
