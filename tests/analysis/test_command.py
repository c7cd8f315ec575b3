"""``singleshot analyze`` end to end: weights or a COCO results file, the run folder, the default-box split against
``singleshot priors``, thresholds carried in the weights, bad input, and the report in a real browser."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import write_voc_devkit

from singleshot.analysis.command import AnalyzeConfig, run
from singleshot.analysis.diagnosis import analyze_detections
from singleshot.analysis.tide import MAIN_ERRORS
from singleshot.cli import main
from singleshot.tools.prior_coverage import PriorsConfig
from singleshot.tools.prior_coverage import run as priors
from singleshot.weights import WeightsMetadata, read_weights

pytestmark = pytest.mark.slow


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def analysed(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory):
    """``singleshot analyze`` of the trained tiny model on a 24-image VOC devkit of synthetic shapes."""
    root = tmp_path_factory.mktemp("analyze")
    data = write_voc_devkit(root / "voc", count=24, size=160)
    config = AnalyzeConfig(
        weights=str(trained_tiny), data=str(data), project=str(root / "runs"), name="w", gallery=2,
        precision_target=0.8, save_thresholds=str(root / "with_thresholds.safetensors"),
    )  # fmt: skip  # grouped by what they say
    before = hashlib.sha256(trained_tiny.read_bytes()).hexdigest()
    result = run(config, progress=False, log=_quiet)
    assert hashlib.sha256(trained_tiny.read_bytes()).hexdigest() == before  # the weights it read are left as they were
    return config, result


def test_run_folder_holds_every_part(analysed) -> None:
    config, result = analysed
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["images"] == 24
    assert set(metrics["tide"]["main"]) == set(MAIN_ERRORS)
    assert metrics["tide"]["AP50"] == pytest.approx(result.analysis.tide.ap)
    assert metrics["priors"] is not None and 0 <= metrics["priors"]["uncovered_share"] <= 1
    for name in ("tide.png", "coco_curves_all.png", "ranked_errors.png", "sensitivity.png", "report.html"):
        assert (result.run_dir / name).stat().st_size > 1000, name
    assert any((result.run_dir / "errors").glob("*.jpg"))
    # the detections it ran are written, and analysing them as a results file gives the same figures
    again = run(
        AnalyzeConfig(predictions=str(result.run_dir / "predictions.json"), data=config.data, project=config.project,
                      name="p", gallery=0, model="ssd_tiny160", imgsz=160),
        progress=False, log=_quiet,
    )  # fmt: skip  # the config, then how to run it
    assert again.analysis.tide.main == pytest.approx(result.analysis.tide.main, abs=1e-9)
    assert again.analysis.tide.ap == pytest.approx(result.analysis.tide.ap, abs=1e-9)
    assert again.analysis.priors.rows == result.analysis.priors.rows


def test_thresholds_are_saved_into_a_copy_of_the_weights(analysed) -> None:
    config, result = analysed
    _, meta = read_weights(config.save_thresholds)
    carried = WeightsMetadata.from_strings(meta, config.save_thresholds).class_conf
    expected = tuple(t.threshold for t in result.analysis.thresholds)
    assert carried == pytest.approx(expected) and any(t is not None for t in carried)
    tensors, _ = read_weights(config.save_thresholds)
    source, _ = read_weights(config.weights)
    assert tensors.keys() == source.keys() and all(torch.equal(tensors[k], source[k]) for k in source)


def test_uncovered_share_equals_singleshot_priors(analysed, tmp_path: Path) -> None:
    """The share of objects with no default box at IoU >= 0.5 is the same number ``singleshot priors`` prints."""
    config, result = analysed
    cov, _ = priors(
        PriorsConfig(data=config.data, split="val", model="ssd_tiny160", imgsz=160, project=str(tmp_path)), log=_quiet
    )
    assert result.analysis.priors.uncovered_share == pytest.approx(1 - cov.rate(), abs=1e-12)
    rows = result.analysis.priors.rows
    assert rows["all"]["missed_uncovered"] + rows["all"]["missed_covered"] == result.analysis.tide.counts["Miss"]


def _results_file(path: Path, entries: list[dict]) -> str:
    path.write_text(json.dumps(entries))
    return str(path)


def test_bad_predictions_are_named_or_counted(analysed, tmp_path: Path) -> None:
    config, _ = analysed
    base = {"image_id": 0, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}
    common = {"data": config.data, "project": str(tmp_path), "gallery": 0}
    unknown = _results_file(tmp_path / "u.json", [base, {**base, "image_id": 999}, {**base, "image_id": 1000}])
    with pytest.raises(ValueError, match=r"2 detections of images not in .* e\.g\. 1000, 999"):
        run(AnalyzeConfig(predictions=unknown, **common), progress=False, log=_quiet)
    category = _results_file(tmp_path / "c.json", [{**base, "category_id": 42}])
    with pytest.raises(ValueError, match=r"categories not in the data's category ids \[1, 2, 3\], e\.g\. 42"):
        run(AnalyzeConfig(predictions=category, **common), progress=False, log=_quiet)
    broken = [{**base, "bbox": [1, 1, float("nan"), 3]}, {**base, "bbox": [1, 1, -4, 3]}, base]
    lines: list[str] = []
    result = run(AnalyzeConfig(predictions=_results_file(tmp_path / "n.json", broken), **common), log=lines.append)
    assert "1  detection with a NaN or infinite number dropped" in "\n".join(lines)
    assert "1  detection with a negative width or height dropped" in "\n".join(lines)
    assert result.analysis.metrics.num_detections[0] == 1
    with pytest.raises(ValueError, match="not a COCO result"):
        run(AnalyzeConfig(predictions=_results_file(tmp_path / "x.json", [{"score": 1}]), **common), log=_quiet)


def test_class_names_that_differ_follow_vals_rule(trained_tiny: Path, tmp_path: Path) -> None:
    """Weights of shapes on data of cells: the error ``singleshot val`` gives."""
    data = tmp_path / "cells"
    write_voc_devkit(data, count=2)
    for xml in (data / "Annotations").glob("*.xml"):
        text = xml.read_text()
        for shape in ("circle", "square", "triangle"):
            text = text.replace(f"<name>{shape}</name>", "<name>cell</name>")
        xml.write_text(text)
    with pytest.raises(ValueError, match=r"none of the model's classes .* of classes \['cell'\]"):
        run(AnalyzeConfig(weights=str(trained_tiny), data=str(data), project=str(tmp_path)), log=_quiet)


def test_empty_input_and_missing_flags_are_clear_errors(
    trained_tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(ValueError, match="no images to analyse"):
        analyze_detections([], [], ["a"])
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--data", str(tmp_path)])
    assert exit_info.value.code != 0
    assert "give --weights (to run them) or --predictions" in capsys.readouterr().err
    data = write_voc_devkit(tmp_path / "voc", count=2)
    (data / "ImageSets" / "Main" / "val.txt").write_text("")
    with pytest.raises(ValueError, match=r"the val split has no usable images"):
        run(AnalyzeConfig(weights=str(trained_tiny), data=str(data), project=str(tmp_path)), log=_quiet)


def test_python_api_on_hand_made_detections() -> None:
    """``analyze_detections`` on (detections, ground truths, class names), as ``evaluate_detections`` takes them:
    a perfect detector has no error of any type and AP50 100."""
    targets = [{"boxes": torch.tensor([[10.0, 10, 60, 60], [70, 70, 140, 120]]), "labels": torch.tensor([1, 2])}]
    detections = [{**targets[0], "scores": torch.tensor([0.9, 0.8])}]
    analysis = analyze_detections(detections, targets, ["a", "b"])
    assert analysis.tide.ap == pytest.approx(100.0)
    assert all(v == 0 for v in analysis.tide.counts.values())
    assert analysis.curves.area_under("all")["C75"] == pytest.approx(1.0)
    assert all(t.f1 == pytest.approx(1.0) for t in analysis.thresholds)
    assert not any("cost the most" in line for line in analysis.advice())
    assert math.isnan(analysis.tide.per_class["a"]["AP"]) is False


def test_report_opens_in_a_browser_and_matches_metrics_json(analysed, browser) -> None:
    """report.html in headless Chromium: every picture decodes, and its tables show what metrics.json holds."""
    _, result = analysed
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    browser.get(result.report.resolve().as_uri())
    images = browser.execute_script(
        "return [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}));"
    )
    assert len(images) >= 5 and all(i["ok"] for i in images), images
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0  # no network
    cells = browser.execute_script(
        "const out = {}; for (const t of document.querySelectorAll('table')) { out[t.id] = {};"
        " for (const r of t.querySelectorAll('tbody tr')) out[t.id][r.dataset.row] ="
        " [...r.querySelectorAll('td')].map(c => c.dataset.value === undefined ? c.textContent : c.dataset.value); }"
        " return out;"
    )
    tide = metrics["tide"]
    row = [float(v) for v in cells["tide-main"]["dAP"]]
    assert row == pytest.approx([tide["AP50"], *tide["main"].values(), *tide["special"].values()], abs=1e-12)
    for name, values in tide["per_class"].items():
        shown = [None if v == "null" else float(v) for v in cells["tide-class"][name]]
        assert shown == pytest.approx([values["AP"], *(values[k] for k in [*MAIN_ERRORS, "FalsePos", "FalseNeg"])])
    for area, areas in metrics["coco_curves"].items():
        assert [float(v) for v in cells["coco-areas"][area]] == pytest.approx(list(areas.values()), abs=1e-12)
    for t in metrics["thresholds"]:
        shown = cells["thresholds"][t["name"]][1]
        assert (None if shown == "null" else float(shown)) == t["threshold"]
    assert set(cells["priors"]) == set(metrics["priors"]["rows"])
