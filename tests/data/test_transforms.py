"""Augmentation presets: boxes follow the pixels, seeding is reproducible and private, eval at size is identity."""

from __future__ import annotations

import torch

from singleshot.data.transforms import MIN_VISIBLE, OBJECT_BIAS, TiledTransform, build_transforms, seeded, tile_crop


def _sample() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    image = torch.zeros(3, 100, 200, dtype=torch.uint8)
    image[:, 20:60, 40:120] = 255  # a white box exactly where the target says
    target = {
        "boxes": torch.tensor([[40.0, 20.0, 120.0, 60.0]]),
        "labels": torch.tensor([1]),
        "difficult": torch.tensor([False]),
    }
    return image, target


def test_eval_resize_scales_boxes_with_pixels() -> None:
    image, target = _sample()
    out, t = build_transforms("eval", (50, 100))(image, target)
    assert out.shape == (3, 50, 100)
    assert torch.allclose(t["boxes"], torch.tensor([[20.0, 10.0, 60.0, 30.0]]))
    x1, y1, x2, y2 = t["boxes"][0].int().tolist()
    assert out[0, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].min() > 200 and out[0, :, : x1 - 1].max() < 50


def test_eval_at_the_model_size_changes_nothing() -> None:
    image, target = _sample()
    out, t = build_transforms("eval", (100, 200))(image, target)
    assert out is image and torch.equal(t["boxes"], target["boxes"])


def test_seeded_augmentation_is_reproducible_and_leaves_global_rng_alone() -> None:
    transform = build_transforms("ssd", (64, 64))
    image, target = _sample()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = seeded(7, lambda: transform(image, target))
    b = seeded(7, lambda: transform(image, target))
    assert torch.rand(3).equal(expected_next)  # the caller's random stream is untouched
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["boxes"], b[1]["boxes"])
    assert a[0].shape == (3, 64, 64)
    others = [seeded(s, lambda: transform(image, target))[0] for s in range(8)]
    assert any(not torch.equal(o, a[0]) for o in others)  # and different seeds differ


def _coordinates(h: int, w: int) -> torch.Tensor:
    """An image whose pixels say where they are: channel 0 = x % 256, 1 = y % 256, 2 = 16 * (x // 256) + y // 256."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([x % 256, y % 256, 16 * (x // 256) + y // 256]).to(torch.uint8)


def _origin(tile: torch.Tensor) -> tuple[int, int]:
    """Where ``tile`` (cut from :func:`_coordinates`) starts in the image: ``(x0, y0)``."""
    c = tile[:, 0, 0].int().tolist()
    return c[0] + 256 * (c[2] // 16), c[1] + 256 * (c[2] % 16)


def _expected(boxes: torch.Tensor, x0: int, y0: int, side: int) -> torch.Tensor:
    """The rule, written out: objects at least half inside the window, clipped to it, in window pixels."""
    out = []
    for x1, y1, x2, y2 in boxes.tolist():
        cx1, cy1, cx2, cy2 = max(x1, x0), max(y1, y0), min(x2, x0 + side), min(y2, y0 + side)
        inside = max(0.0, cx2 - cx1) * max(0.0, cy2 - cy1)
        if inside > 0 and inside >= MIN_VISIBLE * (x2 - x1) * (y2 - y1):
            out.append([cx1 - x0, cy1 - y0, cx2 - x0, cy2 - y0])
    return torch.tensor(out).reshape(-1, 4)


def test_tile_crop_is_a_native_window_biased_towards_objects_with_the_cut_rule() -> None:
    image = _coordinates(300, 500)
    boxes = torch.tensor([[10.0, 10, 30, 30], [460.0, 270, 480, 290], [190.0, 140, 230, 180]])
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "difficult": torch.tensor([False, False, True])}
    with_objects, cut = 0, 0
    for seed in range(300):
        tile, out = seeded(seed, lambda: tile_crop(image, target, 100))
        x0, y0 = _origin(tile)
        assert tile.shape == (3, 100, 100) and torch.equal(tile, image[:, y0 : y0 + 100, x0 : x0 + 100])
        expected = _expected(boxes, x0, y0, 100)
        assert torch.equal(out["boxes"], expected), (seed, x0, y0)
        assert len(out["labels"]) == len(out["difficult"]) == len(expected)
        with_objects += len(expected) > 0
        window = torch.tensor([x0, y0, x0 + 100, y0 + 100], dtype=torch.float32)
        corners = torch.cat([torch.maximum(boxes[:, :2], window[:2]), torch.minimum(boxes[:, 2:], window[2:])], 1)
        inside = (corners[:, 2:] - corners[:, :2]).clamp(min=0).prod(dim=1)
        cut += bool(((inside > 0) & (inside < (boxes[:, 2:] - boxes[:, :2]).prod(dim=1))).any())
    # most tiles are placed over an object (OBJECT_BIAS of them, and random ones that happen to hold one)
    assert with_objects / 300 >= OBJECT_BIAS - 0.1
    assert cut > 0  # some tiles cut an object, so the rule was exercised


def test_a_tile_larger_than_the_image_is_the_image_and_training_tiles_end_at_the_model_size() -> None:
    image = _coordinates(300, 500)
    target = {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([1])}
    tile, out = seeded(0, lambda: tile_crop(image, target, 1000))
    assert torch.equal(tile, image) and torch.equal(out["boxes"], target["boxes"])
    transform = TiledTransform(128, build_transforms("eval", (96, 96)))
    resized, out = seeded(1, lambda: transform(image, target))
    assert resized.shape == (3, 96, 96) and bool((out["boxes"] <= 96).all())
