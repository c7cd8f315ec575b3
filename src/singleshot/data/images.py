"""Reading images safely: clear errors for unreadable files, counted fixes for unusual ones.

Decoding uses Pillow (torchvision 0.29 deprecates its own decoders). The header is read first, so empty files,
non-images and decompression bombs are refused before any pixel is decoded.

Fixes (each reported once in a dataset's summary, see :class:`DataReport`): grayscale, palette, RGBA (alpha
dropped), CMYK and other modes are converted to RGB; 16-bit images are scaled to 8 bits; the EXIF orientation
is applied.
"""

from __future__ import annotations

import io
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

#: Images with more pixels than this are refused as decompression bombs (a 10000 x 10000 photo is allowed).
MAX_PIXELS = 100_000_000
#: EXIF orientations that swap width and height.
_TRANSPOSING = {5, 6, 7, 8}


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and the problem, ``problem`` is a short key."""

    def __init__(self, path: str | Path, problem: str, detail: str = "") -> None:
        super().__init__(f"{path}: {problem}" + (f" ({detail})" if detail else ""))
        self.path = Path(path)
        self.problem = problem


@dataclass(frozen=True)
class ImageInfo:
    """What the header says: decoded size (after EXIF orientation), raw size, mode, orientation."""

    width: int
    height: int
    raw_width: int
    raw_height: int
    mode: str
    orientation: int


def probe(path: str | Path, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Read an image's header only.

    Raises:
        ImageError: missing, empty, not an image, or larger than ``max_pixels``.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(path, "image file not found")
    if path.stat().st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    return _probe(path, path, max_pixels)


def _probe(source: Path | BinaryIO, name: str | Path, max_pixels: int) -> ImageInfo:
    """The header of the image in ``source`` (a file or an open binary stream), ``name`` in errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, against our limit
            with Image.open(source) as img:
                w, h = img.size
                mode = img.mode
                orientation = int(img.getexif().get(0x0112, 1) or 1)
    except Image.DecompressionBombError as exc:
        raise ImageError(name, f"decompression bomb (over {max_pixels} pixels)", str(exc)) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, "not a readable image", str(exc)) from exc
    if w * h > max_pixels:
        raise ImageError(name, f"decompression bomb (over {max_pixels} pixels)", f"{w}x{h} = {w * h} pixels")
    if w < 1 or h < 1:
        raise ImageError(name, "image has no pixels", f"{w}x{h}")
    swapped = orientation in _TRANSPOSING
    return ImageInfo(h if swapped else w, w if swapped else h, w, h, mode, orientation)


def conversions(info: ImageInfo) -> list[str]:
    """The fixes :func:`read_image` applies to an image with this header (names used in reports)."""
    fixes = []
    if info.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        fixes.append("16-bit image scaled to 8 bits")
    elif info.mode in ("L", "LA", "1", "P", "PA"):
        fixes.append("grayscale/palette image converted to RGB")
    elif info.mode in ("RGBA", "RGBa"):
        fixes.append("RGBA image: alpha dropped")
    elif info.mode == "CMYK":
        fixes.append("CMYK image converted to RGB")
    elif info.mode != "RGB":
        fixes.append(f"{info.mode} image converted to RGB")
    if info.orientation != 1:
        fixes.append("EXIF orientation applied")
    return fixes


def read_image(
    path: str | Path, apply_exif: bool = True, max_pixels: int = MAX_PIXELS, reduce_to: int | None = None
) -> Tensor:
    """Decode an image to ``uint8 [3, H, W]`` RGB (see the module docstring for the fixes applied).

    ``reduce_to``: a JPEG may be decoded at 1/2, 1/4 or 1/8 of its size (DCT scaling, much faster) as long as both
    sides stay at least ``reduce_to`` pixels; other formats are decoded whole. :func:`load_image` also returns the
    full size.

    Raises:
        ImageError: unreadable, truncated or corrupt, or too large.
    """
    return load_image(path, apply_exif, max_pixels, reduce_to)[0]


