"""Evaluation: a detector over a dataset split, scored (:func:`evaluate_model`), and ``singleshot val``
(:mod:`singleshot.evaluation.command`), which writes the metrics, predictions and plots of a run folder.

Below :mod:`singleshot.engine` (training evaluates through it) and :mod:`singleshot.export` (the int8 check);
it uses :mod:`singleshot.predict` and :mod:`singleshot.metrics`, never the engine.
"""

from singleshot.evaluation.scoring import Evaluation, evaluate_model, open_eval_data

__all__ = ["Evaluation", "evaluate_model", "open_eval_data"]
