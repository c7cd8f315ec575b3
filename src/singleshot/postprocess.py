"""Post-processing (paper section 3, inference): decode, score threshold, per-class NMS, top-k.

The whole batch is handled with tensor operations: candidate selection is one threshold (or one per class,
broadcast over the scores) plus one ``topk`` when some class has more than its cap of candidates, only candidates
are decoded, and NMS is one ``torchvision.ops.batched_nms`` call whose groups are ``(image, class)`` pairs, on each
image's best candidates only, as many as it takes to know its top ``max_det`` (:func:`nms_enough`: the same
detections). There is no Python loop over classes or images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from singleshot.boxes import DEFAULT_VARIANCES, decode


def select_candidates(scores: Tensor, above: Tensor, per_class: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The scores marked ``above`` the threshold, at most ``per_class`` (the highest) per image and class.

    Args:
        scores: ``(B, P, C)`` class probabilities, background removed.
        above: ``(B, P, C)`` bool, ``scores > conf``.

    Returns:
        ``(image, prior, class, score)`` 1-D tensors, ordered by image, then class, then decreasing score
        (the order of a per-class loop, so that NMS breaks ties the same way).
    """
    num_cls = scores.shape[2]
    if above.numel() == 0 or int(above.sum(dim=1).max()) <= per_class:
        # Usual case with a trained model: no class is over its cap, so a sparse selection is all it takes.
        img, prior, cls = above.nonzero(as_tuple=True)
        score = scores[img, prior, cls]
    else:
        # Dense case (an untrained model): one top-k over the priors of every (image, class) row.
        top_scores, top_prior = scores.transpose(1, 2).topk(min(per_class, scores.shape[1]), dim=2)
        img, cls, slot = above.transpose(1, 2).gather(2, top_prior).nonzero(as_tuple=True)
        score, prior = top_scores[img, cls, slot], top_prior[img, cls, slot]
    order = score.argsort(descending=True, stable=True)
    order = order[(img * num_cls + cls)[order].argsort(stable=True)]
    return img[order], prior[order], cls[order], score[order]


#: :func:`nms_enough` first runs NMS on this many times ``max_det`` of each image's best candidates.
NMS_PREFIX = 2


def nms_enough(
    boxes: Tensor, scores: Tensor, images: Tensor, groups: Tensor, iou: float, max_det: int, batch: int
) -> Tensor:
    """Indices of the candidates that per-group NMS keeps, sorted by decreasing score, as far as it takes to know
    each image's ``max_det`` best: the same top ``max_det`` per image as NMS over every candidate.

    Greedy NMS decides on a box from the higher-scoring boxes of its group alone, so NMS over an image's best
    ``n`` candidates decides each of them as NMS over all of them would; once it keeps ``max_det`` boxes, the lower
    candidates cannot enter the image's top ``max_det``. NMS runs on the best ``NMS_PREFIX * max_det`` candidates
    of each image, then (while an image keeps fewer than ``max_det`` of a longer list) on a list long enough for the
    share NMS kept so far to reach ``max_det``, at least twice as long. An SSDLite of 20 classes at its own settings
    (conf 0.001, 300 per class, 300 detections) has 6000 candidates per image: NMS on the best 600 took 1.0 ms
    against 11 ms on all of them (AVX2 EPYC, 2 threads).

    Args:
        boxes: ``(N, 4)`` xyxy candidates; ``scores``, ``images`` (0..B-1), ``groups`` (NMS groups: image and
            class): ``(N,)``.
    """
    order = scores.argsort(descending=True, stable=True)
    order = order[images[order].argsort(stable=True)]  # by image, then by decreasing score (ties: input order)
    counts = torch.bincount(images, minlength=batch)
    rank = torch.arange(order.numel(), device=order.device) - (counts.cumsum(0) - counts)[images[order]]
    limit = NMS_PREFIX * max_det
    while True:
        chosen = order[rank < limit]
        keep = chosen[batched_nms(boxes[chosen], scores[chosen], groups[chosen], iou)]
        kept = torch.bincount(images[keep], minlength=batch)
        short = (kept < max_det) & (counts > limit)
        if not bool(short.any()):
            return keep
        # the next list: long enough for the share of boxes NMS kept so far to reach max_det, with a margin
        needed = float((max_det / kept[short].clamp(min=1)).max()) * 1.25
        limit = int(limit * max(2.0, needed))


