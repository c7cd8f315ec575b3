"""A wall-clock training budget (``singleshot train --time-budget 30m``).

The learning-rate schedule is laid out over the budget's time, not over a guessed number of steps: after the
warm-up, the cosine (or multi-step) schedule reads its progress from :meth:`TimeBudget.fraction`, so a slower or
faster machine, or a slow first epoch, corrects itself at every step. Training stops when the budget, less the time
the last evaluation took (so that the final one fits), is used; a resumed run goes on with what is left.

:meth:`TimeBudget.parse` is the one place a budget's text (``90s``, ``30m``, ``1.5h``) is read.
"""

from __future__ import annotations

import time

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


class TimeBudget:
    """``seconds`` of wall-clock training, some of them possibly spent by earlier runs of the same training.

    The clock runs from construction until :meth:`start` restarts it; :meth:`resume` counts the time a checkpoint
    says was already used, and :meth:`keep_for_final_evaluation` sets aside the time the final evaluation needs.
    """

    def __init__(self, seconds: float) -> None:
        """A budget of ``seconds`` (> 0), none of it used yet; its clock starts now."""
        if not seconds > 0:
            raise ValueError(f"a time budget must be positive, not {seconds}")
        self._seconds = float(seconds)
        self._used_before = 0.0
        self._reserve = 0.0
        self._started = time.perf_counter()

    @classmethod
    def parse(cls, text: str) -> TimeBudget:
        """The budget written ``90s``, ``30m``, ``1.5h`` or a plain number of seconds.

        Raises ValueError (naming ``time_budget=<text>``) when ``text`` is no duration or not a positive one.
        """
        value, unit = (text[:-1], text[-1]) if text and text[-1] in _UNITS else (text, "s")
        try:
            seconds = float(value) * _UNITS[unit]
        except ValueError:
            raise ValueError(f"time_budget={text!r} is not a duration like 90s, 30m or 1.5h") from None
        if not seconds > 0:
            raise ValueError(f"time_budget={text!r} must be positive")
        return cls(seconds)

    @property
    def seconds(self) -> float:
        """The whole budget, in seconds, earlier runs' share included."""
        return self._seconds

    @property
    def used_before(self) -> float:
        """Seconds spent by earlier runs of the same training (0 unless :meth:`resume` was called)."""
        return self._used_before

    def left_at_start(self) -> float:
        """Seconds this run may spend: the budget less what earlier runs used."""
        return self._seconds - self._used_before

    def resume(self, used_before: float) -> None:
        """Go on from a checkpoint whose runs already used ``used_before`` seconds of the budget."""
        self._used_before = float(used_before)

    def keep_for_final_evaluation(self, seconds: float) -> None:
        """Set aside ``seconds`` (the last evaluation's time) so that the final evaluation fits in the budget:
        training counts as done that much earlier. Each call replaces the previous reserve."""
        self._reserve = seconds

    def start(self, at: float | None = None) -> None:
        """Start the clock at ``at`` (a ``time.perf_counter()`` reading; now if None). The trainer starts it from
        its own construction, so reading the data and building the model count: the whole run fits the budget."""
        self._started = time.perf_counter() if at is None else at

    def used(self) -> float:
        """Seconds of the budget used so far, earlier runs included (what a checkpoint records)."""
        return self._used_before + time.perf_counter() - self._started

    def fraction(self) -> float:
        """Share of the training time (the budget less the final evaluation's reserve) used, in [0, 1]."""
        return min(1.0, self.used() / max(self._seconds - self._reserve, 1e-9))

    def expired(self) -> bool:
        """Whether training must stop: the budget, less the final evaluation's reserve, is used."""
        return self.used() >= self._seconds - self._reserve

    def __repr__(self) -> str:
        return (
            f"TimeBudget(seconds={self._seconds:g}, used_before={self._used_before:g}, reserve={self._reserve:g}, "
            f"used={self.used():.1f})"
        )


__all__ = ["TimeBudget"]
