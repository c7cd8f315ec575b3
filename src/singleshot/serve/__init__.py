"""Serving a detector over HTTP: ``singleshot serve`` (:func:`singleshot.serve.command.run`), the application
(:func:`create_app`: ``POST /predict``, health, metadata, the browser page) and its micro-batching queue
(:class:`MicroBatcher`).

This package uses :mod:`singleshot.predict` and never :mod:`singleshot.engine`.
"""

from __future__ import annotations

from singleshot.serve.app import ServeConfig, create_app
from singleshot.serve.batching import MicroBatcher, QueueFullError

__all__ = ["MicroBatcher", "QueueFullError", "ServeConfig", "create_app"]
