"""``singleshot benchmark``: inference speed of each backend against torchvision's SSD on the same weights.

For every backend (PyTorch fp32 and bf16, ONNX Runtime fp32 and int8, OpenVINO fp32 and int8 where the openvino
package is installed) and for torchvision's model carrying the
same weights (:func:`singleshot.convert.torchvision.to_torchvision`), all in one process on the same JPEG files:

* batch-1 latency, JPEG file on disk to detections (median and 90th percentile);
* batch-``B`` throughput (images/s), also end to end;
* the ratio of each time to torchvision's (below 1: faster than torchvision);
* achieved multiply-adds per second: the model's multiply-adds times the end-to-end throughput;
* where our time goes: median milliseconds per image of reading and preprocessing, network, post-processing.

Measurements are interleaved (one of each backend in turn), so that a noisy neighbour on a shared machine slows
all of them alike. Every backend uses the model's own post-processing settings, as torchvision does. The last line
says what ``--backend auto`` runs the weights with on this machine (:mod:`singleshot.predict.auto`: its own,
cached, measurement of the network alone; int8 only from the checked file of ``singleshot export --int8``).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from singleshot.config import Config, setting
from singleshot.convert.torchvision import to_torchvision
from singleshot.cpu import cpu_features
from singleshot.data.images import read_image
from singleshot.data.synthetic import save_images
from singleshot.export import export_onnx, quantize_int8
from singleshot.predict import Detector
from singleshot.predict.auto import runtimes_installed
from singleshot.predict.backends import OnnxBackend, OpenVinoBackend
from singleshot.predict.loading import load_backend, load_model
from singleshot.predict.sources import SourceReport, expand, is_image
from singleshot.ssd import resize
from singleshot.summary import summarize

BACKENDS = ("torch-fp32", "torch-bf16", "ort-fp32", "ort-int8", "ov-fp32", "ov-int8")


@dataclass
class BenchmarkConfig(Config):
    """What ``singleshot benchmark`` times."""

    what: ClassVar[str] = "benchmark"

    weights: str = setting(help=".safetensors weights of singleshot train (torchvision's model gets the same)")
    source: str | None = setting(
        None, "JPEG images (folder or glob) to time; none writes 16 synthetic 640x480 JPEGs to a temporary folder"
    )
    # the ignore below: a Literal of a constant tuple: valid at run time
    backends: list[Literal[BACKENDS]] = setting(list(BACKENDS), "backends to time (default: all)")  # type: ignore[valid-type]
    runs: int = setting(20, "batch-1 latency measurements per backend (images taken in turn)")
    batches: int = setting(5, "batch-8 throughput measurements per backend")
    batch: int = setting(8, "images per batch for the throughput figure")
    int8: str | None = setting(
        None, "an int8 .onnx of singleshot export --int8 to time; none quantises on the benchmark images (speed only)"
    )
    reference: bool = setting(True, "also time torchvision's SSD carrying the same weights (--no-reference skips it)")
    threads: int | None = setting(None, "CPU threads for every backend; none: one per physical core")

    def problems(self) -> list[str]:
        counts = {"runs": self.runs, "batches": self.batches, "batch": self.batch}
        bad = [f"{k}={v} must be >= 1" for k, v in counts.items() if v < 1]
        if self.threads is not None and self.threads < 1:
            bad.append(f"threads={self.threads} must be >= 1")
        if not self.backends:
            bad.append("no backend to time")
        return bad


REFERENCE = "torchvision"
#: Benchmark images that calibrate an int8 model made for timing only (no --int8 file given).
CALIBRATION_IMAGES = 16


@dataclass
class Timing:
    """One backend's measurements (seconds) and our stage breakdown (milliseconds per image)."""

    name: str
    latency: list[float] = field(default_factory=list)
    batch: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)

    def median_latency(self) -> float:
        return statistics.median(self.latency)

    def p90_latency(self) -> float:
        return float(np.percentile(self.latency, 90))

    def images_per_s(self, batch: int) -> float:
        return batch / statistics.median(self.batch)


def synthetic_jpegs(folder: Path, count: int = 16) -> list[Path]:
    """``count`` synthetic-shape images at 640x480 saved as JPEG (quality 90)."""
    return save_images(folder, count, (480, 640), seed=0, quality=90, prefix="bench")


def _images(source: str) -> list[Path]:
    """The image files of ``source`` (videos are not timed)."""
    paths = [Path(p) for p in expand(source, SourceReport()) if isinstance(p, (str, Path)) and is_image(Path(p))]
    if not paths:
        raise ValueError(f"{source}: no image files to time")
    return paths


def _ours(detector: Detector) -> Callable[[Sequence[Path]], dict[str, float]]:
    """Detect on files with the model's own settings; returns the summed per-image stage milliseconds."""
    own = detector.postprocess.settings
    settings = {"conf": own.conf, "iou": own.iou, "max_det": own.max_det}

    def run(paths: Sequence[Path]) -> dict[str, float]:
        results = detector.predict([str(p) for p in paths], batch=len(paths), **settings)
        return {k: sum(r.speed[k] for r in results) / len(results) for k in results[0].speed}

    return run


