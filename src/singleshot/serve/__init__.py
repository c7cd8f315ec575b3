"""Serving a detector over HTTP: ``singleshot serve`` (:func:`run_server`), the application (:func:`create_app`:
``POST /predict``, health, metadata, the browser page) and its micro-batching queue (:class:`MicroBatcher`).

This package uses :mod:`singleshot.predict` and never :mod:`singleshot.engine`.
"""

from __future__ import annotations

from singleshot.serve.app import create_app
from singleshot.serve.batching import MicroBatcher, QueueFullError
from singleshot.serve.server import run_server

__all__ = ["MicroBatcher", "QueueFullError", "create_app", "run_server"]
