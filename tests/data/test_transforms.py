"""Augmentation presets: boxes follow the pixels, seeding is reproducible and private, eval at size is identity."""

from __future__ import annotations

import torch

from singleshot.data.transforms import build_transforms, seeded


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
