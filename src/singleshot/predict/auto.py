"""``backend="auto"``: the fastest way to run a model on this machine, measured once and remembered.

The same weights run fastest on different runtimes on different CPUs (PyTorch bf16 where the CPU has AMX, ONNX
Runtime int8 where it has VNNI, OpenVINO on AVX2-only CPUs; ``benchmarks/RESULTS.md``). The candidates
(:func:`candidates`), labelled as in ``singleshot benchmark``:

* ``torch-fp32``, and ``torch-bf16`` only where the CPU computes bf16 natively (never the emulated path);
* ``ort-fp32`` / ``ov-fp32``: ONNX Runtime / OpenVINO on an fp32 ``.onnx`` file given as the weights, or for a
  model file, its export made on the fly and kept in ``$SINGLESHOT_CACHE/onnx/`` (:func:`exported_file`);
* ``ort-int8`` / ``ov-int8``: an int8 ``.onnx`` given as the weights, or for a model file, the int8 file that
  ``singleshot export --int8`` wrote beside it (``<stem>-int8.onnx``), only if it was exported from these very
  weights (their SHA-256 is in its metadata) and passed its accuracy check (:func:`checked_int8_file`);
* OpenVINO only where the ``openvino`` package is installed.

Each candidate's network is timed on one image (:func:`measure`: median of 5 runs after 2 warm-ups). The fastest
wins, but a path other than the baseline (the first candidate: ``torch-fp32`` for a model file) must be at least
5% faster than it (:data:`MIN_GAIN`), so ``auto`` never picks a path that measured slower than fp32. The choice is
kept in ``$SINGLESHOT_CACHE/backend.json`` (default ``~/.cache/singleshot``) under a key of the CPU (name, flags,
threads), the installed runtimes' versions, the weights' SHA-256 (and the int8 file's), the input size and the
candidates, so a new model, input size or runtime is measured again.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from singleshot.cpu import cpu_features
from singleshot.export.onnx_format import INT8_CHECK, SOURCE_SHA256, onnx_props
from singleshot.export.openvino_file import read_openvino_props
from singleshot.folders import atomic_write, file_sha256
from singleshot.predict.precision import bf16_is_native, cache_folder

#: What ``backend`` may name: ``auto`` chooses among the others.
BACKENDS = ("auto", "pytorch", "onnxruntime", "openvino")
#: What ``precision`` may name: ``auto`` lets the chooser (or, for PyTorch alone, :mod:`.precision`) decide.
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: Short runtime names of the candidates' labels (as ``singleshot benchmark`` prints them).
SHORT = {"pytorch": "torch", "onnxruntime": "ort", "openvino": "ov"}
#: A candidate other than the baseline is chosen only when its median time is below this fraction of the baseline's.
MIN_GAIN = 0.95
#: Runs timed per candidate, after :data:`WARMUP` untimed ones.
RUNS, WARMUP = 5, 2


@dataclass(frozen=True)
class Candidate:
    """One way to run the weights: a runtime, a precision, and the ``.onnx`` file it reads (``None``: PyTorch)."""

    runtime: str  # pytorch | onnxruntime | openvino
    precision: str  # fp32 | bf16 | int8
    file: Path | None = None

    @property
    def label(self) -> str:
        return f"{SHORT[self.runtime]}-{self.precision}"


@dataclass
class BackendChoice:
    """What ``auto`` chose, among what (milliseconds per batch-1 forward pass), and why others were not tried."""

    chosen: Candidate
    times_ms: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    cached: bool = False

    def describe(self) -> str:
        """One line for the log, e.g. ``backend auto: ov-int8 (network 12.1 ms; torch-fp32 40.3, ...)``."""
        if not self.times_ms:
            why = "the only candidate"
        else:
            others = ", ".join(f"{k} {v:.1f}" for k, v in self.times_ms.items() if k != self.chosen.label)
            when = "measured earlier on this machine" if self.cached else "measured now"
            why = f"network {self.times_ms[self.chosen.label]:.1f} ms; {others} ms; {when}"
        line = f"backend auto: {self.chosen.label} ({why})"
        by_reason: dict[str, list[str]] = {}
        for label, reason in self.skipped.items():
            by_reason.setdefault(reason, []).append(label)
        if by_reason:
            line += "; not tried: " + "; ".join(f"{', '.join(labels)}: {why}" for why, labels in by_reason.items())
        return line


def runtimes_installed() -> dict[str, str]:
    """Version of each runtime package installed here (``pytorch`` always; OpenVINO is optional)."""
    out = {"pytorch": torch.__version__}
    for runtime, package in (("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[runtime] = importlib.metadata.version(package)
    return out


def exported_precision(path: Path) -> str:
    """``fp32`` or ``int8``: the precision an exported ``.onnx`` or OpenVINO ``.xml`` file records."""
    if path.suffix.lower() == ".xml":
        import openvino  # here: optional (pip install openvino), and only an IR needs it

        return read_openvino_props(openvino.Core().read_model(str(path))).get("precision", "fp32")
    return onnx_props(path).get("precision", "fp32")


def int8_file_beside(weights: Path) -> Path:
    """Where ``singleshot export --int8`` writes the int8 file of ``weights`` by default."""
    return weights.with_name(f"{weights.stem}-int8.onnx")


def checked_int8_file(weights: Path, sha256: str) -> tuple[Path | None, dict[str, str]]:
    """The int8 file beside ``weights`` if it comes from these weights, and for each runtime why it may not run it
    (runtime -> reason; absent: its accuracy check passed on that runtime)."""
    path = int8_file_beside(weights)
    every = ("onnxruntime", "openvino")
    if not path.is_file():
        why = f"no {path.name} beside the weights (singleshot export --int8 --data D writes it, checked)"
        return None, dict.fromkeys(every, why)
    props = onnx_props(path)
    if props.get(SOURCE_SHA256) != sha256:
        return None, dict.fromkeys(every, f"{path.name} was not exported from these weights")
    passed = json.loads(props.get(INT8_CHECK, "{}")).get("passed", False)
    passed = passed if isinstance(passed, dict) else dict.fromkeys(every, bool(passed))
    failed = f"{path.name} did not pass its accuracy check on this runtime (written with --force, or unchecked)"
    return path, {runtime: failed for runtime in every if not passed.get(runtime)}


def exported_file(weights: Path, sha256: str, export: Callable[[Path, str], Path]) -> Path:
    """The fp32 ONNX export of the model file ``weights`` in ``$SINGLESHOT_CACHE/onnx/``, made by
    ``export(target, sha256)`` if it is not there yet (named by the weights' SHA-256: changed weights are exported
    again)."""
    path = cache_folder() / "onnx" / f"{weights.stem}-{sha256[:16]}.onnx"
    if not path.is_file():
        export(path, sha256)
    return path


def candidates(
    weights: str | Path, backend: str, precision: str, export: Callable[[Path, str], Path] | None
) -> tuple[list[Candidate], dict[str, str], str]:
    """The ways to run ``weights`` on the CPU that ``backend`` and ``precision`` allow here (the baseline first), why
    the others are left out (label -> reason), and the weights' identity for the cache key (SHA-256).

    ``export(target, sha256)`` writes the fp32 ONNX file of the model file ``weights`` (none, or weights that are
    not a file such as ``torchvision:NAME``: PyTorch alone). bf16 is a candidate only for ``precision="auto"``
    (asked for by name it is PyTorch's: :func:`~singleshot.predict.loading.load_backend`).

    Raises:
        ValueError: an unknown ``backend`` or ``precision``, or one the weights cannot run at (an ``.onnx`` file on
            PyTorch or at another precision, an int8 model file without its checked int8 file, ...), naming the file
            and why.
        FileNotFoundError: an ``.onnx`` file that does not exist.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    path = Path(str(weights))
    installed = runtimes_installed()
    skipped: dict[str, str] = {}
    runtimes = []
    for runtime in ("pytorch", "onnxruntime", "openvino"):
        if backend not in ("auto", runtime):
            continue
        if runtime in installed:
            runtimes.append(runtime)
        else:
            skipped[SHORT[runtime]] = f"no {runtime} package here (pip install {runtime})"
    if path.suffix.lower() in (".onnx", ".xml"):
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        allowed = ("openvino",) if path.suffix.lower() == ".xml" else ("onnxruntime", "openvino")
        runtimes = [r for r in runtimes if r in allowed]
        if not runtimes:
            what = " or ".join(allowed)
            raise ValueError(f"{path}: an exported file runs on {what}; backend={backend} (pip install {what})")
        own = exported_precision(path)
        if precision not in ("auto", own):
            raise ValueError(f"{path}: an exported {own} file; it runs on onnxruntime or openvino, at {own}")
        return [Candidate(r, own, path) for r in runtimes], skipped, file_sha256(path)
    exportable = export is not None and path.is_file()
    if not exportable:
        if backend not in ("auto", "pytorch") or precision == "int8":
            raise ValueError(f"{weights}: PyTorch alone runs it here; write an ONNX file with singleshot export")
        runtimes = ["pytorch"]
    sha = file_sha256(path) if path.is_file() else str(weights)
    identity = sha
    wanted = ("fp32", "bf16", "int8") if precision == "auto" else (precision,)
    int8, why_not_int8 = None, {}
    if exportable and "int8" in wanted:
        int8, why_not_int8 = checked_int8_file(path, sha)
        identity += f"+int8:{file_sha256(int8)}" if int8 else ""
    native_bf16 = bf16_is_native(torch.device("cpu"))
    found: list[Candidate] = []
    for runtime in runtimes:
        for p in wanted:
            label = f"{SHORT[runtime]}-{p}"
            if (runtime == "pytorch" and p == "int8") or (runtime != "pytorch" and p == "bf16"):
                continue  # int8 runs from an exported file; an ONNX file is fp32 or int8
            if p == "bf16" and not native_bf16:
                skipped[label] = f"this CPU ({cpu_features().name or 'unknown'}) has no native bf16: emulated, slow"
            elif p == "int8" and (int8 is None or runtime in why_not_int8):
                skipped[label] = why_not_int8[runtime]
            elif runtime == "pytorch":
                found.append(Candidate("pytorch", p))
            else:
                assert export is not None  # exportable
                file = int8 if p == "int8" else exported_file(path, sha, export)
                found.append(Candidate(runtime, p, file))
    if not found:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items()) or "no runtime"
        raise ValueError(f"{weights}: nothing here runs it with backend={backend}, precision={precision} ({why})")
    return found, skipped, identity


