"""`singleshot val`: the run folder's files are complete and consistent with each other and with pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from singleshot.checkpoint import save_weights
from singleshot.cli import main
from singleshot.data.synthetic import SyntheticShapes
from singleshot.models import build
from singleshot.val import validate


def _voc_devkit(root: Path, count: int = 6) -> Path:
    """A VOC devkit of synthetic shapes (val split), object 0 of image 0 marked difficult."""
    from PIL import Image

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    data = SyntheticShapes(count, 160, seed=5)
    stems = []
    for i in range(count):
        image, target = data[i]
        stem = f"img{i:02d}"
        stems.append(stem)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        objects = "".join(
            f"<object><name>{SyntheticShapes.classes[label - 1]}</name><difficult>{int(i == 0 and k == 0)}</difficult>"
            f"<bndbox><xmin>{b[0]:.0f}</xmin><ymin>{b[1]:.0f}</ymin><xmax>{b[2]:.0f}</xmax><ymax>{b[3]:.0f}</ymax>"
            "</bndbox></object>"
            for k, (b, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True))
        )
        xml = f"<annotation><size><width>160</width><height>160</height></size>{objects}</annotation>"
        (root / "Annotations" / f"{stem}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "val.txt").write_text("\n".join(stems))
    return root


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    model = build("ssd_tiny160", 3)
    path = tmp_path / "tiny.safetensors"
    save_weights(model, path, list(SyntheticShapes.classes))
    return path


def test_val_writes_consistent_files(tmp_path: Path, weights: Path) -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    data = _voc_devkit(tmp_path / "voc")
    result = validate(
        weights, data, "val", project=tmp_path / "runs", name="v", images=3, progress=False, log=lambda s: None
    )
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
    from singleshot.data.formats import open_split
    from singleshot.evaluate import coco_ground_truth

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
    data = _voc_devkit(tmp_path / "voc", count=2)
    for xml in (data / "Annotations").glob("*.xml"):
        xml.write_text(xml.read_text().replace("<name>circle<", "<name>cell<").replace("<name>square<", "<name>cell<")
                       .replace("<name>triangle<", "<name>cell<"))  # fmt: skip
    with pytest.raises(ValueError, match=r"none of the model's classes .* of classes \['cell'\]"):
        validate(weights, data, "val", project=tmp_path / "runs", progress=False, log=lambda s: None)


def test_val_on_bccd(tmp_path: Path, bccd: Path) -> None:
    model = build("ssd_tiny160", 3, image_size=160)
    names = ["Platelets", "RBC", "WBC"]
    path = tmp_path / "bccd.safetensors"
    save_weights(model, path, names)
    result = validate(path, bccd, "val", project=tmp_path, images=1, progress=False, log=lambda s: None)
    assert result.report.num_images == 87
    assert sum(result.report.num_positives) > 300  # BCCD val has hundreds of cells
    assert (result.run_dir / "images" / "000.jpg").is_file()
    assert torch.isfinite(torch.tensor(result.report.map50))
