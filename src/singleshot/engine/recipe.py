"""``TrainConfig``: everything a training run depends on (``singleshot train``'s flags, a YAML recipe's keys)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from singleshot.config import Config, setting, shared
from singleshot.data.transforms import PRESETS
from singleshot.engine.budget import TimeBudget


@dataclass
class TrainConfig(Config):
    """Everything a training run depends on. Saved, resolved, as ``config.yaml`` in each run folder."""

    what: ClassVar[str] = "training"
    recipes: ClassVar[bool] = True

    model: str = setting("ssdlite320_mobilenet_v3", "model variant (see `singleshot models`)")
    data: str | None = setting(
        None, "dataset folder or file (VOC, COCO or YOLO, detected); none trains on synthetic shapes"
    )
    train_split: str = shared("train_split")
    val_split: str = shared("val_split")
    classes: list[str] | None = shared("classes")
    synthetic_train: int = setting(2000, "synthetic shapes: number of training images")
    synthetic_val: int = setting(200, "synthetic shapes: number of held-out images (drawn from another seed)")
    epochs: int = setting(30, "passes over the training set")
    batch: int = shared("batch", 16)
    imgsz: int | None = setting(None, "input side in pixels; none keeps the model's own (300, 320 or 512)")
    # the ignore below: a Literal of a constant tuple: valid at run time
    augment: Literal[PRESETS] | None = setting(  # type: ignore[valid-type]
        None, "augmentation preset; none picks ssdlite for SSDLite models and ssd for the others"
    )
    lr: float = setting(0.05, "peak learning rate of SGD (used as given, not scaled with the batch size)")
    momentum: float = setting(0.9, "SGD momentum (paper section 3)")
    weight_decay: float = setting(5e-4, "L2 weight decay on conv/linear weights, not norms or biases (paper, VGG16)")
    warmup_epochs: float = setting(1.0, "linear learning-rate warm-up from 0.1% of --lr, in epochs")
    schedule: Literal["cosine", "multistep"] = setting("cosine", "decay after warm-up: cosine to 1%, or multistep")
    milestones: list[float] = setting([2 / 3, 8 / 9], "multistep: where --gamma applies, as fractions of training")
    gamma: float = setting(0.1, "multistep: learning-rate factor at each milestone")
    amp: Literal["auto", "off", "bf16", "fp16"] = setting(
        "auto", "mixed precision: auto is fp16 on CUDA and off on the CPU; bf16 pays on CPUs with AMX/AVX512-BF16"
    )
    ema: bool | None = setting(
        None, "keep an exponential moving average of the weights; none: only when training from scratch"
    )
    ema_decay: float = setting(0.9998, "EMA decay per step (warmed up over the first few thousand steps)")
    grad_clip: float = setting(10.0, "clip the gradient norm to this (0 disables)")
    eval_every: int = setting(1, "epochs between evaluations (0: only after the last epoch)")
    workers: int = shared("workers", 2)
    seed: int = setting(0, "seed of initialisation, shuffling and augmentation (runs repeat bit for bit)")
    device: str = shared("device")
    project: str = shared("project", task="train")
    name: str = shared("name")
    exist_ok: bool = shared("exist_ok")
    weights: str | None = setting(
        None, "initial weights: our .safetensors or any file singleshot convert reads; other classes are mapped by name"
    )
    default_boxes: str | dict | None = setting(
        None, "fitted default boxes: default_boxes.yaml of singleshot priors --optimize, or its mapping in a recipe"
    )
    base: str | None = setting(
        None, "ImageNet backbone: torchvision's vgg16(_bn)/mobilenet_v3_large .pth, reduced-fc .caffemodel, torchvision"
    )
    resume: str | None = setting(None, "continue a run exactly where it stopped: its folder or its last.pt")
    save_every_steps: int = setting(0, "also write last.pt every N steps (0: at the end of each epoch only)")
    max_steps: int = setting(0, "stop after this many optimiser steps in total, checkpoint kept (0: no limit)")
    time_budget: str | None = setting(
        None, "wall-clock budget (30m, 90s, 1.5h): the schedule spans it, training stops on time; --epochs caps it"
    )
    predict_images: int = setting(8, "held-out images drawn with predictions beside ground truth at the end")
    tile: int | None = setting(
        None,
        "train on random tiles of this side (native pixels, mostly over objects) of the training images, for small "
        "objects in large images; validation then runs sliced inference at the same size",
    )

    def problems(self) -> list[str]:
        positive = {"epochs": self.epochs, "batch": self.batch, "lr": self.lr}
        bad = [f"{k}={v}" for k, v in positive.items() if v <= 0]
        if self.imgsz is not None and self.imgsz < 32:
            bad.append(f"imgsz={self.imgsz}")
        if self.workers < 0 or self.eval_every < 0 or self.max_steps < 0 or self.save_every_steps < 0:
            bad.append("workers, eval_every, max_steps and save_every_steps must be >= 0")
        if self.tile is not None and self.tile < 1:
            bad.append(f"tile={self.tile} must be >= 1")
        if not 0 < self.ema_decay < 1:
            bad.append(f"ema_decay={self.ema_decay}")
        if self.time_budget is not None:
            try:
                TimeBudget.parse(self.time_budget)
            except ValueError as exc:
                bad.append(str(exc))
        return bad


__all__ = ["TrainConfig"]
