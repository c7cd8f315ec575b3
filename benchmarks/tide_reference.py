"""Our TIDE against the reference implementation (``tidecv``) on real detections: a COCO results file (the
``predictions.json`` of ``singleshot val`` or ``singleshot analyze``) against a dataset split.

    .venv/bin/python benchmarks/tide_reference.py --predictions runs/analyze/exp/predictions.json \\
        --data ../shared/data/BCCD --split val

Prints both sets of figures (AP50, the six main dAPs, the two special ones, the error counts), the largest
difference, and the seconds each took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analyze import tidecv_errors

from singleshot.analysis.predictions import read_predictions
from singleshot.analysis.tide import tide_errors
from singleshot.cpu import cpu_features
from singleshot.data import open_split
from singleshot.data.images import DataReport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    args = parser.parse_args()
    print(cpu_features().describe())
    dataset, _ = open_split(args.data, args.split)
    files = [path.name for path, _, _ in dataset.items]
    detections = read_predictions(args.predictions, dataset.image_ids, dataset.category_ids, files, DataReport())
    targets = [target for _, _, target in dataset.items]
    start = time.perf_counter()
    ours = tide_errors(detections, targets, dataset.class_names)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    (ref_ap, ref_main, ref_special, ref_counts) = tidecv_errors(detections, targets, details=True)
    ref_s = time.perf_counter() - start
    print(f"{len(dataset)} images, {sum(len(d['labels']) for d in detections)} detections, {dataset.name}")
    print(f"{'':10}{'AP50':>10}" + "".join(f"{k:>10}" for k in [*ours.main, *ours.special]))
    print(f"{'ours':10}{ours.ap:10.4f}" + "".join(f"{v:10.4f}" for v in [*ours.main.values(), *ours.special.values()]))
    print(f"{'tidecv':10}{ref_ap:10.4f}" + "".join(f"{v:10.4f}" for v in [*ref_main.values(), *ref_special.values()]))
    print(f"{'counts':10}{'':10}" + "".join(f"{ours.counts[k]:>10}" for k in ours.main))
    print(f"{'tidecv':10}{'':10}" + "".join(f"{ref_counts[k]:>10}" for k in ours.main))
    diffs = [abs(ours.ap - ref_ap)]
    diffs += [abs(ours.main[k] - v) for k, v in ref_main.items()] + [
        abs(ours.special[k] - v) for k, v in ref_special.items()
    ]
    print(f"largest difference {max(diffs):.2e}; counts equal: {ours.counts == ref_counts}")
    print(f"ours {ours_s:.2f} s, tidecv {ref_s:.2f} s")


if __name__ == "__main__":
    main()