def _torchvision(model: torch.nn.Module) -> Callable[[Sequence[Path]], dict[str, float]]:
    """torchvision's usual way: decode with PIL, ``pil_to_tensor``, floats in [0, 1], the model's own transform
    (``torchvision.io``'s decoders are deprecated since torchvision 0.29)."""

    def run(paths: Sequence[Path]) -> dict[str, float]:
        images = []
        for p in paths:
            with Image.open(p) as im:
                images.append(pil_to_tensor(im.convert("RGB")))
        with torch.no_grad():
            model([im.float() / 255 for im in images])
        return {}

    return run


def _int8_file(config: BenchmarkConfig, fp32: Path, paths: list[Path], size: tuple[int, int], tmp: Path) -> Path:
    if config.int8:
        return Path(config.int8)
    images = (resize(read_image(p), size)[None].contiguous().numpy() for p in paths[:CALIBRATION_IMAGES])
    return quantize_int8(fp32, tmp / "int8.onnx", images)


def run(config: BenchmarkConfig, *, log: Callable[[str], None] = print) -> dict[str, Timing]:
    """Time every backend of ``config`` (see the module docstring); prints the table and returns the timings."""
    config.validate()
    threads = config.threads or cpu_features().physical_cores
    torch.set_num_threads(threads)
    model, names = load_model(config.weights)
    macs = summarize(model).multiply_adds
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        paths = _images(config.source) if config.source else synthetic_jpegs(tmp)
        runners: dict[str, Callable[[Sequence[Path]], dict[str, float]]] = {}
        if config.reference:
            runners[REFERENCE] = _torchvision(to_torchvision(model))
        fp32 = export_onnx(model, names, tmp / "fp32.onnx")
        size = model.preprocessing.image_size
        int8: Path | None = None
        for backend in config.backends:
            if backend.startswith("torch"):
                # bf16 runs even where it is emulated: showing what that costs is the benchmark's point
                detector = Detector(model, names, "cpu", precision=backend.removeprefix("torch-"), force_bf16=True)
            elif backend.startswith("ov") and "openvino" not in runtimes_installed():
                log(f"{backend}: skipped (no openvino package: pip install openvino)")
                continue
            else:
                if backend.endswith("int8") and int8 is None:
                    int8 = _int8_file(config, fp32, paths, size, tmp)
                file = int8 if backend.endswith("int8") else fp32
                runtime = OnnxBackend if backend.startswith("ort") else OpenVinoBackend
                detector = Detector(runtime(file, threads), names)  # type: ignore[arg-type]  # int8 set above
            runners[backend] = _ours(detector)
        timings = _measure(runners, paths, config.runs, config.batches, config.batch)
    log(format_table(timings, model.name, macs, config.batch, threads, len(paths)))
    if Path(config.weights).is_file():  # what --backend auto runs these weights with on this machine (cached)
        _, choice = load_backend(config.weights, torch.device("cpu"), threads=threads)
        if choice is not None:
            log(choice.describe())
    return timings


def _measure(
    runners: dict[str, Callable[[Sequence[Path]], dict[str, float]]],
    paths: list[Path],
    runs: int,
    batches: int,
    batch: int,
) -> dict[str, Timing]:
    timings = {name: Timing(name) for name in runners}
    for run in runners.values():  # warm-up: first-call allocations, kernel choices, file cache
        run(paths[:1])
        run([paths[i % len(paths)] for i in range(batch)])
    for r in range(runs):
        for name, run in runners.items():
            start = time.perf_counter()
            stages = run([paths[r % len(paths)]])
            timings[name].latency.append(time.perf_counter() - start)
            for k, v in stages.items():
                timings[name].stages.setdefault(k, []).append(v)
    for b in range(batches):
        chunk = [paths[(b * batch + i) % len(paths)] for i in range(batch)]
        for name, run in runners.items():
            start = time.perf_counter()
            run(chunk)
            timings[name].batch.append(time.perf_counter() - start)
    return timings


def format_table(timings: dict[str, Timing], model: str, macs: int, batch: int, threads: int, images: int) -> str:
    """The benchmark's printed report: one row per backend, ratios to torchvision's times."""
    ref = timings.get(REFERENCE)
    lines = [
        f"{model}: {images} JPEG images, {threads} threads; {cpu_features().describe()}",
        f"torch {torch.__version__}; ratio = our time / torchvision's time (below 1: faster)",
        f"{'backend':<12} {'p50 ms':>8} {'p90 ms':>8} {'ratio':>6} {f'b{batch} img/s':>10} {'ratio':>6} "
        f"{'GMAC/s':>7}  ours, ms per image: read+preprocess / network / postprocess",
    ]
    for name, t in timings.items():
        lat_ratio = f"{t.median_latency() / ref.median_latency():.2f}" if ref else "-"
        thr_ratio = f"{ref.images_per_s(batch) / t.images_per_s(batch):.2f}" if ref else "-"
        stages = ""
        if t.stages:
            med = {k: statistics.median(v) for k, v in t.stages.items()}
            stages = f"  {med['preprocess']:.1f} / {med['inference']:.1f} / {med['postprocess']:.1f}"
        lines.append(
            f"{name:<12} {1e3 * t.median_latency():>8.1f} {1e3 * t.p90_latency():>8.1f} {lat_ratio:>6} "
            f"{t.images_per_s(batch):>10.1f} {thr_ratio:>6} {macs * t.images_per_s(batch) / 1e9:>7.1f}{stages}"
        )
    return "\n".join(lines)
