"""``singleshot convert``: weights from the wild (:mod:`singleshot.convert.files`) written as our ``.safetensors``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from singleshot.config import Config, setting
from singleshot.convert.files import WEIGHT_FORMATS, convert_file
from singleshot.weights import save_weights


@dataclass
class ConvertConfig(Config):
    """What ``singleshot convert`` reads and writes."""

    what: ClassVar[str] = "convert"
    aliases: ClassVar[dict[str, str]] = {"-o": "output", "--from": "from_format"}

    source: str = setting(
        help="weights to convert: .pth (torchvision, ssd.pytorch), .caffemodel, or torchvision:NAME", positional=True
    )
    output: str | None = setting(None, ".safetensors to write; none: beside the source (NAME.safetensors)")
    # the ignore below: a Literal of a constant tuple: valid at run time
    from_format: Literal[WEIGHT_FORMATS] | None = setting(  # type: ignore[valid-type]
        None, "the source's format; none detects it from the name and the keys"
    )
    classes: list[str] | None = setting(None, "class names, in the file's label order; none: the file's or VOC/COCO")


def output_path(config: ConvertConfig) -> Path:
    """``--output``, or beside the source (``NAME.safetensors``; ``torchvision:NAME`` in the working folder)."""
    if config.output is not None:
        return Path(config.output)
    if config.source.startswith("torchvision:"):
        return Path(Path(config.source.removeprefix("torchvision:")).with_suffix(".safetensors").name)
    return Path(config.source).with_suffix(".safetensors")


def run(config: ConvertConfig, *, log: Callable[[str], None] = print) -> Path:
    """Convert ``config.source`` and write it (:func:`output_path`); returns the written file."""
    config.validate()
    model, names, report = convert_file(config.source, config.from_format, config.classes)
    output = output_path(config)
    save_weights(model, output, names)
    log(f"{report} -> {output}")
    return output


__all__ = ["ConvertConfig", "output_path", "run"]
