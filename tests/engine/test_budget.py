"""``--time-budget``: the schedule follows the clock, training stops on time, evaluates, and resume keeps the rest."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
import torch

from singleshot.engine.budget import TimeBudget
from singleshot.engine.recipe import TrainConfig
from singleshot.engine.trainer import train


def test_durations_parse() -> None:
    seconds = [TimeBudget.parse(text).seconds for text in ("90s", "30m", "1.5h", "45")]
    assert seconds == [90, 1800, 5400, 45]
    with pytest.raises(ValueError, match=r"time_budget='ten minutes' is not a duration like 90s, 30m or 1.5h"):
        TimeBudget.parse("ten minutes")
    with pytest.raises(ValueError, match=r"time_budget='-1h' must be positive"):
        TimeBudget.parse("-1h")
    with pytest.raises(ValueError, match=r"not a duration like 90s, 30m or 1.5h"):
        TrainConfig(time_budget="soon").validate()
    with pytest.raises(ValueError, match=r"time_budget='0m' must be positive"):
        TrainConfig(time_budget="0m").validate()


def test_budget_fraction_counts_earlier_runs() -> None:
    budget = TimeBudget(10.0)
    budget.resume(used_before=4.0)
    budget.start()
    assert budget.used_before == 4.0 and budget.left_at_start() == 6.0
    assert 0.4 <= budget.fraction() < 0.45 and not budget.expired()
    spent = TimeBudget(10.0)
    spent.resume(used_before=10.0)
    assert spent.expired()


def test_time_kept_for_the_final_evaluation_ends_training_earlier() -> None:
    budget = TimeBudget(10.0)
    budget.resume(used_before=6.0)
    budget.start()
    assert not budget.expired() and budget.fraction() < 0.65
    budget.keep_for_final_evaluation(4.0)
    assert budget.expired() and budget.fraction() == 1.0
    budget.keep_for_final_evaluation(2.0)  # replaces, does not add to, the earlier reserve
    assert not budget.expired() and 0.75 <= budget.fraction() < 0.8


def _budget_config(tmp_path: Path, budget: float, **changes: object) -> TrainConfig:
    return TrainConfig(
        model="ssd_tiny160", imgsz=160, synthetic_train=4000, synthetic_val=16, epochs=1000, batch=8, lr=0.04,
        warmup_epochs=0.05, workers=0, eval_every=0, time_budget=f"{budget:g}s", project=str(tmp_path), name="b",
        predict_images=0, **changes,
    )  # fmt: skip


def _final_rows(run_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


@pytest.mark.slow
def test_training_stops_on_time_at_its_final_learning_rate(tmp_path: Path) -> None:
    budget = 60.0
    config = _budget_config(tmp_path, budget)
    started = time.perf_counter()
    result = train(config, progress=False)
    wall = time.perf_counter() - started
    state = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert abs(state["budget_used"] - budget) <= 0.05 * budget, state["budget_used"]
    assert abs(wall - budget) <= 0.05 * budget, wall  # set-up, training and the final evaluation all fit
    rows = _final_rows(result.run_dir)
    assert float(rows[-1]["lr"]) == pytest.approx(0.01 * config.lr, rel=0.05)  # the schedule's end
    assert rows[-1]["map50"] != "" and (result.run_dir / "weights" / "best.safetensors").is_file()  # evaluated


@pytest.mark.slow
def test_resume_goes_on_with_the_remaining_budget(tmp_path: Path) -> None:
    budget = 30.0
    first = train(_budget_config(tmp_path, budget, max_steps=40), progress=False)  # stopped early, like a crash
    used_before = torch.load(first.run_dir / "last.pt", weights_only=True)["budget_used"]
    assert 0 < used_before < 0.6 * budget
    started = time.perf_counter()
    result = train(TrainConfig(resume=str(first.run_dir), workers=0), progress=False)
    wall = time.perf_counter() - started
    assert result.run_dir == first.run_dir
    total = torch.load(result.run_dir / "last.pt", weights_only=True)["budget_used"]
    assert abs(total - budget) <= 0.05 * budget, total  # both runs together used the budget once
    assert abs(wall - (budget - used_before)) <= 0.05 * budget, (wall, used_before)  # only the rest was spent
    assert float(_final_rows(result.run_dir)[-1]["lr"]) == pytest.approx(0.01 * 0.04, rel=0.05)
