"""``singleshot val``: the metrics of trained weights on one split of a dataset, and the files people look at.

A run writes ``runs/val/<name>/``:

* ``metrics.json`` -- :class:`~singleshot.evaluate.MetricReport` (per-class and mean VOC AP50, COCO metrics,
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
from torch.utils.data import Dataset

from singleshot.checkpoint import load_model
from singleshot.data import SYNTHETIC_VAL_SEED
from singleshot.data.loader import EpochSampler, make_loader
from singleshot.data.synthetic import SyntheticShapes
from singleshot.distributed import DistInfo, resolve_device
from singleshot.engine import run_evaluation
from singleshot.evaluate import MetricReport, coco_results, confusion_matrix
from singleshot.plots import plot_confusion_matrix, plot_pr_curves, prediction_pair, save_image
from singleshot.runs import new_run_dir


@dataclass
class ValResult:
    run_dir: Path
    report: MetricReport
    confusion: Tensor  # (C + 1, C + 1) counts, index 0 = background (see evaluate.confusion_matrix)


def open_eval_data(
    data: str | Path | None, split: str, class_names: list[str], image_size: tuple[int, int], synthetic: int
) -> tuple[Dataset, str]:
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
    from singleshot.data.formats import open_split

    dataset, report = open_split(data, split, class_names)
    objects = sum(int(target["labels"].numel()) for _, _, target in dataset.items)
    unknown = sorted(k.split("'")[1] for k in report.counts if k.startswith("object of unknown class '"))
    if objects == 0 and unknown:
        raise ValueError(
            f"{data}: the {split} split has none of the model's classes {class_names}; "
            f"its objects are of classes {unknown} (were these weights trained on another dataset?)"
        )
    lines = [f"{dataset.name}: {len(dataset)} images"]
    if report.counts:
        lines.append(report.summary("data problems (fixed, dropped or skipped)"))
    return dataset, "\n".join(lines)


def validate(
    weights: str | Path,
    data: str | Path | None = None,
    split: str = "val",
    batch: int = 16,
    workers: int = 0,
    device: str = "auto",
    conf: float = 0.25,
    iou: float = 0.5,
    images: int = 8,
    coco: bool = True,
    synthetic: int = 200,
    project: str | Path = "runs/val",
    name: str = "exp",
    exist_ok: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> ValResult:
    """Evaluate ``weights`` (a ``.safetensors`` file from ``singleshot train``) on ``split`` of ``data``.

    ``conf`` and ``iou`` set the confusion matrix and the drawn images (the AP figures use every detection).
    """
    model, class_names = load_model(weights)
    dev = resolve_device(device, DistInfo())
    model.to(dev)
    dataset, description = open_eval_data(data, split, class_names, model.preprocessing.image_size, synthetic)
    log(f"{model.name} ({Path(weights).name}) on {description}")
    loader = make_loader(dataset, batch, EpochSampler(len(dataset), shuffle=False), workers)

    evaluation = run_evaluation(model, loader, dev, class_names, progress, coco, desc="val")
    report, detections, ground_truths = evaluation.report, evaluation.detections, evaluation.ground_truths

    run_dir = new_run_dir(project, name, exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    report.save_json(run_dir / "metrics.json")
    results = coco_results(detections, evaluation.image_ids, evaluation.category_ids)
    (run_dir / "predictions.json").write_text(json.dumps(results))
    plot_pr_curves(report, run_dir / "pr_curve.png")
    matrix = confusion_matrix(detections, ground_truths, len(class_names), conf, iou)
    plot_confusion_matrix(matrix, class_names, run_dir / "confusion_matrix.png", conf, iou)
    _save_pairs(dataset, detections, ground_truths, class_names, conf, images, run_dir / "images")

    log(report.table())
    log(
        f"{report.num_images} images: inference {report.timing['inference_images_per_s']:.1f} img/s, "
        f"metrics {report.timing['metrics_images_per_s']:.0f} img/s"
    )
    log(f"results in {run_dir}")
    return ValResult(run_dir, report, matrix)


def _save_pairs(
    dataset: Dataset,
    detections: list[dict[str, Tensor]],
    ground_truths: list[dict[str, Tensor]],
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
