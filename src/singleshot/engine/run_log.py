"""The per-epoch records of a training run (:class:`RunLog`): ``metrics.csv``, ``results.png``, TensorBoard."""

from __future__ import annotations

import csv
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from singleshot.plots import plot_results


def append_csv(path: Path, row: dict[str, str]) -> None:
    """Append ``row`` to the CSV file ``path``, writing the header first when the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


class RunLog:
    """The records of a training run, one entry per epoch: ``metrics.csv``, ``results.png`` (redrawn from the
    CSV) and TensorBoard events, all in ``run_dir``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.tensorboard = SummaryWriter(str(run_dir))

    def add_epoch(self, epoch: int, row: dict[str, str], scalars: dict[str, float]) -> None:
        """Record epoch ``epoch`` (1-based): ``row`` as a CSV line, ``scalars`` (``group/name``) in TensorBoard."""
        csv_path = self.run_dir / "metrics.csv"
        append_csv(csv_path, row)
        plot_results(csv_path, self.run_dir / "results.png")
        for tag, value in scalars.items():
            self.tensorboard.add_scalar(tag, value, epoch)
        self.tensorboard.flush()

    def close(self) -> None:
        self.tensorboard.close()
