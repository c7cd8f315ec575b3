"""``singleshot train``: :func:`run` trains under a :class:`~singleshot.engine.recipe.TrainConfig`."""

from __future__ import annotations

from singleshot.config import CommandError
from singleshot.engine.loop import NonFiniteLossError
from singleshot.engine.recipe import TrainConfig
from singleshot.engine.trainer import TerminatedError, TrainResult, train


def run(config: TrainConfig) -> TrainResult:
    """Train (see :func:`~singleshot.engine.trainer.train`).

    Raises:
        CommandError: a NaN or infinite loss (exit status 1), or an interruption (Ctrl-C, SIGTERM: exit status
            130), after the last checkpoint was kept.
    """
    try:
        return train(config)
    except NonFiniteLossError as exc:
        raise CommandError(f"stopped: {exc}", 1) from exc
    except (KeyboardInterrupt, TerminatedError) as exc:
        raise CommandError("interrupted; resume with --resume <run folder>", 130) from exc


__all__ = ["TrainConfig", "run"]
