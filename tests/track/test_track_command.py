"""``singleshot track``: the run folder (annotated video, MOT text, tracks.json, counts.csv, dwell.csv, metrics.json)
on the synthetic moving-shapes sequence with its ground truth as the detector, line counts against the ground
truth's own crossings, the command line with trained weights, and bad input."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
import torch
from conftest import LoopbackStream, OracleBackend

from singleshot.cli import main
from singleshot.data.synthetic_tracks import MovingShapes, write_mot_sequence
from singleshot.predict import Detector, Result
from singleshot.predict.command import _names as predict_names
from singleshot.predict.sources import video_frames
from singleshot.predict.video import VideoWriter
from singleshot.track import Line, LineCounter, Zone, ZoneCounter
from singleshot.track.command import TrackConfig, run
from singleshot.track.outputs import sequence_name

VIDEO = MovingShapes(num_frames=90, seed=0)
LINE, ZONE = "320,0,320,480", "0,0,300,0,300,200,0,200"


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mot_sequence(VIDEO, tmp_path_factory.mktemp("mot") / "shapes")


def test_run_folder_with_perfect_detections(tmp_path: Path, sequence: Path) -> None:
    config = TrackConfig(
        "unused", str(sequence / "img1"), line=[LINE], zone=[ZONE], eval=str(sequence / "gt" / "gt.txt"),
        project=str(tmp_path), name="t",
    )  # fmt: skip
    lines: list[str] = []
    detector = Detector(OracleBackend(VIDEO), list(VIDEO.classes))  # type: ignore[arg-type]  # a Backend
    done = run(config, detector=detector, progress=False, log=lines.append)
    out = tmp_path / "t"
    assert done.frames == 90 and not done.interrupted and list(done.sequences) == ["shapes"]
    written = list(video_frames(out / "shapes.mp4"))
    assert len(written) == 90 and written[0].orig_size == (480, 640)
    frames = json.loads((out / "tracks.json").read_text())
    assert [f["frame"] for f in frames] == list(range(90)) and {f["sequence"] for f in frames} == {"shapes"}
    mot = [row.split(",") for row in (out / "shapes.txt").read_text().split()]
    listed = [(f["frame"] + 1, t["id"], t["box"][0], t["box"][1]) for f in frames for t in f["tracks"]]
    assert [(int(r[0]), int(r[1])) for r in mot] == [row[:2] for row in listed]
    assert torch.allclose(
        torch.tensor([[float(r[2]), float(r[3])] for r in mot]), torch.tensor([r[2:] for r in listed]), atol=0.01
    )
    # the line and zone counted on the ground truth's own ids and boxes
    truth_line, truth_zone = LineCounter(Line.parse(LINE), 3), ZoneCounter(Zone.parse(ZONE), 3)
    for t in range(90):
        target = VIDEO[t][1]
        truth_line.update(target["track_ids"], target["boxes"], target["labels"])
        truth_zone.update(target["track_ids"], target["boxes"], target["labels"])
    rows = list(csv.DictReader((out / "counts.csv").open()))
    assert len(rows) == 90 and truth_line.counts.sum() > 0
    last = rows[-1]
    ours = [[int(last[f"line1_{c}_{d}"]) for d in ("in", "out")] for c in VIDEO.classes]
    assert ours == truth_line.counts.tolist()
    assert [int(last[f"zone1_{c}"]) for c in VIDEO.classes] == truth_zone.inside.tolist()
    assert done.sequences["shapes"]["lines"][0] == {
        c: dict(zip(("in", "out"), truth_line.counts[i].tolist(), strict=True)) for i, c in enumerate(VIDEO.classes)
    }
    dwell = list(csv.DictReader((out / "dwell.csv").open()))
    assert sum(int(r["frames"]) for r in dwell) == sum(int(r[f"zone1_{c}"]) for r in rows for c in VIDEO.classes)
    metrics = json.loads((out / "metrics.json").read_text())
    assert done.metrics == metrics and metrics["summary"]["IDF1"] >= 0.9, metrics["summary"]
    assert any(line.startswith("against ") and "IDF1" in line for line in lines)


def test_lines_and_zones_outside_the_frame_are_refused(tmp_path: Path, sequence: Path) -> None:
    detector = Detector(OracleBackend(VIDEO), list(VIDEO.classes))  # type: ignore[arg-type]
    config = TrackConfig("unused", str(sequence / "img1"), line=["0,0,700,10"], project=str(tmp_path))
    with pytest.raises(ValueError, match=r"line 0,0,700,10: \(700, 10\) is outside the 640x480 frame"):
        run(config, detector=detector, progress=False, log=lambda s: None)


def test_command_line_with_trained_weights(tmp_path: Path, trained_tiny: Path) -> None:
    clip = tmp_path / "clip.mp4"
    small = MovingShapes(num_frames=20, size=(120, 160), num_tracks=4, seed=3, min_side=20, max_side=30, bar_width=8)
    with VideoWriter(clip, fps=small.fps) as writer:
        for image, _ in small:
            writer.write(image.permute(1, 2, 0).numpy())
    code = main([
        "track", "--weights", str(trained_tiny), "--source", str(clip), "--tracker", "ocsort", "--line", "80,0,80,120",
        "--zone", "0,0,60,0,60,60", "--project", str(tmp_path), "--name", "cli",
    ])  # fmt: skip
    out = tmp_path / "cli"
    assert code == 0 and len(list(video_frames(out / "clip.mp4"))) == 20
    frames = json.loads((out / "tracks.json").read_text())
    mot_rows = (out / "clip.txt").read_text().split()
    assert len(frames) == 20 and len(mot_rows) == sum(len(f["tracks"]) for f in frames)
    assert next(csv.reader((out / "counts.csv").open()))[:4] == ["sequence", "frame", "seconds", "line1_circle_in"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tracker", "deepsort"], "--tracker: invalid choice: 'deepsort' (choose from "),
        (["--line", "1,2,3"], "expected x1,y1,x2,y2 (4 numbers), got 3"),
        (["--zone", "0,0,10,10"], "expected at least 3 points"),
        (["--track-high", "1.5"], "tracker setting high=1.5: must be in [0, 1]"),
        (["--eval", "missing/gt.txt"], "no such MOT ground-truth file"),
    ],
)
def test_bad_flags_are_named(flags: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["track", "--weights", "w.safetensors", "--source", "clip.mp4", *flags])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_a_live_stream_killed_mid_run_ends_with_complete_files(
    tmp_path: Path, trained_tiny: Path, loopback: LoopbackStream, capsys: pytest.CaptureFixture[str]
) -> None:
    threading.Timer(4.0, loopback.stop).start()
    config = TrackConfig(
        str(trained_tiny), loopback.url, line=["0,120,320,120"], timeout=1.0, reconnect=1, project=str(tmp_path),
        name="live",
    )  # fmt: skip
    done = run(config, progress=False, log=lambda s: None)
    assert "giving up after 1 failed reconnect attempts" in capsys.readouterr().err
    name = f"udp_127.0.0.1_{loopback.port}"
    assert list(done.sequences) == [name] and done.frames >= 3 and not done.interrupted
    frames = json.loads((tmp_path / "live" / "tracks.json").read_text())
    assert len(frames) == done.frames == len(list(video_frames(tmp_path / "live" / f"{name}.mp4")))
    indices = [f["frame"] for f in frames]
    assert indices == sorted(set(indices))  # frame indices in the stream, skipped ones counted
    assert len(list(csv.reader((tmp_path / "live" / "counts.csv").open()))) == done.frames + 1


def test_a_streams_password_stays_out_of_file_names_and_predictions() -> None:
    empty = torch.zeros(0)
    url = "rtsp://admin:secret@10.0.0.7:554/stream1"
    result = Result(empty.reshape(0, 4), empty, empty.long(), names=["a"], orig_size=(1, 1), frame=3, stream=url)
    assert sequence_name(result) == "rtsp_10.0.0.7_554_stream1"
    name, stem = predict_names(result, 0)  # singleshot predict's predictions.json file_name and label stem
    assert "secret" not in name + stem and name == "rtsp://admin:***@10.0.0.7:554/stream1"
