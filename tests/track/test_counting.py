"""Line crossings and zone occupancy on hand-made tracks, and line counts on the synthetic video's ground truth
against the crossings its straight paths make."""

import pytest
import torch

from singleshot.data.synthetic_tracks import MovingShapes
from singleshot.track import Line, LineCounter, Zone, ZoneCounter


def _box(cx: float, cy: float, side: float = 10.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def _frame(*tracks: tuple[int, float, float, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(track id, centre x, centre y, label)`` per track -> ids, boxes, labels."""
    ids = torch.tensor([t[0] for t in tracks], dtype=torch.int64)
    boxes = torch.tensor([_box(t[1], t[2]) for t in tracks], dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([t[3] for t in tracks], dtype=torch.int64)
    return ids, boxes, labels


def test_crossings_by_hand() -> None:
    counter = LineCounter(Line(0, 100, 200, 100), num_classes=2, min_frames=1)  # left to right: "in" is downwards
    paths = {
        1: ([(50, 80), (50, 95), (50, 105), (50, 130)], 1),  # down through the segment: in, class 1
        2: ([(150, 130), (150, 90)], 2),  # up: out, class 2
        3: ([(250, 80), (250, 120)], 1),  # down, but beyond the segment's end: nothing
        4: ([(20, 90), (20, 100), (20, 110)], 1),  # stops on the line, then goes on: one crossing, in
        5: ([(90, 95), (90, 98), (90, 96)], 2),  # jitters on one side: nothing
        6: ([(120, 90), (120, 110), (120, 90)], 2),  # down and back up: in and out
    }
    events = []
    for t in range(4):
        alive = [(tid, *points[t], label) for tid, (points, label) in paths.items() if t < len(points)]
        events += counter.update(*_frame(*alive))
    assert sorted(events) == [(1, 1, "in"), (2, 2, "out"), (4, 1, "in"), (6, 2, "in"), (6, 2, "out")]
    assert counter.counts.tolist() == [[2, 0], [1, 2]]


def test_a_step_over_the_segment_between_frames_counts() -> None:
    counter = LineCounter(Line(100, 0, 100, 200), num_classes=1, min_frames=1)  # drawn downwards: "in" is leftwards
    counter.update(*_frame((7, 150, 50, 1)))
    assert counter.update(*_frame((7, 40, 70, 1))) == [(7, 1, "in")]  # a long step, no frame near the line


def test_a_crossing_counts_once_the_track_stays_on_the_new_side() -> None:
    counter = LineCounter(Line(0, 100, 200, 100), num_classes=1)  # min_frames 2
    # track 1 jitters across for single frames (as a box leaving the image along the line does), then crosses
    ys = [95, 103, 96, 104, 97, 105, 106, 107]
    events = [counter.update(*_frame((1, 50, y, 1))) for y in ys]
    assert events == [[], [], [], [], [], [], [(1, 1, "in")], []]  # counted on its 2nd frame below, once
    assert counter.counts.tolist() == [[1, 0]]
    with pytest.raises(ValueError, match="min_frames"):
        LineCounter(Line(0, 0, 1, 1), 1, min_frames=0)
    # a track unseen for forget_after updates is forgotten: memory stays flat on an endless stream
    forgetful = LineCounter(Line(0, 100, 200, 100), num_classes=1, forget_after=5)
    forgetful.update(*_frame((1, 50, 90, 1), (2, 60, 90, 1)))
    for _ in range(99):
        forgetful.update(*_frame((2, 60, 90, 1)))
    assert forgetful.remembered == 1


def test_zone_occupancy_and_dwell() -> None:
    zone = Zone.parse("0,0, 100,0, 100,100, 50,50, 0,100")  # concave: a notch from the bottom edge up to (50, 50)
    inside = zone.contains(torch.tensor([[10.0, 10.0], [50.0, 80.0], [90.0, 80.0], [150.0, 10.0], [50.0, 40.0]]))
    assert inside.tolist() == [True, False, True, False, True]
    counter = ZoneCounter(zone, num_classes=3)
    assert counter.update(*_frame((1, 10, 10, 1), (2, 90, 80, 3), (3, 150, 10, 3))).tolist() == [1, 0, 1]
    assert counter.update(*_frame((1, 10, 10, 1), (2, 200, 80, 3))).tolist() == [1, 0, 0]
    assert counter.dwell == {1: 2, 2: 1}
    assert counter.dwell_seconds(30.0) == pytest.approx({1: 2 / 30, 2: 1 / 30})
    counter.update(*_frame((1, 10, 10, 1)), frames=3)  # 3 frames after the previous one (2 skipped): 3 more inside
    assert counter.dwell == {1: 5, 2: 1}


def test_bad_lines_and_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="4 numbers"):
        Line.parse("1,2,3")
    with pytest.raises(ValueError, match="same point"):
        Line.parse("5,5,5,5")
    with pytest.raises(ValueError, match="comma-separated"):
        Line.parse("a,b,c,d")
    with pytest.raises(ValueError, match="outside the 640x480 frame"):
        Line.parse("0,0,700,10").check_inside(640, 480)
    with pytest.raises(ValueError, match="at least 3 points"):
        Zone.parse("0,0,10,10")
    with pytest.raises(ValueError, match=r"zone 0,0,10,0,10,500: \(10, 500\) is outside"):
        Zone.parse("0,0,10,0,10,500").check_inside(640, 480)
    Line.parse("0,240,640,240").check_inside(640, 480)  # on the border is inside


def test_line_counts_on_the_synthetic_ground_truth_equal_the_paths_crossings() -> None:
    video = MovingShapes(num_frames=200, num_tracks=12, seed=4)
    h = video.size[0]
    x = float(video.bar[0] + video.bar[1] + 60)  # a full-height line right of the bar
    counter = LineCounter(Line(x, 0, x, h), num_classes=3)
    seen: dict[int, list[float]] = {}
    for t in range(len(video)):
        _, target = video[t]
        counter.update(target["track_ids"], target["boxes"], target["labels"])
        for tid, cx in zip(
            target["track_ids"].tolist(), ((target["boxes"][:, 0] + target["boxes"][:, 2]) / 2).tolist(), strict=True
        ):
            seen.setdefault(tid, []).append(cx)
    # straight paths: a track crosses once when its first and last centres in view lie on either side
    expected = torch.zeros(3, 2, dtype=torch.int64)
    for tid, xs in seen.items():
        if (xs[0] - x) * (xs[-1] - x) < 0:
            expected[video.tracks[tid - 1].label - 1, 0 if xs[-1] < x else 1] += 1  # drawn downwards: in is leftwards
    assert expected.sum() >= 2 and torch.equal(counter.counts, expected)