def cache_key(identity: str, found: Sequence[Candidate], threads: int, torch_threads: int) -> str:
    """What a cached choice depends on: the CPU (name and flags), the threads (the exported runtimes' and
    PyTorch's), the runtimes' versions, the weights (``identity``: their SHA-256, which fixes the model and its
    input size) and the candidates."""
    cpu = cpu_features()
    flags = "".join("1" if getattr(cpu, f) else "0" for f in ("avx2", "avx512", "vnni", "bf16", "amx"))
    versions = ",".join(f"{k}={v}" for k, v in sorted(runtimes_installed().items()))
    labels = ",".join(c.label for c in found)
    return f"{cpu.name}|{flags}|threads={threads},{torch_threads}|{versions}|{identity}|{labels}"


def measure(infer: Callable[[], object]) -> float:
    """Median milliseconds of ``infer()`` over :data:`RUNS` runs after :data:`WARMUP` untimed ones."""
    times = []
    for i in range(WARMUP + RUNS):
        start = time.perf_counter()
        infer()
        if i >= WARMUP:
            times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def pick(times_ms: dict[str, float], baseline: str) -> str:
    """The fastest label, or ``baseline`` unless the fastest beats it by :data:`MIN_GAIN`."""
    fastest = min(times_ms, key=times_ms.__getitem__)
    return fastest if times_ms[fastest] < MIN_GAIN * times_ms[baseline] else baseline


def choose(
    found: Sequence[Candidate],
    skipped: dict[str, str],
    key: str,
    timer: Callable[[Candidate], float],
) -> BackendChoice:
    """The candidate to run (see the module docstring): the cached choice for ``key``, else each candidate timed by
    ``timer`` (milliseconds) and the fastest by :func:`pick`, remembered under ``key``."""
    by_label = {c.label: c for c in found}
    if len(found) == 1:
        return BackendChoice(found[0], skipped=skipped)
    path = cache_folder() / "backend.json"
    try:
        stored = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        stored = {}  # an unreadable cache is measured again and rewritten
    entry = stored.get(key)
    if entry and entry.get("choice") in by_label:
        return BackendChoice(by_label[entry["choice"]], entry.get("ms", {}), skipped, cached=True)
    times = {c.label: timer(c) for c in found}
    label = pick(times, found[0].label)
    stored[key] = {"choice": label, "ms": times}
    with contextlib.suppress(OSError):  # a read-only home only costs a measurement next time
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(stored, indent=1)))
    return BackendChoice(by_label[label], times, skipped)


__all__ = ["BACKENDS", "PRECISIONS", "BackendChoice", "Candidate", "candidates", "choose", "measure", "pick"]
