"""``singleshot export``: weights of ``singleshot train`` to an ONNX file, optionally int8 with an accuracy check."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from singleshot.config import ExportConfig
from singleshot.data import open_split
from singleshot.data.dataset import DetectionDataset
from singleshot.engine.loop import evaluate_model
from singleshot.engine.validation import open_eval_data
from singleshot.export.int8 import quantize_int8
from singleshot.export.onnx_file import export_onnx
from singleshot.predict import Detector
from singleshot.predict.backends import OnnxBackend
from singleshot.ssd import resize
from singleshot.weights import atomic_write, load_model


def output_path(config: ExportConfig) -> Path:
    """``--output``, or beside the weights: ``best.onnx``, ``best-nms.onnx``, ``best-int8.onnx``..."""
    if config.output:
        return Path(config.output)
    weights = Path(config.weights)
    tags = "".join(f"-{tag}" for tag, on in (("nms", config.nms), ("int8", config.int8)) if on)
    return weights.with_name(f"{weights.stem}{tags}.onnx")


def calibration_images(dataset: DetectionDataset, count: int, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """``count`` images spread evenly over ``dataset``, as ``(1, 3, H, W)`` uint8 at the model's input size."""
    n = min(count, len(dataset))
    for i in np.linspace(0, len(dataset) - 1, n).round().astype(int):
        image, _ = dataset[int(i)]
        yield resize(image, size)[None].contiguous().numpy()


def ap50(model_file: Path, names: list[str], dataset: object, batch: int) -> float:
    """VOC07 AP50 of an exported file on ``dataset`` (ONNX Runtime, the model's own post-processing)."""
    detector = Detector(OnnxBackend(model_file), names)
    evaluation = evaluate_model(detector, dataset, detector.device, batch, coco=False)  # type: ignore[arg-type]
    assert evaluation is not None  # one process
    return evaluation.report.map50_07


def export_model(config: ExportConfig, log: Callable[[str], None] = print) -> Path:
    """Write ``config.weights`` as ONNX (see :mod:`singleshot.export`); returns the written path.

    With ``int8``, the float export is quantised on ``calibration`` images of the training split, and both are
    evaluated on the validation split; the int8 file is written only if it lost at most ``max_drop`` points of
    AP50 (or with ``force``).

    Raises:
        ValueError: unusable settings, weights that do not load, or an int8 model that lost too much.
    """
    config.validate()
    model, names = load_model(config.weights)
    out = output_path(config)
    if not config.int8:
        export_onnx(model, names, out, nms=config.nms)
        graph = "NMS in the graph" if config.nms else "decoded boxes"
        log(f"{model.name} -> {out} ({out.stat().st_size / 1e6:.1f} MB, fp32, {graph})")
        return out
    assert config.data is not None  # validate() checked it
    size = model.preprocessing.image_size
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, names, Path(tmp) / "fp32.onnx", nms=config.nms)
        train_set, _ = open_split(config.data, config.train_split, names)
        images = calibration_images(train_set, config.calibration, size)
        count = min(config.calibration, len(train_set))
        log(f"calibrating int8 ranges ({config.calibrate}) on {count} images of {train_set.name}")
        int8 = quantize_int8(fp32, Path(tmp) / "int8.onnx", images, config.calibrate, config.float_first_conv,
                             config.float_heads)  # fmt: skip
        val_set, description = open_eval_data(config.data, config.val_split, names, size, 0)
        before, after = ap50(fp32, names, val_set, config.batch), ap50(int8, names, val_set, config.batch)
        drop = 100 * (before - after)
        figures = f"fp32 {100 * before:.2f}, int8 {100 * after:.2f} ({-drop:+.2f} points)"
        log(f"AP50 (VOC07) on {description.splitlines()[0]}: {figures}")
        if drop > config.max_drop and not config.force:
            raise ValueError(
                f"int8 lost {drop:.2f} points of AP50 (more than --max-drop {config.max_drop}); {out} not written. "
                "Try --float-heads, --float-first-conv, --calibrate entropy or percentile, more --calibration images; "
                "or --force"
            )
        atomic_write(out, lambda target: shutil.copyfile(int8, target))
    log(f"{model.name} -> {out} ({out.stat().st_size / 1e6:.1f} MB, int8)")
    return out
