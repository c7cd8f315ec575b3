"""`singleshot val`: the run folder's files are complete and consistent with each other and with pycocotools."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch
from conftest import write_voc_devkit

from singleshot.cli import main
from singleshot.data import open_split
from singleshot.data.synthetic import SyntheticShapes
from singleshot.evaluation.command import ValConfig
from singleshot.evaluation.command import run as validate
from singleshot.metrics import evaluate_detections
from singleshot.models import build
from singleshot.weights import save_weights


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    model = build("ssd_tiny160", 3)
    path = tmp_path / "tiny.safetensors"
    save_weights(model, path, list(SyntheticShapes.classes))
    return path


def test_val_writes_consistent_files(tmp_path: Path, weights: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = write_voc_devkit(tmp_path / "voc")
    config = ValConfig(weights=str(weights), data=str(data), project=str(tmp_path / "runs"), name="v", images=3)
    result = validate(config, progress=False, log=lambda s: None)
    run = result.run_dir
    for name in ("metrics.json", "predictions.json", "pr_curve.png", "confusion_matrix.png"):
        assert (run / name).stat().st_size > 0, name
    assert sorted(p.name for p in (run / "images").iterdir()) == ["000.jpg", "001.jpg", "002.jpg"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["images"] == 6
    assert metrics["summary"]["mAP50"] == pytest.approx(result.report.map50, nan_ok=True)
    assert metrics["timing"]["inference_images_per_s"] > 0
    # difficult object of image 0: not among the positives
    objects = sum(c["objects"] for c in metrics["classes"])
    assert objects == sum(int(c) for c in result.report.num_positives)
    assert result.confusion[1:].sum() == objects  # every non-difficult object is either found or missed

    predictions = json.loads((run / "predictions.json").read_text())
    assert len(predictions) >= sum(result.report.num_detections)  # those matched to difficult objects also there
    assert {"image_id", "category_id", "bbox", "score"} <= set(predictions[0])
    # pycocotools on predictions.json and the dataset's ground truth reproduces metrics.json's COCO figures
    from singleshot.metrics import coco_ground_truth

    dataset, _ = open_split(data, "val", list(SyntheticShapes.classes))
    gts = [dataset[i][1] for i in range(len(dataset))]
    gt = COCO()
    gt.dataset = coco_ground_truth(gts, dataset.class_names, dataset.image_ids, dataset.category_ids)
    gt.createIndex()
    evaluator = COCOeval(gt, gt.loadRes(str(run / "predictions.json")), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(metrics["coco"]["AP"], abs=1e-12)


def test_val_command_line_and_clear_errors(tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["val", "--weights", str(weights), "--synthetic", "8", "--project", str(tmp_path), "--images", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "AP50 (07)" in out and "img/s" in out
    assert (tmp_path / "exp" / "metrics.json").is_file()
    with pytest.raises(SystemExit) as exc:
        main(["val", "--weights", str(tmp_path / "missing.safetensors")])
    assert exc.value.code == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_val_refuses_data_without_the_models_classes(tmp_path: Path, weights: Path) -> None:
    data = write_voc_devkit(tmp_path / "voc", count=2)
    for xml in (data / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>circle<", "<name>cell<").replace("<name>square<", "<name>cell<")
                       .replace("<name>triangle<", "<name>cell<"))  # fmt: skip
    with pytest.raises(ValueError, match=r"none of the model's classes .* of classes \['cell'\]"):
        validate(ValConfig(str(weights), str(data), project=str(tmp_path / "runs")), progress=False, log=lambda s: None)


@pytest.mark.slow
def test_val_on_bccd(tmp_path: Path, bccd: Path) -> None:
    model = build("ssd_tiny160", 3, image_size=160)
    names = ["Platelets", "RBC", "WBC"]
    path = tmp_path / "bccd.safetensors"
    save_weights(model, path, names)
    config = ValConfig(str(path), str(bccd), project=str(tmp_path), images=1)
    result = validate(config, progress=False, log=lambda s: None)
    assert result.report.num_images == 87
    # objects per class, counted here from the XML files of the split (difficult and zero-area boxes left out)
    counts = dict.fromkeys(names, 0)
    for stem in (bccd / "ImageSets" / "Main" / "val.txt").read_text().split():
        for obj in ET.parse(bccd / "Annotations" / f"{stem}.xml").getroot().iter("object"):
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x2 > x1 and y2 > y1 and obj.findtext("difficult", "0").strip() != "1":
                counts[obj.findtext("name").strip()] += 1
    assert result.report.num_positives == [counts[n] for n in names]
    assert (result.run_dir / "images" / "000.jpg").is_file()
    # VOC data: the devkit's pixel convention, reproduced from predictions.json by evaluate_detections
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    predictions = json.loads((result.run_dir / "predictions.json").read_text())
    dataset, _ = open_split(bccd, "val", names)
    detections = []
    for i in range(len(dataset)):
        mine = [p for p in predictions if p["image_id"] == i]
        boxes = torch.tensor([p["bbox"] for p in mine], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        detections.append(
            {"boxes": boxes, "scores": torch.tensor([p["score"] for p in mine]),
             "labels": torch.tensor([p["category_id"] for p in mine])}
        )  # fmt: skip
    ground_truths = [dataset[i][1] for i in range(len(dataset))]
    again = evaluate_detections(detections, ground_truths, names, coco=False, pixel_indices=True)
    assert again.map50_07 == pytest.approx(metrics["summary"]["mAP50_voc07"], abs=1e-6)
    assert len(predictions) == sum(result.report.num_detections)


@pytest.mark.numeric
def test_val_with_one_tile_equals_plain_val_and_smaller_tiles_run(trained_tiny: Path, tmp_path: Path) -> None:
    """``singleshot val --slice``: a tile larger than the (160-pixel) images is the image itself, so the figures
    equal plain val's; 96-pixel tiles (4 per image, and the whole image) give figures of their own."""
    common = {"synthetic": 12, "images": 0, "coco": False, "project": str(tmp_path), "conf": 0.25}
    plain = validate(ValConfig(str(trained_tiny), **common), progress=False, log=lambda s: None)
    one_tile = validate(ValConfig(str(trained_tiny), slice=1000, **common), progress=False, log=lambda s: None)
    assert one_tile.report.ap50 == plain.report.ap50 and one_tile.report.num_detections == plain.report.num_detections
    tiles = validate(ValConfig(str(trained_tiny), slice=96, overlap=0.25, **common), progress=False, log=lambda s: None)
    assert tiles.report.num_images == 12 and 0 <= tiles.report.map50 <= 1
    assert tiles.report.num_detections != plain.report.num_detections
    with pytest.raises(ValueError, match=r"overlap=0\.95 must be in"):
        ValConfig(str(trained_tiny), slice=96, overlap=0.95).validate()
