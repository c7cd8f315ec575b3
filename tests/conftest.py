from pathlib import Path

import pytest
import torch

#: The shared BCCD dataset, by the relative path the project uses (../shared from the repo root).
BCCD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "BCCD"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def bccd() -> Path:
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"shared BCCD dataset not found at {BCCD.resolve()} (../shared/data/BCCD from the repo root)")
    return BCCD
