"""MultiBox loss (paper section 2.2, "Training objective", and "Hard negative mining").

``L = (L_conf + alpha * L_loc) / N`` with ``N`` the number of matched default boxes in the batch:

* ``L_conf``: softmax cross-entropy over ``C + 1`` classes (background is index 0) of the matched boxes and
  of the hardest negatives, at most 3 negatives per positive in each image;
* ``L_loc``: smooth-L1 (beta 1) between predicted offsets and the encoded matched ground truth.

Both terms are zero when ``N = 0`` (the paper: "If N = 0, we set the loss to 0").

Images without objects: the 3:1 rule would give such an image no negatives at all (Caffe's behaviour), so it
could never learn that an empty scene is empty. Here an image without matched boxes keeps
``neg_pos_ratio * ceil(N / B)`` hardest negatives: as many as an image with the batch's mean number of
matches. This is bounded by the batch's positives and still zero when the whole batch has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from singleshot.boxes import DEFAULT_VARIANCES, cxcywh_to_xyxy, encode
from singleshot.matching import IOU_THRESHOLD, match_padded, pad_boxes

#: Paper section 2.2: "the ratio between the negatives and positives is at most 3:1".
NEG_POS_RATIO: int = 3


def hard_negative_mask(neg_loss: Tensor, positive: Tensor, num_negatives: Tensor) -> Tensor:
    """The ``num_negatives[b]`` highest-loss non-positive boxes of each image.

    Args:
        neg_loss: ``(B, P)`` background cross-entropy of each box.
        positive: ``(B, P)`` bool, matched boxes (never selected).
        num_negatives: ``(B,)`` int, how many to keep per image.

    Returns:
        ``(B, P)`` bool mask.
    """
    loss = neg_loss.detach().masked_fill(positive, -math.inf)
    order = loss.argsort(dim=1, descending=True)
    rank = order.argsort(dim=1)
    available = (~positive).sum(dim=1)
    return rank < torch.minimum(num_negatives, available)[:, None]


class MultiBoxLoss(nn.Module):
    """SSD's training objective over a batch of head outputs.

    Args:
        iou_threshold: matching threshold (paper: 0.5).
        neg_pos_ratio: hard negatives kept per positive (paper: 3).
        alpha: weight of the localisation term (paper: 1).
        variances: box-coder variances.
    """

    def __init__(
        self,
        iou_threshold: float = IOU_THRESHOLD,
        neg_pos_ratio: int = NEG_POS_RATIO,
        alpha: float = 1.0,
        variances: tuple[float, float] = DEFAULT_VARIANCES,
    ) -> None:
        super().__init__()
        self.iou_threshold = iou_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.alpha = alpha
        self.variances = variances

    def build_targets(self, targets: Sequence[dict[str, Tensor]], priors_cxcywh: Tensor) -> tuple[Tensor, Tensor]:
        """Class and regression targets of every default box.

        Args:
            targets: per image ``{"boxes": (G, 4) xyxy normalised to [0, 1], "labels": (G,) in 1..C}``.
            priors_cxcywh: ``(P, 4)`` default boxes.

        Returns:
            ``labels (B, P)`` int64 with 0 for background, and ``offsets (B, P, 4)`` (zeros where background).
        """
        boxes, valid = pad_boxes([t["boxes"] for t in targets], priors_cxcywh.device)
        matched = match_padded(boxes, valid, cxcywh_to_xyxy(priors_cxcywh), self.iou_threshold)
        labels = torch.zeros(len(targets), max(boxes.shape[1], 1), dtype=torch.long, device=priors_cxcywh.device)
        for i, t in enumerate(targets):
            labels[i, : len(t["labels"])] = t["labels"]
        fg = matched >= 0
        idx = matched.clamp(min=0)
        gt_labels = torch.where(fg, labels.gather(1, idx), torch.zeros_like(matched))
        if boxes.shape[1] == 0:
            return gt_labels, torch.zeros(*matched.shape, 4, device=priors_cxcywh.device)
        gt_boxes = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
        # background boxes get their prior as "ground truth": finite offsets (zeros), never used
        prior_xyxy = cxcywh_to_xyxy(priors_cxcywh).expand_as(gt_boxes)
        offsets = encode(torch.where(fg[..., None], gt_boxes, prior_xyxy), priors_cxcywh, self.variances)
        return gt_labels, offsets

    def forward(
        self,
        cls_logits: Tensor,
        bbox_regression: Tensor,
        targets: Sequence[dict[str, Tensor]],
        priors_cxcywh: Tensor,
    ) -> dict[str, Tensor]:
        """Named losses of a batch.

        Args:
            cls_logits: ``(B, P, C + 1)`` class logits, background at index 0.
            bbox_regression: ``(B, P, 4)`` predicted offsets.
            targets: per image, boxes xyxy normalised to [0, 1] and labels in 1..C.
            priors_cxcywh: ``(P, 4)`` default boxes, in the heads' order.

        Returns:
            ``{"loss_cls", "loss_box"}``, scalars already divided by ``N``; the total is their sum (alpha
            applied to ``loss_box``).
        """
        gt_labels, gt_offsets = self.build_targets(targets, priors_cxcywh)
        positive = gt_labels > 0
        num_pos = positive.sum(dim=1)
        total_pos = int(num_pos.sum())
        if total_pos == 0:
            zero = (cls_logits.sum() + bbox_regression.sum()) * 0.0
            return {"loss_cls": zero, "loss_box": zero.clone()}

        ce = F.cross_entropy(cls_logits.flatten(0, 1).float(), gt_labels.flatten(), reduction="none").view_as(gt_labels)
        batch = gt_labels.shape[0]
        empty_image_pos = math.ceil(total_pos / batch)
        num_neg = self.neg_pos_ratio * torch.where(num_pos > 0, num_pos, torch.full_like(num_pos, empty_image_pos))
        negative = hard_negative_mask(ce, positive, num_neg)

        loss_cls = ce[positive | negative].sum() / total_pos
        loss_box = (
            F.smooth_l1_loss(bbox_regression[positive].float(), gt_offsets[positive], beta=1.0, reduction="sum")
            / total_pos
        )
        return {"loss_cls": loss_cls, "loss_box": self.alpha * loss_box}
