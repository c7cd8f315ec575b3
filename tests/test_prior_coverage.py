"""Default-box coverage of a dataset's objects, and the search that fits the boxes to them."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision.ops import box_iou

from singleshot.boxes import cxcywh_to_xyxy
from singleshot.models import build
from singleshot.priors import DefaultBoxConfig
from singleshot.tools.prior_coverage import PriorsConfig, coverage, tile_boxes
from singleshot.tools.prior_coverage import run as priors
from singleshot.tools.prior_search import design_yaml, layer_best_iou, optimize_design

#: compares float results of kernels: `make test` runs these again under other kernel choices
pytestmark = pytest.mark.numeric

#: A small design: a 4x4 and a 2x2 map at 64 px, squares of 16 and 32 px with their sqrt(min*max) boxes.
DESIGN = DefaultBoxConfig(
    image_size=(64, 64), feature_sizes=((4, 4), (2, 2)), min_sizes=(16.0, 32.0), max_sizes=(24.0, 48.0),
    aspect_ratios=((), ()), steps=(16.0, 32.0),
)  # fmt: skip


def test_objects_equal_to_the_default_boxes_are_all_covered() -> None:
    boxes = cxcywh_to_xyxy(DESIGN.generate())
    labels = torch.ones(boxes.shape[0], dtype=torch.int64)
    cov = coverage(boxes, labels, DESIGN)
    assert cov.rate() == 1.0
    assert torch.allclose(cov.best_iou, torch.ones_like(cov.best_iou))
    assert (cov.matches >= 1).all()
    assert cov.best_layer.tolist() == [0] * 32 + [1] * 8  # each object's own layer


def test_an_aspect_ratio_the_data_needs_raises_coverage() -> None:
    # tall thin objects 8 x 24 px at the 4x4 cells' centres: squares cover them at IoU 1/3 at best
    centres = (torch.arange(4) + 0.5) / 4
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    tall = torch.stack([cx.flatten(), cy.flatten(), torch.full((16,), 8 / 64), torch.full((16,), 24 / 64)], 1)
    boxes, labels = cxcywh_to_xyxy(tall), torch.ones(16, dtype=torch.int64)
    before = coverage(boxes, labels, DESIGN).rate()
    with_ratio = dataclasses.replace(DESIGN, aspect_ratios=((3.0,), ()), min_sizes=(14.0, 32.0))
    after = coverage(boxes, labels, with_ratio).rate()
    assert before == 0.0 and after == 1.0


def test_the_search_never_covers_worse_than_its_start_and_is_deterministic() -> None:
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(300, 2, generator=g) * 0.8 + 0.1
    size = torch.rand(300, 2, generator=g) * 0.25 + 0.05  # small objects of varied shapes
    boxes = cxcywh_to_xyxy(torch.cat([centre, size], 1))
    labels = torch.ones(300, dtype=torch.int64)
    start = coverage(boxes, labels, DESIGN)
    fitted = optimize_design(boxes, DESIGN, rounds=1)
    end = coverage(boxes, labels, fitted)
    assert end.rate() >= start.rate() and end.best_iou.mean() >= start.best_iou.mean()
    assert end.rate() > start.rate()  # these objects are smaller than the design's boxes: the search helps
    assert fitted.boxes_per_location() == DESIGN.boxes_per_location()  # same layers and boxes per cell
    assert optimize_design(boxes, DESIGN, rounds=1) == fitted
    assert "min_sizes" in design_yaml(fitted)


@pytest.mark.parametrize("variant", ["paper", "clip", "clamp_cxcywh", "tiny320"])
def test_the_search_scores_each_layer_as_the_exhaustive_comparison_does(variant: str) -> None:
    # the search compares each object with the boxes of nearby and border cells only: the best IoU must equal the
    # best over every default box of the layer, with and without clipping
    if variant == "tiny320":
        design = build("ssd_tiny160", num_classes=3, image_size=320).default_boxes
    else:
        design = build("ssd300_vgg16", num_classes=3).default_boxes
        if variant != "paper":
            design = dataclasses.replace(design, **{variant: True})
    g = torch.Generator().manual_seed(1)
    centre = torch.rand(2000, 2, generator=g)
    size = torch.rand(2000, 2, generator=g) ** 2 * 0.9 + 0.01  # mostly small, some nearly the whole image
    boxes = cxcywh_to_xyxy(torch.cat([centre, size], 1)).clamp(0, 1)
    start = 0
    for k, count in enumerate(design.boxes_per_layer()):
        layer = cxcywh_to_xyxy(design.generate()[start : start + count])
        start += count
        exhaustive = box_iou(boxes, layer).max(dim=1).values
        torch.testing.assert_close(layer_best_iou(boxes, design, k), exhaustive, rtol=0, atol=1e-6)


def test_priors_command_writes_the_report_plots_and_fitted_design(tmp_path, capsys) -> None:
    import yaml
    from conftest import write_voc_devkit

    from singleshot.cli import main

    root = write_voc_devkit(tmp_path / "voc", count=8, split="train")
    argv = ["priors", "--data", str(root), "--model", "ssd_tiny160", "--optimize", "--rounds", "1"]
    assert main([*argv, "--project", str(tmp_path / "runs"), "--name", "p"]) == 0
    out = capsys.readouterr().out
    assert "coverage" in out and "fitted default boxes" in out and "circle" in out
    run = tmp_path / "runs" / "p"
    assert (run / "boxes.png").stat().st_size > 0 and (run / "best_iou.png").stat().st_size > 0
    fitted = yaml.safe_load((run / "default_boxes.yaml").read_text())["default_boxes"]
    assert len(fitted["min_sizes"]) == 5 and len(fitted["aspect_ratios"]) == 5  # the tiny model's five layers


def test_training_takes_the_fitted_design_and_the_weights_carry_it(tmp_path) -> None:
    import yaml

    import singleshot
    from singleshot.engine.recipe import TrainConfig
    from singleshot.engine.trainer import train

    fitted = {"min_sizes": [12.0, 24.0, 50.0, 90.0, 130.0], "aspect_ratios": [[3.0], [2.0, 3.0], [2.0], [2.0], [2.0]]}
    path = tmp_path / "default_boxes.yaml"
    path.write_text(yaml.safe_dump({"default_boxes": fitted}))
    config = TrainConfig(
        model="ssd_tiny160", imgsz=160, synthetic_train=16, synthetic_val=4, epochs=1, batch=8, workers=0,
        eval_every=0, max_steps=1, default_boxes=str(path), project=str(tmp_path), name="t", predict_images=0,
    )  # fmt: skip
    run = train(config, progress=False).run_dir
    design = singleshot.load(
        run / "weights" / "last.safetensors", device="cpu", backend="pytorch", precision="fp32"
    ).model.default_boxes
    assert list(design.min_sizes) == fitted["min_sizes"] and design.aspect_ratios[0] == (3.0,)
    assert design.max_sizes == singleshot.build("ssd_tiny160", 3, image_size=160).default_boxes.max_sizes


def test_objects_are_measured_in_the_tile_that_holds_them() -> None:
    # a 1000 x 1000 image, 500-pixel tiles at overlap 0.2: tile starts 0, 400, 500 on each side
    boxes = torch.tensor([[10.0, 20, 60, 70], [900.0, 900, 950, 990], [450.0, 100, 550, 150]])
    tiled = tile_boxes(boxes, 1000, 1000, 500)
    assert tiled[0].tolist() == pytest.approx([10 / 500, 20 / 500, 60 / 500, 70 / 500])  # the first tile
    assert tiled[1].tolist() == pytest.approx([400 / 500, 400 / 500, 450 / 500, 490 / 500])  # the last, at 500
    assert tiled[2].tolist() == pytest.approx([50 / 500, 100 / 500, 150 / 500, 150 / 500])  # whole in x0 = 400
    whole = tile_boxes(boxes, 1000, 1000, 2000)  # a tile larger than the image is the image
    assert torch.allclose(whole, boxes / 1000)


def test_priors_tile_of_the_image_size_equals_plain_and_small_tiles_change_coverage(tmp_path) -> None:
    from conftest import write_voc_devkit  # the shared writer

    root = write_voc_devkit(tmp_path / "voc", count=6, split="train", size=160)
    common = {"data": str(root), "model": "ssd_tiny160", "imgsz": 160, "project": str(tmp_path / "runs")}
    plain, _ = priors(PriorsConfig(**common), log=lambda s: None)
    same, _ = priors(PriorsConfig(**common, tile=160), log=lambda s: None)
    assert torch.equal(same.best_iou, plain.best_iou)
    small, _ = priors(PriorsConfig(**common, tile=64), log=lambda s: None)
    assert len(small.best_iou) == len(plain.best_iou) and not torch.equal(small.best_iou, plain.best_iou)
