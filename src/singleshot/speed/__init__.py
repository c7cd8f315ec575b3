"""Speed a user can measure: ``singleshot benchmark`` (:mod:`singleshot.speed.command`), inference time per
backend against torchvision's SSD on the same weights and images. (The project's own benchmark scripts, which
compare every stage with its reference, are in ``benchmarks/`` at the repository root.)"""

from singleshot.speed.command import BACKENDS, BenchmarkConfig, Timing, run

__all__ = ["BACKENDS", "BenchmarkConfig", "Timing", "run"]
