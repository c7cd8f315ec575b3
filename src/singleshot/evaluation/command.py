"""``singleshot val``: the metrics of trained weights on one split of a dataset, and the files people look at.

A run writes ``runs/val/<name>/``:

* ``metrics.json`` -- :class:`~singleshot.metrics.MetricReport` (per-class and mean VOC AP50, COCO metrics,
  PR curves at 101 recall points, timings);
* ``predictions.json`` -- every detection in the COCO results format (``image_id``, ``category_id``, ``bbox``
  as x, y, w, h pixels, ``score``), with the dataset's own image and category ids for COCO data;
* ``pr_curve.png``, ``confusion_matrix.png`` (at ``conf``), and ``images/``: predictions (left) and ground
  truth (right) side by side for the first few images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from torch import Tensor

from singleshot.config import Config, setting, shared
from singleshot.data.dataset import EvaluationData
from singleshot.data.images import save_image
from singleshot.distributed import DistInfo, process_group
from singleshot.evaluation.scoring import evaluate_model, open_eval_data
from singleshot.folders import new_run_dir
from singleshot.metrics import MetricReport, coco_results, confusion_matrix
from singleshot.plots import plot_confusion_matrix, plot_pr_curves, prediction_pair
from singleshot.postprocess import PREDICT
from singleshot.predict import Detector
from singleshot.predict.slicing import SliceSettings, slice_problems
from singleshot.types import Detection, Target


@dataclass
class ValConfig(Config):
    """What ``singleshot val`` evaluates and where it writes."""

    what: ClassVar[str] = "val"

    weights: str = shared("model_file", task="evaluate")
    data: str | None = setting(None, "dataset folder or file; none evaluates on held-out synthetic shapes")
    split: str = setting("val", "split to evaluate (layouts without named splits: train or val of the hold-out)")
    batch: int = shared("batch", 16)
    workers: int = shared("workers", 0)
    device: str = shared("device")
    backend: Literal["auto", "pytorch", "onnxruntime", "openvino"] = shared("backend")
    precision: Literal["auto", "fp32", "bf16", "int8"] = shared("precision")
    conf: float = setting(PREDICT.conf, "score threshold of the confusion matrix and the drawn images (AP uses all)")
    iou: float = setting(0.5, "IoU above which the confusion matrix pairs a detection with an object")
    images: int = setting(8, "images drawn with predictions beside ground truth")
    coco: bool = setting(True, "compute the COCO metrics with pycocotools (--no-coco skips the slow part)")
    synthetic: int = setting(200, "held-out synthetic images to evaluate on when there is no --data")
    slice: int | None = shared("slice")
    overlap: float = shared("overlap")
    full_image: bool = shared("full_image")
    merge: Literal["nms", "nmm"] = shared("merge")
    project: str = shared("project", task="val")
    name: str = shared("name")
    exist_ok: bool = shared("exist_ok")

    def problems(self) -> list[str]:
        bad = [f"{k}={v}" for k, v in {"batch": self.batch, "synthetic": self.synthetic}.items() if v < 1]
        if self.workers < 0 or self.images < 0:
            bad.append("workers and images must be >= 0")
        if not (0 <= self.conf <= 1 and 0 <= self.iou <= 1):
            bad.append(f"conf={self.conf} and iou={self.iou} must be in [0, 1]")
        return bad + slice_problems(self.slice, self.overlap, self.full_image, self.merge)


@dataclass
class ValResult:
    run_dir: Path
    report: MetricReport
    confusion: Tensor  # (C + 1, C + 1) counts, index 0 = background (see metrics.confusion_matrix)


def run(config: ValConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> ValResult | None:
    """Evaluate ``config.weights`` (``.safetensors`` of ``singleshot train`` or ``.onnx`` of ``singleshot export``)
    on ``config.split`` of ``config.data`` and write the run folder (module docstring).

    ``config.conf`` and ``config.iou`` set the confusion matrix and the drawn images (AP uses every detection).
    Under ``torchrun`` every process evaluates its share of the images and rank 0 computes and writes everything
    (the same files as a single process); the other ranks return ``None``.
    """
    config.validate()
    with process_group(config.device) as info:
        return _evaluate_split(config, info, progress, log)


def _evaluate_split(config: ValConfig, info: DistInfo, progress: bool, log: Callable[[str], None]) -> ValResult | None:
    say = log if info.is_main else (lambda _: None)
    detector = Detector.from_weights(
        config.weights, config.device, dist=info, backend=config.backend, precision=config.precision
    )
    class_names = detector.names
    dataset, description = open_eval_data(config.data, config.split, class_names, detector.image_size, config.synthetic)
    if detector.choice is not None:
        say(detector.choice.describe())
    say(f"{detector.name} ({Path(config.weights).name}, {detector.runtime} {detector.precision}) on {description}")
    evaluation = evaluate_model(
        detector, dataset, detector.device, batch=config.batch, workers=config.workers, coco=config.coco,
        progress=progress, desc="val", dist=info,
        slicing=SliceSettings.of(config.slice, config.overlap, config.full_image, config.merge),
    )  # fmt: skip  # the options two to a line
    if evaluation is None:
        return None
    report, detections, ground_truths = evaluation.report, evaluation.detections, evaluation.ground_truths

    run_dir = new_run_dir(config.project, config.name, config.exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    report.save_json(run_dir / "metrics.json")
    results = coco_results(detections, evaluation.image_ids, dataset.category_ids)
    (run_dir / "predictions.json").write_text(json.dumps(results))
    plot_pr_curves(report, run_dir / "pr_curve.png")
    matrix = confusion_matrix(detections, ground_truths, len(class_names), conf=config.conf, iou=config.iou)
    plot_confusion_matrix(matrix, class_names, run_dir / "confusion_matrix.png", config.conf, config.iou)
    _save_pairs(
        dataset, detections, ground_truths, class_names, conf=config.conf, count=config.images, out=run_dir / "images"
    )

    say(report.table())
    say(
        f"{report.num_images} images: inference {report.timing['inference_images_per_s']:.1f} img/s, "
        f"metrics {report.timing['metrics_images_per_s']:.0f} img/s"
    )
    say(f"results in {run_dir}")
    return ValResult(run_dir, report, matrix)


def _save_pairs(
    dataset: EvaluationData,
    detections: list[Detection],
    ground_truths: list[Target],
    class_names: list[str],
    *,
    conf: float,
    count: int,
    out: Path,
) -> None:
    """Predictions | ground truth for the first ``count`` evaluated images."""
    if count <= 0:
        return
    out.mkdir(exist_ok=True)
    for k, (det, gt) in enumerate(zip(detections[:count], ground_truths[:count], strict=True)):
        image, _ = dataset[int(gt["image_id"])]
        pair = prediction_pair(image, det, gt, class_names, min_score=conf)
        save_image(pair, out / f"{k:03d}.jpg")


__all__ = ["ValConfig", "ValResult", "run"]
