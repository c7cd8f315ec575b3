"""``singleshot analyze``: why a detector fails on a labelled split, and what to change.

Detections come from running ``--weights`` through ``singleshot val``'s evaluation path, or from a COCO results
file (``--predictions``, as ``val`` and ``predict`` write them, or any program's). A run writes
``runs/analyze/<name>/``:

* ``metrics.json`` -- every figure of :class:`~singleshot.analysis.diagnosis.Analysis` (TIDE, COCO analyze areas,
  the paper's Fig. 3 shares and Fig. 4 normalised APs, the default-box split, per-class thresholds, the advice);
* ``report.html`` -- one self-contained page with the tables, the plots and galleries of the worst errors;
* the plots as PNG files, the gallery pictures in ``errors/``, and ``predictions.json`` when it ran the weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import Tensor

from singleshot.analysis.diagnosis import GLOBAL_CONF, Analysis, analyze_detections
from singleshot.analysis.html import write_report
from singleshot.analysis.predictions import read_predictions
from singleshot.config import CommandError, Config, setting, shared
from singleshot.data.dataset import DetectionDataset, EvaluationData
from singleshot.data.images import DataReport
from singleshot.evaluation import evaluate_model, open_eval_data
from singleshot.folders import new_run_dir
from singleshot.metrics import coco_results
from singleshot.metrics.thresholds import threshold_vector, thresholds_table
from singleshot.models import build
from singleshot.predict import Detector
from singleshot.predict.loading import is_runtime_file, load_model
from singleshot.priors import DefaultBoxConfig
from singleshot.tools.prior_coverage import coverage, dataset_boxes
from singleshot.types import Detection, Target
from singleshot.weights import save_weights_with_thresholds


@dataclass
class AnalyzeConfig(Config):
    """What ``singleshot analyze`` analyses and where it writes."""

    what: ClassVar[str] = "analyze"

    weights: str | None = setting(None, "weights to run on the split (.safetensors or .onnx); or give --predictions")
    predictions: str | None = setting(
        None, "detections to analyse instead, in the COCO results format (predictions.json of val or predict)"
    )
    data: str | None = setting(None, "dataset folder or file; none analyses held-out synthetic shapes (with weights)")
    split: str = setting("val", "split to analyse (layouts without named splits: train or val of the hold-out)")
    model: str | None = setting(
        None, "model whose default boxes explain misses; none: those of --weights (.safetensors), if given"
    )
    imgsz: int | None = setting(None, "input side of --model in pixels; none keeps the model's own")
    precision_target: float | None = setting(
        None, "also find each class's lowest score threshold reaching this precision"
    )
    save_thresholds: str | None = setting(
        None, "write a copy of --weights (.safetensors) carrying the per-class best-F1 thresholds to this file"
    )
    gallery: int = setting(6, "errors of each type drawn in report.html (0: no galleries)")
    batch: int = shared("batch", 16)
    workers: int = shared("workers", 0)
    device: str = shared("device")
    backend: Literal["auto", "pytorch", "onnxruntime", "openvino"] = shared("backend")
    precision: Literal["auto", "fp32", "bf16", "int8"] = shared("precision")
    synthetic: int = setting(200, "held-out synthetic images to analyse when there is no --data")
    project: str = shared("project", task="analyze")
    name: str = shared("name")
    exist_ok: bool = shared("exist_ok")

    def problems(self) -> list[str]:
        bad = []
        if self.weights is None and self.predictions is None:
            bad.append("give --weights (to run them) or --predictions (a COCO results file)")
        if self.predictions is not None and self.data is None:
            bad.append("--predictions needs --data (the ground truth they are scored against)")
        if self.save_thresholds is not None and (self.weights is None or is_runtime_file(self.weights)):
            bad.append("--save-thresholds needs --weights of singleshot's own .safetensors format")
        if self.precision_target is not None and not 0 < self.precision_target <= 1:
            bad.append(f"precision_target={self.precision_target} must be in (0, 1]")
        bad += [f"{k}={v}" for k, v in {"batch": self.batch, "synthetic": self.synthetic}.items() if v < 1]
        if self.workers < 0 or self.gallery < 0:
            bad.append("workers and gallery must be >= 0")
        return bad


@dataclass
class AnalyzeResult:
    run_dir: Path
    analysis: Analysis
    report: Path


@dataclass
class _Inputs:
    """What the analysis runs on: detections and ground truths per image (original pixels), the dataset (to draw
    from), its class names and supercategories, and the default boxes that explain misses (None: unknown)."""

    detections: list[Detection]
    ground_truths: list[Target]
    dataset: EvaluationData
    class_names: list[str]
    design: DefaultBoxConfig | None
    description: str


def run(config: AnalyzeConfig, *, progress: bool = True, log: Callable[[str], None] = print) -> AnalyzeResult:
    """Analyse (module docstring), print the summary, the advice and the thresholds; write the run folder."""
    config.validate()
    if config.predictions is not None:
        inputs = _from_predictions(config, config.predictions, config.data or "")
    else:
        inputs = _from_weights(config, config.weights or "", progress)
    log(inputs.description)
    analysis = analyze_detections(
        inputs.detections, inputs.ground_truths, inputs.class_names,
        supercategories=getattr(inputs.dataset, "supercategories", None),
        best_prior_iou=_best_prior_iou(inputs.dataset, inputs.ground_truths, inputs.design),
        precision_target=config.precision_target, pixel_indices=inputs.dataset.pixel_indices,
    )  # fmt: skip  # the options two to a line
    run_dir = new_run_dir(config.project, config.name, config.exist_ok)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(analysis.to_dict(), indent=1))
    if config.predictions is None:
        results = coco_results(inputs.detections, inputs.dataset.image_ids, inputs.dataset.category_ids)
        (run_dir / "predictions.json").write_text(json.dumps(results))
    page = write_report(
        analysis, run_dir, title=f"singleshot analyze: {inputs.description.splitlines()[0]}",
        image_of=(lambda i: inputs.dataset[i][0]), detections=inputs.detections, ground_truths=inputs.ground_truths,
        per_kind=config.gallery,
    )  # fmt: skip  # grouped by what they say
    log(analysis.table())
    log("")
    log(thresholds_table(analysis.metrics, analysis.thresholds, baseline=GLOBAL_CONF))
    log("")
    log("what to do:")
    for line in analysis.advice():
        log(f"  {line}")
    if config.save_thresholds is not None and config.weights is not None:
        save_weights_with_thresholds(config.weights, threshold_vector(analysis.thresholds), config.save_thresholds)
        log(f"weights with per-class thresholds: {config.save_thresholds}")
    log(f"results in {run_dir} (open {page.name})")
    return AnalyzeResult(run_dir, analysis, page)


def _from_weights(config: AnalyzeConfig, weights: str, progress: bool) -> _Inputs:
    """Run ``weights`` over the split through ``singleshot val``'s evaluation path."""
    detector = Detector.from_weights(weights, config.device, backend=config.backend, precision=config.precision)
    dataset, description = open_eval_data(
        config.data, config.split, detector.names, detector.image_size, config.synthetic
    )
    evaluation = evaluate_model(
        detector, dataset, detector.device, batch=config.batch, workers=config.workers, coco=False,
        progress=progress, desc="analyze",
    )  # fmt: skip  # the options two to a line
    if evaluation is None:  # only other ranks under torchrun get None; analyze runs as one process
        raise CommandError("singleshot analyze runs as a single process (not under torchrun)")
    design = _design(config, len(detector.names), detector) if isinstance(dataset, DetectionDataset) else None
    description = f"{detector.name} ({Path(weights).name}) on {description}"
    return _Inputs(evaluation.detections, evaluation.ground_truths, dataset, detector.names, design, description)