@dataclass(frozen=True)
class PostSettings:
    """How detections are kept, one name per setting, checked once when made. The defaults are the original's test
    settings (paper section 3, the released SSD300/SSD512 deploy files), also torchvision's SSD300 settings.

    Frozen and hashable: a server's batch mixing requests with different settings is post-processed group by group.

    Args:
        conf: a detection's class score must exceed this (original: 0.01).
        iou: IoU above which a lower-scoring box of the same class is suppressed (original: 0.45).
        max_det: detections kept per image after NMS (original: 200).
        candidates: boxes of each class kept, by score, before NMS (original: 400).
        classes: labels (1..C) kept, the others left out before candidate selection; None keeps every class.
        class_conf: one threshold per class (labels 1..C) that its scores must exceed instead of ``conf``, e.g. the
            best-F1 thresholds of :func:`~singleshot.metrics.class_thresholds`; a None entry (a class without one)
            takes ``conf``, and so does every class when this is None.

    Raises:
        ValueError: ``conf``, ``iou`` or a ``class_conf`` entry outside [0, 1], ``max_det`` or ``candidates`` below 1.
    """

    conf: float = 0.01
    iou: float = 0.45
    max_det: int = 200
    candidates: int = 400
    classes: tuple[int, ...] | None = None
    class_conf: tuple[float | None, ...] | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.conf <= 1 and 0 <= self.iou <= 1):
            raise ValueError(f"conf={self.conf} and iou={self.iou} must be in [0, 1]")
        if self.class_conf is not None:
            # a tuple of floats, whatever sequence was given (a JSON list): hashable, equal by value
            object.__setattr__(self, "class_conf", tuple(None if c is None else float(c) for c in self.class_conf))
            bad = [c for c in self.class_conf if c is not None and not 0 <= c <= 1]
            if bad:
                raise ValueError(f"class_conf {bad} must be in [0, 1]")
        small = [f"{k}={v}" for k, v in (("max_det", self.max_det), ("candidates", self.candidates)) if v < 1]
        if small:
            raise ValueError(f"{' and '.join(small)} must be >= 1")

    def replace(self, **changes: object) -> PostSettings:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]  # mypy cannot type **changes

    def class_limits(self, num_classes: int, device: torch.device | str = "cpu") -> Tensor:
        """``(C,)`` float32: the threshold each class's scores must exceed (``class_conf``, else ``conf``).

        Raises:
            ValueError: ``class_conf`` not of ``num_classes`` entries.
        """
        if self.class_conf is None:
            return torch.full((num_classes,), self.conf, dtype=torch.float32, device=device)
        if len(self.class_conf) != num_classes:
            raise ValueError(f"class_conf has {len(self.class_conf)} thresholds for a model of {num_classes} classes")
        limits = [self.conf if c is None else c for c in self.class_conf]
        return torch.tensor(limits, dtype=torch.float32, device=device)


#: What prediction keeps unless told otherwise (``singleshot predict``, :meth:`Detector.predict
#: <singleshot.predict.Detector.predict>`, the server's ``/predict``): the detections a person looks at, with the
#: original's NMS IoU and cap; the other settings stay the model's own.
PREDICT = PostSettings(conf=0.25)

#: The names :meth:`PostProcessor.to_metadata` writes in weight and ONNX files (kept from the first files written).
_FILE_KEYS = {"conf": "score_threshold", "iou": "nms_threshold", "candidates": "candidates_per_class",
              "max_det": "detections_per_image"}  # fmt: skip  # one mapping, easier to read on two lines
#: The key of :attr:`PostProcessor.class_conf` in those files (absent from files without per-class thresholds).
CLASS_CONF_KEY = "class_score_thresholds"


