"""Starting from other weights: fine-tuning to new classes keeps the rows of the classes both have."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_voc_devkit

import singleshot
from singleshot import build
from singleshot.engine.recipe import TrainConfig
from singleshot.engine.trainer import train
from singleshot.evaluation import evaluate_model
from singleshot.predict.loading import load_initial_weights
from singleshot.weights import read_weights

SOURCE = ["circle", "square", "triangle"]  # trained_tiny's classes (synthetic shapes)
TARGET = ["square", "diamond"]  # B is kept, D is new


def test_class_rows_of_shared_classes_are_kept(trained_tiny: Path) -> None:
    source, _ = read_weights(trained_tiny)
    model = build("ssd_tiny160", num_classes=2)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_initial_weights(model, trained_tiny, TARGET)
    assert "shared classes (square)" in report and "re-initialised: diamond" in report
    for k in range(5):  # every head layer: A groups of (background, square, diamond) rows
        w, src = model.state_dict()[f"head.cls.{k}.weight"], source[f"head.cls.{k}.weight"]
        boxes = w.shape[0] // 3
        assert src.shape[0] == boxes * 4
        for a in range(boxes):
            assert torch.equal(w[a * 3 + 0], src[a * 4 + 0])  # background
            assert torch.equal(w[a * 3 + 1], src[a * 4 + 2])  # square: label 2 in the source, 1 here
            assert torch.equal(w[a * 3 + 2], fresh[f"head.cls.{k}.weight"][a * 3 + 2])  # diamond: fresh
        assert torch.equal(model.state_dict()[f"head.reg.{k}.weight"], source[f"head.reg.{k}.weight"])
    assert torch.equal(model.state_dict()["backbone.stages.0.0.0.weight"], source["backbone.stages.0.0.0.weight"])


@pytest.mark.slow
def test_fine_tuning_to_new_classes_predicts_the_kept_class(trained_tiny: Path, tmp_path: Path) -> None:
    root = write_voc_devkit(tmp_path / "voc", count=32, split="train")
    for xml in (root / "Annotations").glob("*.xml"):  # triangles become the new class; circles are not wanted
        xml.write_text(xml.read_text().replace("<name>triangle</name>", "<name>diamond</name>"))
    (root / "ImageSets" / "Main" / "val.txt").write_text((root / "ImageSets" / "Main" / "train.txt").read_text())
    config = TrainConfig(
        model="ssd_tiny160", imgsz=160, data=str(root), classes=TARGET, weights=str(trained_tiny), epochs=2,
        batch=8, lr=0.01, warmup_epochs=0.2, augment="eval", workers=0, eval_every=0, project=str(tmp_path / "runs"),
        name="ft", predict_images=0,
    )  # fmt: skip
    result = train(config, progress=False)
    detector = singleshot.load(result.run_dir / "weights" / "last.safetensors", device="cpu")
    assert detector.names == TARGET
    from singleshot.data import open_split

    val, _ = open_split(root, "val", TARGET)
    report = evaluate_model(detector, val, detector.device, coco=False).report
    assert report.ap50_07[0] > 0.3, report.table()  # square: kept from the source after 8 steps
