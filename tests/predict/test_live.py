"""Live sources: the newest frame of a real H.264 stream on the loopback interface (its index read back from the
pixels, so a frame's age is measured, not assumed), drops, reconnects and giving up, unreachable sources, and
`singleshot predict` on a stream, killed mid-run or stopped by Ctrl-C."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from conftest import LoopbackStream, free_port, free_udp_port, read_index

from singleshot.cli import main
from singleshot.predict.command import PredictConfig
from singleshot.predict.command import run as predict_to_folder
from singleshot.predict.frame import Frame, SourceReport
from singleshot.predict.live import (
    SKIPPED,
    LiveReader,
    LiveSettings,
    LiveSourceError,
    address,
    is_live,
    safe_name,
    shown,
)
from singleshot.predict.sources import batches, expand, frames
from singleshot.predict.video import VideoWriter


def _video_times(path: Path) -> list[float]:
    """The presentation time in seconds of each frame of the video at ``path``, decoded."""
    with av.open(str(path)) as container:
        return [float(f.time) for f in container.decode(video=0)]


# -- recognising live sources -------------------------------------------------------------------------------------
def test_live_sources_are_recognised_named_and_kept_before_the_file_checks(tmp_path: Path) -> None:
    live = ["0", 3, "/dev/video2", Path("/dev/video1"), "rtsp://cam/1", "RTSP://cam/1", "rtmps://h/app"]
    live += ["udp://127.0.0.1:5000", "tcp://h:1", "srt://h:1", "http://h/mjpg", "https://h/live.m3u8"]
    for source in live:
        assert is_live(source), source
    for source in ("clip.mp4", "file:///tmp/a.mp4", "ftp://h/a.mp4", "photos/", Path("0.jpg"), True, -1, 0.5, None):
        assert not is_live(source), source
    assert address("3") == ("/dev/video3", "v4l2") and address("/dev/video1") == ("/dev/video1", "v4l2")
    assert address("rtsp://cam/1") == ("rtsp://cam/1", None)
    assert safe_name("0") == "webcam0" and safe_name("/dev/video2") == "video2"
    assert safe_name("udp://127.0.0.1:5000") == "udp_127.0.0.1_5000"
    assert safe_name("rtsp://admin:secret@cam.local:554/live/ch1?token=x") == "rtsp_cam.local_554_live_ch1"
    assert shown("rtsp://admin:secret@cam.local/x") == "rtsp://admin:***@cam.local/x"
    (tmp_path / "0").write_text("a file named 0")  # a webcam index, whatever the folder holds
    report = SourceReport()
    assert expand(["0", 1, "udp://127.0.0.1:5000"], report) == ["0", "1", "udp://127.0.0.1:5000"]
    assert not report.skipped


def test_settings_are_checked() -> None:
    for kwargs in ({"timeout": 0}, {"timeout": -1.0}, {"reconnect": -1}):
        with pytest.raises(ValueError, match=r"invalid live source settings: (timeout|reconnect)="):
            LiveSettings(**kwargs)
    with pytest.raises(ValueError, match=r"timeout=0.0 \(seconds.*reconnect=-2"):
        PredictConfig("w.safetensors", "0", timeout=0.0, reconnect=-2).validate()


def test_live_frames_are_never_held_back_to_fill_a_batch() -> None:
    image = torch.zeros(3, 4, 4, dtype=torch.uint8)
    files = [Frame(image, (4, 4), Path(f"{i}.jpg")) for i in range(5)]
    live = [Frame(image, (4, 4), frame=i, stream="0") for i in range(3)]
    chunks = list(batches(iter([*files[:3], *live[:2], *files[3:], live[2]]), 2))
    assert [[f.frame if f.stream else f.path.name for f in c] for c in chunks] == [  # type: ignore[union-attr]
        ["0.jpg", "1.jpg"], ["2.jpg"], [0], [1], ["3.jpg", "4.jpg"], [2],
    ]  # fmt: skip


def test_source_report_counts_several_at_once() -> None:
    report = SourceReport()
    report.add(SKIPPED, "udp://a", 40)
    report.add(SKIPPED, "udp://a", 2)
    report.add("image skipped: truncated", Path("x.jpg"))
    assert report.skipped[SKIPPED] == 42 and report.examples[SKIPPED] == ["udp://a"]
    assert report.lines()[0] == f"    42  {SKIPPED}: udp://a"


def test_video_writer_takes_timestamps_counted_from_the_first(tmp_path: Path) -> None:
    frame = np.zeros((32, 48, 3), np.uint8)
    with VideoWriter(tmp_path / "live.mp4", fps=10) as writer:
        for pts in (57, 59, 59, 64, 60):  # a repeat and a step back are moved to one after the previous
            writer.write(frame, pts)
    assert [round(t * 10) for t in _video_times(tmp_path / "live.mp4")] == [0, 2, 3, 7, 8]
    with VideoWriter(tmp_path / "file.mp4", fps=10) as writer:
        for _ in range(3):
            writer.write(frame)
    assert [round(t * 10) for t in _video_times(tmp_path / "file.mp4")] == [0, 1, 2]


# -- the newest frame ---------------------------------------------------------------------------------------------
def _read_for(reader: LiveReader, stream: LoopbackStream, seconds: float, work: float) -> list[tuple[int, int, int]]:
    """Iterate ``reader`` for ``seconds``, spending ``work`` seconds on each frame; per frame: (the sender's index at
    processing start, the index drawn in the frame, the reader's index)."""
    seen = []
    end = time.monotonic() + seconds
    for frame in reader:
        seen.append((stream.now(), read_index(frame.image), frame.frame))
        assert frame.path is None and frame.stream == stream.url and frame.fps == 30 and frame.captured is not None
        time.sleep(work)
        if time.monotonic() > end:
            break
    return seen


def test_a_slow_consumer_always_gets_the_newest_frame(loopback: LoopbackStream) -> None:
    """A consumer slower than the stream (0.18 s per frame for a 30 FPS stream) gets the frame being sent, not a
    queued one: the sender's clock is at most 2 frames ahead of the frame it gets (MPEG-TS's H.264 parser holds a
    frame until the next one starts, and the sender may have sent one more since), while a queue would fall ~4.4
    frames further behind with each frame. The frames it had no time for are counted as skipped."""
    with LiveReader(loopback.url, LiveSettings(timeout=5, reconnect=0)) as reader:
        seen = _read_for(reader, loopback, 3.0, 0.18)
    stats = reader.stats
    ages = [now - drawn for now, drawn, _ in seen]
    assert len(seen) >= 8 and max(ages) <= 2, f"frame ages {ages} (max {max(ages)}) over {len(seen)} frames"
    drawn, counted = [d for _, d, _ in seen], [c for _, _, c in seen]
    assert all(b > a for a, b in itertools.pairwise(counted)), counted
    # the reader's index counts every frame of the stream, skipped ones too: as many as the sender sent in between
    sent = loopback.sent
    assert [sum(drawn[0] < s <= d for s in sent) for d in drawn] == [c - counted[0] for c in counted]
    assert stats.skipped > 2 * len(seen) and stats.decoded == stats.delivered + stats.skipped
    assert stats.delivered == len(seen) and stats.drops == 0 and loopback.error is None


def test_a_consumer_as_fast_as_the_stream_skips_almost_nothing(loopback: LoopbackStream) -> None:
    with LiveReader(loopback.url, LiveSettings(timeout=5, reconnect=0)) as reader:
        seen = _read_for(reader, loopback, 2.0, 0.0)
    stats = reader.stats
    assert len(seen) >= 40 and stats.decoded == stats.delivered + stats.skipped
    assert stats.skipped <= max(2, stats.decoded // 20), stats
    assert max(now - drawn for now, drawn, _ in seen) <= 2


# -- drops ----------------------------------------------------------------------------------------------------------
def test_a_dropped_stream_is_reopened_and_after_failed_attempts_ends_cleanly() -> None:
    """The sender stops; the reader logs the drop, reopens the stream when a new sender is back on the port (its
    frames numbered on), and when that one stops too and stays away, logs 2 attempts (0.5 s, 1 s) and ends its
    frames without an error, within about the timeouts."""
    lines: list[str] = []
    dropped, reconnected, enough = threading.Event(), threading.Event(), threading.Event()

    def log(line: str) -> None:
        lines.append(line)
        (reconnected if line.endswith("reconnected") else dropped).set()

    first = LoopbackStream()
    senders = [first]
    killed: list[float] = []

    def director() -> None:  # what happens to the stream while the main thread reads it
        time.sleep(1.0)
        first.stop()
        if dropped.wait(10):
            senders.append(LoopbackStream(port=first.port))
            enough.wait(10)  # 10 frames of the second sender read
            senders[-1].stop()
            killed.append(time.monotonic())

    events = threading.Thread(target=director, daemon=True)
    seen: list[tuple[int, int | None]] = []
    second = 0  # frames read from the second sender
    try:
        with LiveReader(first.url, LiveSettings(timeout=1.0, reconnect=2), log=log) as reader:
            events.start()
            for f in reader:
                seen.append((read_index(f.image), f.frame))
                second += reconnected.is_set()
                if second >= 10:
                    enough.set()
            ended = time.monotonic()
    finally:
        for sender in senders:
            sender.stop()
    events.join(5)
    assert killed and len(senders) == 2, lines
    stats = reader.stats
    assert stats.drops == 2 and stats.reconnects == 1, (stats, lines)
    drawn, counted = [d for d, _ in seen], [c for _, c in seen]
    restart = next(i for i in range(1, len(drawn)) if drawn[i] < drawn[i - 1])  # the second sender counts from 0
    assert restart > 10 and len(drawn) - restart > 10, drawn
    assert all(b > a for a, b in itertools.pairwise(counted)), counted
    name = shown(first.url)
    assert lines == [
        f"stream {name} dropped (nothing received for 1 s); reconnecting in 0.5 s (attempt 1 of 2)",
        f"stream {name} reconnected",
        f"stream {name} dropped (nothing received for 1 s); reconnecting in 0.5 s (attempt 1 of 2)",
        f"stream {name} dropped (nothing received within 1 s); reconnecting in 1 s (attempt 2 of 2)",
        f"stream {name}: giving up after 2 failed reconnect attempts (nothing received within 1 s)",
    ], lines
    # read timeout 1 s, then 0.5 s + an open timing out at 1 s, 1 s + another: 4.5 s, and some slack
    assert ended - killed[0] < 7.5, ended - killed[0]
    assert not reader._thread.is_alive()


def test_predict_on_a_stream_killed_mid_run_writes_complete_outputs(
    tmp_path: Path, untrained_tiny: Path, loopback: LoopbackStream, capsys: pytest.CaptureFixture
) -> None:
    threading.Timer(4.0, loopback.stop).start()  # some 2 s after the stream is open (the model loads meanwhile)
    config = PredictConfig(
        str(untrained_tiny), loopback.url, conf=0.01, timeout=1.0, reconnect=1, batch=4, save_txt=True,
        project=str(tmp_path), name="live",
    )  # fmt: skip
    lines: list[str] = []
    run = predict_to_folder(config, progress=False, log=lines.append)
    err = capsys.readouterr().err
    assert "giving up after 1 failed reconnect attempts" in err, err
    assert run.images >= 3 and not run.interrupted, lines  # 3: another process may load the 2 cores heavily
    times = _video_times(tmp_path / "live" / f"udp_127.0.0.1_{loopback.port}.mp4")
    assert len(times) == run.images
    predictions = json.loads((tmp_path / "live" / "predictions.json").read_text())
    assert len(predictions) == run.detections > 0 and {p["file_name"] for p in predictions} == {loopback.url}
    labelled = sorted(int(p.stem.rsplit("_", 1)[1]) for p in (tmp_path / "live" / "labels").iterdir())
    assert len(labelled) == run.images and labelled == sorted(set(labelled))
    # each frame at its index in the stream: the video lasts as long as the stream it shows
    assert [round(t * 30) for t in times] == [i - labelled[0] for i in labelled]
    summary = next(line for line in lines if "images/frames" in line)
    skipped = run.skipped.skipped.get(SKIPPED, 0)
    assert summary.startswith(f"{run.images} images/frames")
    assert (f"({skipped} live frames skipped: the model was slower than the stream)" in summary) == (skipped > 0)


# -- failures at the start ------------------------------------------------------------------------------------------
def test_unreachable_sources_fail_with_a_clear_error_within_the_timeout(
    tmp_path: Path, untrained_tiny: Path, capsys: pytest.CaptureFixture
) -> None:
    silent = f"udp://127.0.0.1:{free_udp_port()}"
    start = time.monotonic()
    with pytest.raises(LiveSourceError, match=f"live source {silent}: cannot open it \\(nothing received within 1 s"):
        LiveReader(silent, LiveSettings(timeout=1.0))
    assert time.monotonic() - start < 4
    closed = f"rtsp://127.0.0.1:{free_port()}/live"
    with pytest.raises(ValueError, match=f"live source {closed}: cannot open it \\(Connection refused"):
        LiveReader(closed, LiveSettings(timeout=1.0))
    with pytest.raises(LiveSourceError, match="live source /dev/video97: cannot open it \\(No such file"):
        LiveReader("/dev/video97")
    with pytest.raises(LiveSourceError, match=r"live source 97 \(/dev/video97\): cannot open it"):
        next(frames(["97"], None, 1, SourceReport(), LiveSettings(timeout=1.0)))
    start = time.monotonic()
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "predict",
                "--weights",
                str(untrained_tiny),
                "--source",
                silent,
                "--timeout",
                "1",
                "--project",
                str(tmp_path),
            ]
        )
    assert exc.value.code == 2 and time.monotonic() - start < 10
    assert f"singleshot predict: error: live source {silent}: cannot open it" in capsys.readouterr().err


