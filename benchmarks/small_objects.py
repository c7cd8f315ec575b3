"""Small objects in large images (issue 21): sliced inference's speed, and what tile training with sliced inference
gains over whole-image training and inference on the same model and training time.

``speed``: tiles per second of ``Detector.predict(slice=...)`` on 1920x1080 images against the same backend's plain
forward throughput (images per second of ``Detector.detect`` on batches of images of the tile's size), side by side
in the same run; untrained weights (the speed does not depend on them)::

    .venv/bin/python benchmarks/small_objects.py speed --model ssdlite320_mobilenet_v3 --tile 320 --images 4

``accuracy``: the synthetic small-object set (:func:`singleshot.data.synthetic.write_small_objects`: 1920x1080
images, 8-32 px shapes among clutter) written as a COCO folder, then the same model trained twice with the same
wall-clock budget, whole-image and ``--tile``, each with default boxes fitted by ``singleshot priors --optimize``
to its objects as the model sees them (``--tile`` for the tiled run), and each evaluated whole-image and sliced on
the held-out split: VOC AP50, COCO AP and AP_small, images/s. ``--bccd`` does the same on BCCD at its full
resolution (640x480; platelets are its small objects)::

    .venv/bin/python benchmarks/small_objects.py accuracy --budget 6m [--bccd ../shared/data/BCCD --bccd-budget 5m]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from singleshot.cpu import cpu_features
from singleshot.data import open_split
from singleshot.data.synthetic import SyntheticShapes, write_small_objects
from singleshot.engine import TrainConfig, train
from singleshot.evaluation import evaluate_model
from singleshot.models import build
from singleshot.predict import Detector
from singleshot.predict.slicing import SliceSettings, windows_of
from singleshot.tools.prior_coverage import PriorsConfig
from singleshot.tools.prior_coverage import run as measure_priors


def speed(args: argparse.Namespace) -> None:
    """Sliced tiles/s against plain forward images/s at the tile's size."""
    torch.manual_seed(0)
    model = build(args.model, 3, image_size=args.tile)
    detector = Detector(model, list(SyntheticShapes.classes))
    large = [SyntheticShapes(1, (1080, 1920), seed=k)[0][0] for k in range(args.images)]
    tiles = [SyntheticShapes(1, (args.tile, args.tile), seed=k)[0][0] for k in range(args.batch)]
    slicing = SliceSettings((args.tile, args.tile), 0.2, full_image=False)
    per_image = len(windows_of(1080, 1920, slicing))
    detector.predict(large[0], slice=args.tile, full_image=False, batch=args.batch)  # warm-up
    detector.detect(tiles)
    rounds = max(1, per_image * args.images // args.batch)
    start = time.perf_counter()
    for _ in range(rounds):
        detector.detect(tiles)
    plain = rounds * args.batch / (time.perf_counter() - start)
    start = time.perf_counter()
    results = detector.predict(large, slice=args.tile, overlap=0.2, full_image=False, batch=args.batch)
    sliced = sum(r.speed["tiles"] for r in results) / (time.perf_counter() - start)
    print(
        f"{args.model} at {args.tile}: plain forward {plain:.1f} images/s (batch {args.batch}); sliced 1920x1080 "
        f"({per_image} tiles each) {sliced:.1f} tiles/s -> {sliced / plain:.2f} of plain, "
        f"{1e3 * per_image / sliced:.0f} ms per image"
    )


@dataclass
class Scores:
    """One evaluation: VOC AP50 (all-point) overall and per class, COCO AP and AP_small, images/s of inference."""

    ap50: float
    ap: float
    ap_small: float
    images_per_s: float
    class_ap50: dict[str, float]


def fitted_boxes(data: str, model: str, imgsz: int, tile: int | None, name: str) -> str:
    """``singleshot priors --optimize`` (at ``tile`` when given): the path of its ``default_boxes.yaml``."""
    config = PriorsConfig(data=data, model=model, imgsz=imgsz, tile=tile, optimize=True, name=name, exist_ok=True)
    _, run_dir = measure_priors(config, log=lambda line: None)
    return str(run_dir / "default_boxes.yaml")


def scores(weights: Path, data: str, tile: int | None, batch: int) -> Scores:
    """The weights on the data's val split, whole-image (``tile`` None) or sliced at ``tile`` (overlap 0.2, with
    the whole image, NMS), as ``singleshot val [--slice tile]`` runs it."""
    detector = Detector.from_weights(weights, device="cpu")
    dataset, _ = open_split(data, "val", detector.names)
    slicing = None if tile is None else SliceSettings((tile, tile))
    evaluation = evaluate_model(detector, dataset, torch.device("cpu"), batch=batch, slicing=slicing)
    assert evaluation is not None  # a single process always gets the metrics
    report = evaluation.report
    coco = report.coco or {}
    per_class = dict(zip(report.class_names, report.ap50, strict=True))
    nan = float("nan")
    per_s = report.timing["inference_images_per_s"]
    return Scores(report.map50, coco.get("AP", nan), coco.get("APs", nan), per_s, per_class)


def compare(label: str, data: str, args: argparse.Namespace, budget: str, augment: str) -> None:
    """Train whole-image and tiled with the same budget, evaluate each both ways, print the 2x2 table."""
    rows = []
    for how, tile in (("whole-image", None), (f"tiles of {args.tile}", args.tile)):
        name = f"small_objects_{label}_{'tile' if tile else 'whole'}"
        boxes = fitted_boxes(data, args.model, args.imgsz, tile, name)
        config = TrainConfig(
            model=args.model, data=data, imgsz=args.imgsz, augment=augment, tile=tile, time_budget=budget,
            epochs=1000, batch=8, lr=0.04, warmup_epochs=1, eval_every=0, workers=0, name=name, exist_ok=True,
            default_boxes=boxes, predict_images=0, seed=args.seed,
        )  # fmt: skip  # a recipe: one key after another
        weights = Path(config.project) / name / "weights" / "best.safetensors"
        if args.reuse and weights.exists():
            training = "reused"
        else:
            start = time.perf_counter()
            result = train(config, progress=False)
            training = f"{time.perf_counter() - start:.0f} s, {result.global_step} steps"
            weights = result.run_dir / "weights" / "best.safetensors"
        for inference, slice_tile in (("whole image", None), (f"sliced at {args.tile}", args.tile)):
            s = scores(weights, data, slice_tile, args.batch)
            rows.append((how, training, inference, s))
            print(f"  {label}: trained on {how}, inferred on {inference}: AP50 {s.ap50:.3f}", flush=True)
    print(f"\n{label}: {args.model} at {args.imgsz}, budget {budget} per training, augment {augment}")
    names = list(rows[0][3].class_ap50)
    print(f"| trained on | training | inference | AP50 | {' | '.join(names)} | AP | AP_small | images/s |")
    print("|---|---|---|---|" + "---|" * len(names) + "---|---|---|")
    for how, training, inference, s in rows:
        per_class = " | ".join(f"{s.class_ap50[n]:.3f}" for n in names)
        print(f"| {how} | {training} | {inference} | {s.ap50:.3f} | {per_class} | {s.ap:.3f} | {s.ap_small:.3f} | "
              f"{s.images_per_s:.2f} |")  # fmt: skip  # one row
    print(f"tiled + sliced minus whole + whole: AP50 {rows[3][3].ap50 - rows[0][3].ap50:+.3f}\n")


def accuracy(args: argparse.Namespace) -> None:
    """The synthetic comparison, then BCCD's when asked."""
    folder = Path(args.folder)
    if not (folder / "annotations" / "instances_val.json").exists():
        start = time.perf_counter()
        write_small_objects(folder, train=args.train_images, val=args.val_images, seed=args.seed)
        took = time.perf_counter() - start
        print(f"wrote {args.train_images} + {args.val_images} images to {folder} in {took:.0f} s")
    compare("synthetic", str(folder), args, args.budget, "eval")
    if args.bccd:
        compare("BCCD", args.bccd, args, args.bccd_budget, "ssd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="part", required=True)
    s = commands.add_parser("speed", help="sliced tiles/s against plain forward images/s")
    s.add_argument("--model", default="ssdlite320_mobilenet_v3")
    s.add_argument("--tile", type=int, default=320)
    s.add_argument("--images", type=int, default=4, help="1920x1080 images sliced")
    s.add_argument("--batch", type=int, default=8)
    a = commands.add_parser("accuracy", help="whole-image against tile training, each inferred whole and sliced")
    a.add_argument("--model", default="ssd_tiny160")
    a.add_argument("--imgsz", type=int, default=320)
    a.add_argument("--tile", type=int, default=320)
    a.add_argument("--budget", default="6m", help="wall-clock budget of each synthetic training")
    a.add_argument("--folder", default="runs/data/small_objects", help="where the synthetic set is (written once)")
    a.add_argument("--train-images", type=int, default=300)
    a.add_argument("--val-images", type=int, default=20)
    a.add_argument("--bccd", default=None, help="also compare on this BCCD folder (e.g. ../shared/data/BCCD)")
    a.add_argument("--bccd-budget", default="5m")
    a.add_argument("--batch", type=int, default=8)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--reuse", action="store_true", help="score the weights of an earlier run instead of training")
    args = parser.parse_args()
    print(cpu_features().describe(), f"torch threads {torch.get_num_threads()}")
    if args.part == "speed":
        speed(args)
    else:
        accuracy(args)


if __name__ == "__main__":
    main()
