"""Post-processing speed: ours against torchvision's ``SSD.postprocess_detections``, same tensors, same run.

Usage: ``python benchmarks/postprocess.py [--repeats 30]``

Two kinds of SSD300 head outputs (8732 default boxes x 21 classes):

* ``dense``: random logits; nearly every score passes 0.01, so each class sends its 400 candidates to NMS
  (the worst case, as with an untrained model);
* ``peaked``: background dominates, as with a trained model; about a thousand candidates per image.

Both implementations get the same logits, offsets and default boxes, and their detections are checked equal.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torchvision.models.detection import ssd300_vgg16 as tv_ssd300_vgg16

from singleshot.boxes import cxcywh_to_xyxy
from singleshot.models import SSD300_BOXES
from singleshot.postprocess import PostProcessor, PostSettings


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _canonical(det: dict[str, torch.Tensor]) -> torch.Tensor:
    """Detections as rows ``(score, label, box)`` in a fixed order: equal scores may come in either order."""
    rows = torch.cat([det["scores"][:, None], det["labels"][:, None].float(), det["boxes"]], 1)
    rows = rows[rows[:, 1].argsort(stable=True)]
    return rows[rows[:, 0].argsort(descending=True, stable=True)]


def _outputs(kind: str, batch: int, num_priors: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(batch, num_priors, 21, generator=g)
    if kind == "peaked":  # background wins almost everywhere; 300 priors per image see an object
        logits = logits * 1.5
        logits[..., 0] += 10.0
        objects = torch.randint(0, num_priors, (batch, 300), generator=g)
        classes = torch.randint(1, 21, (batch, 300), generator=g)
        image = torch.arange(batch)[:, None].expand_as(objects)
        logits[image, objects, classes] += 10.0 + 3.0 * torch.rand(batch, 300, generator=g)
    offsets = torch.randn(batch, num_priors, 4, generator=g) * 0.5
    return logits, offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    priors = SSD300_BOXES.generate()
    size = SSD300_BOXES.image_size
    anchors_xyxy = cxcywh_to_xyxy(priors) * size[0]
    reference = tv_ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21).eval()
    ours = PostProcessor(PostSettings(conf=0.01, iou=0.45, max_det=200, candidates=400))
    g = torch.Generator().manual_seed(0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'case':<14} {'batch':>5} {'candidates/img':>14} {'ours ms':>9} {'torchvision ms':>15} {'speed-up':>9}")
    for kind in ("dense", "peaked"):
        for batch in (1, 8):
            logits, offsets = _outputs(kind, batch, priors.shape[0], g)
            sizes = [size] * batch

            def run_ours(logits=logits, offsets=offsets, sizes=sizes):
                return ours(logits, offsets, sizes, priors_cxcywh=priors)

            def run_reference(logits=logits, offsets=offsets, sizes=sizes, batch=batch):
                head = {"cls_logits": logits, "bbox_regression": offsets}
                return reference.postprocess_detections(head, [anchors_xyxy] * batch, sizes)

            with torch.no_grad():
                a, b = run_ours(), run_reference()
                for x, y in zip(a, b, strict=True):
                    torch.testing.assert_close(_canonical(x), _canonical(y), atol=1e-3, rtol=0)
                scores = logits.softmax(-1)[..., 1:]
                candidates = int((scores > 0.01).sum(1).clamp(max=400).sum()) // batch
                t_ours = _median_seconds(run_ours, args.repeats)
                t_ref = _median_seconds(run_reference, args.repeats)
            print(
                f"{kind:<14} {batch:>5} {candidates:>14} {t_ours * 1e3:>9.2f} {t_ref * 1e3:>15.2f} "
                f"{t_ref / t_ours:>8.2f}x"
            )


if __name__ == "__main__":
    main()
