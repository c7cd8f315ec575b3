"""A wall-clock training budget (``singleshot train --time-budget 30m``).

The learning-rate schedule is laid out over the budget's time, not over a guessed number of steps: after the
warm-up, the cosine (or multi-step) schedule reads its progress from :meth:`TimeBudget.fraction`, so a slower or
faster machine, or a slow first epoch, corrects itself at every step. Training stops when the budget, less the time
the last evaluation took (so that the final one fits), is used; a resumed run goes on with what is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TimeBudget:
    """``seconds`` of training, ``used_before`` of them spent by earlier runs of the same training (resume)."""

    seconds: float
    used_before: float = 0.0
    reserve: float = 0.0  # seconds kept for the final evaluation (the last evaluation's time)
    started: float = field(default_factory=time.perf_counter)

    def start(self, at: float | None = None) -> None:
        """Start the clock at ``at`` (a ``time.perf_counter()`` reading; now if None). The trainer starts it from
        its own construction, so reading the data and building the model count: the whole run fits the budget."""
        self.started = time.perf_counter() if at is None else at

    def used(self) -> float:
        return self.used_before + time.perf_counter() - self.started

    def fraction(self) -> float:
        """Share of the budget used, in [0, 1]."""
        return min(1.0, self.used() / max(self.seconds - self.reserve, 1e-9))

    def expired(self) -> bool:
        return self.used() >= self.seconds - self.reserve


def budget_seconds(text: str) -> float:
    """Seconds of a duration written ``90s``, ``30m``, ``1.5h`` or a plain number of seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise ValueError(f"time_budget={text!r} is not a duration like 90s, 30m or 1.5h") from None
    if not seconds > 0:
        raise ValueError(f"time_budget={text!r} must be positive")
    return seconds
