"""Tracking by detection (``predict.tracking``, ``Detector.track``): the tracker settings, our wrapper around the
``trackers`` package (indices back to the detections, ids from 1, frame times), and whole-video tracking on the
synthetic moving shapes with their ground truth as the detector (an oracle), scored by the established evaluator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import OracleBackend
from torch import Tensor

from singleshot.data.synthetic_tracks import MovingShapes, mot_rows
from singleshot.predict import Detector, Result
from singleshot.predict.tracking import PAPER_DEFAULTS, TRACKERS, Tracker, TrackerSettings, continues
from singleshot.track.scoring import score_mot


def _mot_file(results: list[Result], path: Path) -> Path:
    rows = [
        f"{k + 1},{tid},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},1,-1,-1,-1"
        for k, r in enumerate(results)
        for tid, (x1, y1, x2, y2) in zip(r.track_ids.tolist(), r.boxes.tolist(), strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_settings_take_each_papers_defaults_and_refuse_nonsense() -> None:
    assert set(TRACKERS) == set(PAPER_DEFAULTS) == {"bytetrack", "sort", "ocsort"}
    byte = TrackerSettings().resolved()
    assert (byte.low, byte.high, byte.new_track, byte.match_iou, byte.buffer) == (0.1, 0.6, 0.7, 0.2, 30)
    assert TrackerSettings("ocsort", match_iou=0.5).resolved().match_iou == 0.5  # a given value wins
    with pytest.raises(ValueError, match="unknown tracker 'deepsort'; choose one of bytetrack, sort, ocsort"):
        TrackerSettings("deepsort").resolved()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"high=1\.5"):
        TrackerSettings(high=1.5).resolved()
    with pytest.raises(ValueError, match=r"low=0\.7 above high=0\.6"):
        TrackerSettings(low=0.7).resolved()
    with pytest.raises(ValueError, match="frame rate"):
        Tracker("sort", fps=0)


def _det(boxes: list[list[float]], scores: list[float] | None = None) -> dict[str, Tensor]:
    n = len(boxes)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores or [0.9] * n),
        "labels": torch.ones(n, dtype=torch.int64),
    }


@pytest.mark.parametrize("kind", TRACKERS)
def test_ids_follow_objects_whatever_the_order_of_detections(kind: str) -> None:
    tracker = Tracker(kind)
    ids_of: dict[int, set[int]] = {0: set(), 1: set()}
    for t in range(12):
        a, b = [10.0 + 4 * t, 10, 50 + 4 * t, 50], [300.0 - 4 * t, 200, 340 - 4 * t, 240]
        order = [0, 1] if t % 2 else [1, 0]  # the detector lists them in alternating order
        kept, ids = tracker.update(_det([[a, b][k] for k in order]), t / 30)
        assert kept.tolist() == sorted(kept.tolist())  # in the detections' order
        for k, tid in zip(kept.tolist(), ids.tolist(), strict=True):
            ids_of[order[k]].add(tid)
        assert set(ids.tolist()) <= tracker.alive()
    assert all(len(s) == 1 for s in ids_of.values()) and ids_of[0] != ids_of[1]  # one id each, both from 1 up
    assert min(ids_of[0] | ids_of[1]) >= 1 and tracker.ms > 0


def test_frame_times_carry_a_track_over_skipped_frames() -> None:
    # a box moving 6 px a frame, seen every 4th frame (as a slow model sees a live stream): one id throughout
    tracker = Tracker(TrackerSettings("bytetrack", min_frames=2))
    ids = []
    for t in range(0, 60, 4):
        ids.append(tracker.update(_det([[6.0 * t, 100, 6.0 * t + 40, 140]]), t / 30)[1].tolist())
    assert ids[0] == [] and ids[1:] == [[1]] * (len(ids) - 1)


def test_low_scoring_detections_only_extend_tracks_in_bytetrack() -> None:
    tracker = Tracker("bytetrack")
    box = [[100.0, 100, 140, 140]]
    assert tracker.update(_det(box, [0.3]), 0.0)[0].numel() == 0  # below new_track 0.7: no track is born
    tracker.update(_det(box, [0.9]), 1 / 30)
    ids = tracker.update(_det(box, [0.9]), 2 / 30)[1]
    assert ids.tolist() == [1]
    assert tracker.update(_det(box, [0.3]), 3 / 30)[1].tolist() == [1]  # low score, matched in the second round


def test_sequences() -> None:
    def r(path: str | None, frame: int | None, stream: str | None = None) -> Result:
        empty = torch.zeros(0)
        return Result(empty.reshape(0, 4), empty, empty.long(), names=["a"], orig_size=(1, 1),
                      path=Path(path) if path else None, frame=frame, stream=stream)  # fmt: skip

    assert not continues(None, r("a.mp4", 0))
    assert continues(r("a.mp4", 0), r("a.mp4", 1)) and not continues(r("a.mp4", 5), r("a.mp4", 0))
    assert not continues(r("a.mp4", 5), r("b.mp4", 6)) and not continues(r("a.jpg", None), r("a.mp4", 0))
    assert continues(r("a.jpg", None), r("b.jpg", None)) and continues(r(None, 3, "udp://x"), r(None, 9, "udp://x"))


def test_the_synthetic_video_with_perfect_detections(tmp_path: Path) -> None:
    video = MovingShapes(num_frames=150, seed=0)
    detector = Detector(OracleBackend(video), list(video.classes))  # type: ignore[arg-type]  # a Backend
    frames = [video[t][0] for t in range(len(video))]
    results = detector.track(frames, tracker="bytetrack", batch=4)
    assert len(results) == len(video) and all(r.track_ids is not None for r in results)
    assert all(r.speed["track"] >= 0 for r in results)
    listed = results[50].to_dict()["detections"]
    assert [d["track_id"] for d in listed] == results[50].track_ids.tolist() and len(listed) > 0
    gt = tmp_path / "gt.txt"
    gt.write_text("\n".join(mot_rows(video)) + "\n")
    s = score_mot(gt, _mot_file(results, tmp_path / "ours.txt"))["summary"]
    assert s["IDF1"] >= 0.9 and s["MOTA"] >= 0.9 and s["IDSW"] <= 2, s
    # against ground truth, every confirmed id belongs to one object: no id is shared by two objects
    owner: dict[int, set[int]] = {}
    for t, r in enumerate(results):
        truth = video[t][1]
        for tid, box in zip(r.track_ids.tolist(), r.boxes, strict=True):
            k = int((truth["boxes"] - box).abs().sum(1).argmin())
            owner.setdefault(tid, set()).add(int(truth["track_ids"][k]))
    assert all(len(objects) == 1 for objects in owner.values()), owner
