"""Post-processing (paper section 3, inference): decode, score threshold, per-class NMS, top-k.

The whole batch is handled with tensor operations: candidate selection is one threshold (plus one ``topk``
when some class has more than its cap of candidates), only candidates are decoded, and NMS is one
``torchvision.ops.batched_nms`` call whose groups are ``(image, class)`` pairs. There is no Python loop over
classes or images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from singleshot.boxes import DEFAULT_VARIANCES, decode


def select_candidates(scores: Tensor, threshold: float, per_class: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Scores above ``threshold``, at most ``per_class`` (the highest) per image and class.

    Args:
        scores: ``(B, P, C)`` class probabilities, background removed.

    Returns:
        ``(image, prior, class, score)`` 1-D tensors, ordered by image, then class, then decreasing score
        (the order of a per-class loop, so that NMS breaks ties the same way).
    """
    num_cls = scores.shape[2]
    above = scores > threshold
    if above.numel() == 0 or int(above.sum(dim=1).max()) <= per_class:
        # Usual case with a trained model: no class is over its cap, so a sparse selection is all it takes.
        img, prior, cls = above.nonzero(as_tuple=True)
        score = scores[img, prior, cls]
    else:
        # Dense case (an untrained model): one top-k over the priors of every (image, class) row.
        top_scores, top_prior = scores.transpose(1, 2).topk(min(per_class, scores.shape[1]), dim=2)
        img, cls, slot = (top_scores > threshold).nonzero(as_tuple=True)
        score, prior = top_scores[img, cls, slot], top_prior[img, cls, slot]
    order = score.argsort(descending=True, stable=True)
    order = order[(img * num_cls + cls)[order].argsort(stable=True)]
    return img[order], prior[order], cls[order], score[order]


