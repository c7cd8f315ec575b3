"""``singleshot train``: a run from config to weights, with checkpoints, logs and pictures.

Run folder ``<project>/<name>/``: ``config.yaml`` (resolved), ``metrics.csv``, TensorBoard events,
``results.png``, ``train_batch.jpg``, ``weights/{last,best}.safetensors``, ``last.pt`` (resumable state) and
``predictions/`` (held-out images, predictions beside ground truth).

Weights saved right after an evaluation carry the per-class score thresholds of that evaluation (best F1 on the
validation split, :func:`~singleshot.metrics.class_thresholds`), which prediction then uses by default: ``last`` those
of the final evaluation, ``best`` those of the evaluation that made it best (of the very weights it holds, so no
second evaluation is needed). Weights saved without an evaluation just before (a stop at ``max_steps``, an epoch
without one) carry none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from singleshot.convert.bases import imagenet_backbone
from singleshot.data import DataBundle, open_dataset, synthetic_bundle
from singleshot.data.images import save_image
from singleshot.data.loader import Augmented, EpochSampler, make_loader
from singleshot.data.transforms import TiledTransform, build_transforms
from singleshot.distributed import DistInfo, broadcast_buffers, process_group, resolve_device
from singleshot.engine.budget import TimeBudget
from singleshot.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, seed_everything, set_rng_state
from singleshot.engine.ema import ModelEMA
from singleshot.engine.loop import (
    EpochStats,
    Optimization,
    Position,
    amp_dtype,
    train_one_epoch,
    use_amp_layout,
)
from singleshot.engine.recipe import TrainConfig
from singleshot.engine.run_log import RunLog
from singleshot.evaluation import evaluate_model
from singleshot.folders import new_run_dir
from singleshot.metrics import ClassThreshold, MetricReport, class_thresholds, threshold_vector, thresholds_table
from singleshot.models import build
from singleshot.plots import batch_grid, prediction_pair
from singleshot.postprocess import PREDICT
from singleshot.predict import Detector
from singleshot.predict.loading import load_initial_weights
from singleshot.predict.precision import bf16_is_native
from singleshot.predict.slicing import SliceSettings
from singleshot.ssd import SSD
from singleshot.weights import save_weights

#: Side of synthetic images when no --imgsz is given (the transforms resize to the model's input anyway).
SYNTHETIC_SIDE = 320
#: When resuming, these come from the current call (they steer the run, not the result) ...
RUN_CONTROLS = ("max_steps", "workers", "device", "save_every_steps")
#: ... these from the checkpoint unless the current call changes them from their defaults ...
RESUME_OVERRIDES = ("epochs", "eval_every")
#: ... and all other fields from the checkpoint.
#: Score from which training's sample pictures draw a detection.
PICTURE_SCORE = 0.4


@dataclass
class TrainResult:
    run_dir: Path
    model: SSD  # the weights used for evaluation (the EMA when enabled)
    best_map50: float
    final_map50: float
    global_step: int
    #: Per class, the score thresholds of the final evaluation (written into ``last``); None without one.
    thresholds: list[ClassThreshold] | None = None


class TerminatedError(Exception):
    """SIGTERM received: checkpoint and leave."""


# -- the parts of a run ---------------------------------------------------------------------------------
def load_data(config: TrainConfig) -> DataBundle:
    """The training and validation sets ``config`` names (synthetic shapes without ``data``)."""
    if config.data is None:
        side = config.imgsz or SYNTHETIC_SIDE
        return synthetic_bundle(config.synthetic_train, config.synthetic_val, (side, side), seed=config.seed)
    return open_dataset(config.data, config.train_split, config.val_split, config.classes)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on convolution/linear weights only, not on norms, biases or the L2Norm scale."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(
    config: TrainConfig, total_steps: int, warmup_steps: int, budget: TimeBudget | None = None
) -> Callable[[int], float]:
    """Per-step multiplier of the peak learning rate: linear warm-up, then cosine (to 1%) or multi-step; with a
    ``budget``, the decay follows the share of the budget used instead of the share of steps."""
    milestones = [round(m * total_steps) for m in config.milestones]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.001 + (1 - 0.001) * step / warmup_steps
        if budget is not None:
            progress = budget.fraction()
            if config.schedule == "multistep":
                return config.gamma ** sum(progress >= m for m in config.milestones)
        elif config.schedule == "multistep":
            return config.gamma ** sum(step >= m for m in milestones)
        else:
            progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_model(config: TrainConfig, num_classes: int) -> SSD:
    """``config.model`` for ``num_classes``, at ``config.imgsz``, with ``config.default_boxes`` (fitted by
    ``singleshot priors --optimize``) in place of the builder's sizes and ratios when given."""
    model = build(config.model, num_classes=num_classes, image_size=config.imgsz)
    if config.default_boxes is None:
        return model
    fitted = config.default_boxes
    if isinstance(fitted, str):
        try:
            fitted = yaml.safe_load(Path(fitted).read_text())
        except OSError as exc:
            raise FileNotFoundError(f"default boxes not found: {config.default_boxes}") from exc
        fitted = fitted.get("default_boxes", fitted) if isinstance(fitted, dict) else fitted
    if not isinstance(fitted, dict):
        raise ValueError(f"{config.default_boxes}: expected a default_boxes mapping (min_sizes, max_sizes, ...)")
    design = model.default_boxes.with_fitted(fitted)
    return build(config.model, num_classes=num_classes, image_size=config.imgsz, default_boxes=design)


