"""BCCD from scratch under one wall-clock budget: our recipe against torchvision's SSDLite, same machine, same run.

Usage: ``python benchmarks/bccd_scratch.py [--budget 30m] [--recipe recipes/bccd_scratch.yaml] [--skip-ours]``

* ours: ``singleshot train --config recipes/bccd_scratch.yaml`` with ``--time-budget``, its best weights evaluated;
* torchvision: ``ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None)`` for BCCD's 3 classes, trained
  on the same train split with torchvision's own SSDLite augmentation (``RandomIoUCrop``, horizontal flip; the
  detection references' ``ssdlite`` preset) and its own losses, SGD (momentum 0.9, weight decay 4e-5, the
  references' values) with a cosine schedule laid over the same budget, then evaluated once at the end.

Both are scored by our evaluator on the val split: VOC07 AP50 per class and mean, and COCO AP. The CPU's flags are
printed with the figures.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torchvision import tv_tensors
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.transforms import v2

from singleshot.cpu import cpu_features
from singleshot.data import open_split
from singleshot.engine.budget import TimeBudget
from singleshot.engine.recipe import TrainConfig
from singleshot.engine.trainer import train
from singleshot.evaluation import evaluate_model
from singleshot.metrics import evaluate_detections
from singleshot.predict import load

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "BCCD"


def torchvision_ssdlite(budget_s: float, batch: int = 16, lr: float = 0.05) -> tuple[torch.nn.Module, int]:
    """torchvision's SSDLite trained from scratch on BCCD train for ``budget_s`` seconds; returns it and its steps."""
    train_set, _ = open_split(DATA, "train")
    num_classes = len(train_set.class_names) + 1  # torchvision counts background
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    augment = v2.Compose([v2.RandomIoUCrop(), v2.RandomHorizontalFlip(p=0.5), v2.SanitizeBoundingBoxes()])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=4e-5)
    generator = torch.Generator().manual_seed(0)
    model.train()
    start, steps = time.perf_counter(), 0
    while (elapsed := time.perf_counter() - start) < budget_s:
        warm = min(1.0, elapsed / (0.02 * budget_s))  # warm-up over 2% of the budget, then cosine over all of it
        for group in optimizer.param_groups:
            group["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * elapsed / budget_s))
        images, targets = [], []
        for i in torch.randint(len(train_set), (batch,), generator=generator).tolist():
            image, target = train_set[i]
            boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
            out = augment({"image": tv_tensors.Image(image), "boxes": boxes, "labels": target["labels"]})
            images.append(out["image"].float() / 255)
            targets.append({"boxes": out["boxes"].as_subclass(torch.Tensor), "labels": out["labels"]})
        losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()
        steps += 1
    return model.eval(), steps


def score_torchvision(model: torch.nn.Module) -> object:
    """Our metrics of a torchvision detector on BCCD val (its own post-processing, all scores kept)."""
    val, _ = open_split(DATA, "val")
    model.score_thresh, model.detections_per_img = 0.01, 200
    detections, truths = [], []
    with torch.no_grad():
        for i in range(len(val)):
            image, target = val[i]
            out = model([image.float() / 255])[0]
            detections.append({"boxes": out["boxes"], "scores": out["scores"], "labels": out["labels"]})
            truths.append(target)
    return evaluate_detections(
        detections, truths, val.class_names, coco=True, image_ids=[val.image_ids[i] for i in range(len(val))],
        category_ids=val.category_ids, pixel_indices=val.pixel_indices,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="30m", help="wall-clock budget of each training (90s, 30m, ...)")
    parser.add_argument("--recipe", default="recipes/bccd_scratch.yaml")
    parser.add_argument("--skip-ours", action="store_true", help="only torchvision's SSDLite")
    args = parser.parse_args()
    budget = TimeBudget.parse(args.budget).seconds
    print(cpu_features().describe(), f"| torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = {}
    if not args.skip_ours:
        config = TrainConfig.from_yaml(args.recipe)
        config.time_budget, config.name = args.budget, "bench_bccd_scratch"
        started = time.perf_counter()
        result = train(config, progress=False)
        print(f"ours: train() took {time.perf_counter() - started:.0f} s wall for a {budget:.0f} s budget", flush=True)
        detector = load(result.run_dir / "weights" / "best.safetensors", device="cpu")
        val, _ = open_split(DATA, "val", detector.names)
        rows["ours (" + Path(args.recipe).name + ")"] = evaluate_model(detector, val, detector.device).report
    started = time.perf_counter()
    model, steps = torchvision_ssdlite(budget)
    print(f"torchvision: {steps} steps in {time.perf_counter() - started:.0f} s wall", flush=True)
    rows[f"torchvision ssdlite320 ({steps} steps)"] = score_torchvision(model)
    names = next(iter(rows.values())).class_names
    print(f"budget {args.budget} each; VOC07 AP50 on BCCD val, COCO AP")
    print(f"{'model':<40} {'mAP50':>7} " + " ".join(f"{n:>10}" for n in names) + f" {'COCO AP':>8}")
    for name, report in rows.items():
        per_class = " ".join(f"{ap:>10.4f}" for ap in report.ap50_07)
        coco = report.coco["AP"] if report.coco else float("nan")
        print(f"{name:<40} {report.map50_07:>7.4f} {per_class} {coco:>8.4f}")


if __name__ == "__main__":
    main()
