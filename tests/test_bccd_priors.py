"""The default boxes on real annotations: the shared BCCD blood-cell set (skipped when absent)."""

import xml.etree.ElementTree as ET

import pytest
import torch

from singleshot.boxes import box_iou, cxcywh_to_xyxy
from singleshot.matching import match
from singleshot.models import SSD300_BOXES

#: compares float results of kernels: `make test` runs these again under other kernel choices
pytestmark = pytest.mark.numeric


def _boxes(xml_path) -> torch.Tensor:
    root = ET.parse(xml_path).getroot()
    w, h = float(root.findtext("size/width")), float(root.findtext("size/height"))
    rows = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        x1, y1, x2, y2 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x2 > x1 and y2 > y1:
            rows.append([x1 / w, y1 / h, x2 / w, y2 / h])
    return torch.tensor(rows).reshape(-1, 4).clamp(0, 1)


@pytest.mark.slow
def test_every_bccd_object_gets_its_own_default_box(bccd) -> None:
    priors = cxcywh_to_xyxy(SSD300_BOXES.generate())
    files = sorted((bccd / "Annotations").glob("*.xml"))
    assert len(files) > 250
    objects = good = 0
    for f in files:
        gt = _boxes(f)
        if gt.numel() == 0:
            continue
        m = match(gt, priors)
        assert set(m[m >= 0].tolist()) == set(range(len(gt))), f.name  # every object matched at least once
        objects += len(gt)
        good += int((box_iou(gt, priors).max(dim=1).values >= 0.5).sum())
    # SSD300's boxes fit blood cells: nearly all objects have a default box at IoU >= 0.5
    assert objects > 3000
    assert good / objects > 0.9
