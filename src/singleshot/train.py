"""``singleshot train``: a run from config to weights, with checkpoints, logs and pictures.

Run folder ``<project>/<name>/``: ``config.yaml`` (resolved), ``metrics.csv``, TensorBoard events,
``results.png``, ``train_batch.jpg``, ``weights/{last,best}.safetensors``, ``last.pt`` (resumable state) and
``predictions/`` (held-out images, predictions beside ground truth).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.tensorboard import SummaryWriter

from singleshot.checkpoint import load_checkpoint, read_weights, save_checkpoint, save_weights
from singleshot.config import TrainConfig
from singleshot.data import DataBundle, synthetic_bundle
from singleshot.data.loader import Augmented, EpochSampler, make_loader
from singleshot.data.transforms import build_transforms
from singleshot.distributed import DistInfo, broadcast_buffers, init_distributed, resolve_device, shutdown
from singleshot.engine import ModelEMA, StepInfo, amp_dtype, evaluate, predict, train_one_epoch
from singleshot.evaluate import MetricReport
from singleshot.models import build
from singleshot.plots import batch_grid, plot_results, prediction_pair, save_image
from singleshot.runs import new_run_dir
from singleshot.ssd import SSD

#: Side of synthetic images when no --imgsz is given (the transforms resize to the model's input anyway).
SYNTHETIC_SIDE = 320
#: When resuming, these come from the current call (they steer the run, not the result) ...
RUN_CONTROLS = ("max_steps", "workers", "device", "save_every_steps")
#: ... these from the checkpoint unless the current call changes them from their defaults ...
RESUME_OVERRIDES = ("epochs", "eval_every")
#: ... and all other fields from the checkpoint.


@dataclass
class TrainResult:
    run_dir: Path
    model: SSD  # the weights used for evaluation (the EMA when enabled)
    best_map50: float
    final_map50: float
    global_step: int


# -- setup ----------------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_data(config: TrainConfig, image_size: tuple[int, int]) -> DataBundle:
    if config.data is None:
        return synthetic_bundle(config.synthetic_train, config.synthetic_val, image_size, seed=config.seed)
    from singleshot.data.formats import open_dataset

    return open_dataset(config.data, config.train_split, config.val_split, config.classes)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on convolution/linear weights only, not on norms, biases or the L2Norm scale."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_factor(config: TrainConfig, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Per-step multiplier of the peak learning rate: linear warm-up, then cosine (to 1%) or multi-step."""
    milestones = [round(m * total_steps) for m in config.milestones]

    def factor(step: int) -> float:
        if step < warmup_steps:
            return 0.001 + (1 - 0.001) * step / warmup_steps
        if config.schedule == "multistep":
            return config.gamma ** sum(step >= m for m in milestones)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def load_initial_weights(model: SSD, path: str) -> str:
    """Start from ``path``: our ``.safetensors`` or a torchvision SSD state dict. Tensors whose shapes differ
    (a head for another number of classes) are left as initialised. Returns a one-line report."""
    from singleshot.weights import from_torchvision

    if path.endswith(".safetensors"):
        tensors, _ = read_weights(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state) if isinstance(state, dict) else state
        tensors = from_torchvision(state, model.name)
    own = model.state_dict()
    loadable = {k: v for k, v in tensors.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(loadable, strict=False)
    return f"loaded {len(loadable)}/{len(own)} tensors from {path}"


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy": [np_state[0], np_state[1].tolist(), np_state[2], np_state[3], np_state[4]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def _resolve_resume(config: TrainConfig) -> tuple[TrainConfig, dict[str, Any], Path]:
    path = Path(config.resume)  # type: ignore[arg-type]
    ckpt_path = path / "last.pt" if path.is_dir() else path
    state = load_checkpoint(ckpt_path)
    saved = TrainConfig.from_dict(state["config"], source=str(ckpt_path))
    defaults = TrainConfig()
    changes = {k: getattr(config, k) for k in RESUME_OVERRIDES if getattr(config, k) != getattr(defaults, k)}
    changes.update({k: getattr(config, k) for k in RUN_CONTROLS})
    return dataclasses.replace(saved, **changes, resume=str(ckpt_path)).validate(), state, ckpt_path.parent


class TerminatedError(Exception):
    """SIGTERM received: checkpoint and leave."""


# -- the run --------------------------------------------------------------------------------------------
class Run:
    """State shared by the steps of one training run."""

    def __init__(self, config: TrainConfig, dist_info: DistInfo) -> None:
        state: dict[str, Any] | None = None
        if config.resume:
            config, state, run_dir = _resolve_resume(config)
        else:
            run_dir = new_run_dir(config.project, config.name, config.exist_ok)
        self.config = config
        self.dist = dist_info
        self.run_dir = run_dir
        self.device = resolve_device(config.device, dist_info)
        seed_everything(config.seed + dist_info.rank)

        side = config.imgsz or SYNTHETIC_SIDE
        self.data = load_data(config, (side, side))
        self.model = build(config.model, num_classes=len(self.data.class_names), image_size=config.imgsz)
        if config.weights and state is None:
            self.log(load_initial_weights(self.model, config.weights))
        self.model.to(self.device)

        preset = config.augment or ("ssdlite" if self.model.name.startswith("ssdlite") else "ssd")
        transform = build_transforms(preset, self.model.preprocessing.image_size)
        self.train_view = Augmented(self.data.train, transform, seed=config.seed)
        self.sampler = EpochSampler(len(self.train_view), True, config.seed, dist_info.rank, dist_info.world_size)
        self.loader = make_loader(self.train_view, config.batch, self.sampler, config.workers)
        self.val_loader = make_loader(
            self.data.val, config.batch, EpochSampler(len(self.data.val), False), config.workers
        )
        self.steps_per_epoch = math.ceil(len(self.sampler) / config.batch)
        self.total_steps = config.epochs * self.steps_per_epoch

        self.optimizer = torch.optim.SGD(
            param_groups(self.model, config.weight_decay), lr=config.lr, momentum=config.momentum
        )
        warmup = min(round(config.warmup_epochs * self.steps_per_epoch), self.total_steps // 2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(config, self.total_steps, warmup))
        self.amp = amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        use_ema = config.ema if config.ema is not None else config.weights is None
        self.ema = ModelEMA(self.model, config.ema_decay) if use_ema else None
        self.net: nn.Module = self.model
        if dist_info.enabled:
            # SyncBatchNorm works on GPUs only; on the CPU each rank normalises its own batch and DDP broadcasts
            # rank 0's running statistics at every forward, so all ranks keep identical weights either way.
            has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
            if has_bn and self.device.type == "cuda":
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)

        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.tensorboard: SummaryWriter | None = None  # rank 0 opens it in start_folder
        self.best_map50 = -1.0
        if state is not None:
            self._restore(state)

    # -- helpers --------------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, flush=True)

    @property
    def eval_model(self) -> SSD:
        return self.ema.module if self.ema is not None else self.model  # type: ignore[return-value]

    def _restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step, self.best_map50 = int(state["global_step"]), float(state["best_map50"])
        _set_rng_state(state["rng"])
        self.log(
            f"resumed {self.run_dir} at epoch {self.epoch + 1}, step {self.step_in_epoch} (global {self.global_step})"
        )

    def save_checkpoint(self) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step,
                "best_map50": self.best_map50,
                "rng": _rng_state(),
                "config": self.config.to_dict(),
            },
            self.run_dir / "last.pt",
        )

    def _on_step(self, info: StepInfo) -> bool:
        self.step_in_epoch, self.global_step = info.step_in_epoch, info.global_step
        every = self.config.save_every_steps
        if every and info.global_step % every == 0:
            self.save_checkpoint()
        return bool(self.config.max_steps) and info.global_step >= self.config.max_steps

    # -- artefacts ------------------------------------------------------------------------------------
    def start_folder(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "weights").mkdir(exist_ok=True)
        self.config.save_yaml(self.run_dir / "config.yaml")
        self.tensorboard = SummaryWriter(str(self.run_dir))
        if not (self.run_dir / "train_batch.jpg").exists():
            first = self.sampler.indices()[: min(8, self.config.batch)]
            samples = [self.train_view[i] for i in first]
            grid = batch_grid([s[0] for s in samples], [s[1] for s in samples], self.data.class_names)
            save_image(grid, self.run_dir / "train_batch.jpg")

    def record(
        self, epoch: int, stats_losses: dict[str, float], report: MetricReport | None, ips: float, seconds: float
    ) -> None:
        """Append epoch ``epoch`` (1-based) to metrics.csv and TensorBoard, and redraw results.png."""
        if not self.dist.is_main or self.tensorboard is None:
            return
        path = self.run_dir / "metrics.csv"
        row = {
            "epoch": epoch,
            "loss_cls": f"{stats_losses.get('loss_cls', float('nan')):.5f}",
            "loss_box": f"{stats_losses.get('loss_box', float('nan')):.5f}",
            "lr": f"{self.optimizer.param_groups[0]['lr']:.6g}",
            "map50": "" if report is None else f"{report.map50_07:.5f}",
            "map": "" if report is None or report.coco is None else f"{report.coco['AP']:.5f}",
            "images_per_s": f"{ips:.2f}",
            "seconds": f"{seconds:.1f}",
        }
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        plot_results(path, self.run_dir / "results.png")
        for k, v in stats_losses.items():
            self.tensorboard.add_scalar(f"train/{k}", v, epoch)
        self.tensorboard.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], epoch)
        if report is not None:
            for name, value in report.summary().items():
                self.tensorboard.add_scalar(f"val/{name}", value, epoch)
        self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def write_predictions(self) -> None:
        if not self.dist.is_main or self.config.predict_images <= 0:
            return
        out = self.run_dir / "predictions"
        out.mkdir(exist_ok=True)
        n = min(self.config.predict_images, len(self.data.val))
        images, targets = zip(*[self.data.val[i] for i in range(n)], strict=True)
        loader = [(list(images), list(targets))]
        detections, _ = predict(self.eval_model, loader, self.device)
        for i, (image, det, target) in enumerate(zip(images, detections, targets, strict=True)):
            pair = prediction_pair(image, det, target, self.data.class_names, min_score=0.4)
            save_image(pair, out / f"val_{i:03d}.jpg")