def load_image(
    path: str | Path, apply_exif: bool = True, max_pixels: int = MAX_PIXELS, reduce_to: int | None = None
) -> tuple[Tensor, ImageInfo]:
    """:func:`read_image`, with the header (:class:`ImageInfo`: the full size, before any reduction)."""
    info = probe(path, max_pixels)
    return _decode(Path(path), path, apply_exif, reduce_to), info


def decode_image_bytes(
    data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS, reduce_to: int | None = None
) -> tuple[Tensor, ImageInfo]:
    """:func:`load_image` for an encoded image in memory (an upload), ``name`` in errors; the header is checked
    (empty, not an image, decompression bomb) before any pixel is decoded, and the EXIF orientation is applied."""
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    info = _probe(io.BytesIO(data), name, max_pixels)
    return _decode(io.BytesIO(data), name, True, reduce_to), info


def _decode(source: Path | BinaryIO, name: str | Path, apply_exif: bool, reduce_to: int | None) -> Tensor:
    """Pixels of the image in ``source`` as ``uint8 [3, H, W]`` RGB (its header already checked)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            if reduce_to is not None and img.format == "JPEG":
                img.draft("RGB", (reduce_to, reduce_to))  # the smallest scale keeping both sides >= reduce_to
            img.load()
            if apply_exif:
                img = ImageOps.exif_transpose(img)
            img = _to_rgb(img)
            array = np.asarray(img, dtype=np.uint8)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(name, "corrupt or truncated image data", str(exc)) from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I"):  # 16/32-bit integer gray: keep the top 8 of 16 bits
        arr = np.asarray(img).astype(np.uint32)
        scale = 256 if arr.max(initial=0) > 255 else 1
        img = Image.fromarray((np.clip(arr // scale, 0, 255)).astype(np.uint8), mode="L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        img = Image.fromarray(np.clip(arr * (255.0 if arr.max(initial=0) <= 1.0 else 1.0), 0, 255).astype(np.uint8))
    return img.convert("RGB") if img.mode != "RGB" else img


@dataclass
class DataReport:
    """Problems met while reading a dataset: what was fixed, dropped or skipped, and where.

    ``counts`` maps each problem message to the places (file paths) it was met, one entry per occurrence;
    ``unknown`` maps each class that objects were dropped for (not in the class list) to the places those objects
    were met, so that callers need not parse messages (see :attr:`unknown_classes`).
    """

    counts: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    unknown: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, problem: str, where: str | Path, count: int = 1) -> None:
        """Count ``count`` occurrences of ``problem`` at ``where`` (``count`` 0 records nothing)."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        if count:
            self.counts[problem].extend([str(where)] * count)

    def add_unknown_class(self, name: str | int | None, where: str | Path, problem: str) -> None:
        """Count an object dropped at ``where`` because its class ``name`` (a class name, YOLO class index or COCO
        category id) is not in the class list; ``problem`` is the human-readable message it is counted under."""
        self.add(problem, where)
        self.unknown[str(name)].append(str(where))

    @property
    def unknown_classes(self) -> list[str]:
        """Sorted names (as strings) of the unknown classes that objects were dropped for."""
        return sorted(self.unknown)

    def merge(self, other: DataReport) -> None:
        for k, v in other.counts.items():
            self.counts[k].extend(v)
        for k, v in other.unknown.items():
            self.unknown[k].extend(v)

    def total(self, problem: str) -> int:
        return len(self.counts.get(problem, []))

    def lines(self, examples: int = 3) -> list[str]:
        out = []
        for problem in sorted(self.counts, key=lambda p: (-len(self.counts[p]), p)):
            where = self.counts[problem]
            shown = ", ".join(Path(w).name for w in where[:examples])
            more = f", ... (+{len(where) - examples})" if len(where) > examples else ""
            out.append(f"{len(where):>6}  {problem}: {shown}{more}")
        return out

    def summary(self, title: str) -> str:
        lines = self.lines()
        return f"{title}: no problems found" if not lines else "\n".join([f"{title}:", *lines])


def save_image(image: Tensor, path: str | Path, quality: int = 90) -> None:
    """Write a ``uint8 [3, H, W]`` image to ``path`` (the format from the suffix; JPEG at ``quality``)."""
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(path, quality=quality)
