"""PyTorch inference precision: bf16 autocast detects like fp32; ``auto`` picks bf16 only where it is native and
measured faster, and remembers the choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import write_synthetic_images

import singleshot
from singleshot import build
from singleshot.boxes import box_iou
from singleshot.predict import Detector
from singleshot.predict import precision as precision_module


@pytest.mark.numeric
def test_bf16_finds_what_fp32_finds(trained_tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(precision_module.FORCE_BF16, "1")  # emulated bf16 on CPUs without it: slow, still right
    paths = [str(p) for p, _ in write_synthetic_images(tmp_path, 4, (160, 160), seed=21, suffix=".jpg")]
    fp32 = singleshot.load(trained_tiny, device="cpu")
    bf16 = singleshot.load(trained_tiny, device="cpu", precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    found = 0
    for a, b in zip(fp32.predict(paths, conf=0.5), bf16.predict(paths, conf=0.3), strict=True):
        if len(a) == 0:
            continue
        iou = box_iou(a.boxes, b.boxes)  # (fp32, bf16)
        same_label = a.labels[:, None] == b.labels[None, :]
        assert bool(((iou > 0.8) & same_label).any(dim=1).all()), "a confident fp32 detection has no bf16 twin"
        found += len(a)
    assert found >= 3


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; choose one of auto, fp32, bf16"):
        Detector(build("ssd_tiny160", 3), ["a", "b", "c"], precision="fp8")


def test_bf16_where_it_is_emulated_runs_fp32_with_a_warning_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "bf16_is_native", lambda device: False)
    monkeypatch.delenv(precision_module.FORCE_BF16, raising=False)
    with pytest.warns(
        UserWarning, match=r'precision="bf16": this CPU .* has neither AVX512-BF16 nor AMX.*running fp32'
    ):
        assert Detector(build("ssd_tiny160", 3), ["a", "b", "c"], precision="bf16").precision == "fp32"
    monkeypatch.setenv(precision_module.FORCE_BF16, "1")
    assert Detector(build("ssd_tiny160", 3), ["a", "b", "c"], precision="bf16").precision == "bf16"
    monkeypatch.setattr(precision_module, "bf16_is_native", lambda device: True)
    monkeypatch.delenv(precision_module.FORCE_BF16)
    assert Detector(build("ssd_tiny160", 3), ["a", "b", "c"], precision="bf16").precision == "bf16"


def test_auto_is_fp32_where_bf16_is_not_native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision_module, "bf16_is_native", lambda device: False)
    monkeypatch.setattr(precision_module, "measure_precisions", lambda *a: pytest.fail("must not measure"))
    assert Detector(build("ssd_tiny160", 3), ["a", "b", "c"], precision="auto").precision == "fp32"


def test_auto_measures_once_and_keeps_bf16_only_when_faster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SINGLESHOT_CACHE", str(tmp_path))
    monkeypatch.setattr(precision_module, "_memory", {})
    monkeypatch.setattr(precision_module, "bf16_is_native", lambda device: True)
    times = {"ssd_tiny160": {"fp32": 1.0, "bf16": 0.5}, "ssdlite320_mobilenet_v3": {"fp32": 1.0, "bf16": 0.97}}
    calls: list[str] = []

    def measure(model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        calls.append(model.name)
        return times[model.name]

    monkeypatch.setattr(precision_module, "measure_precisions", measure)
    cpu = torch.device("cpu")
    tiny, lite = build("ssd_tiny160", 3), build("ssdlite320_mobilenet_v3", 3, image_size=160)
    assert precision_module.choose_precision(tiny, cpu) == "bf16"  # twice as fast
    assert precision_module.choose_precision(lite, cpu) == "fp32"  # 3% faster is not worth it (MIN_GAIN)
    assert calls == ["ssd_tiny160", "ssdlite320_mobilenet_v3"]
    monkeypatch.setattr(precision_module, "_memory", {})  # a new process: the file remembers
    assert precision_module.choose_precision(tiny, cpu) == "bf16"
    assert calls == ["ssd_tiny160", "ssdlite320_mobilenet_v3"]
    assert len(list(tmp_path.glob("precision.json"))) == 1
    (tmp_path / "precision.json").write_text("{broken")  # an unreadable cache is measured again
    monkeypatch.setattr(precision_module, "_memory", {})
    assert precision_module.choose_precision(tiny, cpu) == "bf16" and calls[-1] == "ssd_tiny160"


def test_measurement_times_both_precisions() -> None:
    times = precision_module.measure_precisions(build("ssd_tiny160", 3, image_size=64).eval(), torch.device("cpu"))
    assert set(times) == {"fp32", "bf16"} and all(t > 0 for t in times.values())