def make_optimization(
    model: SSD,
    config: TrainConfig,
    device: torch.device,
    dist: DistInfo,
    steps_per_epoch: int,
    budget: TimeBudget | None = None,
) -> Optimization:
    """SGD with the warm-up/decay schedule, mixed precision, EMA and, under ``torchrun``, the DDP wrapper."""
    total_steps = config.epochs * steps_per_epoch
    amp = amp_dtype(config.amp, device)
    use_amp_layout(model, amp, device)
    optimizer = torch.optim.SGD(param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum)
    warmup = min(round(config.warmup_epochs * steps_per_epoch), total_steps // 2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(config, total_steps, warmup, budget))
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    use_ema = config.ema if config.ema is not None else config.weights is None
    ema = ModelEMA(model, config.ema_decay) if use_ema else None
    net: nn.Module = model
    if dist.enabled:
        # SyncBatchNorm works on GPUs only; on the CPU each rank normalises its own batch and DDP broadcasts
        # rank 0's running statistics at every forward, so all ranks keep identical weights either way.
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if has_bn and device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    return Optimization(
        net, model, optimizer, scheduler, device, amp=amp, scaler=scaler, ema=ema, grad_clip=config.grad_clip
    )


def resume_point(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any], Path]:
    """The configuration to go on with (see :data:`RUN_CONTROLS`), the saved state and the run folder."""
    path = Path(config.resume)  # type: ignore[arg-type]  # set: checked by the caller
    ckpt_path = path / "last.pt" if path.is_dir() else path
    state = load_checkpoint(ckpt_path)
    saved = TrainConfig.from_dict(state["config"], source=str(ckpt_path))
    defaults = TrainConfig()
    changes = {k: getattr(config, k) for k in RESUME_OVERRIDES if getattr(config, k) != getattr(defaults, k)}
    changes.update({k: getattr(config, k) for k in RUN_CONTROLS})
    return dataclasses.replace(saved, **changes, resume=str(ckpt_path)).validate(), state, ckpt_path.parent


