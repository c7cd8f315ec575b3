"""`singleshot predict`: the run folder (pictures, videos, predictions.json, labels, crops), printing, and several
processes under torchrun (gloo) writing what one process writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_ranks, write_synthetic_images, write_voc_devkit
from PIL import Image

from singleshot.cli import main
from singleshot.data.synthetic import SyntheticShapes
from singleshot.evaluation.command import ValConfig
from singleshot.predict.command import PredictConfig
from singleshot.predict.command import run as predict_to_folder
from singleshot.predict.sources import video_frames
from singleshot.predict.video import VideoWriter


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three images and a 7-frame video in one folder, and a text file to skip."""
    root = tmp_path_factory.mktemp("sources")
    write_synthetic_images(root, 3, size=(120, 160), suffix=".jpg")
    frames = SyntheticShapes(7, (120, 160), seed=9)
    with VideoWriter(root / "clip.mp4", fps=15) as writer:
        for i in range(len(frames)):
            writer.write(frames[i][0].permute(1, 2, 0).numpy())
    (root / "readme.txt").write_text("skip me")
    return root


def test_run_folder(tmp_path: Path, untrained_tiny: Path, sources: Path) -> None:
    config = PredictConfig(
        str(untrained_tiny), str(sources), conf=0.05, save_txt=True, save_crop=True, project=str(tmp_path), name="p"
    )
    run = predict_to_folder(config, progress=False, log=lambda s: None)
    out = tmp_path / "p"
    assert (
        run.run_dir == out and run.images == 3 + 7 and run.skipped.skipped["not an image or video file, skipped"] == 1
    )
    for name in ("img00.jpg", "img01.jpg", "img02.jpg"):
        assert Image.open(out / name).size == (160, 120)
    written = list(video_frames(out / "clip.mp4"))
    assert len(written) == 7 and written[0].fps == 15 and written[0].orig_size == (120, 160)
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions) == run.detections > 0
    assert {p["image_id"] for p in predictions} <= set(range(10))
    assert {p["file_name"] for p in predictions} <= {"img00.jpg", "img01.jpg", "img02.jpg", "clip.mp4"}
    assert all((p["frame"] is None) == (p["file_name"] != "clip.mp4") for p in predictions)
    frames = sorted({p["frame"] for p in predictions if p["file_name"] == "clip.mp4"})
    assert frames and set(frames) <= set(range(7))
    labels = sorted(p.name for p in (out / "labels").iterdir())
    assert "img00.txt" in labels and "clip_0.txt" in labels
    lines = (out / "labels" / "img00.txt").read_text().splitlines()
    assert len(lines) == sum(p["image_id"] == 0 for p in predictions) and len(lines[0].split()) == 6
    crops = sum(len(list(d.iterdir())) for d in (out / "crops").iterdir())
    assert crops == len(predictions)


def test_command_line_prints_without_saving_and_names_bad_input(
    tmp_path: Path, untrained_tiny: Path, sources: Path, capsys: pytest.CaptureFixture
) -> None:
    code = main(["predict", "--weights", str(untrained_tiny), "--source", str(sources / "img01.jpg"), "--no-save",
                 "--conf", "0.05", "--classes", "square", "--project", str(tmp_path)])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "img01.jpg: " in out and " detections" in out and "circle" not in out.split("per image")[0]
    assert not (tmp_path / "exp").exists()
    for argv, message in (
        (["--source", str(tmp_path / "missing")], "source not found"),
        (["--source", str(sources), "--classes", "dog"], "unknown class 'dog'"),
        (["--source", str(sources), "--conf", "2"], "invalid predict config: conf=2.0"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(["predict", "--weights", str(untrained_tiny), "--project", str(tmp_path), *argv])
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def _predict_rank(rank: int, weights: str, source: str, root: str, name: str) -> None:
    config = PredictConfig(weights, source, conf=0.05, batch=1, project=root, name=name)
    run = predict_to_folder(config, progress=False, log=lambda s: None)
    if rank == 0:
        (Path(root) / f"{name}.json").write_text(json.dumps([run.images, dict(run.skipped.skipped)]))


def _val_rank(rank: int, weights: str, data: str, root: str, name: str) -> None:
    from singleshot.evaluation.command import run as validate

    validate(ValConfig(weights, data, batch=1, project=root, name=name, images=2), progress=False, log=lambda s: None)


@pytest.mark.slow
@pytest.mark.numeric
def test_two_processes_write_what_one_process_writes(tmp_path: Path, trained_tiny: Path, sources: Path) -> None:
    """One process and two, each set up as torchrun sets them up (one thread), at batch 1: every image meets the
    same kernels in both runs, so the floats, the files and the metrics are equal, not merely close (batches of
    other sizes may add in other orders)."""
    weights = str(trained_tiny)
    for world, name in ((1, "one"), (2, "ddp")):
        run_ranks(_predict_rank, world, weights, str(sources), str(tmp_path), name)
    merged, single = (json.loads((tmp_path / name / "predictions.json").read_text()) for name in ("ddp", "one"))
    assert merged == single and len(single) > 0
    # rank 0 counts each image and each skipped file once, as one process does
    assert json.loads((tmp_path / "ddp.json").read_text()) == json.loads((tmp_path / "one.json").read_text())
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())

    data = write_voc_devkit(tmp_path / "voc", count=7)
    for world, name in ((1, "one"), (2, "ddp")):
        run_ranks(_val_rank, world, weights, str(data), str(tmp_path / "val"), name)
    single = json.loads((tmp_path / "val" / "one" / "metrics.json").read_text())
    sharded = json.loads((tmp_path / "val" / "ddp" / "metrics.json").read_text())
    single.pop("timing"), sharded.pop("timing")
    assert sharded == single
    assert (tmp_path / "val" / "ddp" / "predictions.json").read_text() == (
        tmp_path / "val" / "one" / "predictions.json"
    ).read_text()
