"""Sliced inference: the tile geometry, merging across tiles (NMS and NMM), a single tile equal to unsliced
prediction, tiles batched through the forward pass, and ONNX Runtime equal to PyTorch."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from conftest import assert_same_detections

import singleshot
from singleshot.data.synthetic import SyntheticShapes
from singleshot.export import export_onnx
from singleshot.predict import Detector
from singleshot.predict.command import PredictConfig
from singleshot.predict.slicing import SliceSettings, merge_tiles, tile_grid, windows_of


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap"), [(480, 640, 200, 0.2), (1080, 1920, 640, 0.25), (100, 333, 64, 0)]
)
def test_tiles_cover_the_image_overlap_as_asked_and_end_flush(h: int, w: int, tile: int, overlap: float) -> None:
    windows = tile_grid(h, w, SliceSettings((tile, tile), overlap))
    covered = torch.zeros(h, w, dtype=torch.bool)
    for x0, y0, x1, y1 in windows.tolist():
        assert (x1 - x0, y1 - y0) == (tile, tile)  # every tile full-size when the image is larger
        covered[y0:y1, x0:x1] = True
    assert bool(covered.all())
    xs, ys = sorted({x for x, *_ in windows.tolist()}), sorted({y for _, y, *_ in windows.tolist()})
    assert xs[0] == 0 and xs[-1] + tile == w and ys[0] == 0 and ys[-1] + tile == h  # flush with the borders
    for starts in (xs, ys):
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(tile - g >= overlap * tile - 1 for g in gaps)  # neighbours overlap at least as asked
        assert all(g >= 1 for g in gaps)
    assert len(windows) == len(xs) * len(ys)


def test_a_slice_larger_than_the_image_is_one_tile_and_bad_overlap_is_an_error() -> None:
    assert tile_grid(100, 150, SliceSettings((640, 640))).tolist() == [[0, 0, 150, 100]]
    assert windows_of(100, 150, SliceSettings((640, 640), full_image=True)).tolist() == [[0, 0, 150, 100]]
    assert windows_of(400, 400, SliceSettings((300, 300), 0.0)).tolist()[-1] == [0, 0, 400, 400]  # the whole image last
    for overlap in (-0.1, 0.95):
        with pytest.raises(ValueError, match=r"overlap=.* must be in \[0, 0\.9\]"):
            SliceSettings((64, 64), overlap)
    with pytest.raises(ValueError, match="must be 'nms' or 'nmm'"):
        SliceSettings((64, 64), merge="wbf")  # type: ignore[arg-type]  # the bad value under test
    assert "overlap=1.5" in " ".join(PredictConfig("w", "s", slice=64, overlap=1.5).problems())


def test_an_object_seen_by_two_tiles_comes_out_once() -> None:
    # tile 0 sees the whole object [90, 10, 130, 50]; tile 1 sees its right part, cut at x = 100
    boxes = torch.tensor([[90.0, 10, 130, 50], [100.0, 10, 130, 50], [300.0, 300, 320, 320], [90.0, 10, 125, 50]])
    scores = torch.tensor([0.8, 0.9, 0.7, 0.6])
    labels = torch.tensor([1, 1, 1, 2])
    sources = torch.tensor([0, 1, 1, 1])
    nms = merge_tiles(boxes, scores, labels, sources, "nms", 100)
    assert nms["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])  # the part box won; another class is kept
    assert nms["boxes"][0].tolist() == [100.0, 10, 130, 50]
    nmm = merge_tiles(boxes, scores, labels, sources, "nmm", 100)
    assert nmm["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert nmm["boxes"][0].tolist() == [90.0, 10, 130, 50]  # the union of the two, the higher score kept
    # detections of one tile never suppress each other
    same = merge_tiles(boxes[:2], scores[:2], labels[:2], torch.tensor([3, 3]), "nms", 100)
    assert len(same["scores"]) == 2
    assert len(merge_tiles(boxes, scores, labels, sources, "nms", 2)["scores"]) == 2  # max_det


@pytest.fixture(scope="module")
def detector() -> Detector:
    torch.manual_seed(0)
    return Detector(singleshot.models.build("ssd_tiny160", 3), list(SyntheticShapes.classes))


@pytest.mark.numeric
def test_a_single_tile_equals_unsliced_prediction(detector: Detector) -> None:
    image = SyntheticShapes(1, (150, 200), seed=3)[0][0]
    (plain,) = detector.predict(image, conf=0.01, max_det=300)
    for full_image in (True, False):
        (sliced,) = detector.predict(image, conf=0.01, max_det=300, slice=640, full_image=full_image)
        assert len(plain) > 0 and sliced.speed["tiles"] == 1
        for k in ("boxes", "scores", "labels"):
            assert torch.equal(getattr(sliced, k), getattr(plain, k)), k


class _Counting:
    """A backend wrapper that counts forward passes and the images in each."""

    def __init__(self, backend: object) -> None:
        self.inner, self.batches = backend, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def infer(self, batch: torch.Tensor) -> object:
        self.batches.append(int(batch.shape[0]))
        return self.inner.infer(batch)  # type: ignore[attr-defined]  # the wrapped backend's


def test_tiles_are_batched_through_the_forward_pass(detector: Detector) -> None:
    counting = _Counting(detector.backend)
    wrapped = Detector(counting, detector.names)  # type: ignore[arg-type]  # a backend in all but name
    image = SyntheticShapes(1, (400, 600), seed=5)[0][0]
    (result,) = wrapped.predict(image, slice=200, overlap=0.2, batch=4)
    windows = len(windows_of(400, 600, SliceSettings((200, 200), 0.2)))
    assert result.speed["tiles"] == windows == 3 * 4 + 1  # 3 rows x 4 columns of tiles, and the whole image
    assert counting.batches == [4, 4, 4, 1]  # one forward pass per batch of tiles


@pytest.mark.numeric
def test_onnx_gives_the_same_sliced_detections(trained_tiny: Path, tmp_path: Path) -> None:
    reference = singleshot.load(trained_tiny, device="cpu", backend="pytorch", precision="fp32")
    exported = singleshot.load(export_onnx(reference.model, reference.names, tmp_path / "tiny.onnx"))
    image = SyntheticShapes(1, (320, 480), seed=9)[0][0]
    for merge in ("nms", "nmm"):
        (ours,) = exported.predict(image, conf=0.05, slice=160, overlap=0.25, merge=merge)
        (want,) = reference.predict(image, conf=0.05, slice=160, overlap=0.25, merge=merge)
        assert len(want) >= 2
        assert_same_detections(
            {"boxes": ours.boxes, "scores": ours.scores, "labels": ours.labels},
            {"boxes": want.boxes, "scores": want.scores, "labels": want.labels},
        )
