"""``singleshot export``: weights of ``singleshot train`` to an ONNX file, optionally int8 with an accuracy check."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from singleshot.config import Config, setting, shared
from singleshot.data import open_split
from singleshot.data.dataset import DetectionDataset, EvaluationData
from singleshot.evaluation import evaluate_model, open_eval_data
from singleshot.export.int8 import CALIBRATION_METHODS, DEFAULT_CALIBRATION, quantize_int8
from singleshot.export.onnx_file import add_metadata, export_onnx
from singleshot.export.onnx_format import INT8_CHECK
from singleshot.export.openvino_file import export_openvino
from singleshot.folders import atomic_write, file_sha256
from singleshot.predict import Detector
from singleshot.predict.auto import runtimes_installed
from singleshot.predict.backends import OnnxBackend, OpenVinoBackend
from singleshot.predict.loading import load_model
from singleshot.ssd import resize


@dataclass
class ExportConfig(Config):
    """What ``singleshot export`` writes."""

    what: ClassVar[str] = "export"

    weights: str = setting(help="weights to export: .safetensors of singleshot train, or any file convert reads")
    format: Literal["onnx", "openvino"] = setting(
        "onnx", "file format: onnx (runs on ONNX Runtime, OpenVINO, TensorRT) or openvino (an IR: .xml + .bin)"
    )
    output: str | None = setting(None, "file to write; none: beside the weights (best.onnx, best-int8.onnx, best.xml)")
    nms: bool = setting(False, "also put class-wise NMS in the graph (output: B x max_det x 6 rows), to use it alone")
    int8: bool = setting(False, "quantise to int8 (ONNX Runtime static QDQ), calibrated on --data's training split")
    data: str | None = setting(None, "dataset for --int8: calibration images from its train split, AP50 check on val")
    train_split: str = setting("train", "split whose images calibrate the int8 activation ranges")
    val_split: str = setting("val", "split on which AP50 is compared before and after int8 quantisation")
    calibration: int = setting(200, "training images used to calibrate the int8 activation ranges")
    # the ignore below: a Literal of a constant tuple: valid at run time
    calibrate: Literal[tuple(CALIBRATION_METHODS)] = setting(  # type: ignore[valid-type]
        DEFAULT_CALIBRATION, "how activation ranges are set from the calibration images (percentile: 99.999%)"
    )
    float_first_conv: bool = setting(False, "keep the first convolution (raw pixels in) in float when quantising")
    float_heads: bool = setting(False, "keep the prediction heads (scores and offsets out) in float when quantising")
    max_drop: float = setting(1.0, "refuse to write an int8 model whose val AP50 fell by more than this (points)")
    force: bool = setting(False, "write the int8 model even when its AP50 fell by more than --max-drop")
    batch: int = shared("batch", 8)

    def problems(self) -> list[str]:
        bad = []
        if self.int8 and self.data is None:
            bad.append("--int8 needs --data: its train split calibrates the int8 ranges, its val split checks AP50")
        if self.calibration < 1 or self.batch < 1:
            bad.append(f"calibration={self.calibration} and batch={self.batch} must be >= 1")
        if self.max_drop < 0:
            bad.append(f"max_drop={self.max_drop} must be >= 0")
        return bad


def output_path(config: ExportConfig) -> Path:
    """``--output``, or beside the weights: ``best.onnx``, ``best-nms.onnx``, ``best-int8.onnx``..."""
    if config.output:
        return Path(config.output)
    weights = Path(config.weights)
    tags = "".join(f"-{tag}" for tag, on in (("nms", config.nms), ("int8", config.int8)) if on)
    suffix = ".xml" if config.format == "openvino" else ".onnx"
    return weights.with_name(f"{weights.stem}{tags}{suffix}")


def calibration_images(dataset: DetectionDataset, count: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """``count`` images spread evenly over ``dataset``, as ``(1, 3, H, W)`` uint8 at the model's input size."""
    n = min(count, len(dataset))
    for i in np.linspace(0, len(dataset) - 1, n).round().astype(int):
        image, _ = dataset[int(i)]
        yield resize(image, size)[None].contiguous().numpy()


