"""The training engine: one epoch of training, evaluation, EMA, mixed precision, the non-finite guard."""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm import tqdm

from singleshot.data.transforms import Target
from singleshot.evaluate import MetricReport, evaluate_detections
from singleshot.ssd import SSD


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; raised instead of training on it."""


class ModelEMA:
    """Exponential moving average of a model's weights (buffers copied), with a warm-up of the decay:
    ``decay * (1 - exp(-updates / tau))``, so early averages are not dominated by the random start."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: float = 2000.0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.tau = tau
        self.updates = 0
        self._pairs: tuple[nn.Module, list[Tensor], list[Tensor], list[Tensor], list[Tensor]] | None = None

    def _tensors(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """(averages, sources) of floating-point entries, then of the others; cached per source model (its
        state tensors are updated in place, so the aliases stay valid)."""
        if self._pairs is None or self._pairs[0] is not model:
            current = model.state_dict()
            avg_f, src_f, avg_o, src_o = [], [], [], []
            for name, avg in self.module.state_dict().items():
                value = current[name].detach()
                if avg.is_floating_point() and value.dtype == avg.dtype:
                    avg_f.append(avg)
                    src_f.append(value)
                else:
                    avg_o.append(avg)
                    src_o.append(value)
            self._pairs = (model, avg_f, src_f, avg_o, src_o)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        avg_f, src_f, avg_o, src_o = self._tensors(model)
        if avg_f:
            torch._foreach_mul_(avg_f, d)
            torch._foreach_add_(avg_f, src_f, alpha=1 - d)
        for avg, value in zip(avg_o, src_o, strict=True):
            avg.copy_(value.to(avg.dtype) if avg.is_floating_point() else value)

    def state_dict(self) -> dict[str, object]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.module.load_state_dict(state["module"])  # type: ignore[arg-type]
        self.updates = int(state["updates"])  # type: ignore[arg-type]


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` (auto | off | bf16 | fp16) on ``device``; None means full precision.

    ``auto``: fp16 on CUDA; bf16 on a CPU with native bf16 matrix units (AMX or AVX512-BF16), where it is
    faster; otherwise full precision (on AVX2-only CPUs bf16 is emulated and slower than fp32).
    """
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16
    if mode == "fp16":
        if device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use --amp bf16 or off on the CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.float16
    capability = torch.backends.cpu.get_cpu_capability()
    return torch.bfloat16 if ("AMX" in capability or "AVX512_BF16" in capability) else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class StepInfo:
    """What a hook sees after each optimiser step."""

    epoch: int
    step_in_epoch: int  # steps done in this epoch
    global_step: int  # steps done in total
    losses: dict[str, float]
    lr: float


@dataclass
class EpochStats:
    losses: dict[str, float] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0
    stopped: bool = False

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def _to_device(images: Sequence[Tensor], targets: Sequence[Target], device: torch.device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return images, targets


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loader: Iterable,
    device: torch.device,
    epoch: int,
    global_step: int,
    step_in_epoch: int = 0,
    amp: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: ModelEMA | None = None,
    grad_clip: float = 0.0,
    hooks: Sequence[Callable[[StepInfo], bool]] = (),
    progress: bool = True,
    total_steps: int | None = None,
) -> EpochStats:
    """Train over ``loader`` once. A hook returning True stops the epoch after that step.

    Raises:
        NonFiniteLossError: a loss is NaN or infinite (the step is not applied).
    """
    model.train()
    sums: dict[str, float] = {}
    steps = 0
    stats = EpochStats()
    start = time.perf_counter()
    bar = tqdm(
        loader, total=total_steps, desc=f"epoch {epoch + 1}", disable=not progress, leave=False, dynamic_ncols=True
    )
    for images, targets in bar:
        images, targets = _to_device(images, targets, device)
        with autocast(device, amp):
            losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            ids = [int(t["image_id"]) for t in targets if "image_id" in t]
            values = {k: float(v.detach()) for k, v in losses.items()}
            raise NonFiniteLossError(
                f"non-finite loss {values} at epoch {epoch + 1}, step {step_in_epoch + 1} "
                f"(global step {global_step + 1}), batch image ids {ids}; try a lower --lr or check these images"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(_unwrap(model))
        step_in_epoch += 1
        global_step += 1
        stats.images += len(images)
        steps += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        stats.seconds = time.perf_counter() - start
        lr = optimizer.param_groups[0]["lr"]
        current = {k: float(v.detach()) for k, v in losses.items()}
        bar.set_postfix(
            {
                **{k.removeprefix("loss_"): f"{v:.3f}" for k, v in current.items()},
                "lr": f"{lr:.2e}",
                "img/s": f"{stats.images_per_second:.1f}",
            },
            refresh=False,
        )
        info = StepInfo(epoch, step_in_epoch, global_step, current, lr)
        if any([hook(info) for hook in hooks]):
            stats.stopped = True
            break
    bar.close()
    stats.losses = {k: v / max(1, steps) for k, v in sums.items()}
    return stats


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, SSD) else model


@torch.no_grad()
def predict(model: SSD, loader: Iterable, device: torch.device, progress: bool = False, desc: str = "predict"):
    """Detections and ground truths (CPU) of every image in ``loader``."""
    model.eval()
    detections, ground_truths = [], []
    for images, targets in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        out = model([im.to(device) for im in images])
        detections.extend({k: v.cpu() for k, v in d.items()} for d in out)
        ground_truths.extend(targets)
    return detections, ground_truths


@dataclass
class Evaluation:
    """What :func:`run_evaluation` computed: the metrics, the detections and ground truths behind them (CPU,
    loader order), and the dataset's own image and category ids for writing results (``None``: defaults)."""

    report: MetricReport
    detections: list[dict[str, Tensor]]
    ground_truths: list[Target]
    image_ids: list[int] | None
    category_ids: list[int] | None


def run_evaluation(
    model: SSD,
    loader: Iterable,
    device: torch.device,
    class_names: Sequence[str],
    progress: bool = False,
    coco: bool = True,
    desc: str = "evaluate",
) -> Evaluation:
    """All metrics of ``model`` over ``loader`` (original image coordinates): VOC AP at IoU 0.5 (11-point and
    all-point) and, with ``coco``, the COCO summary; ``report.timing`` holds the speed of inference and of the
    metrics.

    The dataset's own ids and box convention (:class:`~singleshot.data.formats.DetectionDataset`: ``image_ids``,
    ``category_ids``, ``pixel_indices``) are used when the loader's dataset has them.
    """
    start = time.perf_counter()
    detections, ground_truths = predict(model, loader, device, progress, desc=desc)
    inferred = time.perf_counter()
    dataset = getattr(loader, "dataset", None)
    dataset = getattr(dataset, "dataset", dataset)  # through an augmentation wrapper
    ids = getattr(dataset, "image_ids", None)
    image_ids = None
    if ids is not None and all("image_id" in t for t in ground_truths):
        image_ids = [ids[int(t["image_id"])] for t in ground_truths]  # in evaluation order
    category_ids = getattr(dataset, "category_ids", None)
    report = evaluate_detections(
        detections,
        ground_truths,
        class_names,
        coco=coco,
        image_ids=image_ids,
        category_ids=category_ids,
        pixel_indices=bool(getattr(dataset, "pixel_indices", False)),
    )
    report.timing = _timing(len(ground_truths), inferred - start, time.perf_counter() - inferred)
    return Evaluation(report, detections, ground_truths, image_ids, category_ids)


def evaluate(
    model: SSD,
    loader: Iterable,
    device: torch.device,
    class_names: Sequence[str],
    progress: bool = False,
    coco: bool = True,
) -> MetricReport:
    """The metrics of :func:`run_evaluation` (training's periodic evaluation)."""
    return run_evaluation(model, loader, device, class_names, progress, coco).report


def _timing(images: int, inference_s: float, metrics_s: float) -> dict[str, float]:
    """Seconds and images/s of inference and of computing the metrics (``MetricReport.timing``)."""
    return {
        "inference_s": inference_s,
        "metrics_s": metrics_s,
        "inference_images_per_s": images / max(inference_s, 1e-9),
        "metrics_images_per_s": images / max(metrics_s, 1e-9),
    }