class PostProcessor(nn.Module):
    """Turns head outputs into detections. The defaults are the original's test settings (paper section 3,
    the released SSD300/SSD512 deploy files), also torchvision's SSD300 settings.

    Args:
        score_threshold: per-class scores must exceed this (original: 0.01).
        nms_threshold: IoU above which a lower-scoring box of the same class is suppressed (original: 0.45).
        candidates_per_class: boxes of each class kept, by score, before NMS (original: 400).
        detections_per_image: detections kept per image after NMS (original: 200).
        variances: box-coder variances.
    """

    def __init__(
        self,
        score_threshold: float = 0.01,
        nms_threshold: float = 0.45,
        candidates_per_class: int = 400,
        detections_per_image: int = 200,
        variances: tuple[float, float] = DEFAULT_VARIANCES,
    ) -> None:
        super().__init__()
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.candidates_per_class = candidates_per_class
        self.detections_per_image = detections_per_image
        self.variances = variances

    def settings(self) -> dict[str, float | int | list[float]]:
        """The constructor's arguments (JSON-ready): ``PostProcessor(**p.settings())`` is an equal post-processor."""
        return {
            "score_threshold": self.score_threshold,
            "nms_threshold": self.nms_threshold,
            "candidates_per_class": self.candidates_per_class,
            "detections_per_image": self.detections_per_image,
            "variances": list(self.variances),
        }

    @classmethod
    def from_settings(cls, settings: dict[str, object]) -> PostProcessor:
        """The inverse of :meth:`settings`; unknown keys are an error."""
        args = dict(settings)
        if "variances" in args:
            args["variances"] = tuple(float(v) for v in args["variances"])  # type: ignore[attr-defined]
        return cls(**args)  # type: ignore[arg-type]

    def forward(
        self,
        cls_logits: Tensor,
        bbox_regression: Tensor,
        priors_cxcywh: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        score_threshold: float | None = None,
        nms_threshold: float | None = None,
        detections_per_image: int | None = None,
        classes: Tensor | None = None,
    ) -> list[dict[str, Tensor]]:
        """Detections of each image from the head's raw outputs.

        Args:
            cls_logits: ``(B, P, C + 1)`` logits, background at index 0.
            bbox_regression: ``(B, P, 4)`` offsets.
            priors_cxcywh: ``(P, 4)`` default boxes, normalised.
            image_sizes: ``(H, W)`` of each original image; boxes are scaled to it.
            score_threshold, nms_threshold, detections_per_image: this call's settings (default: the module's).
            classes: labels (1..C) to keep, int64 ``(K,)``; the others are left out before candidate selection.

        Returns:
            Per image ``{"boxes": (D, 4) xyxy pixels, "scores": (D,), "labels": (D,) int64 in 1..C}``,
            sorted by decreasing score.
        """
        scores = cls_logits.float().softmax(dim=-1)

        def boxes_of(img: Tensor, prior: Tensor) -> Tensor:  # only the candidates are decoded
            return decode(bbox_regression[img, prior].float(), priors_cxcywh[prior], self.variances)

        return self._detections(scores, boxes_of, image_sizes, score_threshold, nms_threshold,
                                detections_per_image, classes)  # fmt: skip

    def from_decoded(
        self,
        scores: Tensor,
        boxes_xyxy: Tensor,
        image_sizes: Sequence[tuple[int, int]],
        score_threshold: float | None = None,
        nms_threshold: float | None = None,
        detections_per_image: int | None = None,
        classes: Tensor | None = None,
    ) -> list[dict[str, Tensor]]:
        """Detections of each image from already decoded outputs (an exported model's), as :meth:`forward`.

        Args:
            scores: ``(B, P, C + 1)`` class probabilities (softmax taken), background at index 0.
            boxes_xyxy: ``(B, P, 4)`` decoded boxes, xyxy normalised to [0, 1] of the input.
        """
        return self._detections(scores.float(), lambda img, prior: boxes_xyxy[img, prior].float(), image_sizes,
                                score_threshold, nms_threshold, detections_per_image, classes)  # fmt: skip

    def _detections(
        self,
        probabilities: Tensor,
        boxes_of: Callable[[Tensor, Tensor], Tensor],
        image_sizes: Sequence[tuple[int, int]],
        score_threshold: float | None,
        nms_threshold: float | None,
        detections_per_image: int | None,
        classes: Tensor | None,
    ) -> list[dict[str, Tensor]]:
        """Threshold, NMS and cap ``(B, P, C + 1)`` ``probabilities``; ``boxes_of(image, prior)`` gives the
        candidates' normalised xyxy boxes."""
        threshold = self.score_threshold if score_threshold is None else score_threshold
        nms = self.nms_threshold if nms_threshold is None else nms_threshold
        per_image_cap = self.detections_per_image if detections_per_image is None else detections_per_image
        batch, _, num_logits = probabilities.shape
        scores = probabilities[..., 1:]
        if classes is not None:
            keep = torch.zeros(num_logits - 1, dtype=torch.bool, device=scores.device)
            keep[classes.to(scores.device) - 1] = True
            scores = scores * keep  # excluded classes score 0: below any threshold, never selected
        img, prior, cls, score = select_candidates(scores, threshold, self.candidates_per_class)

        sizes = torch.tensor(image_sizes, dtype=torch.float32, device=scores.device)  # (B, 2) = (H, W)
        boxes = boxes_of(img, prior).clamp(0.0, 1.0) * sizes[img][:, [1, 0, 1, 0]]
        keep = batched_nms(boxes, score, img * (num_logits - 1) + cls, nms)

        # `keep` is sorted by decreasing score; a stable sort by image keeps that order inside each image.
        keep = keep[torch.sort(img[keep], stable=True).indices]
        per_image = torch.bincount(img[keep], minlength=batch)
        rank = torch.arange(keep.numel(), device=keep.device) - (per_image.cumsum(0) - per_image)[img[keep]]
        keep = keep[rank < per_image_cap]
        counts = torch.bincount(img[keep], minlength=batch).tolist()
        return [
            {"boxes": b, "scores": s, "labels": lab}
            for b, s, lab in zip(
                boxes[keep].split(counts), score[keep].split(counts), (cls[keep] + 1).split(counts), strict=True
            )
        ]
