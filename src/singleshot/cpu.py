"""What this CPU can do fast: its vector and matrix extensions, read from the operating system's feature flags.

``torch.backends.cpu.get_cpu_capability()`` names only the widest vector kernel PyTorch dispatches to (it answers
``AVX512`` on a CPU with AMX and AVX512-BF16), so the flags are read from ``/proc/cpuinfo`` (Linux) with
PyTorch's own probes as the fallback elsewhere. int8 pays where the CPU has VNNI (or AMX-INT8); bf16 where it
has AVX512-BF16 or AMX-BF16; without them both are emulated and slower than fp32.
"""

from __future__ import annotations

import os
import platform
from dataclasses import KW_ONLY, dataclass
from functools import cache
from pathlib import Path

import torch

#: Linux ``/proc/cpuinfo`` flag names of each extension we report.
_FLAGS = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "vnni": ("avx512_vnni", "avx_vnni"),
    "bf16": ("avx512_bf16",),
    "amx": ("amx_bf16", "amx_int8"),
}


@dataclass(frozen=True)
class CpuFeatures:
    """Extensions present (True/False) and the core counts."""

    name: str
    _: KW_ONLY
    avx2: bool
    avx512: bool
    vnni: bool
    bf16: bool
    amx: bool
    physical_cores: int
    logical_cores: int

    @property
    def fast_bf16(self) -> bool:
        """Native bf16 arithmetic (AVX512-BF16 or AMX): bf16 autocast can beat fp32."""
        return self.bf16 or self.amx

    @property
    def fast_int8(self) -> bool:
        """Native int8 dot products (VNNI or AMX): int8 quantised models can beat fp32."""
        return self.vnni or self.amx

    def describe(self) -> str:
        """One line to print beside any speed figure, e.g. ``Intel Xeon, 2 cores: AVX2 yes, AVX512 yes, ...``."""
        labels = {"avx2": "AVX2", "avx512": "AVX512", "vnni": "VNNI", "bf16": "BF16", "amx": "AMX"}
        flags = ", ".join(f"{label} {'yes' if getattr(self, key) else 'no'}" for key, label in labels.items())
        return f"{self.name}, {self.physical_cores} physical cores: {flags}"


def parse_cpuinfo(text: str) -> tuple[str, set[str], int]:
    """CPU model name, feature flags and physical core count (distinct ``(physical id, core id)`` pairs) of the
    text of Linux's ``/proc/cpuinfo``."""
    name, flags, cores = "", set(), set()
    physical_id = ""
    for line in text.splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "model name" and not name:
            name = value
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            cores.add((physical_id, value))
    return name, flags, len(cores)


def features_from(name: str, flags: set[str], physical: int, logical: int) -> CpuFeatures:
    """:class:`CpuFeatures` of parsed ``/proc/cpuinfo`` fields; ``physical`` 0 (not listed) counts ``logical``."""
    has = {key: any(f in flags for f in names) for key, names in _FLAGS.items()}
    return CpuFeatures(name=name, physical_cores=min(physical, logical) if physical else logical,
                       logical_cores=logical, **has)  # fmt: skip  # keywords grouped by line


@cache
def cpu_features() -> CpuFeatures:
    """This machine's :class:`CpuFeatures` (read once per process)."""
    # The cores this process may run on (a container or `taskset` may allow fewer than the machine has).
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        parsed_name, flags, physical = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
        return features_from(parsed_name or name, flags, physical, logical)
    # Not Linux: PyTorch's probes (private functions, hence the getattr).
    capability = torch.backends.cpu.get_cpu_capability()

    def probe(fn: str) -> bool:
        return bool(getattr(torch.cpu, fn, lambda: False)())

    return CpuFeatures(
        name=name,
        avx2=capability in ("AVX2", "AVX512"),
        avx512=capability == "AVX512",
        vnni=probe("_is_avx512_vnni_supported"),
        bf16=probe("_is_avx512_bf16_supported"),
        amx=probe("_is_amx_tile_supported"),
        physical_cores=logical,
        logical_cores=logical,
    )


__all__ = ["CpuFeatures", "cpu_features", "features_from", "parse_cpuinfo"]
