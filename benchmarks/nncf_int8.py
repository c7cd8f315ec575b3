"""Does OpenVINO's own quantiser (NNCF) beat our int8 QDQ file? Speed on OpenVINO, and closeness to fp32.

Issue 23 asks to measure this before adding NNCF as a dependency. Both int8 models come from the same fp32 ONNX file
of ``singleshot export`` and are calibrated on the same images; both run on OpenVINO (network only, batch 1,
median of interleaved runs). Closeness to fp32 on held-out images: the largest and the mean absolute difference of
the class scores, and the share of fp32 detections above 0.3 (per class, before NMS) that the int8 model also
scores above 0.3 at the same default box.

NNCF is not a singleshot dependency, so this script imports no singleshot module: run it in an environment with
``nncf`` and ``openvino`` (``python -m venv /tmp/nncfvenv && /tmp/nncfvenv/bin/pip install nncf openvino onnx
pillow``), on files written by our own environment::

    singleshot export --weights W --output /tmp/m.onnx
    python benchmarks/nncf_int8.py --fp32 /tmp/m.onnx --qdq /tmp/m-int8.onnx --images ../shared/data/BCCD/JPEGImages

(``--qdq``: an int8 file of ``singleshot export --int8``, or of ``singleshot.export.quantize_int8`` on the same
calibration images, which the commands in benchmarks/RESULTS.md use.)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import nncf
import numpy as np
import onnx
import openvino
from PIL import Image


def load_images(folder: Path, size: tuple[int, int], count: int, skip: int = 0) -> list[np.ndarray]:
    """``count`` JPEGs of ``folder`` (after the first ``skip``) as ``(1, 3, H, W)`` uint8 at ``size``."""
    out = []
    for path in sorted(folder.glob("*.jpg"))[skip : skip + count]:
        with Image.open(path) as im:
            pixels = np.asarray(im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR))
        out.append(pixels.transpose(2, 0, 1)[None].copy())
    return out


def compile_cpu(core: openvino.Core, model: object, threads: int) -> openvino.CompiledModel:
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    return core.compile_model(model, "CPU", config)


def median_ms(requests: dict[str, openvino.InferRequest], image: np.ndarray, runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in requests}
    for i in range(runs + 3):
        for name, request in requests.items():  # interleaved: a noisy neighbour slows all alike
            start = time.perf_counter()
            request.infer({0: image})
            if i >= 3:
                times[name].append(1e3 * (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, required=True, help="fp32 .onnx of singleshot export")
    parser.add_argument("--qdq", type=Path, required=True, help="our int8 QDQ .onnx of the same model")
    parser.add_argument("--images", type=Path, required=True, help="folder of JPEGs: calibration, then held out")
    parser.add_argument("--calibration", type=int, default=16, help="images that calibrate NNCF")
    parser.add_argument("--held-out", type=int, default=16, help="images compared against fp32")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    args = parser.parse_args()

    props = {p.key: p.value for p in onnx.load(str(args.fp32), load_external_data=False).metadata_props}
    h, w = (int(v) for v in props["image_size"].strip("[]").split(","))
    calibration = load_images(args.images, (h, w), args.calibration)
    held_out = load_images(args.images, (h, w), args.held_out, skip=args.calibration)

    core = openvino.Core()
    fp32_model = core.read_model(str(args.fp32))
    start = time.perf_counter()
    nncf_model = nncf.quantize(fp32_model, nncf.Dataset(calibration), subset_size=len(calibration))
    quantise_s = time.perf_counter() - start
    compiled = {
        "fp32": compile_cpu(core, fp32_model, args.threads),
        "qdq (ours)": compile_cpu(core, core.read_model(str(args.qdq)), args.threads),
        "nncf": compile_cpu(core, nncf_model, args.threads),
    }
    requests = {k: c.create_infer_request() for k, c in compiled.items()}
    speed = median_ms(requests, held_out[0], args.runs)

    print(f"{props['model']} {h}x{w}; {platform.processor() or platform.machine()}, {args.threads} threads;")
    print(f"openvino {openvino.__version__}, nncf {nncf.__version__}; NNCF quantised in {quantise_s:.1f} s")
    print(
        f"{'model':<11} {'network ms':>10} {'vs fp32':>8} {'max |dscore|':>13} {'mean |dscore|':>14} {'kept >0.3':>10}"
    )
    reference = [compiled["fp32"]({0: im})[0] for im in held_out]  # scores (1, P, C + 1)
    for name, model in compiled.items():
        scores = [model({0: im})[0] for im in held_out]
        diff = np.concatenate([np.abs(a - b).ravel() for a, b in zip(scores, reference, strict=True)])
        confident = sum(int((r[..., 1:] > 0.3).sum()) for r in reference)
        kept = sum(int(((r[..., 1:] > 0.3) & (s[..., 1:] > 0.3)).sum()) for r, s in zip(reference, scores, strict=True))
        share = f"{kept / confident:.3f}" if confident else "-"
        print(f"{name:<11} {speed[name]:>10.2f} {speed[name] / speed['fp32']:>8.2f} {diff.max():>13.4f} "
              f"{diff.mean():>14.5f} {share:>10}")  # fmt: skip


if __name__ == "__main__":
    main()
