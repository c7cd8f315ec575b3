"""Micro-batching: requests arriving together share one forward pass, on one worker thread.

:class:`MicroBatcher` owns a bounded queue and a thread. :meth:`MicroBatcher.submit` puts a job on the queue and
returns a :class:`concurrent.futures.Future` at once (the event loop awaits it without blocking), or raises
:class:`QueueFullError` when ``max_queue`` jobs are already waiting: the server answers 429 instead of building an
unbounded backlog. The thread takes the first waiting job, gathers more until it has ``max_batch`` or
``max_wait_ms`` have passed since it took the first, drops the jobs whose caller has gone (a cancelled future: the
client disconnected), runs the rest as one batch and hands each caller its own result.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

#: A batch runner: the jobs' payloads in, one result per payload out, in order.
BatchRunner = Callable[[Sequence[Any]], Sequence[Any]]


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue`` jobs already; try again later."""


@dataclass
class BatchStats:
    """What the worker has done: requests answered, batches run, the largest batch, jobs dropped because their
    caller had gone, and jobs waiting now."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    dropped: int = 0
    waiting: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Job:
    payload: Any
    future: Future = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Runs ``run`` on batches of submitted payloads on its own thread (module docstring).

    Args:
        run: called on the worker thread with up to ``max_batch`` payloads; returns one result per payload. An
            exception fails every job of that batch (the worker goes on with the next one).
        max_batch: most payloads per call of ``run``.
        max_wait_ms: longest a first job waits for others to join its batch.
        max_queue: most jobs waiting; :meth:`submit` raises :class:`QueueFullError` beyond it.
    """

    def __init__(self, run: BatchRunner, max_batch: int = 8, max_wait_ms: float = 10.0, max_queue: int = 64) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch={max_batch}, max_queue={max_queue} must be >= 1 and max_wait_ms >= 0")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait_ms / 1e3
        self.stats = BatchStats()
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="singleshot-batcher", daemon=True)
        self._thread.start()

    def submit(self, payload: Any) -> Future:
        """Queue ``payload``; its future gets ``(result, queued_ms)`` (or the batch's exception).

        Raises:
            QueueFullError: ``max_queue`` jobs are waiting.
        """
        job = _Job(payload)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"{self._queue.maxsize} requests are waiting already") from None
        return job.future

    @property
    def waiting(self) -> int:
        """Jobs in the queue now."""
        return self._queue.qsize()

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            self.stats.waiting = self.waiting
            return self.stats.as_dict()

    def close(self, timeout: float = 10.0) -> None:
        """Finish the jobs already queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the worker -------------------------------------------------------------------------------------
    def _work(self) -> None:
        while (first := self._queue.get()) is not None:
            jobs, closing = self._gather(first)
            self._run_batch(jobs)
            if closing:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """``first`` and the jobs arriving within ``max_wait`` of taking it, up to ``max_batch``; whether the stop
        sentinel came meanwhile."""
        jobs, deadline = [first], time.perf_counter() + self.max_wait
        while len(jobs) < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run_batch(self, jobs: list[_Job]) -> None:
        live = [job for job in jobs if job.future.set_running_or_notify_cancel()]  # callers that are still there
        with self._lock:
            self.stats.dropped += len(jobs) - len(live)
        if not live:
            return
        started = time.perf_counter()
        try:
            results = self.run([job.payload for job in live])
            if len(results) != len(live):
                raise RuntimeError(f"batch runner returned {len(results)} results for {len(live)} jobs")
        except Exception as exc:  # handed to each caller: the worker must survive any batch
            for job in live:
                job.future.set_exception(exc)
        else:
            for job, result in zip(live, results, strict=True):
                job.future.set_result((result, (started - job.queued) * 1e3))
        with self._lock:
            self.stats.requests += len(live)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(live))