def ap50(model_file: Path, names: list[str], dataset: EvaluationData, batch: int, runtime: str) -> float:
    """VOC07 AP50 of an exported file on ``dataset`` (``runtime``: onnxruntime or openvino; the model's own
    post-processing)."""
    backend = OpenVinoBackend(model_file) if runtime == "openvino" else OnnxBackend(model_file)
    detector = Detector(backend, names)
    evaluation = evaluate_model(detector, dataset, detector.device, batch=batch, coco=False)
    assert evaluation is not None  # one process
    return evaluation.report.map50_07


def run(config: ExportConfig, *, log: Callable[[str], None] = print) -> Path:
    """Write ``config.weights`` as ONNX, or as an OpenVINO IR (see :mod:`singleshot.export`); returns the written
    path.

    With ``int8``, the float export is quantised on ``calibration`` images of the training split, and both are
    evaluated on the validation split, by ONNX Runtime and (where installed) OpenVINO; the int8 file is written
    only if it lost at most ``max_drop`` points of AP50 on each (or with ``force``), with the check's figures in its
    metadata (``backend="auto"`` runs an int8 file only on the runtimes that passed).

    Raises:
        ValueError: unusable settings, weights that do not load, or an int8 model that lost too much.
        ImportError: ``format="openvino"`` without the openvino package.
    """
    config.validate()
    model, names = load_model(config.weights)
    sha = file_sha256(config.weights) if Path(config.weights).is_file() else None
    out = output_path(config)
    with tempfile.TemporaryDirectory() as tmp:
        made = export_onnx(model, names, Path(tmp) / "fp32.onnx", nms=config.nms, source_sha256=sha)
        if config.int8:
            made = checked_int8(config, made, names, model.preprocessing.image_size, log)
        if config.format == "openvino":
            export_openvino(made, out)
        else:
            atomic_write(out, lambda target: shutil.copyfile(made, target))
    size = out.stat().st_size + (out.with_suffix(".bin").stat().st_size if config.format == "openvino" else 0)
    graph = "NMS in the graph" if config.nms else "decoded boxes"
    kind = "OpenVINO IR" if config.format == "openvino" else "ONNX"
    log(f"{model.name} -> {out} ({kind}, {size / 1e6:.1f} MB, {'int8' if config.int8 else 'fp32'}, {graph})")
    return out


def checked_int8(
    config: ExportConfig, fp32: Path, names: list[str], size: tuple[int, int], log: Callable[[str], None]
) -> Path:
    """The int8 version of ``fp32`` (written beside it), calibrated and checked as :func:`run` says.

    Raises:
        ValueError: the int8 model lost more than ``config.max_drop`` points on a runtime (unless ``force``).
    """
    assert config.data is not None  # validate() checked it
    train_set, _ = open_split(config.data, config.train_split, names)
    images = calibration_images(train_set, config.calibration, size)
    count = min(config.calibration, len(train_set))
    log(f"calibrating int8 ranges ({config.calibrate}) on {count} images of {train_set.name}")
    int8 = quantize_int8(fp32, fp32.with_name("int8.onnx"), images, config.calibrate, config.float_first_conv,
                         config.float_heads)  # fmt: skip  # arguments on two lines
    val_set, description = open_eval_data(config.data, config.val_split, names, size, 0)
    before = ap50(fp32, names, val_set, config.batch, "onnxruntime")
    runtimes = [r for r in ("onnxruntime", "openvino") if r in runtimes_installed()]
    after = {runtime: ap50(int8, names, val_set, config.batch, runtime) for runtime in runtimes}
    drops = {runtime: 100 * (before - ap) for runtime, ap in after.items()}
    figures = ", ".join(f"int8 on {r} {100 * after[r]:.2f} ({-drops[r]:+.2f} points)" for r in runtimes)
    log(f"AP50 (VOC07) on {description.splitlines()[0]}: fp32 {100 * before:.2f}, {figures}")
    passed = {runtime: drop <= config.max_drop for runtime, drop in drops.items()}
    if not all(passed.values()) and not config.force:
        worst = max(drops.values())
        raise ValueError(
            f"int8 lost {worst:.2f} points of AP50 (more than --max-drop {config.max_drop}); nothing written. "
            "Try --float-heads, --float-first-conv, --calibrate entropy or percentile, more --calibration images; "
            "or --force"
        )
    # backend="auto" runs an int8 file beside its weights only on the runtimes that passed (singleshot.predict.auto)
    check = {"fp32_ap50": before, "int8_ap50": after, "max_drop": config.max_drop, "passed": passed}
    add_metadata(int8, {INT8_CHECK: json.dumps(check)})
    return int8
