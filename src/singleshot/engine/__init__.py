"""Training and evaluation runs: the :class:`~singleshot.engine.trainer.Trainer` and its loop, EMA, checkpoints,
DDP plumbing, run folders, and ``singleshot val`` (:mod:`singleshot.engine.validation`).

Nothing outside this package (``predict/``, ``export/``, ``serve/``) imports it.
"""

from singleshot.engine.trainer import Trainer, TrainResult, train
from singleshot.engine.validation import ValResult, validate

__all__ = ["TrainResult", "Trainer", "ValResult", "train", "validate"]
