"""ONNX export: each model family's file passes onnx.checker and ONNX Runtime's detections match PyTorch's."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from conftest import BCCD, assert_same_detections, randomise_weights, write_synthetic_images
from torch import nn

import singleshot
from singleshot import build
from singleshot.cli import main
from singleshot.data.images import read_image
from singleshot.export import export_onnx
from singleshot.export.onnx_format import OUTPUTS
from singleshot.predict import Detector
from singleshot.weights import save_weights

NAMES = ["a", "b", "c"]


def _trained_like(model: nn.Module) -> nn.Module:
    """Seeded random weights (SSDLite's made of order 1 by :func:`conftest.randomise_weights`: its own init ties
    every score), with the background logit raised as training does: most default boxes are background, so the
    detections are those of a model that has learnt something (no dense ties, which float32 rounding would order
    at random)."""
    if model.name.startswith("ssdlite"):
        randomise_weights(model, [*model.head.cls, *model.head.reg])
    for predictor in model.head.cls:
        conv = [m for m in predictor.modules() if isinstance(m, nn.Conv2d)][-1]
        conv.bias.data.view(-1, model.num_classes + 1)[:, 0] += 4.0
    return model.eval()


def _images(tmp_path: Path) -> list[torch.Tensor]:
    """Synthetic shapes of two sizes, plus two BCCD blood-cell photos where ../shared is present."""
    images = [read_image(p) for p, _ in write_synthetic_images(tmp_path / "img", 2, (200, 260), suffix=".jpg")]
    images += [read_image(p) for p, _ in write_synthetic_images(tmp_path / "img2", 1, (120, 90), seed=3)]
    if BCCD.is_dir():
        images += [read_image(p) for p in sorted((BCCD / "JPEGImages").glob("*.jpg"))[:2]]
    return images


def _check_against_pytorch(model: nn.Module, tmp_path: Path, nms: bool = False) -> Detector:
    path = export_onnx(model, NAMES, tmp_path / "out" / "model.onnx", nms=nms)  # the folder is created
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == OUTPUTS["nms" if nms else "decoded"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch
    exported = singleshot.load(path, backend="onnxruntime")  # ONNX Runtime against PyTorch
    assert exported.model is None and exported.precision == "fp32" and exported.names == NAMES
    assert exported.image_size == model.preprocessing.image_size
    assert exported.postprocess.to_metadata() == model.postprocess.to_metadata()
    reference = Detector(model, NAMES)
    images = _images(tmp_path)
    got, _ = exported.detect(images)  # one batch of mixed sizes
    want, _ = reference.detect(images)
    assert sum(len(d["scores"]) for d in want) > 0
    for g, w in zip(got, want, strict=True):
        assert_same_detections(g, w)
    alone, _ = exported.detect(images[:1])  # batch 1 through the same file
    assert_same_detections(alone[0], got[0])
    return exported


@pytest.mark.numeric
def test_tiny_trained_export_matches_pytorch(trained_tiny: Path, tmp_path: Path) -> None:
    detector = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32")
    model = detector.model
    assert model is not None
    model.use_channels_last(True)  # the builder's fast layout; the export is taken in the default layout
    _check_against_pytorch_named(model, detector.names, tmp_path)
    assert model.memory_format == torch.channels_last  # the caller's model is untouched


def _check_against_pytorch_named(model: nn.Module, names: list[str], tmp_path: Path) -> None:
    path = export_onnx(model, names, tmp_path / "tiny.onnx")
    exported, reference = singleshot.load(path), Detector(model, names)
    images = [read_image(p) for p, _ in write_synthetic_images(tmp_path / "s", 4, (160, 160), seed=11)]
    got, want = exported.detect(images)[0], reference.detect(images)[0]
    assert sum(len(d["scores"]) for d in want) >= 4
    for g, w in zip(got, want, strict=True):
        assert_same_detections(g, w)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("ssd_tiny160", None),
        ("ssdlite320_mobilenet_v3", 160),  # SSDLite at a small input: CI time
        pytest.param("ssd300_vgg16", None, marks=pytest.mark.slow),
        pytest.param("ssd512_vgg16", None, marks=pytest.mark.slow),
        pytest.param("ssd300_vgg16_bn", None, marks=pytest.mark.slow),
    ],
)
@pytest.mark.numeric
def test_export_matches_pytorch(name: str, size: int | None, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _trained_like(build(name, num_classes=3, **({"image_size": size} if size else {})))
    _check_against_pytorch(model, tmp_path)


@pytest.mark.parametrize("name", ["ssd_tiny160", "ssdlite320_mobilenet_v3"])
@pytest.mark.numeric
def test_nms_in_the_graph_matches_host_nms(name: str, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = _trained_like(build(name, num_classes=3, image_size=160))
    exported = _check_against_pytorch(model, tmp_path, nms=True)
    images = _images(tmp_path)
    own = exported.postprocess.settings
    few, _ = exported.detect(images, settings=own.replace(conf=0.3, max_det=5, classes=(2,)))
    for d in few:
        assert len(d["scores"]) <= 5 and bool((d["scores"] > 0.3).all()) and set(d["labels"].tolist()) <= {2}
    with pytest.warns(UserWarning, match=r"does NMS in its graph at IoU 0\.\d+; iou=0.7 is not applied"):
        exported.detect(images[:1], settings=own.replace(iou=0.7))


def _rows_as_detections(rows: list[dict], file_name: str) -> dict[str, torch.Tensor]:
    """One image's detections from ``predictions.json`` rows (COCO xywh boxes), as the detection contract."""
    mine = [r for r in rows if r["file_name"] == file_name]
    boxes = torch.tensor([r["bbox"] for r in mine], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return {"boxes": boxes, "scores": torch.tensor([r["score"] for r in mine]),
            "labels": torch.tensor([r["category_id"] for r in mine], dtype=torch.int64)}  # fmt: skip


@pytest.mark.numeric
def test_cli_export_then_predict_and_val_with_the_onnx_file(trained_tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "tiny.onnx"
    assert main(["export", "--weights", str(trained_tiny), "--output", str(out)]) == 0
    assert out.is_file()
    write_synthetic_images(tmp_path / "src", 3, (160, 160), seed=4, suffix=".jpg")
    runs = {}
    for tag, weights in (("pt", trained_tiny), ("onnx", out)):
        argv = ["predict", "--weights", str(weights), "--source", str(tmp_path / "src"), "--conf", "0.1"]
        assert main([*argv, "--project", str(tmp_path / "runs"), "--name", tag]) == 0
        runs[tag] = json.loads((tmp_path / "runs" / tag / "predictions.json").read_text())
    files = sorted({r["file_name"] for r in runs["pt"]})
    assert len(files) == 3 and files == sorted({r["file_name"] for r in runs["onnx"]})
    for name in files:  # two float32 runtimes: the same detections, up to ties at a decision (see conftest)
        assert_same_detections(_rows_as_detections(runs["onnx"], name), _rows_as_detections(runs["pt"], name))

    from singleshot.evaluation.command import ValConfig
    from singleshot.evaluation.command import run as validate

    maps = {}
    for tag, weights in (("pt", trained_tiny), ("onnx", out)):
        config = ValConfig(
            weights=str(weights), synthetic=16, coco=False, images=0, project=str(tmp_path / "val"), name=tag
        )
        result = validate(config, progress=False, log=lambda _: None)
        assert result is not None
        maps[tag] = result.report.map50_07
    # scores within 1e-5 of each other move VOC07 AP only where two detections that close swap ranks: a swap at
    # rank k moves one precision by 1/k and AP, a mean of 11, by 1/(11 k): under 1e-3 past the top 90 detections,
    # where the low scores crowd; a wrong file moves it by far more
    assert maps["pt"] > 0.1 and abs(maps["pt"] - maps["onnx"]) < 1e-3


def test_bad_input(trained_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # weights that do not load: the load error, through the CLI
    assert_exit = pytest.raises(SystemExit)
    with assert_exit:
        main(["export", "--weights", str(tmp_path / "missing.safetensors")])
    assert "weights not found" in capsys.readouterr().err
    with assert_exit:
        main(["export", "--weights", str(trained_tiny), "--int8"])
    assert "--int8 needs --data" in capsys.readouterr().err

    # an ONNX file that singleshot did not write: the missing metadata named
    path = export_onnx(build("ssd_tiny160", 3), NAMES, tmp_path / "plain.onnx")
    proto = onnx.load(str(path))
    kept = [p for p in proto.metadata_props if p.key not in ("classes", "graph")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(path))
    with pytest.raises(ValueError, match=r"plain.onnx: not a singleshot model file \(missing metadata classes\)"):
        singleshot.load(path)
    proto.metadata_props.add(key="classes", value=json.dumps(NAMES))
    onnx.save(proto, str(path))
    with pytest.raises(ValueError, match=r"not a singleshot ONNX export \(missing metadata graph\)"):
        singleshot.load(path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"junk.onnx: not a readable ONNX model"):
        singleshot.load(tmp_path / "junk.onnx")
    with pytest.raises(FileNotFoundError, match=r"none.onnx"):
        singleshot.load(tmp_path / "none.onnx")
    with pytest.raises(ValueError, match=r"an exported fp32 file; it runs on onnxruntime or openvino, at fp32"):
        singleshot.load(tmp_path / "plain.onnx", precision="bf16")
    # no onnxruntime on this machine: the error names the package
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"onnxruntime package"):
        singleshot.load(tmp_path / "plain.onnx", backend="onnxruntime")


def test_safetensors_carry_the_post_processing_settings(tmp_path: Path) -> None:
    from singleshot.postprocess import PostProcessor, PostSettings

    model = build(
        "ssd_tiny160", 3, postprocess=PostProcessor(PostSettings(conf=0.2, iou=0.5, max_det=20, candidates=50))
    )
    save_weights(model, tmp_path / "w.safetensors", NAMES)
    assert singleshot.load(tmp_path / "w.safetensors", device="cpu").postprocess.to_metadata() == {
        "score_threshold": 0.2, "nms_threshold": 0.5, "candidates_per_class": 50, "detections_per_image": 20,
        "variances": [0.1, 0.2],
    }  # fmt: skip


@pytest.mark.numeric
def test_the_trained_weights_thresholds_travel_in_the_onnx_file(trained_tiny: Path, tmp_path: Path) -> None:
    reference = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32")
    thresholds = reference.postprocess.class_conf
    assert thresholds is not None and len(thresholds) == 3  # training wrote its final evaluation's
    limits = torch.tensor([0.25 if t is None else t for t in thresholds])
    images = [read_image(p) for p, _ in write_synthetic_images(tmp_path / "s", 4, (160, 160), seed=11)]
    want = reference.predict(images)  # no conf: the weights' thresholds
    assert sum(len(r) for r in want) > 0
    assert all(bool((r.scores > limits[r.labels - 1]).all()) for r in want)
    for nms in (False, True):
        exported = singleshot.load(export_onnx(reference.model, reference.names, tmp_path / f"{nms}.onnx", nms=nms))
        assert exported.postprocess.class_conf == thresholds
        for got, w in zip(exported.predict(images), want, strict=True):
            assert_same_detections(got.detection, w.detection)
        more = exported.predict(images, conf=0.01)  # a user's conf overrides them all
        assert sum(len(r) for r in more) > sum(len(r) for r in want)


@pytest.mark.numeric
def test_the_nms_graph_applies_per_class_thresholds_on_the_host(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = _trained_like(build("ssd_tiny160", 3, image_size=160))
    exported = singleshot.load(export_onnx(model, NAMES, tmp_path / "nms.onnx", nms=True))
    images = _images(tmp_path)
    own = exported.postprocess.settings
    every, _ = exported.detect(images, settings=own.replace(conf=0.0))  # all the graph's rows
    # this model's scores: 0.02 to 0.027; one class kept whole, one left out, one in part; conf (0.3) used by none
    limits = torch.tensor([0.0, 0.5, 0.021])
    settings = own.replace(conf=0.3, class_conf=(0.0, 0.5, 0.021))
    chosen, _ = exported.detect(images, settings=settings)
    top, _ = exported.detect(images, settings=settings.replace(max_det=5))
    for d, e, t in zip(chosen, every, top, strict=True):
        keep = e["scores"] > limits[e["labels"] - 1]
        assert 1 in d["labels"] and 3 in d["labels"] and 2 not in d["labels"]
        for k in ("boxes", "scores", "labels"):
            assert torch.equal(d[k], e[k][keep]) and torch.equal(t[k], d[k][:5])
