"""Load test of ``singleshot serve`` on 127.0.0.1: throughput, latency, 429s, errors and memory under concurrency.

Usage: ``python benchmarks/serve_load.py [--model ssdlite320_mobilenet_v3] [--weights W] [--seconds 60]
[--concurrency 1 8] [--image 640x480]``

A real server process (``singleshot serve``) is started for each setting; N client threads (one ``httpx.Client``
each, keep-alive) post the same synthetic-shapes JPEG to ``/predict`` as fast as they get answers, for
``--seconds`` (after a short warm-up that is not counted), and stop by themselves (also after ``--max-requests``).
Runs: each ``--concurrency`` with micro-batching (``--max-batch``); the highest concurrency again with
``--max-batch 1`` (the same server without batching, for comparison); and an overload run (``--overload`` clients
against ``--max-queue 4``, each waiting ``Retry-After`` when told) that must answer 429s, not collapse. Reported
per run: requests/s, p50/p95/p99 latency, mean batch size, 429s, 5xx, lost requests (sent without any answer),
and the server's RSS after the warm-up and at the end.

Without ``--weights`` the model is built with seeded random weights for VOC's 20 classes (same network and cost as
a trained one; few detections pass ``conf``, so post-processing is light).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import torch

from singleshot.convert.files import VOC_CLASSES
from singleshot.cpu import cpu_features
from singleshot.data.synthetic import save_images
from singleshot.models import build
from singleshot.weights import save_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import Server, start_server, stop_server  # the tests' server launcher


@dataclass
class Run:
    """What the clients of one run saw."""

    name: str
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    lost: int = 0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0

    def add(self, status: int, latency_ms: float, batch: int | None) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies_ms.append(latency_ms)
            self.batch_sizes.append(batch or 0)

    def row(self) -> str:
        ok = len(self.latencies_ms)
        q = statistics.quantiles(self.latencies_ms, n=100) if ok >= 2 else [float("nan")] * 99
        server_errors = sum(n for s, n in self.statuses.items() if s >= 500)
        growth = 100 * (self.rss_after_mb / self.rss_before_mb - 1)
        return (
            f"{self.name:<26} {self.clients:>3} {ok / self.seconds:>8.1f} {q[49]:>7.0f} {q[94]:>7.0f} {q[98]:>7.0f} "
            f"{statistics.fmean(self.batch_sizes or [0]):>6.2f} {self.statuses.get(429, 0):>6} {server_errors:>4} "
            f"{self.lost:>5} {self.rss_before_mb:>7.0f} {self.rss_after_mb:>7.0f} {growth:>+6.1f}%"
        )


HEADER = (
    f"{'run':<26} {'N':>3} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'batch':>6} {'429':>6} {'5xx':>4} "
    f"{'lost':>5} {'RSS0 MB':>7} {'RSS1 MB':>7} {'growth':>7}"
)


def rss_mb(server: Server) -> float:
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def load(server: Server, run: Run, image: bytes, seconds: float, max_requests: int, warm_up: float = 3.0) -> Run:
    """``run.clients`` threads posting ``image`` for ``warm_up`` (not counted) then ``seconds``."""
    lock, start_counting = threading.Lock(), time.perf_counter() + warm_up
    stop_at = start_counting + seconds

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while (now := time.perf_counter()) < stop_at:
                with lock:
                    if now >= start_counting and run.sent >= max_requests:
                        return
                    run.sent += now >= start_counting
                counted = now >= start_counting
                started = time.perf_counter()
                try:
                    response = http.post("/predict", files={"image": ("load.jpg", image, "image/jpeg")})
                except httpx.TransportError:
                    with lock:
                        run.lost += counted
                    continue
                latency = (time.perf_counter() - started) * 1e3
                if counted:
                    batch = response.json().get("batch_size") if response.status_code == 200 else None
                    with lock:
                        run.add(response.status_code, latency, batch)
                if response.status_code == 429:  # a well-behaved client waits as told
                    time.sleep(float(response.headers.get("retry-after", 1)))

    threads = [threading.Thread(target=client) for _ in range(run.clients)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start_counting - time.perf_counter()))
    run.rss_before_mb = rss_mb(server)  # after the warm-up: buffers for full batches are allocated by now
    for t in threads:
        t.join()
    run.seconds = seconds
    return run


def serve_and_load(weights: Path, name: str, clients: int, args: argparse.Namespace, image: bytes, *flags: str) -> Run:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(weights, Path(tmp) / "server.log", *flags)
        try:
            run = Run(name, clients)
            load(server, run, image, args.seconds, args.max_requests)
            run.rss_after_mb = rss_mb(server)
        finally:
            stop_server(server)
    print(run.row(), flush=True)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ssdlite320_mobilenet_v3", help="model built when --weights is not given")
    parser.add_argument("--weights", type=Path, help="weights to serve (default: --model with random weights)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8], help="client counts to run")
    parser.add_argument("--overload", type=int, default=32, help="clients of the overload run (0: none)")
    parser.add_argument("--max-batch", type=int, default=8, help="the server's --max-batch")
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop a run after this many requests")
    parser.add_argument("--image", default="640x480", help="WxH of the synthetic JPEG posted")
    args = parser.parse_args()

    width, height = (int(v) for v in args.image.split("x"))
    print(cpu_features().describe(), f"| torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        image = save_images(tmp, 1, (height, width), seed=0, quality=90, prefix="load")[0].read_bytes()
        weights = args.weights
        if weights is None:
            torch.manual_seed(0)
            weights = Path(tmp) / f"{args.model}.safetensors"
            save_weights(build(args.model, num_classes=len(VOC_CLASSES)), weights, list(VOC_CLASSES))
        print(f"serving {weights.name}; {len(image)}-byte {width}x{height} JPEG; {args.seconds:g} s per run")
        print(HEADER, flush=True)
        batching = ("--max-batch", str(args.max_batch))
        runs = [serve_and_load(weights, "micro-batching", c, args, image, *batching) for c in args.concurrency]
        top = max(args.concurrency)
        single = serve_and_load(weights, "no batching (max-batch 1)", top, args, image, "--max-batch", "1")
        if args.overload:
            overload = (*batching, "--max-queue", "4")
            serve_and_load(weights, "overload (max-queue 4)", args.overload, args, image, *overload)
    base = next((r for r in runs if r.clients == 1), None)
    if base is not None and base.latencies_ms:
        for r in (*runs, single):
            if r.clients != 1:
                ratio = len(r.latencies_ms) / len(base.latencies_ms)
                print(f"throughput, {r.name} at {r.clients} clients / micro-batching at 1 client: {ratio:.2f}x")


if __name__ == "__main__":
    main()
