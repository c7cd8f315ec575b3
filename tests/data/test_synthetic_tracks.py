"""The synthetic tracking video: ground truth that follows the drawn shapes, with entries, exits, crossings and
occlusion behind the bar, written as a MOT Challenge sequence."""

from itertools import pairwise
from pathlib import Path

import pytest
import torch

from singleshot.data.synthetic_tracks import MIN_VISIBLE, MovingShapes, mot_rows, write_mot_sequence

VIDEO = MovingShapes(num_frames=150, size=(240, 320), num_tracks=9, seed=3, min_side=20, max_side=40, bar_width=30)


def _frames_of(video: MovingShapes) -> dict[int, list[int]]:
    """Per track id, the frames where the ground truth has it."""
    seen: dict[int, list[int]] = {}
    for t in range(len(video)):
        for tid in video[t][1]["track_ids"].tolist():
            seen.setdefault(tid, []).append(t)
    return seen


def test_ground_truth_boxes_are_the_tracks_boxes_clipped() -> None:
    h, w = VIDEO.size
    for t in (0, 40, 100):
        _, target = VIDEO[t]
        assert len(set(target["track_ids"].tolist())) == len(target["track_ids"])  # one box per id
        for box, tid, label, vis in zip(
            target["boxes"], target["track_ids"], target["labels"], target["visibility"], strict=True
        ):
            track = VIDEO.tracks[int(tid) - 1]
            full = torch.tensor(track.box(t))
            clipped = torch.stack((full[0].clamp(0, w), full[1].clamp(0, h), full[2].clamp(0, w), full[3].clamp(0, h)))
            torch.testing.assert_close(box, clipped)
            assert int(label) == track.label and float(vis) >= MIN_VISIBLE


def test_tracks_enter_leave_and_hide_behind_the_bar() -> None:
    seen = _frames_of(VIDEO)
    assert any(frames[0] > 0 for frames in seen.values())  # entering after the start
    assert any(frames[-1] < len(VIDEO) - 1 for frames in seen.values())  # leaving before the end
    gaps = [tid for tid, frames in seen.items() if any(b - a > 1 for a, b in pairwise(frames))]
    assert gaps  # a track missing for a few frames (behind the bar) comes back under the same id
    bar_x, bar_w = VIDEO.bar
    for tid in gaps:
        frames = seen[tid]
        a = next(a for a, b in pairwise(frames) if b - a > 1)
        x1, _, x2, _ = VIDEO.tracks[tid - 1].box(a + 1)
        assert min(x2, bar_x + bar_w) - max(x1, bar_x) > 0  # hidden where it meets the bar


def test_paths_cross() -> None:
    crossings = 0
    for t in range(len(VIDEO)):
        boxes = VIDEO[t][1]["boxes"]
        lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
        rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
        crossings += int(((rb - lt).clamp(min=0).prod(-1) > 0).sum() - len(boxes))
    assert crossings > 0


def test_a_shape_is_drawn_where_its_box_is() -> None:
    """The centre pixel of a shape inside the frame, away from the shapes drawn over it and from the bar, has the
    shape's colour (the centre of a circle, square or triangle's box lies inside the shape)."""
    bar_x, bar_w = VIDEO.bar
    checked = 0
    for t in range(0, len(VIDEO), 5):
        image, target = VIDEO[t]
        for box, tid in zip(target["boxes"].tolist(), target["track_ids"].tolist(), strict=True):
            track = VIDEO.tracks[tid - 1]
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            others = [later.box(t) for later in VIDEO.tracks[tid:] if later.start <= t < later.end]  # drawn over it
            clear = all(not (b[0] <= cx <= b[2] and b[1] <= cy <= b[3]) for b in others)
            inside = torch.allclose(torch.tensor(box), torch.tensor(track.box(t)), atol=1e-3)
            if not clear or not inside or bar_x - 2 <= cx <= bar_x + bar_w + 2:
                continue
            assert tuple(image[:, int(cy), int(cx)].tolist()) == track.colour
            checked += 1
    assert checked >= 20


def test_the_same_seed_gives_the_same_video() -> None:
    again = MovingShapes(num_frames=150, size=(240, 320), num_tracks=9, seed=3, min_side=20, max_side=40, bar_width=30)
    for t in (0, 77):
        assert torch.equal(VIDEO[t][0], again[t][0])
        assert torch.equal(VIDEO[t][1]["boxes"], again[t][1]["boxes"])
    with pytest.raises(ValueError, match="sides"):
        MovingShapes(size=(100, 100), max_side=60)
    with pytest.raises(IndexError):
        VIDEO[150]


def test_mot_sequence_files(tmp_path: Path) -> None:
    video = MovingShapes(num_frames=12, size=(120, 160), num_tracks=4, seed=1, min_side=16, max_side=24, bar_width=10)
    folder = write_mot_sequence(video, tmp_path / "seq", name="tiny")
    assert sorted(p.name for p in (folder / "img1").iterdir()) == [f"{t:06d}.jpg" for t in range(1, 13)]
    rows = (folder / "gt" / "gt.txt").read_text().split()
    assert rows == mot_rows(video) and len(rows) == sum(len(video[t][1]["boxes"]) for t in range(12))
    frame, tid, x, y, w, h, conf, label, vis = rows[0].split(",")
    assert float(vis) >= MIN_VISIBLE
    _, first = video[int(frame) - 1]
    k = first["track_ids"].tolist().index(int(tid))
    x1, y1, x2, y2 = first["boxes"][k].tolist()
    assert (float(x), float(y), float(w), float(h)) == pytest.approx((x1, y1, x2 - x1, y2 - y1), abs=0.01)
    assert conf == "1" and label == "1"  # MOT17's scored class, for every object
    ini = (folder / "seqinfo.ini").read_text()
    assert "seqLength=12" in ini and "imWidth=160" in ini and "imHeight=120" in ini and "frameRate=30" in ini
