"""Matching default boxes to ground truth (paper section 2.2, "Matching strategy").

Two steps, as in the original implementation (Caffe ``MatchBBox`` with ``BIPARTITE`` then ``PER_PREDICTION``):

1. Bipartite: every ground truth takes the default box it overlaps best. Conflicts are resolved greedily on the
   global best remaining pair (the original's rule), then repaired with augmenting paths, so two ground truths
   never share a forced prior and no ground truth loses its only overlapping prior to another.
2. Per prediction: every other default box takes its best ground truth when their IoU is ``>= iou_threshold``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import torch
from torch import Tensor

from singleshot.boxes import box_iou

#: Paper section 2.2: default boxes with jaccard overlap of at least 0.5 are matched.
IOU_THRESHOLD: float = 0.5


def _augment(start: int, candidates: list[list[int]], owner: dict[int, int], assigned: dict[int, int]) -> bool:
    """Give ground truth ``start`` a prior along an alternating path (Kuhn's algorithm, breadth first).

    ``owner`` maps prior -> ground truth and ``assigned`` the reverse; both are updated in place.
    """
    reached_from: dict[int, int] = {}  # prior -> ground truth whose candidate list reached it
    queue, seen = deque([start]), {start}
    while queue:
        g = queue.popleft()
        for p in candidates[g]:
            if p in reached_from:
                continue
            reached_from[p] = g
            if p in owner:
                nxt = owner[p]
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
                continue
            while True:  # free prior found: shift every ground truth on the path to its new prior
                g = reached_from[p]
                previous = assigned.get(g)
                owner[p], assigned[g] = g, p
                if g == start:
                    return True
                p = previous  # type: ignore[assignment]  # an augmenting path: assigned here
    return False


def _bipartite(iou: Tensor) -> tuple[Tensor, Tensor]:
    """A distinct best prior for each ground truth of an ``(G, P)`` IoU matrix.

    Greedy on the globally best remaining pair (the original's bipartite step); then any ground truth left
    without a prior takes one through an augmenting path, moving others to their next-best priors, so no
    ground truth loses its only overlapping prior to another. Priors with zero IoU are never forced.

    Returns ``(gt_index, prior_index)`` of the forced pairs.
    """
    num_gt, num_priors = iou.shape
    device = iou.device
    best_iou, best_prior = iou.max(dim=1)
    has_overlap = best_iou > 0
    if best_prior[has_overlap].unique().numel() == int(has_overlap.sum()):
        # Common case: no two ground truths want the same prior, so the greedy matching is the argmaxes.
        return torch.arange(num_gt, device=device)[has_overlap], best_prior[has_overlap]

    # Each ground truth's top-G priors always contain a prior for it in some full assignment (Hall's theorem).
    cand_iou, cand = iou.topk(min(num_gt, num_priors), dim=1)
    candidates = [
        [p for p, v in zip(ps, vs, strict=True) if v > 0]
        for ps, vs in zip(cand.tolist(), cand_iou.tolist(), strict=True)
    ]
    owner: dict[int, int] = {}
    assigned: dict[int, int] = {}
    work = iou.clone()
    for _ in range(num_gt):
        g, p = divmod(int(work.argmax()), num_priors)
        if work[g, p] <= 0:
            break
        owner[p], assigned[g] = g, p
        work[g, :] = -1.0
        work[:, p] = -1.0
    for g in range(num_gt):
        if g not in assigned and candidates[g]:
            _augment(g, candidates, owner, assigned)
    gts = sorted(assigned)
    return (
        torch.tensor(gts, dtype=torch.long, device=device),
        torch.tensor([assigned[g] for g in gts], dtype=torch.long, device=device),
    )


def match(gt_xyxy: Tensor, priors_xyxy: Tensor, iou_threshold: float = IOU_THRESHOLD) -> Tensor:
    """Ground truth matched to each default box.

    Args:
        gt_xyxy: ``(G, 4)`` ground-truth boxes, xyxy (same units as the priors).
        priors_xyxy: ``(P, 4)`` default boxes, xyxy.
        iou_threshold: minimum IoU for the per-prediction step.

    Returns:
        ``(P,)`` int64: index into ``gt_xyxy`` of the matched ground truth, or -1 for background.
    """
    num_priors = priors_xyxy.shape[0]
    matches = torch.full((num_priors,), -1, dtype=torch.long, device=priors_xyxy.device)
    if gt_xyxy.numel() == 0:
        return matches
    iou = box_iou(gt_xyxy, priors_xyxy)  # (G, P)
    best_iou, best_gt = iou.max(dim=0)
    matches = torch.where(best_iou >= iou_threshold, best_gt, matches)
    gt_index, prior_index = _bipartite(iou)
    matches[prior_index] = gt_index
    return matches


def pad_boxes(boxes: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """``B`` lists of ``(G_b, 4)`` boxes as one ``(B, G, 4)`` tensor (G = max G_b) and its ``(B, G)`` validity mask."""
    size = max((len(b) for b in boxes), default=0)
    padded = torch.zeros(len(boxes), size, 4, device=device)
    valid = torch.zeros(len(boxes), size, dtype=torch.bool, device=device)
    for i, b in enumerate(boxes):
        padded[i, : len(b)] = b
        valid[i, : len(b)] = True
    return padded, valid


def match_batch(gt_xyxy: Sequence[Tensor], priors_xyxy: Tensor, iou_threshold: float = IOU_THRESHOLD) -> Tensor:
    """:func:`match` for ``B`` images at once, ``(B, P)`` int64."""
    return match_padded(*pad_boxes(gt_xyxy, priors_xyxy.device), priors_xyxy, iou_threshold)


def match_padded(boxes: Tensor, valid: Tensor, priors_xyxy: Tensor, iou_threshold: float = IOU_THRESHOLD) -> Tensor:
    """:func:`match_batch` on ground truth already padded by :func:`pad_boxes` (``(B, G, 4)`` and ``(B, G)``).

    One IoU computation for the whole batch; the bipartite step is a scatter for every image whose ground truths
    want distinct priors, and falls back to :func:`_bipartite` only for images with a conflict.
    """
    batch, num_priors = boxes.shape[0], priors_xyxy.shape[0]
    device = priors_xyxy.device
    if boxes.shape[1] == 0:
        return torch.full((batch, num_priors), -1, dtype=torch.long, device=device)
    iou = box_iou(boxes.view(-1, 4), priors_xyxy).view(batch, -1, num_priors)
    iou = iou.masked_fill(~valid[:, :, None], -1.0)
    best_iou, best_gt = iou.max(dim=1)  # (B, P)
    matches = torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))

    gt_best_iou, gt_best_prior = iou.max(dim=2)  # (B, G)
    forced = valid & (gt_best_iou > 0)
    img, gt = forced.nonzero(as_tuple=True)
    prior = gt_best_prior[img, gt]
    key = img * num_priors + prior
    conflict = torch.zeros(batch, dtype=torch.bool, device=device)
    if key.numel():
        uniq, counts = key.unique(return_counts=True)
        conflict[uniq[counts > 1] // num_priors] = True
    ok = ~conflict[img]
    matches[img[ok], prior[ok]] = gt[ok]
    for b in conflict.nonzero().flatten().tolist():
        n = int(valid[b].sum())
        gt_index, prior_index = _bipartite(iou[b, :n])
        matches[b, prior_index] = gt_index
    return matches
