"""Starting from other weights: fine-tuning to new classes keeps the rows of the classes both have. Per-class score
thresholds in the weight file: written, copied into another file, read back."""

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
from singleshot.weights import WeightsMetadata, read_weights, save_weights, save_weights_with_thresholds

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


def test_weights_carry_per_class_thresholds_and_a_copy_adds_or_removes_them(tmp_path: Path) -> None:
    model = build("ssd_tiny160", num_classes=3)
    plain = tmp_path / "plain.safetensors"
    save_weights(model, plain, SOURCE)
    assert singleshot.load(plain, device="cpu").postprocess.class_conf is None  # files without them: none
    save_weights(model, tmp_path / "direct.safetensors", SOURCE, class_conf=[0.5, None, 0.35])
    assert singleshot.load(tmp_path / "direct.safetensors", device="cpu").postprocess.class_conf == (0.5, None, 0.35)

    copy = tmp_path / "sub" / "copy.safetensors"
    copy.parent.mkdir()
    save_weights_with_thresholds(plain, (0.4, 0.6, None), copy)
    tensors, meta = read_weights(copy)
    source_tensors, source_meta = read_weights(plain)
    assert tensors.keys() == source_tensors.keys() and all(torch.equal(tensors[k], source_tensors[k]) for k in tensors)
    assert {k: v for k, v in meta.items() if k != "postprocess"} == {
        k: v for k, v in source_meta.items() if k != "postprocess"
    }
    assert WeightsMetadata.from_strings(meta, copy).class_conf == (0.4, 0.6, None)
    detector = singleshot.load(copy, device="cpu")
    assert detector.postprocess.class_conf == (0.4, 0.6, None)
    assert detector.postprocess.settings == singleshot.load(plain, device="cpu").postprocess.settings  # untouched
    assert [p.name for p in copy.parent.iterdir()] == ["copy.safetensors"]  # written atomically: no temporary left

    save_weights_with_thresholds(copy, None, tmp_path / "none.safetensors")  # None: a copy carrying none
    assert WeightsMetadata.from_strings(read_weights(tmp_path / "none.safetensors")[1], "none").class_conf is None
    with pytest.raises(ValueError, match=r"plain\.safetensors: 2 thresholds for a model of 3 classes"):
        save_weights_with_thresholds(plain, (0.4, 0.6), tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match=r"class_conf \[1\.2\] must be in"):
        save_weights_with_thresholds(plain, (0.4, 1.2, None), tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(FileNotFoundError, match="weights not found"):
        save_weights_with_thresholds(tmp_path / "missing.safetensors", (0.4, 0.6, None), tmp_path / "bad.safetensors")
    no_settings = {k: v for k, v in read_weights(plain)[1].items() if k != "postprocess"}
    with pytest.raises(ValueError, match="no post-processing settings"):
        WeightsMetadata.from_strings(no_settings, "old").with_class_conf((0.4, 0.6, None))
