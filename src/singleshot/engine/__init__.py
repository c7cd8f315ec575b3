"""Training: the :class:`~singleshot.engine.trainer.Trainer` and its loop, EMA, checkpoints, time budget, DDP
plumbing and run folders; ``singleshot train`` is :func:`singleshot.engine.command.run` under a
:class:`~singleshot.engine.recipe.TrainConfig`. Evaluation is :mod:`singleshot.evaluation`'s.

Nothing outside this package imports it but the command line.
"""

from singleshot.engine.recipe import TrainConfig
from singleshot.engine.trainer import Trainer, TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train"]
