"""Training throughput: ours (model + our loss + our augmentation) against torchvision's SSD, same batches.

Usage: ``python benchmarks/train_throughput.py [--models ssdlite320_mobilenet_v3 ssd300_vgg16] [--steps 4]
[--amp off bf16]``

For each model, batches of synthetic-shape images are augmented by our ``ssd``/``ssdlite`` preset; both
implementations then take SGD steps on exactly those batches (torchvision's model gets them as float images in
[0, 1], which its own transform normalises). Reported, median images/s over the timed steps:

* ``step``: forward, loss, backward and SGD update only, for ours and for torchvision;
* ``ours+aug``: our step plus the augmentation of its batch, done in the same process.

With ``--amp bf16`` our step also runs as ``singleshot train --amp bf16`` takes it (autocast, and channels-last on
the CPU: :func:`singleshot.engine.loop.use_amp_layout`); torchvision's step is always fp32, its own default. The
CPU's features are printed with the figures: bf16 pays only with AVX512-BF16 or AMX.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large

from singleshot import build
from singleshot.cpu import cpu_features
from singleshot.data.loader import Augmented, collate
from singleshot.data.synthetic import SyntheticShapes
from singleshot.data.transforms import build_transforms
from singleshot.engine.loop import amp_dtype, autocast, use_amp_layout

REFERENCE = {
    "ssd300_vgg16": (lambda n: ssd300_vgg16(weights=None, weights_backbone=None, num_classes=n), "ssd", 4),
    "ssdlite320_mobilenet_v3": (
        lambda n: ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=n),
        "ssdlite",
        16,
    ),
}


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images, targets, amp=None) -> None:
    with autocast(torch.device("cpu"), amp):
        losses = model(images, targets)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()


def measure(name: str, steps: int, batch: int | None, amp_mode: str) -> None:
    make_reference, preset, default_batch = REFERENCE[name]
    batch = batch or default_batch
    torch.manual_seed(0)
    ours = build(name, num_classes=3).train()
    amp = amp_dtype(amp_mode, torch.device("cpu"))
    use_amp_layout(ours, amp, torch.device("cpu"))
    reference = make_reference(4).train()
    size = ours.preprocessing.image_size
    view = Augmented(SyntheticShapes(batch * (steps + 1), size, seed=0), build_transforms(preset, size))

    def batch_at(k: int):
        return collate([view[i] for i in range(k * batch, (k + 1) * batch)])

    opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9)
    opt_ref = torch.optim.SGD(reference.parameters(), lr=1e-3, momentum=0.9)
    warm = batch_at(0)
    _step(ours, opt_ours, *warm, amp)
    _step(reference, opt_ref, [im.float() / 255 for im in warm[0]], warm[1])

    t_aug, t_ours, t_ref = [], [], []
    for k in range(1, steps + 1):
        t0 = time.perf_counter()
        images, targets = batch_at(k)
        t1 = time.perf_counter()
        _step(ours, opt_ours, images, targets, amp)
        t2 = time.perf_counter()
        _step(reference, opt_ref, [im.float() / 255 for im in images], targets)
        t3 = time.perf_counter()
        t_aug.append(t1 - t0)
        t_ours.append(t2 - t1)
        t_ref.append(t3 - t2)
    aug, step_ours, step_ref = (statistics.median(t) for t in (t_aug, t_ours, t_ref))
    print(
        f"{name:<24} {amp_mode:>4} {batch:>5} {batch / step_ours:>10.2f} {batch / (step_ours + aug):>10.2f} "
        f"{batch / step_ref:>12.2f} {step_ref / step_ours:>10.2f}x {step_ref / (step_ours + aug):>13.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(REFERENCE), choices=list(REFERENCE))
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model (after one warm-up step)")
    parser.add_argument("--batch", type=int, default=None, help="default: 16 for SSDLite, 4 for SSD300")
    parser.add_argument("--amp", nargs="+", default=["off"], choices=["off", "bf16"], help="our step's precisions")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; images/s, median of {args.steps} steps")
    print(cpu_features().describe())
    print(
        f"{'model':<24} {'amp':>4} {'batch':>5} {'ours step':>10} {'ours+aug':>10} {'torchvision':>12} "
        f"{'step ratio':>11} {'ours+aug ratio':>14}"
    )
    for name in args.models:
        for amp in args.amp:
            measure(name, args.steps, args.batch, amp)


if __name__ == "__main__":
    main()
