"""What every source of :mod:`singleshot.predict.sources` and :mod:`singleshot.predict.live` yields: a
:class:`Frame` (an image and where it came from), a :class:`SourceReport` of what was left out, and the turning of a
decoded video frame into an RGB tensor, reduced at decode time when the model needs fewer pixels.

Its own module so that the file and live readers share it without importing each other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from functools import partial
from pathlib import Path

import av
import torch
from torch import Tensor


@dataclass
class Frame:
    """One image to predict on: ``image`` uint8 ``[3, h, w]`` (possibly a reduced decode), the ``orig_size``
    ``(H, W)`` that detections are given in, where it came from, and the milliseconds spent reading it."""

    image: Tensor
    orig_size: tuple[int, int]
    path: Path | None = None
    _: KW_ONLY
    frame: int | None = None  # index of a video frame (in the video, counting skipped frames)
    fps: float | None = None  # a video's frame rate
    stream: str | None = None  # a live source's address as given (webcam index, device or URL); path is then None
    read_ms: float = 0.0
    reload: Callable[[], Tensor] | None = field(default=None, repr=False)  # the full-size image, when reduced
    captured: float | None = None  # time.monotonic() when a live frame was decoded (its age: now minus this)


@dataclass
class SourceReport:
    """Inputs left out, counted by reason, with the first few names (what ``predict`` prints at the end)."""

    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: Path | str, n: int = 1) -> None:
        """Count ``n`` inputs left out for ``reason`` (``where`` names them: a file, a live source)."""
        self.skipped[reason] += n
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < 3 and str(where) not in self.examples[reason]:
            self.examples[reason].append(str(where))

    def merge(self, other: SourceReport) -> None:
        """Add ``other``'s counts (and examples, up to three per reason)."""
        for reason, n in other.skipped.items():
            self.skipped[reason] += n
            kept = self.examples.setdefault(reason, [])
            kept.extend(other.examples.get(reason, [])[: max(0, 3 - len(kept))])

    def lines(self) -> list[str]:
        return [f"{n:>6}  {reason}: {', '.join(self.examples[reason])}" for reason, n in self.skipped.most_common()]


def reduction(height: int, width: int, reduce_to: int | None) -> int:
    """The largest of 1, 2, 4, 8 by which both sides can be divided and stay at least ``reduce_to`` (as JPEG's DCT
    scaling chooses)."""
    factor = 1
    while reduce_to is not None and factor < 8 and min(height, width) // (factor * 2) >= reduce_to:
        factor *= 2
    return factor


def decoded_rgb(decoded: av.VideoFrame, width: int | None = None, height: int | None = None) -> Tensor:
    """A decoded video frame as uint8 ``[3, H, W]`` RGB, scaled by FFmpeg when a size is given."""
    return torch.from_numpy(decoded.to_ndarray(format="rgb24", width=width, height=height)).permute(2, 0, 1)


def decoded_image(
    decoded: av.VideoFrame, reduce_to: int | None
) -> tuple[Tensor, tuple[int, int], Callable[[], Tensor] | None]:
    """A decoded video frame as RGB: scaled down by 2, 4 or 8 during the colour conversion while both sides stay
    at least ``reduce_to`` (:func:`reduction`); returns the image, the full size ``(H, W)`` and, when reduced, a
    function giving the full-size image."""
    factor = reduction(decoded.height, decoded.width, reduce_to)
    size = (decoded.height, decoded.width)
    if factor == 1:
        return decoded_rgb(decoded), size, None
    return decoded_rgb(decoded, decoded.width // factor, decoded.height // factor), size, partial(decoded_rgb, decoded)
