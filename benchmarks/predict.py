"""Prediction speed end to end against the model's own forward pass, same images, same run.

Usage: ``python benchmarks/predict.py [--images 200] [--batch 8] [--models ssdlite320_mobilenet_v3 ssd_tiny160]``

Writes ``--images`` synthetic-shape scenes of 640x480 as JPEG files (quality 90) and as one H.264 MP4 to a
temporary folder. For each model (random weights, except that the background logit's bias is raised so that,
as with a trained model, few boxes pass the score threshold), it times:

* ``forward``: ``model(images)`` in eval mode on pre-made uint8 tensors, in batches of ``--batch``: the network
  and post-processing with ``singleshot predict``'s default filters (score > 0.25, NMS 0.45, 200 per image);
  once with tensors at the model's input size (nothing to resize) and once at 640x480 (the model resizes);
* ``predict``: ``singleshot predict`` on the folder (``save=False``: reading the weights, decoding, resizing,
  the network, the same post-processing, results), and on the video.

Prints images/s and the ratios predict / forward (goal: >= 0.85) and video / folder (goal: >= 0.85).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from PIL import Image

from singleshot.data.synthetic import SyntheticShapes
from singleshot.models import build
from singleshot.postprocess import PREDICT, PostProcessor
from singleshot.predict.command import PredictConfig
from singleshot.predict.command import run as predict_to_folder
from singleshot.predict.video import VideoWriter
from singleshot.weights import save_weights

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_flags() -> str:
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return "unknown"
    return ", ".join(f for f in CPU_FLAGS if f in flags) or "none of " + ", ".join(CPU_FLAGS)


def write_sources(folder: Path, count: int) -> tuple[Path, Path, list[torch.Tensor]]:
    data = SyntheticShapes(count, (480, 640), seed=123)
    images = folder / "images"
    images.mkdir()
    frames = []
    with VideoWriter(folder / "clip.mp4", fps=25) as writer:
        for i in range(count):
            image = data[i][0]
            frames.append(image)
            array = image.permute(1, 2, 0).numpy()
            Image.fromarray(array).save(images / f"{i:04d}.jpg", quality=90)
            writer.write(array)
    return images, folder / "clip.mp4", frames


def peaked(name: str) -> torch.nn.Module:
    """A model with random weights whose background logit is raised by 6 (few candidates, as when trained)."""
    torch.manual_seed(0)
    model = build(name, num_classes=3).eval()
    with torch.no_grad():
        for conv in model.head.cls:
            last = [m for m in conv.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            last.bias[:: model.num_classes + 1] += 6.0
    return model


def images_per_second(fn: Callable[[], object], images: int, repeats: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return images / best


def forward(model: torch.nn.Module, images: list[torch.Tensor], batch: int) -> None:
    for k in range(0, len(images), batch):
        model(images[k : k + batch])


def predict(weights: Path, source: Path, batch: int) -> None:
    config = PredictConfig(str(weights), str(source), batch=batch, device="cpu", save=False)  # default filters
    predict_to_folder(config, progress=False, log=lambda s: None)


def measure(name: str, tmp: Path, folder: Path, video: Path, frames: list[torch.Tensor], batch: int) -> str:
    model = peaked(name)
    # the same post-processing settings for both: predict's defaults (score > 0.25, NMS 0.45, 200 per image)
    model.postprocess = PostProcessor(
        model.postprocess.settings.replace(conf=PREDICT.conf, iou=PREDICT.iou, max_det=PREDICT.max_det)
    )
    weights = tmp / f"{name}.safetensors"
    save_weights(model, weights, list(SyntheticShapes.classes))
    size = model.preprocessing.image_size
    small = [torch.nn.functional.interpolate(f[None].float(), size=size).round().byte()[0] for f in frames]
    n = len(frames)
    at_input = images_per_second(partial(forward, model, small, batch), n)
    at_640 = images_per_second(partial(forward, model, frames, batch), n)
    folder_rate = images_per_second(partial(predict, weights, folder, batch), n)
    video_rate = images_per_second(partial(predict, weights, video, batch), n)
    return (
        f"{name:<25} {batch:>5} {at_input:>10.1f} {at_640:>9.1f} {folder_rate:>8.1f} {video_rate:>7.1f} "
        f"{folder_rate / at_input:>13.2f}x {folder_rate / at_640:>11.2f}x {video_rate / folder_rate:>9.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["ssdlite320_mobilenet_v3", "ssd_tiny160"])
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU flags: {cpu_flags()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder, video, frames = write_sources(Path(tmp), args.images)
        print(f"{args.images} images of 640x480 (JPEG q90) and the same frames as one H.264 MP4; images/s:")
        print(f"{'model':<25} {'batch':>5} {'fwd@input':>10} {'fwd@640':>9} {'predict':>8} {'video':>7} "
              f"{'pred/fwd@input':>14} {'pred/fwd@640':>12} {'video/pred':>10}")  # fmt: skip
        for name in args.models:
            print(measure(name, Path(tmp), folder, video, frames, args.batch))


if __name__ == "__main__":
    main()