def _from_predictions(config: AnalyzeConfig, predictions: str, data: str) -> _Inputs:
    """Read ``predictions`` against the split's ground truth (class names: the weights', else the data's)."""
    detector = (
        Detector.from_weights(config.weights, "cpu", backend="pytorch", precision="fp32") if config.weights else None
    )
    names = detector.names if detector is not None else None
    opened, description = open_eval_data(data, config.split, names, (0, 0), config.synthetic)  # the val rule
    if not isinstance(opened, DetectionDataset):
        raise CommandError(f"{data}: not a dataset with images on disk")
    dataset, report = opened, DataReport()
    files = [path.name for path, _, _ in dataset.items]
    detections = read_predictions(predictions, dataset.image_ids, dataset.category_ids, files, report)
    description = f"{predictions} on {description}"
    if report.counts:
        description += "\n" + report.summary("predictions dropped")
    ground_truths: list[Target] = [{**t, "image_id": torch.tensor(i)} for i, (_, _, t) in enumerate(dataset.items)]
    design = _design(config, len(dataset.class_names), detector)
    return _Inputs(detections, ground_truths, dataset, dataset.class_names, design, description)


def _design(config: AnalyzeConfig, num_classes: int, detector: Detector | None) -> DefaultBoxConfig | None:
    """The default boxes that explain misses: ``--model``'s, else those of the weights' model, whatever runtime ran
    it (None for a runtime file, whose boxes are baked into its graph, and without weights)."""
    if config.model is not None:
        return build(config.model, num_classes=num_classes, image_size=config.imgsz).default_boxes
    if detector is not None and detector.model is not None:
        return detector.model.default_boxes
    if config.weights and not is_runtime_file(config.weights):  # run by an exported runtime (--backend auto)
        return load_model(config.weights)[0].default_boxes
    return None


def _best_prior_iou(
    dataset: EvaluationData, ground_truths: list[Target], design: DefaultBoxConfig | None
) -> list[Tensor] | None:
    """Each object's best default-box IoU, per image, measured as ``singleshot priors`` measures it."""
    if design is None or not isinstance(dataset, DetectionDataset):
        return None
    boxes, labels = dataset_boxes(dataset)
    best = coverage(boxes, labels, design).best_iou
    counts = [len(t["labels"]) for _, _, t in dataset.items]
    per_item = list(torch.split(best, counts))
    out = []
    for gt in ground_truths:
        i = int(gt["image_id"])
        if len(per_item[i]) != len(gt["labels"]):
            raise CommandError(f"image {i}: {len(gt['labels'])} objects evaluated but {len(per_item[i])} measured")
        out.append(per_item[i])
    return out


__all__ = ["AnalyzeConfig", "AnalyzeResult", "run"]
