"""`singleshot.load(...).predict(source)`: every source kind, streaming video, the Result exports, bad input."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import GeneratorType

import numpy as np
import pytest
import torch
from conftest import assert_same_detections, write_synthetic_images, write_unusual_images
from PIL import Image
from safetensors.torch import save_file

import singleshot
from singleshot.boxes import box_iou
from singleshot.data import open_dataset
from singleshot.data.synthetic import SyntheticShapes
from singleshot.metrics import evaluate_detections
from singleshot.models import build
from singleshot.postprocess import PostSettings
from singleshot.predict import Detector, SourceReport
from singleshot.predict.command import PredictConfig
from singleshot.predict.command import run as predict_to_folder
from singleshot.predict.video import VideoWriter
from singleshot.weights import save_weights

NAMES = list(SyntheticShapes.classes)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(build("ssd_tiny160", 3), path, NAMES)
    return path


def _same(a: singleshot.Result, b: singleshot.Result) -> None:
    """The same detections, to float32 rounding: for results of the same input through the same kernels (same batch
    shape, same threads), whose floats are then equal (an untrained model's scores lie as close as 1e-6: a
    comparison across kernels would need :func:`conftest.assert_same_detections`)."""
    assert torch.equal(a.labels, b.labels) and torch.allclose(a.scores, b.scores) and torch.allclose(a.boxes, b.boxes)


@pytest.mark.numeric
def test_every_source_kind_gives_the_same_detections(tmp_path: Path, untrained: Path) -> None:
    detector = singleshot.load(untrained, device="cpu")
    (path, _), (second, _) = write_synthetic_images(tmp_path / "imgs", 2, size=(120, 200))
    array = np.asarray(Image.open(path).convert("RGB"))
    reference = detector.predict(path, conf=0.05)
    assert len(reference) == 1 and len(reference[0]) > 0
    ref = reference[0]
    assert ref.orig_size == (120, 200) and ref.path == path and ref.frame is None
    assert set(ref.speed) == {"preprocess", "inference", "postprocess"} and all(v >= 0 for v in ref.speed.values())
    kinds = {
        "str": str(path),
        "PIL": Image.open(path),
        "numpy": array,
        "uint8 tensor": torch.from_numpy(array.copy()).permute(2, 0, 1),
        "float tensor": torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255,
    }
    for kind, source in kinds.items():
        (got,) = detector.predict(source, conf=0.05)
        _same(got, ref)
        assert got.orig_size == (120, 200), kind
    folder = detector.predict(tmp_path / "imgs", conf=0.05, batch=1)  # batch 1, as the references
    globbed = detector.predict(str(tmp_path / "imgs" / "*.png"), conf=0.05, batch=1)
    listed = detector.predict([second, array], conf=0.05, batch=1)
    assert [r.path for r in folder] == [path, second] == [r.path for r in globbed]
    _same(folder[0], ref)
    _same(listed[1], ref)
    _same(listed[0], folder[1])


@pytest.mark.numeric
def test_filters_run_in_the_post_processor(tmp_path: Path, untrained: Path) -> None:
    detector = singleshot.load(untrained, device="cpu")
    ((path, _),) = write_synthetic_images(tmp_path, 1)
    (everything,) = detector.predict(path, conf=0.01, max_det=200)
    (few,) = detector.predict(path, conf=0.01, max_det=5)
    (squares,) = detector.predict(path, conf=0.01, classes=["square"])
    (by_label,) = detector.predict(path, conf=0.01, classes=[2])
    (confident,) = detector.predict(path, conf=0.2)
    assert len(few) == 5 and torch.equal(few.scores, everything.scores[:5])
    assert len(squares) > 0 and set(squares.labels.tolist()) == {2}
    _same(squares, by_label)
    assert torch.equal(squares.scores, everything.scores[everything.labels == 2][: len(squares)])
    assert (confident.scores >= 0.2).all() and len(confident) == int((everything.scores > 0.2).sum())
    with pytest.raises(ValueError, match=r"unknown class 'cat'; this model's classes are 1: circle, 2: square"):
        detector.predict(path, classes=["cat"])


@pytest.mark.numeric
def test_predict_uses_the_weights_thresholds_unless_given_a_conf(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build("ssd_tiny160", 3)
    carrying = tmp_path / "thresholds.safetensors"
    save_weights(model, carrying, NAMES, class_conf=(0.3, None, 0.275))  # this model's scores: 0.26 to 0.36
    save_weights(model, tmp_path / "plain.safetensors", NAMES)
    torch_fp32 = {"device": "cpu", "backend": "pytorch", "precision": "fp32"}  # bitwise comparisons below
    detector, plain = (
        singleshot.load(carrying, **torch_fp32),
        singleshot.load(tmp_path / "plain.safetensors", **torch_fp32),
    )
    images = [SyntheticShapes(3, (120, 160), seed=4)[i][0] for i in range(3)]
    every = detector.predict(images, conf=0.01, max_det=1000, batch=3)
    got = detector.predict(images, max_det=1000, batch=3)  # no conf: the weights' thresholds
    default = plain.predict(images, max_det=1000, batch=3)  # weights without thresholds: 0.25 for every class
    limits = torch.tensor([0.3, 0.25, 0.275])  # class 2 has no threshold: 0.25, prediction's default conf
    for g, e, d in zip(got, every, default, strict=True):
        keep = e.scores > limits[e.labels - 1]
        assert torch.equal(g.labels, e.labels[keep]) and torch.equal(g.scores, e.scores[keep])
        assert 0 < int((g.labels == 1).sum()) < int((d.labels == 1).sum()) == int((e.labels == 1).sum())
        assert bool((d.scores > 0.25).all())
    for given, d in zip(detector.predict(images, conf=0.25, max_det=1000, batch=3), default, strict=True):
        _same(given, d)  # a conf given overrides the thresholds: the same as weights without them
    # `singleshot predict`: no --conf, the thresholds; --conf, that one
    ((path, _),) = write_synthetic_images(tmp_path / "src", 1, size=(120, 160))
    (expected,) = detector.predict(path)
    counts = {}
    for conf in (None, 0.25):
        config = PredictConfig(str(carrying), str(path), conf=conf, save=False, device="cpu", backend="pytorch")
        counts[conf] = predict_to_folder(config, progress=False, log=lambda _: None).detections
    assert counts[None] == len(expected) < counts[0.25] == len(detector.predict(path, conf=0.25)[0])
    # detect (what evaluation runs) keeps the model's own settings: the thresholds change no AP
    assert detector.postprocess.settings == plain.postprocess.settings
    for a, b in zip(detector.detect(images)[0], plain.detect(images)[0], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels"))


@pytest.mark.numeric
def test_a_batch_with_mixed_settings_equals_each_image_alone(tmp_path: Path, untrained: Path) -> None:
    # a server's batch: one forward pass, each image post-processed with its own request's settings
    detector = singleshot.load(untrained, device="cpu")
    images = [SyntheticShapes(3, (120, 160), seed=4)[i][0] for i in range(3)]
    settings = [
        PostSettings(conf=0.01, max_det=7),
        PostSettings(conf=0.01, classes=(2,)),
        PostSettings(conf=0.01, max_det=7),
    ]
    mixed, _ = detector.detect(images, [(240, 320)] * 3, settings)
    for image, setting, got in zip(images, settings, mixed, strict=True):
        (alone,), _ = detector.detect([image], [(240, 320)], setting)
        assert len(got["labels"]) > 0
        assert_same_detections(got, alone)  # a batch of 3 and a batch of 1 may run other kernels
    assert len(mixed[0]["labels"]) == 7 and set(mixed[1]["labels"].tolist()) == {2}


@pytest.mark.slow
@pytest.mark.numeric
def test_stream_a_video_frame_by_frame(tmp_path: Path, trained_tiny: Path) -> None:
    frames = SyntheticShapes(9, (160, 160), seed=3)
    with VideoWriter(tmp_path / "clip.mp4", fps=12) as writer:
        for i in range(len(frames)):
            writer.write(frames[i][0].permute(1, 2, 0).numpy())
    detector = singleshot.load(trained_tiny, device="cpu")
    stream = detector.predict(tmp_path / "clip.mp4", conf=0.05, stream=True, batch=4)
    assert isinstance(stream, GeneratorType)
    results = list(stream)
    assert [r.frame for r in results] == list(range(9)) and all(r.fps == 12 for r in results)
    assert all(r.orig_size == (160, 160) for r in results)
    # detections where the shapes are: most objects have a detection of their class at IoU >= 0.5
    found = total = 0
    for r in results:
        target = frames[r.frame][1]
        iou = box_iou(target["boxes"], r.boxes)
        same_class = target["labels"][:, None] == r.labels[None, :]
        found += int(((iou >= 0.5) & same_class).any(dim=1).sum())
        total += len(target["labels"])
    assert found / total > 0.5, (found, total)  # measured 25 of 28 (H.264 at crf 23, 500 steps of training)
    strided = detector.predict(tmp_path / "clip.mp4", vid_stride=4)
    assert [r.frame for r in strided] == [0, 4, 8]


def test_result_exports(tmp_path: Path, untrained: Path) -> None:
    detector = singleshot.load(untrained, device="cpu")
    ((path, _),) = write_synthetic_images(tmp_path, 1, size=(100, 150))
    (r,) = detector.predict(path, conf=0.05, max_det=20)
    d = json.loads(r.to_json())
    assert d["path"] == str(path) and d["orig_size"] == [100, 150] and len(d["detections"]) == len(r)
    first = d["detections"][0]
    assert first["name"] == NAMES[first["label"] - 1] and first["box"] == r.boxes[0].tolist()
    coco = r.to_coco(image_id=7)
    x1, y1, x2, y2 = r.boxes[0].tolist()
    assert coco[0]["image_id"] == 7 and coco[0]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
    assert coco[0]["category_id"] == int(r.labels[0]) and r.to_coco(0, category_ids=[11, 12, 13])[0]["category_id"] > 10
    lines = r.to_yolo_txt().splitlines()
    cls, cx, cy, w, h, conf = lines[0].split()
    assert int(cls) == int(r.labels[0]) - 1 and float(conf) == pytest.approx(float(r.scores[0]), abs=1e-5)
    assert float(cx) == pytest.approx((x1 + x2) / 2 / 150, abs=1e-6) and float(cy) == pytest.approx(
        (y1 + y2) / 200, abs=1e-6
    )
    assert float(w) == pytest.approx((x2 - x1) / 150, abs=1e-6) and float(h) == pytest.approx((y2 - y1) / 100, abs=1e-6)
    picture = r.plot()
    assert picture.size == (150, 100)
    assert not np.array_equal(np.asarray(picture), np.asarray(Image.open(path).convert("RGB")))  # boxes drawn
    assert np.array_equal(np.asarray(r.plot(conf=1.0)), np.asarray(Image.open(path).convert("RGB")))  # none kept
    saved = r.save(tmp_path / "out" / "x.png")
    assert Image.open(saved).size == (150, 100)
    names = [name for name, crop in r.crops()]
    assert names == r.class_names and all(c.size[0] >= 1 for _, c in r.crops())


@pytest.mark.numeric
def test_yolo_labels_round_trip_through_our_yolo_reader(tmp_path: Path, untrained: Path) -> None:
    detector = singleshot.load(untrained, device="cpu")
    pairs = write_synthetic_images(tmp_path / "images" / "val", 3, size=(96, 128))
    (tmp_path / "labels" / "val").mkdir(parents=True)
    results = detector.predict(tmp_path / "images" / "val", conf=0.05, max_det=15)
    for (path, _), r in zip(pairs, results, strict=True):
        lines = [" ".join(line.split()[:5]) for line in r.to_yolo_txt().splitlines()]  # reader: class cx cy w h
        (tmp_path / "labels" / "val" / f"{path.stem}.txt").write_text("\n".join(lines))
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/val\nval: images/val\nnames: {NAMES}\n")
    bundle = open_dataset(tmp_path / "data.yaml")
    for i, r in enumerate(results):
        _, target = bundle.val[i]
        inside = r.boxes.clamp(min=0).minimum(torch.tensor([128.0, 96.0, 128.0, 96.0]))  # the reader clips boxes
        keep = (inside[:, 2] > inside[:, 0]) & (inside[:, 3] > inside[:, 1])
        assert torch.equal(target["labels"], r.labels[keep])
        assert torch.allclose(target["boxes"], inside[keep], atol=2e-3)


@pytest.mark.numeric
def test_coco_json_gives_the_same_ap_as_val(tmp_path: Path, untrained: Path) -> None:
    from conftest import write_voc_devkit

    from singleshot.evaluation.command import ValConfig
    from singleshot.evaluation.command import run as validate

    data = write_voc_devkit(tmp_path / "voc", count=8)
    config = ValConfig(str(untrained), str(data), project=str(tmp_path / "runs"), images=0)
    val = validate(config, progress=False, log=lambda s: s)
    detector = singleshot.load(untrained, device="cpu")
    post = detector.postprocess.settings  # the model's own settings, which val uses
    dataset = open_dataset(data, "val", "val").val
    # val's batches: the same kernels, so the same floats (an untrained model's scores lie as close as 1e-6)
    results = detector.predict(
        [p for p, _, _ in dataset.items], conf=post.conf, iou=post.iou, max_det=post.max_det, batch=config.batch,
    )  # fmt: skip
    coco = [d for i, r in enumerate(results) for d in r.to_coco(i)]
    (tmp_path / "predict.json").write_text(json.dumps(coco))
    detections = []
    for i in range(len(results)):
        mine = [p for p in json.loads((tmp_path / "predict.json").read_text()) if p["image_id"] == i]
        boxes = torch.tensor([p["bbox"] for p in mine], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        scores = torch.tensor([p["score"] for p in mine])
        detections.append({"boxes": boxes, "scores": scores, "labels": torch.tensor([p["category_id"] for p in mine])})
    ground_truths = [dataset[i][1] for i in range(len(dataset))]
    again = evaluate_detections(detections, ground_truths, NAMES, pixel_indices=True)
    assert val is not None
    assert again.map50_07 == pytest.approx(val.report.map50_07, abs=1e-9)
    assert again.coco["AP"] == pytest.approx(val.report.coco["AP"], abs=1e-9)


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_sources(tmp_path: Path, untrained: Path) -> None:
    detector = singleshot.load(untrained, device="cpu")
    with pytest.raises(FileNotFoundError, match=r"source not found: .*nowhere.jpg"):
        detector.predict(tmp_path / "nowhere.jpg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: no images or videos in this folder"):
        detector.predict(tmp_path / "empty")
    folder = tmp_path / "mixed"
    write_synthetic_images(folder, 2, suffix=".jpg")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    whole = (folder / "img00.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    report = SourceReport()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = detector.predict(folder, report=report)
    assert sorted(r.path.name for r in results) == ["img00.jpg", "img01.jpg"]
    assert report.skipped["not an image or video file, skipped"] == 1
    assert sum(n for reason, n in report.skipped.items() if reason.startswith("image skipped")) == 2
    assert any("broken.jpg" in str(w.message) for w in caught) and any("cut.jpg" in str(w.message) for w in caught)
    (tmp_path / "bad.mp4").write_bytes(b"this is no video" * 100)
    with pytest.raises(ValueError, match=r"bad.mp4: not a readable video"):
        detector.predict(tmp_path / "bad.mp4")
    (tmp_path / "data.xyz").write_text("?")
    with pytest.raises(ValueError, match=r"data.xyz: not an image or video file"):
        detector.predict(tmp_path / "data.xyz")
    with pytest.raises(ValueError, match="expected an H x W x 3 uint8 RGB array"):
        detector.predict(np.zeros((10, 10), dtype=np.uint8))


@pytest.mark.numeric
def test_unusual_images_are_converted_like_training_reads_them(tmp_path: Path, untrained: Path) -> None:
    detector = singleshot.load(untrained, device="cpu")
    rgb = np.asarray(SyntheticShapes(1, (60, 80), seed=2)[0][0].permute(1, 2, 0))
    paths = write_unusual_images(tmp_path, rgb)  # rotated.jpg: stored 80 x 60, shown 60 wide, 80 high
    gray, rgba, deep, rotated = detector.predict(list(paths.values()), conf=0.05, batch=1)  # batch 1, as below
    (as_gray,) = detector.predict(np.asarray(Image.fromarray(rgb).convert("L").convert("RGB")), conf=0.05)
    (as_rgb,) = detector.predict(rgb, conf=0.05)
    _same(gray, as_gray)
    _same(rgba, as_rgb)
    assert deep.orig_size == (60, 80) and torch.equal(deep.image[0], torch.from_numpy(rgb[..., 0].copy()))
    assert rotated.orig_size == (80, 60)


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"weights not found: .*none.safetensors"):
        singleshot.load(tmp_path / "none.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"other.safetensors: not a singleshot model file \(missing metadata model,"):
        singleshot.load(tmp_path / "other.safetensors")
    good = tmp_path / "good.safetensors"
    save_weights(build("ssd_tiny160", 3), good, NAMES)
    (tmp_path / "cut.safetensors").write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"cut.safetensors: not a readable .safetensors file"):
        singleshot.load(tmp_path / "cut.safetensors")
    with pytest.raises(ValueError, match="3 class names for a model of 2 classes"):
        Detector(build("ssd_tiny160", 2), NAMES)
