"""Run the numeric tests (marker ``numeric``) again under other kernel choices than this CPU's own, and fail if any
of them fails there: a pass on one CPU must not hide a failure on another. ``make test`` runs it after the suite.

Float results depend on the kernels that compute them, and the machines singleshot runs on pick different ones: an
Intel Xeon with AVX-512 and AMX, an AMD EPYC with AVX-512, an AMD EPYC with AVX2 only (and laptops of every
kind). For float32 the first two run the same kernels (oneDNN's ``avx512_core`` convolutions and ATen's AVX512
code; AMX serves bf16 and int8 only), the third other ones. Each variant is a fresh pytest process whose
environment caps the kernels, since oneDNN, ATen and MKL read these settings when torch loads:

* ``avx2``: oneDNN, ATen and MKL capped at AVX2, on a CPU with AVX-512: what the AVX2-only machines run;
* ``1-thread``: this CPU's kernels on one thread (work split otherwise, sums added in other orders);
* ``sse41`` (on request): capped at SSE4.1 (ATen's portable code): another kernel family, slower.

Before running the tests, a probe process checks that the variant is in effect (ATen's capability, the ISA
oneDNN reports, the thread count); a cap that did not take would make the run a copy of the first. ONNX Runtime
chooses its kernels from the CPU alone (it has no such cap), so its paths run this CPU's kernels in every variant.

Usage: ``python tests/kernel_variants.py [--variants avx2,1-thread] [-- PYTEST ARGS]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from singleshot.cpu import CpuFeatures, cpu_features

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    """One kernel choice: its environment and what the probe must then read."""

    name: str
    env: dict[str, str]
    aten: str | None = None  # torch.backends.cpu.get_cpu_capability()
    onednn: str | None = None  # a part of oneDNN's "isa:" line
    threads: int | None = None


AVX2 = Variant(
    "avx2", {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    aten="AVX2", onednn="AVX2",
)  # fmt: skip
SSE41 = Variant(
    "sse41", {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    aten="DEFAULT", onednn="SSE4.1",
)  # fmt: skip
ONE_THREAD = Variant("1-thread", {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, threads=1)
VARIANTS = {v.name: v for v in (AVX2, SSE41, ONE_THREAD)}

PROBE = """
import torch
x = torch.randn(1, 64, 32, 32)
torch.nn.functional.conv2d(x, torch.randn(64, 64, 3, 3), padding=1)  # large enough for oneDNN
print("aten", torch.backends.cpu.get_cpu_capability())
print("threads", torch.get_num_threads())
"""


def default_variants(cpu: CpuFeatures) -> list[Variant]:
    """``avx2`` where the CPU has AVX-512 (our AVX2-only machines' kernels), and ``1-thread``. On an AVX2 CPU the
    faster kernels cannot be emulated and SSE4.1 runs on no machine of ours (and doubles the time): ``1-thread``
    only, ``--variants sse41`` on request."""
    return [AVX2, ONE_THREAD] if cpu.avx512 else [ONE_THREAD]


def probe(variant: Variant, env: dict[str, str]) -> str:
    """What a fresh process under ``env`` runs on; raises if the variant did not take."""
    out = subprocess.run([sys.executable, "-c", PROBE], env=env | {"ONEDNN_VERBOSE": "1"}, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    readings = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith(("aten ", "threads ")))
    isa = next((line.split("isa:", 1)[1] for line in out.splitlines() if "isa:" in line), "not reported")
    problems = []
    if variant.aten and readings.get("aten") != variant.aten:
        problems.append(f"ATen runs {readings.get('aten')}, not {variant.aten}")
    if variant.onednn and variant.onednn not in isa:
        problems.append(f"oneDNN runs {isa}, not {variant.onednn}")
    if variant.threads and int(readings.get("threads", 0)) != variant.threads:
        problems.append(f"{readings.get('threads')} threads, not {variant.threads}")
    if problems:
        raise RuntimeError(f"variant {variant.name} not in effect: {'; '.join(problems)}")
    return f"ATen {readings['aten']}, oneDNN {isa}, {readings['threads']} threads"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", help=f"comma-separated, of {', '.join(VARIANTS)} (default: chosen from the CPU)")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args(argv)
    cpu = cpu_features()
    print(f"CPU: {cpu.describe()}")
    names = args.variants.split(",") if args.variants else [v.name for v in default_variants(cpu)]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    variants = [VARIANTS[n] for n in names]
    results = []
    for variant in variants:
        env = os.environ | variant.env
        settings = " ".join(f"{k}={v}" for k, v in variant.env.items())
        print(f"\n== numeric tests, variant {variant.name}: {settings}\n   {probe(variant, env)}", flush=True)
        start = time.monotonic()
        command = [sys.executable, "-m", "pytest", "-q", "-m", "numeric", "-p", "no:cacheprovider", *args.pytest_args]
        code = subprocess.run(command, env=env, cwd=ROOT).returncode
        results.append((variant.name, code, time.monotonic() - start))
    print("\nkernel variants:")
    for name, code, seconds in results:
        print(f"  {name:9s} {'passed' if code == 0 else f'FAILED (exit {code})'}  {seconds:.0f} s")
    return max(code for _, code, _ in results) if results else 0


if __name__ == "__main__":
    sys.exit(main())