class PostProcessor(nn.Module):
    """Turns head outputs into detections under :class:`PostSettings`: the model's own (``settings``), or a call's.

    Args:
        settings: the model's own settings (what evaluation uses).
        variances: box-coder variances.
        class_conf: the weights' per-class score thresholds (labels 1..C, None for a class without one), e.g. the
            best-F1 ones of the final evaluation of ``singleshot train``: what prediction keeps when no ``conf`` is
            given (:meth:`predict_settings`). Not part of ``settings``: evaluation, and AP, stay as they were.

    Raises:
        ValueError: a ``class_conf`` entry outside [0, 1].
    """

    def __init__(
        self,
        settings: PostSettings = PostSettings(),
        variances: tuple[float, float] = DEFAULT_VARIANCES,
        class_conf: Sequence[float | None] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.variances = variances
        self.class_conf: tuple[float | None, ...] | None = (
            None if class_conf is None else PostSettings(class_conf=tuple(class_conf)).class_conf  # checked there
        )

    def predict_settings(self, conf: float | None = None, **changes: object) -> PostSettings:
        """What prediction keeps (``singleshot predict``, :meth:`Detector.predict
        <singleshot.predict.Detector.predict>`, the server's ``/predict``): the model's own settings with ``changes``
        (``iou``, ``max_det``, ``classes``...), keeping the scores above ``conf`` when one is given, whatever the
        weights carry; else above the weights' per-class thresholds (:attr:`class_conf`) when they carry them, and
        above :data:`PREDICT`'s ``conf`` for the classes without one and when they carry none."""
        if conf is not None:
            return self.settings.replace(conf=conf, class_conf=None, **changes)
        return self.settings.replace(conf=PREDICT.conf, class_conf=self.class_conf, **changes)

    def to_metadata(self) -> dict[str, float | int | list[float] | list[float | None]]:
        """The settings, variances and per-class thresholds (when there are) as a file's JSON (:meth:`from_metadata`
        reads them back)."""
        values = {_FILE_KEYS[k]: getattr(self.settings, k) for k in ("conf", "iou", "candidates", "max_det")}
        thresholds = {} if self.class_conf is None else {CLASS_CONF_KEY: list(self.class_conf)}
        return values | {"variances": list(self.variances)} | thresholds

    @classmethod
    def from_metadata(cls, values: dict[str, object]) -> PostProcessor:
        """The inverse of :meth:`to_metadata`; unknown keys are an error, missing ones take the defaults (no
        per-class thresholds in files written without them)."""
        names = {v: k for k, v in _FILE_KEYS.items()}
        unknown = [k for k in values if k not in names and k not in ("variances", CLASS_CONF_KEY)]
        if unknown:
            raise ValueError(f"unknown post-processing settings {unknown}")
        # the ignore below: checked by PostSettings
        settings = PostSettings(**{names[k]: v for k, v in values.items() if k in names})  # type: ignore[arg-type]
        variances = values.get("variances", DEFAULT_VARIANCES)
        # the ignores below: a JSON list of two numbers; a JSON list of numbers and nulls, checked by PostSettings
        return cls(
            settings,
            tuple(float(v) for v in variances),  # type: ignore[attr-defined,arg-type]
            values.get(CLASS_CONF_KEY),  # type: ignore[arg-type]
        )

    def forward(
        self,
        scores: Tensor,
        boxes: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        settings: PostSettings | None = None,
        priors_cxcywh: Tensor | None = None,
    ) -> list[dict[str, Tensor]]:
        """Detections of each image: candidates above ``settings.conf`` (or their class's ``class_conf``), per-class
        NMS, the top ``max_det``.

        Args:
            scores: ``(B, P, C + 1)``, background at index 0: the head's logits when ``priors_cxcywh`` is given,
                else class probabilities (an exported model's, softmax taken).
            boxes: ``(B, P, 4)``: the head's offsets when ``priors_cxcywh`` is given (only candidates are
                decoded), else decoded boxes, xyxy normalised to [0, 1] of the input.
            image_sizes: ``(H, W)`` of each original image; boxes are scaled to it.
            settings: this call's settings (default: the model's own).
            priors_cxcywh: ``(P, 4)`` default boxes, normalised, when ``scores`` and ``boxes`` are head outputs.

        Returns:
            Per image ``{"boxes": (D, 4) xyxy pixels, "scores": (D,), "labels": (D,) int64 in 1..C}``,
            sorted by decreasing score.
        """
        settings = self.settings if settings is None else settings
        probabilities = scores.float().softmax(dim=-1) if priors_cxcywh is not None else scores.float()
        batch, _, num_logits = probabilities.shape
        fg = probabilities[..., 1:]
        if settings.classes is not None:
            keep = torch.zeros(num_logits - 1, dtype=torch.bool, device=fg.device)
            keep[torch.tensor(settings.classes, dtype=torch.int64, device=fg.device) - 1] = True
            fg = fg * keep  # excluded classes score 0: below any threshold, never selected
        limits = settings.conf if settings.class_conf is None else settings.class_limits(num_logits - 1, fg.device)
        img, prior, cls, score = select_candidates(fg, fg > limits, settings.candidates)

        if priors_cxcywh is not None:
            candidates = decode(boxes[img, prior].float(), priors_cxcywh[prior], self.variances)
        else:
            candidates = boxes[img, prior].float()
        sizes = torch.tensor(image_sizes, dtype=torch.float32, device=fg.device)  # (B, 2) = (H, W)
        candidates = candidates.clamp(0.0, 1.0) * sizes[img][:, [1, 0, 1, 0]]
        keep = nms_enough(candidates, score, img, img * (num_logits - 1) + cls, settings.iou, settings.max_det, batch)

        # `keep` is sorted by decreasing score; a stable sort by image keeps that order inside each image.
        keep = keep[torch.sort(img[keep], stable=True).indices]
        per_image = torch.bincount(img[keep], minlength=batch)
        rank = torch.arange(keep.numel(), device=keep.device) - (per_image.cumsum(0) - per_image)[img[keep]]
        keep = keep[rank < settings.max_det]
        counts = torch.bincount(img[keep], minlength=batch).tolist()
        return [
            {"boxes": b, "scores": s, "labels": lab}
            for b, s, lab in zip(
                candidates[keep].split(counts), score[keep].split(counts), (cls[keep] + 1).split(counts), strict=True
            )
        ]
