"""``singleshot benchmark``: every backend and torchvision timed on the same images, ratios to torchvision."""

from __future__ import annotations

from pathlib import Path

import pytest

from singleshot.cpu import cpu_features
from singleshot.speed import BenchmarkConfig
from singleshot.speed import run as benchmark
from singleshot.speed.command import REFERENCE


def test_benchmark_times_every_backend_beside_torchvision(trained_tiny: Path) -> None:
    lines: list[str] = []
    config = BenchmarkConfig(weights=str(trained_tiny), runs=2, batches=1, batch=2)
    timings = benchmark(config, log=lines.append)
    assert list(timings) == [REFERENCE, "torch-fp32", "torch-bf16", "ort-fp32", "ort-int8", "ov-fp32", "ov-int8"]
    for name, t in timings.items():
        assert len(t.latency) == 2 and len(t.batch) == 1 and t.median_latency() > 0
        assert (name == REFERENCE) == (not t.stages)  # our stage breakdown, not torchvision's
    table = lines[0].splitlines()
    assert cpu_features().describe() in table[0] and "16 JPEG images" in table[0]
    rows = {line.split()[0]: line.split() for line in table[3:]}
    assert set(rows) == set(timings)
    assert rows[REFERENCE][3] == "1.00" and rows[REFERENCE][5] == "1.00"  # torchvision against itself
    ratio = float(rows["ort-fp32"][3])
    assert ratio == pytest.approx(timings["ort-fp32"].median_latency() / timings[REFERENCE].median_latency(), abs=0.01)
    # and what --backend auto runs these weights with here: one of the timed fp32 paths (no checked int8 file)
    (auto,) = [line for line in lines if line.startswith("backend auto: ")]
    assert auto.split()[2] in {"torch-fp32", "ort-fp32", "ov-fp32"}, auto


def test_benchmark_needs_images(trained_tiny: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"no images or videos in this folder"):
        benchmark(BenchmarkConfig(weights=str(trained_tiny), source=str(tmp_path), runs=1, batches=1))
    (tmp_path / "clip.mp4").write_bytes(b"")  # a video only: nothing to time
    with pytest.raises(ValueError, match=r"clip.mp4.*no image files to time|no image files to time"):
        benchmark(BenchmarkConfig(weights=str(trained_tiny), source=str(tmp_path / "*.mp4"), runs=1, batches=1))
