"""What ``predict`` can read, turned into a stream of :class:`Frame` s.

A source is an image or video path, a folder (its images and videos, sorted; other files skipped and counted), a
glob pattern, a ``PIL.Image``, a NumPy ``H x W x 3`` uint8 RGB array, a ``3 x H x W`` tensor (uint8, or float in
[0, 1]), a live source (a webcam index such as ``0``, a ``/dev/video*`` device, or an ``rtsp://``, ``rtmp://``,
``udp://``, ``tcp://``, ``srt://`` or ``http(s)://`` stream: :mod:`singleshot.predict.live`), or a list of any of
these. Images are read as training's readers read them (grayscale, palette, RGBA, CMYK and 16-bit converted to 8-bit
RGB; EXIF orientation applied); JPEGs much larger than the model's input are decoded at a reduced scale
(:func:`~singleshot.data.images.load_image`), never below the input size. Videos are decoded frame by frame with
PyAV, so memory stays flat however long they are. A live source is read by a thread of its own that keeps only the
newest frame: the model always gets the present, and the frames it had no time for are skipped and counted
(:class:`~singleshot.predict.live.LiveReader`).

:class:`Frame` and :class:`SourceReport` live in :mod:`singleshot.predict.frame` (shared with the live reader) and
are importable from here too.
"""

from __future__ import annotations

import glob
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from singleshot.data.dataset import IMAGE_SUFFIXES
from singleshot.data.images import ImageError, load_image, read_image
from singleshot.predict.frame import Frame, SourceReport, decoded_image
from singleshot.predict.live import LiveSettings, is_live, live_frames

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def expand(source: Any, report: SourceReport) -> list[Any]:
    """The single inputs of ``source`` in order: files (images and videos), in-memory images, and live sources (as
    strings: a webcam index, a device or a URL; recognised before any file check).

    Raises:
        FileNotFoundError: a path or glob that matches nothing.
        ValueError: a folder without images or videos; a file that is neither; an unsupported object.
    """
    if isinstance(source, (list, tuple)):
        return [item for s in source for item in expand(s, report)]
    if isinstance(source, (Image.Image, np.ndarray, Tensor)):
        return [source]
    if is_live(source):
        return [str(source)]
    if not isinstance(source, (str, Path)):
        raise ValueError(f"cannot predict on a {type(source).__name__}: give paths, PIL images, arrays or tensors")
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
        usable = [p for p in files if is_image(p) or is_video(p)]
        for p in files:
            if p not in usable:
                report.add("not an image or video file, skipped", p)
        if not usable:
            raise ValueError(f"{path}: no images or videos in this folder ({len(files)} other files)")
        return usable
    if path.is_file():
        if not (is_image(path) or is_video(path)):
            raise ValueError(f"{path}: not an image or video file (suffix '{path.suffix}')")
        return [path]
    if glob.has_magic(str(source)):
        matches = sorted(Path(p) for p in glob.glob(str(source), recursive=True) if Path(p).is_file())
        usable = [p for p in matches if is_image(p) or is_video(p)]
        if not usable:
            raise FileNotFoundError(f"{source}: the pattern matches no image or video file")
        return usable
    raise FileNotFoundError(f"source not found: {source}")


def in_memory_frame(item: Image.Image | np.ndarray | Tensor, index: int) -> Frame:
    """A frame from an in-memory image (``index`` names it in errors)."""
    start = time.perf_counter()
    if isinstance(item, Image.Image):
        item = np.asarray(item.convert("RGB"))
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ValueError(f"image {index}: expected an H x W x 3 uint8 RGB array, got {item.dtype} {item.shape}")
        image = torch.from_numpy(np.array(item, copy=True)).permute(2, 0, 1)
    else:
        if item.ndim != 3 or item.shape[0] != 3 or min(item.shape[1:]) < 1:
            raise ValueError(f"image {index}: expected a 3 x H x W tensor, got shape {tuple(item.shape)}")
        if item.is_floating_point():
            item = (item.clamp(0, 1) * 255).round().to(torch.uint8)
        elif item.dtype != torch.uint8:
            raise ValueError(f"image {index}: expected a uint8 or float tensor, got {item.dtype}")
        image = item.cpu()
    return Frame(image, (int(image.shape[1]), int(image.shape[2])), read_ms=(time.perf_counter() - start) * 1e3)


def video_frames(path: Path, stride: int = 1, reduce_to: int | None = None) -> Iterator[Frame]:
    """Every ``stride``-th frame of the video at ``path``, decoded one at a time, RGB; with ``reduce_to``, scaled
    down by 2, 4 or 8 during the colour conversion while both sides stay at least ``reduce_to`` (the full-size
    frame stays available through :attr:`Frame.reload`).

    Raises:
        ValueError: not a video PyAV can open, or no video stream in it (naming the file).
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise ValueError(f"{path}: not a readable video ({exc})") from exc
    with container:
        if not container.streams.video:
            raise ValueError(f"{path}: no video stream in this file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        try:
            start = time.perf_counter()
            for index, decoded in enumerate(container.decode(stream)):
                if index % stride == 0:
                    image, size, reload = decoded_image(decoded, reduce_to)
                    yield Frame(
                        image,
                        size,
                        path,
                        frame=index,
                        fps=fps,
                        read_ms=(time.perf_counter() - start) * 1e3,
                        reload=reload,
                    )
                start = time.perf_counter()
        except av.error.FFmpegError as exc:
            raise ValueError(f"{path}: corrupt video data ({exc})") from exc


def _read(path: Path, reduce_to: int | None) -> Frame | ImageError:
    start = time.perf_counter()
    try:
        image, info = load_image(path, reduce_to=reduce_to)
    except ImageError as exc:
        return exc
    size = (info.height, info.width)
    reload = None if tuple(image.shape[1:]) == size else partial(read_image, path)
    return Frame(image, size, path, read_ms=(time.perf_counter() - start) * 1e3, reload=reload)


def frames(
    items: Sequence[Any],
    reduce_to: int | None,
    stride: int,
    report: SourceReport,
    live: LiveSettings | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Frame]:
    """The frames of ``items`` (from :func:`expand`), in order. An image that cannot be read is skipped with a
    warning naming it (and counted in ``report``); a video that cannot be read is an error. (Decoding files in a
    background thread was measured slower on 2 cores: it competes with the network's own threads.)

    A live item (a string) yields the newest frames of its stream (:func:`~singleshot.predict.live.live_frames`
    with the ``live`` settings, its drops and reconnects told to ``log``, default standard error) until the stream
    ends for good; ``stride`` does not apply to it. Its skipped frames are counted in ``report``.

    Raises:
        LiveSourceError: a live source that cannot be opened (a ValueError).
    """
    for index, item in enumerate(items):
        if isinstance(item, str):
            yield from live_frames(item, live, reduce_to, report, log)
        elif not isinstance(item, Path):
            yield in_memory_frame(item, index)
        elif is_video(item):
            yield from video_frames(item, stride, reduce_to)
        else:
            frame = _read(item, reduce_to)
            if isinstance(frame, ImageError):
                report.add(f"image skipped: {frame.problem}", item)
                warnings.warn(f"{frame}; skipped", stacklevel=2)
                continue
            yield frame


def batches(stream: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """``stream``'s frames in batches of ``size``, except that a live frame is never held back to fill a batch: it
    goes alone, at once (file frames gathered before it go first, as a smaller batch)."""
    chunk: list[Frame] = []
    for frame in stream:
        if frame.stream is not None:
            if chunk:
                yield chunk
                chunk = []
            yield [frame]
            continue
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
