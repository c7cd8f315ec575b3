"""The modules that are traced into ONNX: the whole network from uint8 pixels to decoded boxes, and optionally NMS.

These wrappers hold every tracing workaround, so the model's own ``forward`` stays plain PyTorch:

* the input is the resized uint8 image batch; normalisation is one multiply-add inside the graph;
* the default boxes are constants of the graph (a static input size makes them fixed);
* :class:`DetectionsGraph` replaces the host's NMS by ONNX ``NonMaxSuppression`` through :class:`_OnnxNms`, an
  autograd function whose ``symbolic`` emits the ONNX operator (its ``forward`` is torchvision's NMS, used only
  while tracing).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from singleshot.boxes import decode
from singleshot.ssd import SSD


class DecodedGraph(nn.Module):
    """``images (B, 3, H, W) uint8 RGB`` at the model's input size -> ``scores (B, P, C + 1)`` (softmax, background
    at 0) and ``boxes (B, P, 4)`` (xyxy, normalised to [0, 1]): what :meth:`PostProcessor.from_decoded
    <singleshot.postprocess.PostProcessor.from_decoded>` takes."""

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.model = model.eval()
        mean = torch.tensor(model.preprocessing.mean).view(1, 3, 1, 1)
        std = torch.tensor(model.preprocessing.std).view(1, 3, 1, 1)
        # (x / 255 - mean) / std as one multiply-add on the pixels.
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)
        self.register_buffer("priors", model.priors.clone())
        self.variances = model.postprocess.variances

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = images.float() * self.scale + self.shift
        cls_logits, bbox_regression = self.model.head_outputs(x)
        return cls_logits.softmax(dim=-1), decode(bbox_regression, self.priors, self.variances)


class _OnnxNms(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (centre_point_box = 0: corners), with torchvision's NMS standing in when traced."""

    @staticmethod
    def forward(  # type: ignore[override]  # autograd.Function's (ctx, *args)
        ctx: object, boxes: Tensor, scores: Tensor, max_per_class: Tensor, iou: Tensor, score_threshold: Tensor
    ) -> Tensor:
        """``boxes (B, P, 4)``, ``scores (B, C, P)`` -> selected ``(N, 3)`` rows of ``(image, class, box)``."""
        c = scores.shape[1]
        img, cls, prior = (scores > score_threshold).nonzero(as_tuple=True)
        keep = batched_nms(boxes[img, prior], scores[img, cls, prior], img * c + cls, float(iou))
        return torch.stack((img[keep], cls[keep], prior[keep]), dim=1)

    @staticmethod
    # the ignore below: ONNX's untyped graph builder
    def symbolic(g, boxes, scores, max_per_class, iou, score_threshold):  # type: ignore[no-untyped-def]
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou, score_threshold, center_point_box_i=0)


class DetectionsGraph(nn.Module):
    """:class:`DecodedGraph` followed by class-wise NMS: ``images`` -> ``detections (B, max_det, 6)`` rows of
    ``(x1, y1, x2, y2, score, label)``, boxes normalised to [0, 1], sorted by decreasing score, padded with
    zero rows (score 0, label 0). Labels are 1..C.

    As the host post-processor (:func:`~singleshot.postprocess.select_candidates`): the ``candidates``
    highest scores of each image and class above the threshold, boxes clipped to the image, go into NMS (ONNX's
    ``NonMaxSuppression`` would otherwise cap the boxes per class *after* suppression, and take boxes reaching
    outside the image at their full size).
    """

    def __init__(self, model: SSD) -> None:
        super().__init__()
        self.decoded = DecodedGraph(model)
        post = model.postprocess.settings
        # topk needs k <= C * P (a tiny model with few classes may have fewer candidates than the cap).
        self.max_det = min(post.max_det, model.num_classes * int(model.priors.shape[0]))
        self.candidates = min(post.candidates, int(model.priors.shape[0]))
        self.register_buffer("max_per_class", torch.tensor([post.candidates], dtype=torch.int64))
        self.register_buffer("iou", torch.tensor([post.iou], dtype=torch.float32))
        self.register_buffer("conf", torch.tensor([post.conf], dtype=torch.float32))

    def forward(self, images: Tensor) -> Tensor:
        scores, boxes = self.decoded(images)
        boxes = boxes.clamp(0.0, 1.0)
        fg = scores[:, :, 1:].transpose(1, 2)  # (B, C, P)
        # the candidates: each (image, class)'s highest scores (the others zeroed, below any threshold)
        lowest_kept = fg.topk(self.candidates, dim=2).values[..., -1:]
        candidates = torch.where(fg >= lowest_kept, fg, torch.zeros_like(fg))
        selected = _OnnxNms.apply(boxes, candidates, self.max_per_class, self.iou, self.conf)
        img, cls, prior = selected[:, 0], selected[:, 1], selected[:, 2]
        # Scatter the survivors' scores into a dense (B, C * P) map: its top max_det per image are the detections.
        dense = torch.zeros_like(fg)
        dense[img, cls, prior] = fg[img, cls, prior]
        dense = dense.flatten(1)
        top_scores, top = dense.topk(self.max_det, dim=1)
        num_priors = fg.shape[2]
        top_prior = top % num_priors
        labels = torch.where(top_scores > 0, top // num_priors + 1, torch.zeros_like(top))
        top_boxes = torch.gather(boxes, 1, top_prior.unsqueeze(-1).expand(-1, -1, 4))
        top_boxes = top_boxes * (top_scores > 0).unsqueeze(-1)
        return torch.cat((top_boxes, top_scores.unsqueeze(-1), labels.unsqueeze(-1).to(top_scores.dtype)), dim=2)
