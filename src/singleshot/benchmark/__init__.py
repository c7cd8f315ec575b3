"""Benchmarks a user can run: :func:`benchmark` (``singleshot benchmark``), inference speed per backend against
torchvision's SSD on the same weights and images."""

from singleshot.benchmark.inference import Timing, benchmark

__all__ = ["Timing", "benchmark"]