def train(config: TrainConfig, progress: bool = True) -> TrainResult:
    """Run a training (single process, or one rank under ``torchrun``). See the module docstring."""
    config.validate()
    dist_info = init_distributed(config.device)
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: object) -> None:
        raise TerminatedError

    if dist_info.is_main and previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_sigterm)
    run = None
    try:
        run = Run(config, dist_info)
        return _train(run, progress)
    finally:
        if run is not None:
            run.close()
        if dist_info.is_main and previous in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, previous)
        shutdown(dist_info)


def _train(run: Run, progress: bool) -> TrainResult:
    c = run.config
    run.start_folder()
    run.log(
        f"{run.model.name} at {run.model.preprocessing.image_size}, {run.data.description}, "
        f"{run.steps_per_epoch} steps/epoch x {c.epochs} epochs, device {run.device}"
        f"{', bf16' if run.amp == torch.bfloat16 else ', fp16' if run.amp == torch.float16 else ''}"
        f"{', EMA' if run.ema else ''} -> {run.run_dir}"
    )
    final_map = float("nan")
    start_epoch = run.epoch
    for epoch in range(start_epoch, c.epochs):
        run.epoch = epoch
        run.sampler.set_epoch(epoch, start=run.step_in_epoch * c.batch)
        run.train_view.set_epoch(epoch)
        t0 = time.perf_counter()
        try:
            stats = train_one_epoch(
                run.net, run.optimizer, run.scheduler, run.loader, run.device, epoch, run.global_step,
                step_in_epoch=run.step_in_epoch, amp=run.amp, scaler=run.scaler, ema=run.ema,
                grad_clip=c.grad_clip, hooks=[run._on_step], progress=progress and run.dist.is_main,
                total_steps=run.steps_per_epoch - run.step_in_epoch,
            )  # fmt: skip
        except (KeyboardInterrupt, TerminatedError):
            run.save_checkpoint()
            run.log(
                f"interrupted: checkpoint saved at epoch {epoch + 1}, step {run.step_in_epoch} "
                f"-> {run.run_dir / 'last.pt'}"
            )
            raise
        if stats.stopped:
            run.save_checkpoint()
            run.log(f"stopped at max_steps={c.max_steps}: checkpoint saved -> {run.run_dir / 'last.pt'}")
            break
        run.step_in_epoch = 0
        broadcast_buffers(run.model, run.dist)
        if run.ema is not None:
            broadcast_buffers(run.ema.module, run.dist, include_parameters=True)
        last = epoch + 1 == c.epochs
        map50, report = None, None
        if run.dist.is_main and (last or (c.eval_every and (epoch + 1) % c.eval_every == 0)):
            report = evaluate(run.eval_model, run.val_loader, run.device, run.data.class_names, progress=progress)
            map50 = final_map = report.map50_07
            if map50 > run.best_map50:
                run.best_map50 = map50
                save_weights(run.eval_model, run.run_dir / "weights" / "best.safetensors", run.data.class_names)
        if run.dist.is_main:
            save_weights(run.eval_model, run.run_dir / "weights" / "last.safetensors", run.data.class_names)
        run.epoch = epoch + 1  # the checkpoint records where to go on: the start of the next epoch
        run.save_checkpoint()
        seconds = time.perf_counter() - t0
        ips = stats.images_per_second * run.dist.world_size
        run.record(epoch + 1, stats.losses, report, ips, seconds)
        losses = "  ".join(f"{k} {v:.3f}" for k, v in stats.losses.items())
        shown = (
            ""
            if report is None
            else f"  mAP50 {report.map50_07:.3f}" + (f"  AP {report.coco['AP']:.3f}" if report.coco else "")
        )
        run.log(f"epoch {epoch + 1}/{c.epochs}  {losses}{shown}  {ips:.1f} img/s  {seconds:.0f}s")
    else:
        run.write_predictions()
        run.log(f"done: best mAP50 {run.best_map50:.3f}; weights in {run.run_dir / 'weights'}")
    return TrainResult(run.run_dir, run.eval_model, run.best_map50, final_map, run.global_step)
