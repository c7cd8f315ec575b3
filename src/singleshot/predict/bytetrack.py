"""ByteTrack (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box", ECCV 2022),
with every track's Kalman filter run as one batch of arrays.

The ``trackers`` package's ByteTrack keeps one Python object and one 8x8 Kalman filter per track and costs about
0.1 ms per track per frame (5 ms at 50 objects on the 2-core machine); here the tracks' states are rows of arrays,
predicted and updated together, so a frame costs a few small matrix products and two optimal assignments whatever
the number of tracks. ``tests/predict/test_bytetrack.py`` checks it against the package's ByteTrack on the same
detections.

Per frame (Sec. 3 of the paper, Algorithm 1):

1. every track's box is predicted by a constant-velocity Kalman filter on ``(cx, cy, w/h, h)`` (the state and
   noise of ByteTrack's code, from DeepSORT: position noise h/20, velocity noise h/160), over the time since the
   previous frame (frames skipped by a live source or ``--vid-stride`` included);
2. detections scoring at least ``high`` are matched to all tracks by IoU (an optimal assignment, pairs below
   ``match_iou`` refused);
3. the remaining tracks are matched the same way to the detections below ``high`` (the "BYTE" step that keeps
   occluded, low-scoring objects in their tracks);
3b. (ours, optional: ``recover``) tracks lost since an earlier frame are matched to the high-scoring detections
   still free on the IoU of enlarged boxes; and with ``labels`` given, every round matches a track only to
   detections of its class;
4. unmatched detections scoring at least ``new_track`` start tentative tracks; a track matched in ``min_frames``
   consecutive frames is confirmed and gets the next id; a tentative track that misses a frame is dropped, a
   confirmed one is kept ``buffer`` frames (at 30 FPS: scaled to the video's rate) for re-identification.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from singleshot.boxes import box_iou

#: ByteTrack's Kalman noise weights (its code's ``_std_weight_position`` and ``_std_weight_velocity``, from DeepSORT):
#: standard deviations as a share of the box height, per frame.
POSITION_NOISE, VELOCITY_NOISE = 1 / 20, 1 / 160


def xyxy_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """``(N, 4)`` xyxy boxes as ``(N, 4)`` ``(cx, cy, w / h, h)``."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w / np.maximum(h, 1e-6), h], axis=1)


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """``(N, 4)`` ``(cx, cy, w / h, h)`` as ``(N, 4)`` xyxy boxes."""
    w = xyah[:, 2] * xyah[:, 3]
    return np.stack(
        [xyah[:, 0] - w / 2, xyah[:, 1] - xyah[:, 3] / 2, xyah[:, 0] + w / 2, xyah[:, 1] + xyah[:, 3] / 2], axis=1
    )


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes (torchvision's, on the arrays' memory)."""
    return box_iou(torch.from_numpy(a_xyxy), torch.from_numpy(b_xyxy)).numpy()


def grow(boxes_xyxy: np.ndarray, share: float) -> np.ndarray:
    """``(N, 4)`` xyxy boxes grown by ``share`` of their width and height on each side."""
    w, h = boxes_xyxy[:, 2] - boxes_xyxy[:, 0], boxes_xyxy[:, 3] - boxes_xyxy[:, 1]
    return boxes_xyxy + share * np.stack([-w, -h, w, h], axis=1)


def assign(similarity: np.ndarray, least: float) -> tuple[np.ndarray, np.ndarray]:
    """The optimal one-to-one pairs ``(rows, cols)`` of a similarity matrix, pairs below ``least`` refused."""
    if similarity.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    keep = similarity[rows, cols] >= least
    return rows[keep], cols[keep]


def _state_std(h: np.ndarray, position: float, velocity: float) -> np.ndarray:
    """``(T, 8)`` standard deviations of the states ``(cx, cy, w/h, h)`` and their velocities for boxes of heights
    ``h``: ``position`` and ``velocity`` times the height, small constants for the aspect ratio (ByteTrack's)."""
    p, v = position * h, velocity * h
    return np.stack([p, p, np.full_like(h, 1e-2), p, v, v, np.full_like(h, 1e-5), v], axis=1)


class ByteTrack:
    """ByteTrack over frames of one video (module docstring); :meth:`update` once per frame, in order.

    Args:
        high: detections at least this score are matched first; the others only extend existing tracks.
        new_track: least score of an unmatched detection that starts a track.
        match_iou: least IoU of a track's predicted box and a detection for a match (both rounds).
        buffer: frames at 30 FPS a lost confirmed track is kept (scaled to ``fps``).
        min_frames: consecutive matched frames before a track is confirmed and gets its id.
        fps: the video's frame rate.
        recover: with ``recover > 0``, a third round matches tracks lost for a frame or more to the high-scoring
            detections still free, on the IoU of boxes grown by ``recover`` of their width and height on each side
            (C-BIoU's buffered IoU, Yang et al., WACV 2023): an object reappearing from behind an occluder where
            its track's prediction, thrown off by its shrinking visible part, has drifted, keeps its id. 0: plain
            ByteTrack.
    """

    def __init__(
        self,
        high: float,
        new_track: float,
        match_iou: float,
        buffer: int,
        min_frames: int,
        fps: float,
        recover: float = 0.0,
    ) -> None:
        self.high, self.new_track, self.match_iou = high, new_track, match_iou
        self.min_frames, self.fps, self.recover = min_frames, fps, recover
        self.max_lost = max(1, math.ceil(buffer * fps / 30)) if buffer > 0 else 0  # frames
        self.mean = np.zeros((0, 8))  # (T, 8): cx, cy, w/h, h and their velocities per frame
        self.cov = np.zeros((0, 8, 8))
        self.ids = np.zeros(0, dtype=np.int64)  # 0: tentative
        self.hits = np.zeros(0, dtype=np.int64)  # consecutive matched frames
        self.lost = np.zeros(0)  # frames since the last match
        self.labels = np.zeros(0, dtype=np.int64)  # each track's class (its last detection's), with ``labels`` given
        self._next_id = 1
        self._last_time: float | None = None

    def _step(self, seconds: float | None) -> float:
        """Frames since the previous update: from the frame times when given, else 1."""
        if seconds is None or self._last_time is None:
            step = 1.0
        else:
            step = max((seconds - self._last_time) * self.fps, 1e-3)
        self._last_time = seconds if seconds is not None else None
        return step

    def _predict(self, step: float) -> None:
        """Advance every track's state by ``step`` frames (process noise grows with the step)."""
        lost = self.lost > 0
        self.mean[lost, 7] = 0.0  # a lost track's height stops changing (ByteTrack's code)
        std = _state_std(self.mean[:, 3], POSITION_NOISE, VELOCITY_NOISE)
        transition = np.eye(8)
        transition[range(4), range(4, 8)] = step
        self.mean = self.mean @ transition.T
        noise = np.einsum("ti,ij->tij", std**2 * step, np.eye(8))
        self.cov = transition @ self.cov @ transition.T + noise
        self.lost += step

    def _correct(self, rows: np.ndarray, boxes_xyxy: np.ndarray) -> None:
        """Kalman update of tracks ``rows`` with their matched boxes."""
        if len(rows) == 0:
            return
        mean, cov = self.mean[rows], self.cov[rows]
        h = mean[:, 3]
        std = np.stack([POSITION_NOISE * h, POSITION_NOISE * h, np.full_like(h, 1e-1), POSITION_NOISE * h], axis=1)
        projected = cov[:, :4, :4] + np.einsum("ti,ij->tij", std**2, np.eye(4))  # H P H^T + R, (K, 4, 4)
        cross = cov[:, :, :4]  # P H^T, (K, 8, 4)
        gain = np.linalg.solve(projected, cross.transpose(0, 2, 1)).transpose(0, 2, 1)  # (K, 8, 4)
        innovation = xyxy_to_xyah(boxes_xyxy) - mean[:, :4]
        self.mean[rows] = mean + np.einsum("tij,tj->ti", gain, innovation)
        self.cov[rows] = cov - gain @ projected @ gain.transpose(0, 2, 1)
        self.lost[rows] = 0.0
        self.hits[rows] += 1
        confirm = rows[(self.ids[rows] == 0) & (self.hits[rows] >= self.min_frames)]
        self.ids[confirm] = np.arange(self._next_id, self._next_id + len(confirm))
        self._next_id += len(confirm)

    def _start(self, boxes_xyxy: np.ndarray, labels: np.ndarray) -> None:
        """Tentative tracks for unmatched high-scoring boxes (ByteTrack's initial covariance)."""
        xyah = xyxy_to_xyah(boxes_xyxy)
        h = xyah[:, 3]
        std = _state_std(h, 2 * POSITION_NOISE, 10 * VELOCITY_NOISE)
        self.mean = np.concatenate([self.mean, np.concatenate([xyah, np.zeros_like(xyah)], axis=1)])
        self.cov = np.concatenate([self.cov, np.einsum("ti,ij->tij", std**2, np.eye(8))])
        self.ids = np.concatenate([self.ids, np.zeros(len(h), dtype=np.int64)])
        self.hits = np.concatenate([self.hits, np.ones(len(h), dtype=np.int64)])
        self.lost = np.concatenate([self.lost, np.zeros(len(h))])
        self.labels = np.concatenate([self.labels, labels])

    def update(
        self,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        seconds: float | None = None,
        labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """One frame's detections, ``(N, 4)`` xyxy boxes and ``(N,)`` scores, at time ``seconds`` in the video
        (None: one frame after the previous update); with ``(N,)`` ``labels``, a track is matched only to
        detections of its own class (two objects of different classes crossing cannot swap ids).

        Returns:
            ``(N,)`` int64: each detection's track id (from 1), or 0 when it is in no confirmed track.
        """
        given = np.zeros(len(scores), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        self._predict(self._step(seconds))
        out = np.zeros(len(scores), dtype=np.int64)
        predicted = xyah_to_xyxy(self.mean[:, :4])
        same_class = (self.labels[:, None] == given[None, :]) | (labels is None)
        similarity = iou_matrix(predicted, boxes_xyxy) * same_class
        high = np.flatnonzero(scores >= self.high)
        low = np.flatnonzero(scores < self.high)
        rows, cols = assign(similarity[:, high], self.match_iou)
        rest = np.setdiff1d(np.arange(len(self.ids)), rows)
        rows2, cols2 = assign(similarity[rest][:, low], self.match_iou)
        track_rows = np.concatenate([rows, rest[rows2]])
        det_index = np.concatenate([high[cols], low[cols2]])
        if self.recover > 0:
            lost = np.setdiff1d(np.arange(len(self.ids)), track_rows)
            lost = lost[self.lost[lost] > 1.5]  # missed the previous frame too
            free = np.setdiff1d(high, det_index)
            grown = iou_matrix(grow(predicted[lost], self.recover), grow(boxes_xyxy[free], self.recover))
            rows3, cols3 = assign(grown * same_class[lost][:, free], self.match_iou)
            track_rows, det_index = np.concatenate([track_rows, lost[rows3]]), np.concatenate([det_index, free[cols3]])
        self._correct(track_rows, boxes_xyxy[det_index])
        self.labels[track_rows] = given[det_index]
        out[det_index] = self.ids[track_rows]
        unmatched_high = np.setdiff1d(high, det_index)
        fresh = unmatched_high[scores[unmatched_high] >= self.new_track]
        missed = np.setdiff1d(np.arange(len(self.ids)), track_rows)
        self.hits[missed] = 0
        keep = np.ones(len(self.ids), dtype=bool)
        keep[missed] = (self.ids[missed] > 0) & (self.lost[missed] <= self.max_lost + 1e-6)
        self.mean, self.cov, self.ids, self.hits, self.lost, self.labels = (
            self.mean[keep],
            self.cov[keep],
            self.ids[keep],
            self.hits[keep],
            self.lost[keep],
            self.labels[keep],
        )
        self._start(boxes_xyxy[fresh], given[fresh])
        return out

    def alive(self) -> set[int]:
        """Ids of the confirmed tracks held, lost ones within the buffer included."""
        return {int(i) for i in self.ids if i > 0}


__all__ = [
    "POSITION_NOISE", "VELOCITY_NOISE", "ByteTrack", "assign", "grow", "iou_matrix", "xyah_to_xyxy", "xyxy_to_xyah",
]  # fmt: skip  # a list of names