# -- Ctrl-C ---------------------------------------------------------------------------------------------------------
def test_ctrl_c_ends_a_live_run_with_status_130_and_complete_outputs(
    tmp_path: Path, untrained_tiny: Path, loopback: LoopbackStream
) -> None:
    flags = ["--conf", "0.01", "--timeout", "5", "--save-txt", "--project", str(tmp_path), "--name", "live"]
    command = [
        sys.executable,
        "-m",
        "singleshot.cli",
        "predict",
        "--weights",
        str(untrained_tiny),
        "--source",
        loopback.url,
    ]
    command += flags
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    video, labels = tmp_path / "live" / f"udp_127.0.0.1_{loopback.port}.mp4", tmp_path / "live" / "labels"
    try:
        deadline = time.monotonic() + 90
        while process.poll() is None and time.monotonic() < deadline:
            if labels.is_dir() and len(list(labels.iterdir())) >= 5:  # 5 frames predicted and written
                break
            time.sleep(0.1)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "singleshot predict: interrupted (Ctrl-C) after " in err, err
    summary = next(line for line in out.splitlines() if "images/frames" in line)
    images = int(summary.split()[0])
    times = _video_times(video)
    # a Ctrl-C between a frame's encoding and its muxing loses that one frame from the video, nothing else
    assert images >= 5 and images - 1 <= len(times) <= images, (images, len(times), out, err)
    assert images - 1 <= len(list(labels.iterdir())) <= images
    predictions = json.loads((tmp_path / "live" / "predictions.json").read_text())
    assert predictions and {p["file_name"] for p in predictions} == {loopback.url}
    assert len({p["frame"] for p in predictions}) <= images
