"""The micro-batching queue: gathering, limits, a full queue, failures and callers that have gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from singleshot.serve.batching import MicroBatcher, QueueFullError


class Recorder:
    """A batch runner that doubles its inputs, records each batch, and can be held until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, payloads: Sequence[int]) -> list[int]:
        self.entered.set()
        self.release.wait(10)
        self.batches.append(list(payloads))
        return [2 * p for p in payloads]


def test_jobs_waiting_together_share_one_call_in_order() -> None:
    run = Recorder()
    run.release.clear()
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=50, max_queue=16)
    first = batcher.submit(0)
    assert run.entered.wait(5)  # the worker holds job 0; the next ten queue up behind it
    futures = [batcher.submit(i) for i in range(1, 11)]
    run.release.set()
    assert first.result(5)[0] == 0
    assert [f.result(5)[0] for f in futures] == [2 * i for i in range(1, 11)]
    batcher.close()
    assert run.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]  # max_batch 4, arrival order kept
    assert batcher.snapshot() == {"requests": 11, "batches": 4, "largest_batch": 4, "dropped": 0, "waiting": 0}
    assert futures[-1].result()[1] > 0  # milliseconds queued


def test_a_lone_job_waits_at_most_max_wait() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch=8, max_wait_ms=30, max_queue=4)
    started = time.perf_counter()
    assert batcher.submit(5).result(5)[0] == 10
    waited = time.perf_counter() - started
    batcher.close()
    assert 0.025 <= waited < 1.0 and run.batches == [[5]]


def test_a_full_queue_refuses_instead_of_growing() -> None:
    run = Recorder()
    run.release.clear()
    batcher = MicroBatcher(run, max_batch=1, max_wait_ms=0, max_queue=2)
    held = batcher.submit(0)
    assert run.entered.wait(5)  # running, out of the queue
    queued = [batcher.submit(1), batcher.submit(2)]
    with pytest.raises(QueueFullError, match="2 requests are waiting already"):
        batcher.submit(3)
    assert batcher.waiting == 2
    run.release.set()
    assert [f.result(5)[0] for f in (held, *queued)] == [0, 2, 4]
    assert batcher.submit(4).result(5)[0] == 8  # room again
    batcher.close()


def test_a_failing_batch_fails_its_callers_and_the_worker_goes_on() -> None:
    def run(payloads: Sequence[int]) -> list[int]:
        if 13 in payloads:
            raise RuntimeError("unlucky batch")
        return list(payloads)

    batcher = MicroBatcher(run, max_batch=1, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="unlucky batch"):
        batcher.submit(13).result(5)
    assert batcher.submit(7).result(5)[0] == 7
    wrong = MicroBatcher(lambda payloads: [], max_batch=1, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="returned 0 results for 1 jobs"):
        wrong.submit(1).result(5)
    batcher.close()
    wrong.close()


def test_jobs_whose_caller_has_gone_are_skipped() -> None:
    run = Recorder()
    run.release.clear()
    batcher = MicroBatcher(run, max_batch=8, max_wait_ms=0, max_queue=8)
    held = batcher.submit(0)
    assert run.entered.wait(5)
    gone, kept = batcher.submit(1), batcher.submit(2)
    assert gone.cancel()  # the client disconnected while its job waited
    run.release.set()
    assert kept.result(5)[0] == 4 and held.result(5)[0] == 0
    batcher.close()
    assert run.batches == [[0], [2]]
    assert batcher.snapshot()["dropped"] == 1


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch=0"):
        MicroBatcher(lambda p: p, max_batch=0)
