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

from torch import Tensor

from singleshot.config import ValConfig
from singleshot.data import SYNTHETIC_VAL_SEED, open_split
from singleshot.data.dataset import EvaluationData
from singleshot.data.synthetic import SyntheticShapes
from singleshot.distributed import DistInfo, process_group
from singleshot.engine.loop import evaluate_model
from singleshot.folders import new_run_dir
from singleshot.metrics import MetricReport, coco_results, confusion_matrix
from singleshot.plots import plot_confusion_matrix, plot_pr_curves, prediction_pair, save_image
from singleshot.predict import Detector
from singleshot.types import Detection, Target


@dataclass
class ValResult:
    run_dir: Path
    report: MetricReport
    confusion: Tensor  # (C + 1, C + 1) counts, index 0 = background (see metrics.confusion_matrix)


def open_eval_data(
    data: str | Path | None, split: str, class_names: list[str], image_size: tuple[int, int], synthetic: int
) -> tuple[EvaluationData, str]:
    """The dataset to evaluate on, with labels in the model's class order, and a line describing it.

    ``data=None`` is the held-out synthetic-shapes set of ``synthetic`` images (for models trained on them).
    """
    if data is None:
        if list(class_names) != list(SyntheticShapes.classes):
            raise ValueError(
                f"no --data given, and the synthetic shapes {list(SyntheticShapes.classes)} are not the model's "
                f"classes {class_names}"
            )
        dataset = SyntheticShapes(synthetic, image_size, seed=SYNTHETIC_VAL_SEED)
        return dataset, f"synthetic shapes, {synthetic} held-out images"
    dataset, report = open_split(data, split, class_names)
    objects = sum(int(target["labels"].numel()) for _, _, target in dataset.items)
    if objects == 0 and report.unknown_classes:
        raise ValueError(
            f"{data}: the {split} split has none of the model's classes {class_names}; "
            f"its objects are of classes {report.unknown_classes} (were these weights trained on another dataset?)"
        )
    lines = [f"{dataset.name}: {len(dataset)} images"]
    if report.counts:
        lines.append(report.summary("data problems (fixed, dropped or skipped)"))
    return dataset, "\n".join(lines)


def validate(config: ValConfig, progress: bool = True, log: Callable[[str], None] = print) -> ValResult | None:
    """Evaluate ``config.weights`` (``.safetensors`` of ``singleshot train`` or ``.onnx`` of ``singleshot export``)
    on ``config.split`` of ``config.data`` and write the run folder (module docstring).

    ``config.conf`` and ``config.iou`` set the confusion matrix and the drawn images (AP uses every detection).
    Under ``torchrun`` every process evaluates its share of the images and rank 0 computes and writes everything
    (the same files as a single process); the other ranks return ``None``.
    """
    config.validate()
    with process_group(config.device) as info:
        return _validate(config, info, progress, log)


def _validate(config: ValConfig, info: DistInfo, progress: bool, log: Callable[[str], None]) -> ValResult | None:
    say = log if info.is_main else (lambda _: None)
    detector = Detector.from_weights(config.weights, config.device, info, config.precision)
    class_names = detector.names
    dataset, description = open_eval_data(config.data, config.split, class_names, detector.image_size, config.synthetic)
    say(f"{detector.name} ({Path(config.weights).name}, {detector.precision}) on {description}")
    evaluation = evaluate_model(
        detector, dataset, detector.device, config.batch, config.workers, config.coco, progress, desc="val", dist=info
    )
    if evaluation is None:
        return None
    report, detections, ground_truths = evaluation.report, evaluation.detections, evaluation.ground_truths

    run_dir = new_run_dir(config.project, config.name, config.exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    report.save_json(run_dir / "metrics.json")
    results = coco_results(detections, evaluation.image_ids, dataset.category_ids)
    (run_dir / "predictions.json").write_text(json.dumps(results))
    plot_pr_curves(report, run_dir / "pr_curve.png")
    matrix = confusion_matrix(detections, ground_truths, len(class_names), config.conf, config.iou)
    plot_confusion_matrix(matrix, class_names, run_dir / "confusion_matrix.png", config.conf, config.iou)
    _save_pairs(dataset, detections, ground_truths, class_names, config.conf, config.images, run_dir / "images")

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


__all__ = ["ValResult", "open_eval_data", "validate"]
