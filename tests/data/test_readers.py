"""Dataset readers and the bad-input rules, on small datasets written by the tests themselves."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_image, voc_object, voc_xml, write_voc_folder
from PIL import Image

from singleshot.data.images import ImageError, read_image
from singleshot.data.readers import detect_layout, open_dataset

GOOD = voc_object("cat", (10, 10, 40, 40)) + voc_object("dog", (20, 5, 70, 50))
DIFFICULT_CAT = voc_object("cat", (10, 10, 40, 40), difficult=1)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A VOC devkit folder with one file for every bad-input case (all in the train split)."""
    root = tmp_path / "VOC"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    img, ann = root / "JPEGImages", root / "Annotations"
    cases: dict[str, str] = {}

    def add(stem: str, xml: str | None, write_image=None) -> None:
        """Case ``stem``: its annotation and an image written by ``write_image`` (default: random ``stem.jpg``)."""
        if write_image is None:
            random_image().save(img / f"{stem}.jpg")
        else:
            write_image(img)
        if xml is not None:
            (ann / f"{stem}.xml").write_text(xml)
        cases[stem] = xml or ""

    add("good", voc_xml(GOOD))
    add("empty", voc_xml(GOOD), lambda d: (d / "empty.jpg").write_bytes(b""))
    add("garbage", voc_xml(GOOD), lambda d: (d / "garbage.jpg").write_bytes(b"this is not a jpeg" * 20))
    random_image(seed=1).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    add("truncated", voc_xml(GOOD), lambda d: (d / "truncated.jpg").write_bytes(data[: len(data) // 2]))
    add("gray", voc_xml(GOOD), lambda d: random_image().convert("L").save(d / "gray.png"))
    add("rgba", voc_xml(GOOD), lambda d: random_image().convert("RGBA").save(d / "rgba.png"))
    add("cmyk", voc_xml(GOOD), lambda d: random_image().convert("CMYK").save(d / "cmyk.jpg"))
    deep = (np.arange(60 * 80).reshape(60, 80) * 13 % 65536).astype(np.uint16)
    add("sixteen", voc_xml(GOOD), lambda d: Image.fromarray(deep).save(d / "sixteen.png"))

    def exif_image(d: Path) -> None:  # stored 80x60, displayed (orientation 6) as 60x80
        im = random_image()
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(d / "exif.jpg", exif=exif)

    add("exif", voc_xml(voc_object("cat", (5, 5, 30, 70)), w=60, h=80), exif_image)
    add("bomb", voc_xml(GOOD), lambda d: Image.new("L", (12000, 9000)).save(d / "bomb.png"))
    add("nobndbox", voc_xml("<object><name>cat</name></object>" + GOOD))
    add("nonnumeric", voc_xml(voc_object("cat", ("a", 1, 20, 20)) + GOOD))
    add("inverted", voc_xml(voc_object("cat", (40, 40, 10, 10))))
    add("zeroarea", voc_xml(voc_object("cat", (10, 10, 10, 30)) + GOOD))
    add("outside", voc_xml(voc_object("cat", (-10, 50, 100, 90)) + voc_object("dog", (90, 70, 120, 99))))
    add("unknown", voc_xml(voc_object("zebra", (1, 1, 20, 20)) + GOOD))
    add("noobjects", voc_xml(""))
    add("badxml", "<annotation><object>")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(cases))
    (root / "ImageSets" / "Main" / "val.txt").write_text("good\n")
    return root


def test_every_bad_input_case_has_its_outcome(corpus: Path) -> None:
    bundle = open_dataset(corpus, classes=["cat", "dog"])
    train = bundle.train
    report = bundle.report
    stems = [p.stem for p, _, _ in train.items]
    # skipped at load time, each with its reason
    for stem in ("empty", "garbage", "bomb", "badxml"):
        assert stem not in stems
    assert report.counts["image skipped: empty file (0 bytes)"][0].endswith("empty.jpg")
    assert report.counts["image skipped: not a readable image"][0].endswith("garbage.jpg")
    assert report.counts["image skipped: decompression bomb (over 100000000 pixels)"][0].endswith("bomb.png")
    assert report.counts["image skipped: annotation file unreadable"][0].endswith("badxml.xml")
    counted_once = (
        # conversions
        "grayscale/palette image converted to RGB",
        "RGBA image: alpha dropped",
        "CMYK image converted to RGB",
        "16-bit image scaled to 8 bits",
        # annotation fixes
        "object without <bndbox> dropped",
        "object with non-numeric box values dropped",
        "inverted box corners swapped",
        "zero-area box dropped",
        "box outside the image dropped",
        "box clipped to the image",
        "object of unknown class 'zebra' dropped",
        "image without objects (kept as background)",
    )
    for problem in counted_once:
        assert report.total(problem) == 1, problem

    def item(stem: str):
        return train[stems.index(stem)]

    image, target = item("inverted")
    assert target["boxes"].tolist() == [[10.0, 10.0, 40.0, 40.0]]
    _, target = item("outside")
    assert target["boxes"].tolist() == [[0.0, 50.0, 80.0, 60.0]]  # clipped; the other box was fully outside
    _, target = item("nobndbox")
    assert target["labels"].tolist() == [1, 2]
    _, target = item("noobjects")
    assert target["boxes"].shape == (0, 4)
    for stem in ("gray", "rgba", "cmyk", "sixteen"):
        image, _ = item(stem)
        assert image.shape == (3, 60, 80) and image.dtype == torch.uint8
    image, target = item("sixteen")
    assert image.max() > 0 and image.max() <= 255
    image, target = item("exif")  # rotated to 60 wide x 80 high, the frame of its annotation
    assert image.shape == (3, 80, 60)
    assert target["boxes"].tolist() == [[5.0, 5.0, 30.0, 70.0]]
    assert report.total("EXIF orientation applied") == 1


def test_truncated_image_is_replaced_and_counted_not_a_crash(corpus: Path) -> None:
    bundle = open_dataset(corpus, classes=["cat", "dog"])
    stems = [p.stem for p, _, _ in bundle.train.items]
    i = stems.index("truncated")
    with pytest.warns(UserWarning, match="truncated.jpg"):
        _image, target = bundle.train[i]
    assert target["image_id"].item() == (i + 1) % len(stems)  # the next image stands in
    assert bundle.report.total("image unreadable when decoded (replaced by the next one)") == 1
    with pytest.raises(ImageError, match=r"truncated\.jpg: corrupt or truncated"):
        read_image(corpus / "JPEGImages" / "truncated.jpg")


def test_class_names_from_the_data(corpus: Path) -> None:
    bundle = open_dataset(corpus)
    assert bundle.class_names == ["cat", "dog", "zebra"]  # sorted names found in the annotations
    assert bundle.val[0][1]["labels"].tolist() == [1, 2]


def test_difficult_is_kept(tmp_path: Path) -> None:
    root = write_voc_folder(tmp_path / "plain", 30, voc_xml(DIFFICULT_CAT + voc_object("dog", (1, 1, 9, 9))))
    assert detect_layout(root) == "voc"
    bundle = open_dataset(root)
    assert len(bundle.train) + len(bundle.val) == 30 and len(bundle.val) >= 1
    _, target = bundle.train[0]
    assert target["difficult"].tolist() == [True, False]


def test_coco_reader(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True)
        random_image().save(root / split / "a.jpg")
    (root / "annotations").mkdir()
    for split in ("train2017", "val2017"):
        data = {
            "images": [{"id": 7, "file_name": "a.jpg", "width": 80, "height": 60}],
            "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 18, "bbox": [10, 20, 30, 15], "iscrowd": 0},
                {"id": 2, "image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            ],
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    assert detect_layout(root) == "coco"
    bundle = open_dataset(root)
    assert bundle.class_names == ["car", "dog"]  # by category id
    _, target = bundle.train[0]
    assert target["boxes"].tolist() == [[10.0, 20.0, 40.0, 35.0], [0.0, 0.0, 5.0, 5.0]]
    assert target["labels"].tolist() == [2, 1]
    assert target["difficult"].tolist() == [False, True]  # crowd: not trained on, ignored by evaluation
    # the file's own ids, for writing results: image 7; labels 1, 2 are categories 3 (car), 18 (dog)
    assert bundle.val.image_ids == [7] and bundle.val.category_ids == [3, 18]
    assert not bundle.val.pixel_indices


def test_open_split_reads_one_split_once(corpus: Path) -> None:
    from singleshot.data.readers import open_split

    dataset, report = open_split(corpus, "train", ["cat", "dog"])
    both = open_dataset(corpus, classes=["cat", "dog"])
    assert len(dataset) == len(both.train)
    assert report.total("inverted box corners swapped") == 1  # counted once, not once per opened split
    assert dataset.pixel_indices  # VOC boxes are inclusive pixel indices
    assert dataset.image_ids == list(range(len(dataset)))


def test_yolo_reader(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        random_image().save(root / "images" / split / "a.jpg")
        (root / "labels" / split / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n0 0.1 x 0.1 0.1\n7 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: person, 1: bike}\n")
    assert detect_layout(root) == "yolo"
    bundle = open_dataset(root)
    assert bundle.class_names == ["person", "bike"]
    _, target = bundle.train[0]
    assert target["boxes"].tolist() == [[30.0, 15.0, 50.0, 45.0]]
    assert target["labels"].tolist() == [2]
    assert bundle.report.total("label line with missing or non-numeric values dropped") == 2
    assert bundle.report.total("object of unknown class 7 dropped") == 2


def test_unknown_layout_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"stuff: not a dataset layout"):
        open_dataset(tmp_path / "stuff")
    with pytest.raises(FileNotFoundError, match="dataset path not found"):
        open_dataset(tmp_path / "missing")


def test_bccd(bccd: Path) -> None:
    bundle = open_dataset(bccd)
    assert bundle.class_names == ["Platelets", "RBC", "WBC"]
    assert len(bundle.train) > 150 and len(bundle.val) > 50
    image, target = bundle.train[0]
    assert image.shape == (3, 480, 640)
    assert (target["boxes"][:, 2] <= 640).all() and (target["boxes"][:, 3] <= 480).all()


def test_training_view_drops_difficult_objects(tmp_path: Path) -> None:
    from singleshot.data.loader import Augmented
    from singleshot.data.transforms import build_transforms

    root = write_voc_folder(tmp_path / "plain", 30, voc_xml(DIFFICULT_CAT + voc_object("dog", (1, 1, 9, 9))))
    bundle = open_dataset(root)
    _, target = Augmented(bundle.train, build_transforms("eval", (60, 80)))[0]
    assert target["labels"].tolist() == [2] and target["difficult"].tolist() == [False]
    _, kept = Augmented(bundle.train, build_transforms("eval", (60, 80)), keep_difficult=True)[0]
    assert kept["labels"].tolist() == [1, 2]


# -- the report's structure, split naming and the hold-out ------------------------------------------------------
def test_report_add_counts_and_unknown_classes_are_structured() -> None:
    from singleshot.data.images import DataReport

    report = DataReport()
    report.add("box clipped to the image", "a.jpg", count=3)
    report.add("box clipped to the image", "b.jpg")
    report.add("zero-area box dropped", "a.jpg", count=0)  # nothing to count: no entry at all
    assert report.total("box clipped to the image") == 4
    assert report.counts["box clipped to the image"] == ["a.jpg", "a.jpg", "a.jpg", "b.jpg"]
    assert "zero-area box dropped" not in report.counts
    with pytest.raises(ValueError, match="count"):
        report.add("box clipped to the image", "a.jpg", count=-1)
    report.add_unknown_class("zebra", "x.xml", "object of unknown class 'zebra' dropped")
    other = DataReport()
    other.add_unknown_class(7, "y.txt", "object of unknown class 7 dropped")
    report.merge(other)
    assert report.unknown_classes == ["7", "zebra"]
    assert report.total("object of unknown class 7 dropped") == 1


def test_unknown_classes_voc_by_name(corpus: Path) -> None:
    assert open_dataset(corpus, classes=["cat", "dog"]).report.unknown_classes == ["zebra"]
    assert open_dataset(corpus).report.unknown_classes == []  # names from the data: nothing unknown


def test_unknown_classes_yolo_by_index(tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    random_image().save(root / "images" / "a.jpg")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n12 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n")
    (root / "data.yaml").write_text("train: images\nval: images\nnames: [person, bike]\n")
    bundle = open_dataset(root)
    assert bundle.report.unknown_classes == ["12", "3"]  # sorted as strings
    # the message is unchanged; counted once per split that lists the image (train and val are both images/)
    assert bundle.report.total("object of unknown class 12 dropped") == 2


def test_unknown_classes_coco_by_category_id(tmp_path: Path) -> None:
    root = tmp_path / "coco"
    (root / "train").mkdir(parents=True)
    (root / "annotations").mkdir()
    random_image().save(root / "train" / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 80, "height": 60}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 18, "bbox": [10, 20, 30, 15]},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 44, "bbox": [0, 0, 5, 5]},
        ],
    }
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    from singleshot.data.readers import open_split

    dataset, report = open_split(root, "train", classes=["dog"])
    assert report.unknown_classes == ["3", "44"]
    assert report.total("object of unknown category id 44 dropped") == 1
    assert dataset.class_names == ["dog"] and dataset.category_ids == [18]
    assert dataset.name == f"COCO {root} [train]"


def test_open_split_names_the_split(corpus: Path, tmp_path: Path) -> None:
    from singleshot.data import open_split as reexported
    from singleshot.data.readers import open_split

    assert reexported is open_split
    (corpus / "ImageSets" / "Main" / "trainval.txt").write_text("good\ninverted\n")
    val, _ = open_split(corpus, "val", ["cat", "dog"])
    assert val.name == f"VOC devkit {corpus} [val]"
    trainval, report = open_split(corpus, "trainval", ["cat", "dog"])
    assert trainval.name == f"VOC devkit {corpus} [trainval]" and len(trainval) == 2
    assert report.total("inverted box corners swapped") == 1
    bundle = open_dataset(corpus, "trainval", "val", ["cat", "dog"])  # named by split, not by role
    assert bundle.train.name.endswith(" [trainval]") and bundle.val.name.endswith(" [val]")
    same = open_dataset(corpus, "trainval", "trainval", ["cat", "dog"])
    assert same.val is same.train

    root = write_voc_folder(tmp_path / "plain", 30, voc_xml(GOOD))
    held, _ = open_split(root, "val")
    kept, _ = open_split(root, "train")
    assert held.name == f"VOC XML folder (10% held out for validation) {root} [val]"
    assert kept.name == f"VOC XML folder (10% held out for validation) {root} [train]"
    with pytest.raises(ValueError, match="no named splits"):
        open_split(root, "trainval")


def test_holdout_splits_are_disjoint_and_cover_every_image(tmp_path: Path) -> None:
    from singleshot.data.dataset import is_held_out

    # every fifth image has no XML file: a background image, after the annotated ones
    root = write_voc_folder(tmp_path / "plain", 60, voc_xml(GOOD), annotated=lambda i: i % 5 != 0)
    bundle = open_dataset(root)
    train = [p for p, _, _ in bundle.train.items]
    val = [p for p, _, _ in bundle.val.items]
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(root.glob("*.jpg"))
    assert val and all(is_held_out(p) for p in val) and not any(is_held_out(p) for p in train)
    for items in (train, val):  # annotated images in name order, then those without an XML file
        annotated = [p for p in items if p.with_suffix(".xml").is_file()]
        background = [p for p in items if not p.with_suffix(".xml").is_file()]
        assert items == sorted(annotated) + sorted(background)
    assert bundle.report.total("image without an annotation file (kept as background)") == 12


def test_datasets_satisfy_the_evaluation_protocol(corpus: Path) -> None:
    from singleshot.data.dataset import DetectionDataset, EvaluationData
    from singleshot.data.synthetic import SyntheticShapes

    dataset = open_dataset(corpus, classes=["cat", "dog"]).val
    assert isinstance(dataset, DetectionDataset) and isinstance(dataset, EvaluationData)
    shapes = SyntheticShapes(4, 64, seed=3)
    assert isinstance(shapes, EvaluationData)
    assert shapes.class_names == list(SyntheticShapes.classes) and shapes.image_ids == [0, 1, 2, 3]
    assert shapes.category_ids == [1, 2, 3] and shapes.pixel_indices is False
