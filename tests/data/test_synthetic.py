from pathlib import Path

import pytest
import torch

from singleshot.data import open_split
from singleshot.data.synthetic import (
    SMALL_OBJECTS_SIDES,
    SMALL_OBJECTS_SIZE,
    SyntheticShapes,
    small_objects,
    write_coco,
)


def test_the_small_object_set_is_large_images_with_small_shapes() -> None:
    image, target = small_objects(1)[0]
    assert tuple(image.shape) == (3, *SMALL_OBJECTS_SIZE)
    sides = target["boxes"][:, 2:] - target["boxes"][:, :2]
    low, high = SMALL_OBJECTS_SIDES
    assert len(sides) >= 10  # many objects per image, so that tiles have some
    assert sides.min() >= 0.85 * low - 1e-3 and sides.max() <= 1.15 * high + 1e-3  # each side within +-15%


def test_clutter_is_drawn_under_the_same_labelled_shapes() -> None:
    plain = SyntheticShapes(2, (120, 200), seed=5, max_objects=8, min_scale=0.05, max_scale=0.2)
    cluttered = SyntheticShapes(2, (120, 200), seed=5, max_objects=8, min_scale=0.05, max_scale=0.2, clutter=30)
    for i in range(2):
        (a, ta), (b, tb) = plain[i], cluttered[i]
        torch.testing.assert_close(ta["boxes"], tb["boxes"])
        assert torch.equal(ta["labels"], tb["labels"])
        assert not torch.equal(a, b)  # the clutter is there
    with pytest.raises(ValueError, match="clutter"):
        SyntheticShapes(1, 64, clutter=-1)


def test_write_coco_reads_back_as_the_same_objects(tmp_path: Path) -> None:
    train = SyntheticShapes(3, (64, 96), seed=1, max_objects=4, min_scale=0.1, max_scale=0.4, clutter=5)
    val = SyntheticShapes(2, (64, 96), seed=2, max_objects=4, min_scale=0.1, max_scale=0.4)
    folder = write_coco({"train": train, "val": val}, tmp_path / "set")
    dataset, _ = open_split(folder, "val")
    assert dataset.class_names == list(SyntheticShapes.classes) and len(dataset) == 2
    for i in range(2):
        image, target = dataset[i]
        expected_image, expected = val[i]
        assert image.shape == expected_image.shape
        torch.testing.assert_close(target["boxes"], expected["boxes"], atol=1e-4, rtol=0)
        assert torch.equal(target["labels"], expected["labels"])
    assert sorted(p.name for p in (folder / "train").iterdir()) == [f"train_{i:06d}.jpg" for i in range(3)]
