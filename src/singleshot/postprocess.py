"""Post-processing (paper section 3, inference): decode, score threshold, per-class NMS, top-k.

The whole batch is handled with tensor operations: candidate selection is one threshold (plus one ``topk``
when some class has more than its cap of candidates), only candidates are decoded, and NMS is one
``torchvision.ops.batched_nms`` call whose groups are ``(image, class)`` pairs. There is no Python loop over
classes or images.
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

    Raises:
        ValueError: ``conf`` or ``iou`` outside [0, 1], ``max_det`` or ``candidates`` below 1.
    """

    conf: float = 0.01
    iou: float = 0.45
    max_det: int = 200
    candidates: int = 400
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.conf <= 1 and 0 <= self.iou <= 1):
            raise ValueError(f"conf={self.conf} and iou={self.iou} must be in [0, 1]")
        small = [f"{k}={v}" for k, v in (("max_det", self.max_det), ("candidates", self.candidates)) if v < 1]
        if small:
            raise ValueError(f"{' and '.join(small)} must be >= 1")

    def replace(self, **changes: object) -> PostSettings:
        """A copy with ``changes`` (checked again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]  # mypy cannot type **changes


#: What prediction keeps unless told otherwise (``singleshot predict``, :meth:`Detector.predict
#: <singleshot.predict.Detector.predict>`, the server's ``/predict``): the detections a person looks at, with the
#: original's NMS IoU and cap; the other settings stay the model's own.
PREDICT = PostSettings(conf=0.25)

#: The names :meth:`PostProcessor.to_metadata` writes in weight and ONNX files (kept from the first files written).
_FILE_KEYS = {"conf": "score_threshold", "iou": "nms_threshold", "candidates": "candidates_per_class",
              "max_det": "detections_per_image"}  # fmt: skip  # one mapping, easier to read on two lines


class PostProcessor(nn.Module):
    """Turns head outputs into detections under :class:`PostSettings`: the model's own (``settings``), or a call's.

    Args:
        settings: the model's own settings (what evaluation uses).
        variances: box-coder variances.
    """

    def __init__(self, settings: PostSettings = PostSettings(), variances: tuple[float, float] = DEFAULT_VARIANCES):
        super().__init__()
        self.settings = settings
        self.variances = variances

    def to_metadata(self) -> dict[str, float | int | list[float]]:
        """The settings and variances as a file's JSON (:meth:`from_metadata` reads them back)."""
        values = {_FILE_KEYS[k]: getattr(self.settings, k) for k in ("conf", "iou", "candidates", "max_det")}
        return values | {"variances": list(self.variances)}

    @classmethod
    def from_metadata(cls, values: dict[str, object]) -> PostProcessor:
        """The inverse of :meth:`to_metadata`; unknown keys are an error, missing ones take the defaults."""
        names = {v: k for k, v in _FILE_KEYS.items()}
        unknown = [k for k in values if k not in names and k != "variances"]
        if unknown:
            raise ValueError(f"unknown post-processing settings {unknown}")
        # the ignore below: checked by PostSettings
        settings = PostSettings(**{names[k]: v for k, v in values.items() if k in names})  # type: ignore[arg-type]
        variances = values.get("variances", DEFAULT_VARIANCES)
        # the ignore below: a JSON list of two numbers
        return cls(settings, tuple(float(v) for v in variances))  # type: ignore[attr-defined,arg-type]

    def forward(
        self,
        scores: Tensor,
        boxes: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        settings: PostSettings | None = None,
        priors_cxcywh: Tensor | None = None,
    ) -> list[dict[str, Tensor]]:
        """Detections of each image: candidates above ``settings.conf``, per-class NMS, the top ``max_det``.

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
        img, prior, cls, score = select_candidates(fg, fg > settings.conf, settings.candidates)

        if priors_cxcywh is not None:
            candidates = decode(boxes[img, prior].float(), priors_cxcywh[prior], self.variances)
        else:
            candidates = boxes[img, prior].float()
        sizes = torch.tensor(image_sizes, dtype=torch.float32, device=fg.device)  # (B, 2) = (H, W)
        candidates = candidates.clamp(0.0, 1.0) * sizes[img][:, [1, 0, 1, 0]]
        keep = batched_nms(candidates, score, img * (num_logits - 1) + cls, settings.iou)

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
