"""The training loop: one epoch of training.

* :class:`Optimization` holds what an optimiser step needs (the model or its DDP wrapper, optimiser,
  scheduler, mixed precision, EMA, gradient clipping) and takes the step.
* :func:`train_one_epoch` runs it over a loader, counting steps in a :class:`Position`.

Evaluation (a model over a dataset, then the metrics) is :mod:`singleshot.evaluation`'s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field

import torch
from torch import Tensor, nn

from singleshot.engine.ema import ModelEMA
from singleshot.predict.precision import bf16_or_fp32, use_bf16_layout
from singleshot.progress import Progress
from singleshot.ssd import SSD
from singleshot.types import Target


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; raised instead of training on it."""


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` (auto | off | bf16 | fp16) on ``device``; None means full precision.

    ``auto`` is fp16 on CUDA and full precision on the CPU; bf16 on the CPU is asked for with ``bf16`` (it pays
    only on CPUs with native bf16 units, AMX or AVX512-BF16; elsewhere it is emulated and slower than fp32, so
    :func:`~singleshot.predict.precision.bf16_or_fp32` warns and full precision runs, unless forced).
    """
    if mode == "off":
        return None
    if mode == "bf16":
        return torch.bfloat16 if bf16_or_fp32(device, "--amp bf16") == "bf16" else None
    if mode == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use --amp bf16 or off on the CPU")
    return torch.float16 if device.type == "cuda" else None


def use_amp_layout(model: SSD, dtype: torch.dtype | None, device: torch.device) -> None:
    """The layout bf16 wants (:func:`~singleshot.predict.precision.use_bf16_layout`: channels-last on the CPU) when
    training under bf16 autocast; other cases keep the builder's layout."""
    if dtype == torch.bfloat16:
        use_bf16_layout(model, device)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@dataclass
class Position:
    """Where training stands: the epoch under way (0-based), steps done in it, steps done in total."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0

    def describe(self) -> str:
        return f"epoch {self.epoch + 1}, step {self.step_in_epoch}"


@dataclass
class Optimization:
    """Everything one optimiser step needs; :meth:`losses` then :meth:`step` take one."""

    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    model: SSD  # the model itself (what the EMA follows)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    _: KW_ONLY
    amp: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = None
    ema: ModelEMA | None = None
    grad_clip: float = 0.0

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def losses(self, images: Sequence[Tensor], targets: Sequence[Target]) -> dict[str, Tensor]:
        """The training losses of one batch (moved to the device, under autocast)."""
        images = [im.to(self.device, non_blocking=True) for im in images]
        # the ignore below: a Target dict with its tensors moved
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]  # type: ignore[misc]
        with autocast(self.device, self.amp):
            return self.net(images, targets)

    def step(self, loss: Tensor) -> None:
        """Back-propagate ``loss``, clip, update the weights, the learning rate and the EMA."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)


@dataclass
class EpochStats:
    losses: dict[str, float] = field(default_factory=dict)  # mean of each loss over the epoch's steps
    images: int = 0
    seconds: float = 0.0
    stopped: bool = False  # ``after_step`` asked to stop

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def train_one_epoch(
    optim: Optimization,
    loader: Iterable[tuple[list[Tensor], list[Target]]],
    position: Position,
    after_step: Callable[[], bool],
    progress: bool = True,
) -> EpochStats:
    """Train over ``loader`` once, advancing ``position`` at each step. ``after_step`` returning True stops the
    epoch after that step.

    Raises:
        NonFiniteLossError: a loss is NaN or infinite (the step is not applied).
    """
    optim.net.train()
    stats = EpochStats()
    sums: dict[str, float] = {}
    steps = 0
    start = time.perf_counter()
    # the ignore below: a sized loader (checked) or a loss tensor
    total = len(loader) if hasattr(loader, "__len__") else None  # type: ignore[arg-type]
    bar = Progress(loader, total=total, desc=f"epoch {position.epoch + 1}", enabled=progress)
    for images, targets in bar:
        losses = optim.losses(images, targets)
        loss = sum(losses.values())
        values = {k: float(v.detach()) for k, v in losses.items()}
        if not torch.isfinite(loss):
            ids = [int(t["image_id"]) for t in targets if "image_id" in t]
            raise NonFiniteLossError(
                f"non-finite loss {values} at epoch {position.epoch + 1}, step {position.step_in_epoch + 1} "
                f"(global step {position.global_step + 1}), batch image ids {ids}; try a lower --lr or check these "
                "images"
            )
        optim.step(loss)  # type: ignore[arg-type]  # a sized loader (checked) or a loss tensor
        position.step_in_epoch += 1
        position.global_step += 1
        steps += 1
        stats.images += len(images)
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        stats.seconds = time.perf_counter() - start
        shown = {k.removeprefix("loss_"): f"{v:.3f}" for k, v in values.items()}
        bar.set_postfix({**shown, "lr": f"{optim.lr:.2e}", "img/s": f"{stats.images_per_second:.1f}"})
        if after_step():
            stats.stopped = True
            break
    bar.close()
    stats.losses = {k: v / max(1, steps) for k, v in sums.items()}
    return stats