# -- the run --------------------------------------------------------------------------------------------
class Trainer:
    """One training run (single process, or one rank under ``torchrun``): build everything from ``config``,
    then :meth:`fit`."""

    def __init__(self, config: TrainConfig, dist: DistInfo | None = None, progress: bool = True) -> None:
        self.created = time.perf_counter()  # a time budget counts from here
        state: dict[str, Any] | None = None
        if config.resume:
            config, state, self.run_dir = resume_point(config)
        else:
            self.run_dir = new_run_dir(config.project, config.name, config.exist_ok)
        self.config = config
        self.dist = dist or DistInfo()
        self.progress = progress and self.dist.is_main
        self.device = resolve_device(config.device, self.dist)
        seed_everything(config.seed + self.dist.rank)

        self.data = load_data(config)
        self.model = build_model(config, len(self.data.class_names))
        if config.base and not config.weights and state is None:
            base, report = imagenet_backbone(config.base, self.model)
            self.model.load_state_dict(base, strict=False)
            self._log(report)
        if config.weights and state is None:
            self._log(load_initial_weights(self.model, config.weights, self.data.class_names))
        self.model.to(self.device)

        preset = config.augment or ("ssdlite" if self.model.name.startswith("ssdlite") else "ssd")
        transform = build_transforms(preset, self.model.preprocessing.image_size)
        if config.tile is not None:  # small objects in large images: tiles at native resolution, then the usual
            transform = TiledTransform(config.tile, transform)
        self.train_view = Augmented(self.data.train, transform, seed=config.seed)
        self.slicing = SliceSettings.of(config.tile)
        self.sampler = EpochSampler(len(self.train_view), True, config.seed, self.dist.rank, self.dist.world_size)
        self.loader = make_loader(self.train_view, config.batch, self.sampler, config.workers)
        self.steps_per_epoch = math.ceil(len(self.sampler) / config.batch)

        self.budget = TimeBudget.parse(config.time_budget) if config.time_budget else None
        self.optim = make_optimization(self.model, config, self.device, self.dist, self.steps_per_epoch, self.budget)
        self.position = Position()
        self.best_map50 = -1.0
        self.final_map50 = float("nan")
        self.report: MetricReport | None = None  # the latest evaluation ...
        self.thresholds: list[ClassThreshold] | None = None  # ... and its per-class score thresholds
        self.run_log: RunLog | None = None  # rank 0 opens it when the run starts
        if state is not None:
            self._restore(state)

    @property
    def eval_model(self) -> SSD:
        """The weights that are evaluated and saved: the EMA when enabled, else the model."""
        # the ignore below: the EMA's module is an SSD
        return self.optim.ema.module if self.optim.ema is not None else self.model  # type: ignore[return-value]

    def fit(self) -> TrainResult:
        """Train until the last epoch (or ``max_steps``); evaluate, save and record at each epoch's end."""
        self._start()
        for epoch in range(self.position.epoch, self.config.epochs):
            started = time.perf_counter()
            stats = self._train_epoch(epoch)
            if stats.stopped and self.budget is not None and self._out_of_time():
                self._end_epoch(epoch, stats, started, final=True)
                self._log(f"time budget used: {self.budget.used():.0f} s of {self.budget.seconds:.0f} s")
                break
            if stats.stopped:
                self._save_state()
                self._save_weight_file("last")
                self._log(
                    f"stopped at max_steps={self.config.max_steps}: checkpoint saved -> {self.run_dir / 'last.pt'}"
                )
                return self._result()
            self._end_epoch(epoch, stats, started)
        self._write_predictions()
        self._log_thresholds()
        self._log(f"done: best mAP50 {self.best_map50:.3f}; weights in {self.run_dir / 'weights'}")
        return self._result()

    def close(self) -> None:
        if self.run_log is not None:
            self.run_log.close()

    # -- steps of fit -----------------------------------------------------------------------------------
    def _start(self) -> None:
        c = self.config
        if self.dist.is_main:
            (self.run_dir / "weights").mkdir(parents=True, exist_ok=True)
            c.save_yaml(self.run_dir / "config.yaml")
            self.run_log = RunLog(self.run_dir)
            if not (self.run_dir / "train_batch.jpg").exists():
                samples = [self.train_view[i] for i in self.sampler.indices()[: min(8, c.batch)]]
                grid = batch_grid([s[0] for s in samples], [s[1] for s in samples], self.data.class_names)
                save_image(grid, self.run_dir / "train_batch.jpg")
        # the ignore below: set: checked by the caller
        amp = {torch.bfloat16: ", bf16", torch.float16: ", fp16"}.get(self.optim.amp, "")  # type: ignore[arg-type]
        self._log(
            f"{self.model.name} at {self.model.preprocessing.image_size}, {self.data.description}, "
            f"{self.steps_per_epoch} steps/epoch x {c.epochs} epochs, device {self.device}{amp}"
            f"{', EMA' if self.optim.ema else ''} -> {self.run_dir}"
        )
        if self.optim.amp is None and self.device.type == "cpu" and c.amp == "auto" and bf16_is_native(self.device):
            self._log("this CPU computes bf16 natively (AMX/AVX512-BF16): --amp bf16 may train faster (SSD300: 4x)")
        if self.budget is not None:
            left = self.budget.left_at_start()
            self._log(f"time budget {self.budget.seconds:.0f} s ({left:.0f} s left): the schedule follows the clock")
            self.budget.start(at=self.created)

    def _train_epoch(self, epoch: int) -> EpochStats:
        self.position.epoch = epoch
        self.sampler.set_epoch(epoch, start=self.position.step_in_epoch * self.config.batch)
        self.train_view.set_epoch(epoch)
        try:
            return train_one_epoch(self.optim, self.loader, self.position, self._after_step, self.progress)
        except (KeyboardInterrupt, TerminatedError):
            self._save_state()
            self._log(f"interrupted: checkpoint saved at {self.position.describe()} -> {self.run_dir / 'last.pt'}")
            raise

    def _after_step(self) -> bool:
        """Checkpoint every ``save_every_steps``; True (stop) once ``max_steps`` are done or the time is up."""
        every, step = self.config.save_every_steps, self.position.global_step
        if every and step % every == 0:
            self._save_state()
        return (bool(self.config.max_steps) and step >= self.config.max_steps) or self._out_of_time()

    def _out_of_time(self) -> bool:
        """Whether the time budget is used (rank 0's clock decides for every rank under ``torchrun``)."""
        if self.budget is None:
            return False
        expired = torch.tensor([float(self.budget.expired())], device=self.device)
        if self.dist.enabled:
            torch.distributed.broadcast(expired, src=0)
        return bool(expired.item())

    def _end_epoch(self, epoch: int, stats: EpochStats, started: float, final: bool = False) -> None:
        """Synchronise ranks, evaluate when due (and when ``final``), save weights and checkpoint, record and print
        the epoch."""
        c = self.config
        self.position.step_in_epoch = 0
        broadcast_buffers(self.model, self.dist)
        if self.optim.ema is not None:
            broadcast_buffers(self.optim.ema.module, self.dist, include_parameters=True)
        report = None
        if self.dist.is_main and (final or epoch + 1 == c.epochs or (c.eval_every and (epoch + 1) % c.eval_every == 0)):
            report = self._evaluate()
        self._save_weight_file("last", self.thresholds if report is not None else None)
        self.position.epoch = epoch + 1  # the checkpoint records where to go on: the start of the next epoch
        self._save_state()
        seconds = time.perf_counter() - started
        images_per_s = stats.images_per_second * self.dist.world_size
        self._record(epoch + 1, stats, report, images_per_s, seconds)
        losses = "  ".join(f"{k} {v:.3f}" for k, v in stats.losses.items())
        shown = "" if report is None else f"  mAP50 {report.map50_07:.3f}"
        shown += f"  AP {report.coco['AP']:.3f}" if report is not None and report.coco else ""
        self._log(f"epoch {epoch + 1}/{c.epochs}  {losses}{shown}  {images_per_s:.1f} img/s  {seconds:.0f}s")

    def _evaluate(self) -> MetricReport:
        """Evaluate the EMA (or the model) on the validation set and read its per-class score thresholds; keep
        ``best.safetensors`` by VOC07 mAP50, carrying them."""
        started = time.perf_counter()
        evaluation = evaluate_model(
            self.eval_model,
            self.data.val,
            self.device,
            batch=self.config.batch,
            workers=self.config.workers,
            progress=self.progress,
            slicing=self.slicing,  # tile training: best is chosen on sliced inference, what the user will run
        )
        assert evaluation is not None  # a single process (rank 0) evaluates during training
        report = evaluation.report
        if self.budget is not None:  # keep time for the final evaluation
            self.budget.keep_for_final_evaluation(time.perf_counter() - started)
        self.final_map50 = report.map50_07
        self.report, self.thresholds = report, class_thresholds(report)
        if report.map50_07 > self.best_map50:
            self.best_map50 = report.map50_07
            self._save_weight_file("best", self.thresholds)
        return report

    def _log_thresholds(self) -> None:
        """Print the final evaluation's per-class thresholds, written into ``last`` (F1 beside the default 0.25)."""
        if self.report is None or self.thresholds is None or not self.dist.is_main:
            return
        self._log("per-class score thresholds (best F1 on the validation split), carried by the weights:")
        self._log(thresholds_table(self.report, self.thresholds, baseline=PREDICT.conf))

    def _record(
        self, epoch: int, stats: EpochStats, report: MetricReport | None, images_per_s: float, seconds: float
    ) -> None:
        """Append epoch ``epoch`` (1-based) to metrics.csv, results.png and TensorBoard."""
        if self.run_log is None:
            return
        lr = self.optim.lr
        row = {
            "epoch": str(epoch),
            "loss_cls": f"{stats.losses.get('loss_cls', float('nan')):.5f}",
            "loss_box": f"{stats.losses.get('loss_box', float('nan')):.5f}",
            "lr": f"{lr:.6g}",
            "map50": "" if report is None else f"{report.map50_07:.5f}",
            "map": "" if report is None or report.coco is None else f"{report.coco['AP']:.5f}",
            "images_per_s": f"{images_per_s:.2f}",
            "seconds": f"{seconds:.1f}",
        }
        scalars = {f"train/{k}": v for k, v in stats.losses.items()} | {"train/lr": lr}
        if report is not None:
            scalars |= {f"val/{k}": v for k, v in report.summary().items()}
        self.run_log.add_epoch(epoch, row, scalars)

    def _write_predictions(self) -> None:
        """The first ``predict_images`` held-out images: predictions (left) beside ground truth (right)."""
        count = min(self.config.predict_images, len(self.data.val))
        if not self.dist.is_main or count <= 0:
            return
        out = self.run_dir / "predictions"
        out.mkdir(exist_ok=True)
        images, targets = zip(*[self.data.val[i] for i in range(count)], strict=True)
        detections, _ = Detector(self.eval_model, self.data.class_names, self.device).detect(images)
        for i, (image, det, target) in enumerate(zip(images, detections, targets, strict=True)):
            pair = prediction_pair(image, det, target, self.data.class_names, min_score=PICTURE_SCORE)
            save_image(pair, out / f"val_{i:03d}.jpg")

    # -- state ------------------------------------------------------------------------------------------
    def _result(self) -> TrainResult:
        return TrainResult(
            self.run_dir, self.eval_model, self.best_map50, self.final_map50, self.position.global_step, self.thresholds
        )

    def _log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)

    def _save_weight_file(self, which: str, thresholds: list[ClassThreshold] | None = None) -> None:
        """``weights/<which>.safetensors``: the evaluated weights (EMA when enabled), for users, carrying the best-F1
        per-class score ``thresholds`` of their evaluation when given."""
        if self.dist.is_main:
            path = self.run_dir / "weights" / f"{which}.safetensors"
            class_conf = threshold_vector(thresholds) if thresholds is not None else None
            save_weights(self.eval_model, path, self.data.class_names, class_conf=class_conf)

    def _save_state(self) -> None:
        """``last.pt``: everything needed to go on exactly from here (:mod:`singleshot.engine.checkpoint`)."""
        if not self.dist.is_main:
            return
        o = self.optim
        state = {
            "model": self.model.state_dict(),
            "optimizer": o.optimizer.state_dict(),
            "scheduler": o.scheduler.state_dict(),
            "scaler": o.scaler.state_dict() if o.scaler is not None else {},
            "ema": o.ema.state_dict() if o.ema is not None else {},
            "epoch": self.position.epoch,
            "step_in_epoch": self.position.step_in_epoch,
            "global_step": self.position.global_step,
            "best_map50": self.best_map50,
            "budget_used": self.budget.used() if self.budget is not None else 0.0,
            "rng": rng_state(),
            "config": self.config.to_dict(),
        }
        save_checkpoint(state, self.run_dir / "last.pt")

    def _restore(self, state: dict[str, Any]) -> None:
        o = self.optim
        self.model.load_state_dict(state["model"])
        o.optimizer.load_state_dict(state["optimizer"])
        o.scheduler.load_state_dict(state["scheduler"])
        if o.scaler is not None and state.get("scaler"):
            o.scaler.load_state_dict(state["scaler"])
        if o.ema is not None and state.get("ema"):
            o.ema.load_state_dict(state["ema"])
        self.position = Position(int(state["epoch"]), int(state["step_in_epoch"]), int(state["global_step"]))
        self.best_map50 = float(state["best_map50"])
        if self.budget is not None:
            self.budget.resume(float(state.get("budget_used", 0.0)))
        set_rng_state(state["rng"])
        self._log(f"resumed {self.run_dir} at {self.position.describe()} (global {self.position.global_step})")


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Run a training (single process, or one rank under ``torchrun``). See the module docstring."""
    config.validate()
    with process_group(config.device) as dist, _sigterm_raises(dist.is_main):
        trainer = Trainer(config, dist, progress)
        try:
            return trainer.fit()
        finally:
            trainer.close()


@contextlib.contextmanager
def _sigterm_raises(enabled: bool) -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`TerminatedError` (so the run checkpoints and leaves), unless a
    handler other than the default is installed already."""
    previous = signal.getsignal(signal.SIGTERM)
    install = enabled and previous in (signal.SIG_DFL, None)

    def on_sigterm(signum: int, frame: object) -> None:
        raise TerminatedError

    if install:
        signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if install:
            signal.signal(signal.SIGTERM, previous)
