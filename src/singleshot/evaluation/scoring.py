"""Running a detector over a dataset split and scoring it: :func:`evaluate_model` (what ``singleshot val``,
training's periodic evaluation and ``singleshot export --int8``'s accuracy check share) and :func:`open_eval_data`
(the split, with labels in the model's class order)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import SequentialSampler, Subset

from singleshot.data import SYNTHETIC_VAL_SEED, open_split
from singleshot.data.dataset import EvaluationData
from singleshot.data.loader import make_loader
from singleshot.data.synthetic import SyntheticShapes
from singleshot.distributed import DistInfo, gather_shards, shard
from singleshot.metrics import MetricReport, evaluate_detections
from singleshot.predict import Detector
from singleshot.predict.slicing import SliceSettings
from singleshot.progress import Progress
from singleshot.ssd import SSD
from singleshot.types import Detection, Target


def open_eval_data(
    data: str | Path | None, split: str, class_names: list[str] | None, image_size: tuple[int, int], synthetic: int
) -> tuple[EvaluationData, str]:
    """The dataset to evaluate on, with labels in the model's class order, and a line describing it.

    ``data=None`` is the held-out synthetic-shapes set of ``synthetic`` images (for models trained on them);
    ``class_names=None`` takes the data's own classes.
    """
    if data is None:
        if class_names is None or list(class_names) != list(SyntheticShapes.classes):
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


@dataclass
class Evaluation:
    """What :func:`evaluate_model` computed: the metrics, and the detections and ground truths behind them (CPU,
    dataset order), with the dataset's own id of each image (for writing results)."""

    report: MetricReport
    detections: list[Detection]
    ground_truths: list[Target]
    image_ids: list[int]


def evaluate_model(
    model: SSD | Detector,
    dataset: EvaluationData,
    device: torch.device,
    *,
    batch: int = 16,
    workers: int = 0,
    coco: bool = True,
    progress: bool = False,
    desc: str = "evaluate",
    dist: DistInfo | None = None,
    slicing: SliceSettings | None = None,
) -> Evaluation | None:
    """All metrics of ``model`` on ``dataset`` (original image coordinates): VOC AP at IoU 0.5 (11-point and
    all-point) and, with ``coco``, the COCO summary, in the dataset's own ids and box convention;
    ``report.timing`` holds the speed of inference and of the metrics.

    ``model`` may also be a ready :class:`~singleshot.predict.Detector` (an ONNX file, a bf16 precision; ``device``
    is then its own). Inference is :meth:`Detector.detect <singleshot.predict.Detector.detect>` with the model's own
    post-processing settings, the path ``singleshot predict`` takes. With ``dist`` (under ``torchrun``) every
    process takes its share of the images and rank 0 computes the metrics (the other ranks get ``None``): the
    figures equal a single process's. With ``slicing``, each image is detected by sliced inference
    (:meth:`Detector.detect_sliced <singleshot.predict.Detector.detect_sliced>`), its tiles ``batch`` at a time.
    """
    info = dist or DistInfo()
    detector = model if isinstance(model, Detector) else Detector(model, dataset.class_names, device)
    indices = shard(len(dataset), info)
    loader = make_loader(Subset(dataset, indices), batch, SequentialSampler(indices), workers)
    start = time.perf_counter()
    pairs: list[tuple[Detection, Target]] = []
    for images, targets in Progress(loader, desc=desc, enabled=progress and info.is_main):
        if slicing is None:
            detections, _ = detector.detect(images)
        else:
            detections = [detector.detect_sliced(image, slicing, batch=batch)[0] for image in images]
        pairs.extend(zip(detections, targets, strict=True))
    merged = gather_shards(pairs, info)
    if merged is None:
        return None
    inferred = time.perf_counter()
    detections, ground_truths = [d for d, _ in merged], [t for _, t in merged]
    image_ids = [dataset.image_ids[int(t["image_id"])] for t in ground_truths]
    report = evaluate_detections(
        detections,
        ground_truths,
        dataset.class_names,
        coco=coco,
        image_ids=image_ids,
        category_ids=dataset.category_ids,
        pixel_indices=dataset.pixel_indices,
    )
    report.timing = _timing(len(ground_truths), inferred - start, time.perf_counter() - inferred)
    return Evaluation(report, detections, ground_truths, image_ids)


def _timing(images: int, inference_s: float, metrics_s: float) -> dict[str, float]:
    """Seconds and images/s of inference and of computing the metrics (``MetricReport.timing``)."""
    return {
        "inference_s": inference_s,
        "metrics_s": metrics_s,
        "inference_images_per_s": images / max(inference_s, 1e-9),
        "metrics_images_per_s": images / max(metrics_s, 1e-9),
    }


__all__ = ["Evaluation", "evaluate_model", "open_eval_data"]
