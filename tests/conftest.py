"""Shared fixtures and dataset writers: small datasets the tests write themselves, checkable by hand."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image
from torch import Tensor

from singleshot.boxes import box_iou
from singleshot.cpu import cpu_features
from singleshot.data.synthetic import SyntheticShapes
from singleshot.data.synthetic_tracks import MovingShapes
from singleshot.models import build
from singleshot.models.common import assemble
from singleshot.postprocess import PostProcessor, PostSettings
from singleshot.priors import DefaultBoxConfig
from singleshot.ssd import SSD, Preprocessing
from singleshot.weights import save_weights

#: The folder of measured choices this run made (:func:`pytest_configure`).
_CACHE = pytest.StashKey[str]()
#: The shared BCCD dataset, by the relative path the project uses (../shared from the repo root).
BCCD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "BCCD"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Which kernels this run's float results came from (``make test`` reruns the numeric tests under others)."""
    caps = " ".join(f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")
                    if k in os.environ)  # fmt: skip
    kernels = f"ATen {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"
    terminalreporter.write_line(f"kernels: {cpu_features().describe()}; {kernels}" + (f"; {caps}" if caps else ""))


def pytest_configure(config: pytest.Config) -> None:
    """Measured choices (``backend="auto"``, ``precision="auto"``) and on-the-fly exports go to a folder of this run,
    not the user's ``~/.cache/singleshot`` (subprocesses inherit it); the folder is removed at the end."""
    if "SINGLESHOT_CACHE" not in os.environ:
        os.environ["SINGLESHOT_CACHE"] = config.stash[_CACHE] = tempfile.mkdtemp(prefix="singleshot-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _CACHE in config.stash:
        shutil.rmtree(config.stash[_CACHE], ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def bccd() -> Path:
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"shared BCCD dataset not found at {BCCD.resolve()} (../shared/data/BCCD from the repo root)")
    return BCCD


def random_image(w: int = 80, h: int = 60, seed: int = 0) -> Image.Image:
    """An RGB image of uniform random pixels (``seed`` fixes it)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def trained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of a tiny SSD trained for about 35 s on synthetic shapes: detections where the shapes are, without
    the tied scores of an untrained model. Its training runs on this CPU's kernels, so its weights differ between
    CPUs (held-out mAP50 0.47 on AVX-512, 0.42 on AVX2, 0.38 on one thread): tests assert what holds for any of
    them, never the fate of one borderline score."""
    from singleshot.engine import train
    from singleshot.engine.recipe import TrainConfig

    root = tmp_path_factory.mktemp("trained")
    config = TrainConfig(
        model="ssd_tiny160", imgsz=160, augment="eval", synthetic_train=2000, synthetic_val=16, epochs=2, batch=8,
        lr=0.04, warmup_epochs=0.5, workers=0, eval_every=0, project=str(root), name="t", predict_images=0,
    )  # fmt: skip
    return train(config, progress=False).run_dir / "weights" / "last.safetensors"


@pytest.fixture(scope="session")
def untrained_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny SSD (seed 0) with the synthetic shapes' classes, as a weights file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("untrained") / "tiny.safetensors"
    save_weights(build("ssd_tiny160", 3), path, list(SyntheticShapes.classes))
    return path


# -- VOC writers ----------------------------------------------------------------------------------------
def voc_object(name: str, box: Sequence[object], difficult: int = 0) -> str:
    """One ``<object>`` of a VOC annotation; ``box`` is (xmin, ymin, xmax, ymax), written as given."""
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult>"
        f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def voc_xml(objects: str, w: int = 80, h: int = 60) -> str:
    """A VOC annotation file of an image of ``w`` x ``h`` pixels holding ``objects`` (from :func:`voc_object`)."""
    return f"<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"


def write_voc_devkit(root: Path, count: int = 6, split: str = "val", size: int = 160) -> Path:
    """A VOC devkit of ``count`` synthetic-shape images (one split), object 0 of image 0 marked difficult."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    data = SyntheticShapes(count, size, seed=5)
    stems = []
    for i in range(count):
        image, target = data[i]
        stem = f"img{i:02d}"
        stems.append(stem)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(root / "JPEGImages" / f"{stem}.jpg", quality=95)
        objects = "".join(
            voc_object(SyntheticShapes.classes[label - 1], [f"{v:.0f}" for v in box], int(i == 0 and k == 0))
            for k, (box, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True))
        )
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(objects, size, size))
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(stems))
    return root


def write_voc_folder(root: Path, count: int, xml: str, annotated: Callable[[int], bool] = lambda i: True) -> Path:
    """A VOC XML folder (no named splits): ``img00.jpg`` ... with random pixels, and ``imgNN.xml`` holding ``xml``
    beside each image ``i`` for which ``annotated(i)``."""
    root.mkdir(parents=True)
    for i in range(count):
        random_image(seed=i).save(root / f"img{i:02d}.jpg")
        if annotated(i):
            (root / f"img{i:02d}.xml").write_text(xml)
    return root


def write_synthetic_images(
    folder: Path, count: int, size: tuple[int, int] = (160, 160), seed: int = 7, suffix: str = ".png"
) -> list[tuple[Path, dict[str, torch.Tensor]]]:
    """``count`` synthetic-shape images saved as ``img00<suffix>``...; returns each path with its target."""
    folder.mkdir(parents=True, exist_ok=True)
    data = SyntheticShapes(count, size, seed=seed)
    out = []
    for i in range(count):
        image, target = data[i]
        path = folder / f"img{i:02d}{suffix}"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path, quality=95)
        out.append((path, target))
    return out


def write_unusual_images(folder: Path, rgb: np.ndarray) -> dict[str, Path]:
    """``rgb`` (H x W x 3 uint8) saved as grayscale, RGBA and 16-bit PNGs, and as a JPEG whose EXIF orientation 6
    turns it a quarter (stored W x H, shown H wide): the conversions training applies, one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in ("gray.png", "rgba.png", "deep.png", "rotated.jpg")}
    Image.fromarray(rgb).convert("L").save(paths["gray.png"])
    Image.fromarray(rgb).convert("RGBA").save(paths["rgba.png"])
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(paths["deep.png"])
    exif = Image.fromarray(rgb).getexif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(paths["rotated.jpg"], exif=exif, quality=95)
    return paths


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` x ``height`` RGB pixels (a decompression bomb's shape: the
    pixel data is one empty chunk, so only a header-first reader refuses it cheaply)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# -- models with weights of order 1 -------------------------------------------------------------------------
def toy_model(name: str, backbone: torch.nn.Module, boxes: DefaultBoxConfig) -> SSD:
    """An SSD of 2 classes assembled around a test ``backbone`` whose feature maps ``boxes`` describe (input
    normalised by 0.5/0.5, the paper's post-processing)."""
    size = boxes.image_size
    return assemble(
        name, backbone, boxes, num_classes=2, preprocessing=Preprocessing(size, (0.5,) * 3, (0.5,) * 3),
        postprocess=PostProcessor(),
    )  # fmt: skip  # keywords grouped by line


def randomise_weights(model: torch.nn.Module, predictors: Sequence[torch.nn.Module]) -> None:
    """Seeded-random weights that give logits of order 1 (SSDLite's own init, torchvision's or ours, gives ~1e-14
    outputs: every score tied); ``predictors``: the head's per-map predictors, whose last convolution is scaled
    down."""
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.normal_(m.bias, std=0.1)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.normal_(m.bias, std=0.1)
    for predictor in predictors:
        [m for m in predictor.modules() if isinstance(m, torch.nn.Conv2d)][-1].weight.data.mul_(0.25)


# -- comparing float results across kernels --------------------------------------------------------------
#: float32's unit roundoff: one correctly rounded operation is off by at most this much, relatively.
FLOAT32_UNIT = 2.0**-24


def rounding_bound(magnitude: torch.Tensor | float, steps: int) -> torch.Tensor | float:
    """Worst-case float32 rounding error of a sum of products, whatever order a kernel adds them in (Higham,
    *Accuracy and Stability of Numerical Algorithms*, 2nd ed., section 3.1): ``gamma_n * magnitude``, where
    ``magnitude`` is the same sum taken over absolute values (for a convolution: ``conv2d(|x|, |w|)``),
    ``gamma_n = n u / (1 - n u)``, and ``n`` (``steps``) counts the roundings along the longest path: the terms of
    the sum plus the operations that produced its inputs."""
    gamma = steps * FLOAT32_UNIT / (1 - steps * FLOAT32_UNIT)
    return gamma * magnitude


def float32_tolerance(model: torch.nn.Module, exact: torch.Tensor) -> float:
    """The float32 error to allow at an output of ``model`` whose float64 value is ``exact``, whichever kernels
    compute it. Rounding errors add like a random walk in practice (Higham, section 2.8): a sum of ``n`` products
    is off by about ``sqrt(n) u`` of its magnitude, and the errors of successive layers add up. With ``L``
    convolutions of at most ``n`` products each: ``L sqrt(n) u max|exact|``, times 4 (SSDLite's and SSD300's
    measured errors, in both memory layouts, on AVX-512, AVX2 and SSE4.1 kernels and on one thread, were 0.004 to
    0.24 of the estimate).
    A wrong layout or mapping moves outputs by O(1)."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    width = max(m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1] for m in convs)
    return 4 * len(convs) * width**0.5 * FLOAT32_UNIT * float(exact.abs().max())


# -- comparing detections -------------------------------------------------------------------------------
#: Scores are softmax probabilities: a score moves by at most half the largest change of its logits. Two float32
#: paths that add in other orders (ONNX Runtime and PyTorch; a batch of 1 and a batch of 5) were measured to give
#: scores within 1e-5 of each other (SSD300, random weights, logits up to 14, AVX2 kernels; 4e-6 on AVX-512, 2e-7
#: for the tiny model): the tolerance keeps a factor 10 above that.
SCORE_TOL = 1e-4
#: Box coordinates in pixels: offsets that agree to 1e-5 move a 300 px box by about 1e-3 px (two float32 paths);
#: a wrong decoding moves it by pixels.
BOX_TOL = 0.5


def unmatched_detections(
    ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], box_tol: float = BOX_TOL, score_tol: float = SCORE_TOL
) -> list[int]:
    """Indices of ``ref``'s detections with no counterpart in ``ours`` (same label, every box coordinate within
    ``box_tol`` pixels, score within ``score_tol``), each of ours used once: compares detections, not arrays, since
    NMS may order tied scores differently."""
    used = torch.zeros(len(ours["scores"]), dtype=torch.bool)
    missing = []
    for i in range(len(ref["scores"])):
        close = (
            (ours["labels"] == ref["labels"][i])
            & ((ours["boxes"] - ref["boxes"][i]).abs().amax(dim=1) <= box_tol)
            & ((ours["scores"] - ref["scores"][i]).abs() <= score_tol)
            & ~used
        )
        if close.any():
            used[int(close.nonzero()[0])] = True
        else:
            missing.append(i)
    return missing


def _ties(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], missing: list[int], score_tol: float,
          nms_iou: float) -> list[int]:  # fmt: skip
    """Those of ``missing`` (indices into ``ref``) that a float32 tie explains: a score within ``score_tol`` of
    the lowest kept one (the score threshold or the ``max_det`` cut-off), or an NMS tie: ``ours`` holds a box of
    the same class overlapping it above the NMS threshold with a score within ``score_tol``, so which of the two
    suppressed the other is a coin toss of the rounding."""
    if not missing:
        return []
    floor = float(ref["scores"].min()) + score_tol
    overlap = (
        box_iou(ref["boxes"][missing].double(), ours["boxes"].double())
        if len(ours["scores"])
        else torch.zeros(len(missing), 0)
    )
    excused = []
    for row, i in enumerate(missing):
        twin = (
            (overlap[row] > nms_iou)
            & (ours["labels"] == ref["labels"][i])
            & ((ours["scores"] - ref["scores"][i]).abs() <= score_tol)
        )
        if float(ref["scores"][i]) <= floor or bool(twin.any()):
            excused.append(i)
    return excused


def assert_same_detections(
    ours: dict[str, torch.Tensor],
    ref: dict[str, torch.Tensor],
    box_tol: float = BOX_TOL,
    score_tol: float = SCORE_TOL,
    nms_iou: float = 0.45,
) -> None:
    """Both ways, every detection has its counterpart (see :func:`unmatched_detections`), except where two float32
    paths may legitimately decide differently: a score within ``score_tol`` of a decision (see :func:`_ties`). At
    most a tenth of the detections (at least one) may be excused so, so that a systematic error (every box shifted,
    every score scaled) still fails."""
    for a, b in ((ours, ref), (ref, ours)):
        missing = unmatched_detections(a, b, box_tol, score_tol)
        excused = _ties(a, b, missing, score_tol, nms_iou)
        unexplained = [i for i in missing if i not in excused]
        assert not unexplained, (
            f"{len(unexplained)} of {len(b['scores'])} detections unmatched, e.g. {b['boxes'][unexplained[0]]} "
            f"score {float(b['scores'][unexplained[0]]):.6f}"
        )
        assert len(excused) <= max(1, len(b["scores"]) // 10), f"{len(excused)} of {len(b['scores'])} are ties"


# -- several processes (DDP with gloo on the CPU) -------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_entry(rank: int, world: int, port: int, worker: Callable[..., None], args: tuple[Any, ...]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    worker(rank, *args)


def run_ranks(worker: Callable[..., None], world: int, *args: Any) -> None:
    """Run ``worker(rank, *args)`` in ``world`` processes set up as ``torchrun`` sets them up (gloo on the CPU);
    ``worker`` must be a module-level function."""
    mp.spawn(_rank_entry, args=(world, free_port(), worker, args), nprocs=world, join=True)


# -- a real `singleshot serve` process on 127.0.0.1 -----------------------------------------------------
@dataclass
class Server:
    """A running server: its process, base URL and log file."""

    process: subprocess.Popen
    url: str
    port: int
    log: Path

    def threads(self) -> int:
        """Threads of the server process now (from /proc)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))

    def open_files(self) -> int:
        return len(list(Path(f"/proc/{self.process.pid}/fd").iterdir()))


def start_server(weights: Path, log: Path, *flags: str, timeout: float = 90.0) -> Server:
    """``singleshot serve --weights weights`` on a free loopback port, once ``/health/ready`` answers 200."""
    port = free_port()
    command = [sys.executable, "-m", "singleshot.cli", "serve", "--weights", str(weights), "--port", str(port), *flags]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"singleshot serve exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return Server(process, url, port, log)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"singleshot serve not ready after {timeout} s: {log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(20)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def served_tiny(trained_tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The trained tiny model served with a 1 MiB upload limit."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    running = start_server(trained_tiny, log, "--max-upload-mb", "1")
    yield running
    stop_server(running)


# -- a real browser -------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Debian Chromium driven by selenium through its ChromeDriver (skips, saying why, without them)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver packages (.ci/run installs them)")
    from selenium import webdriver  # only the browser tests need selenium
    from selenium.webdriver.chrome.service import Service  # as above

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
        "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}",
    ):  # fmt: skip  # the flags, several to a line
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


# -- a live stream on the loopback interface ------------------------------------------------------------
#: A :func:`index_image` draws its index's bits as black (0) and white (1) squares of this side, 8 to a row: large
#: enough to come through H.264 unchanged.
INDEX_BLOCK = 40
INDEX_BITS = 16


def index_image(index: int, height: int = 240, width: int = 320) -> np.ndarray:
    """An ``height x width x 3`` uint8 frame, grey, with ``index``'s 16 bits drawn as :data:`INDEX_BLOCK` squares
    (two rows of 8 along the top) and a square that moves with the index below them."""
    image = np.full((height, width, 3), 128, np.uint8)
    for bit in range(INDEX_BITS):
        row, col = divmod(bit, 8)
        y, x = row * INDEX_BLOCK, col * INDEX_BLOCK
        image[y : y + INDEX_BLOCK, x : x + INDEX_BLOCK] = 255 if (index >> bit) & 1 else 0
    x = (index * 4) % (width - 40)
    image[2 * INDEX_BLOCK + 40 : 2 * INDEX_BLOCK + 80, x : x + 40] = (200, 40, 40)
    return image


def read_index(image: np.ndarray | torch.Tensor) -> int:
    """The index an :func:`index_image` shows, read from its squares' centres (an ``H x W x 3`` array or a
    ``3 x H x W`` tensor, at the drawn size)."""
    pixels = image.permute(1, 2, 0).numpy() if isinstance(image, torch.Tensor) else image
    index = 0
    for bit in range(INDEX_BITS):
        row, col = divmod(bit, 8)
        centre = pixels[row * INDEX_BLOCK + INDEX_BLOCK // 2, col * INDEX_BLOCK + INDEX_BLOCK // 2]
        index |= int(centre.mean() > 128) << bit
    return index


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackStream:
    """A live stream to ``udp://127.0.0.1:<port>`` (:attr:`url`, what a receiver opens): H.264 (libx264, ultrafast,
    zero latency, a keyframe every ``gop`` frames, no B-frames) in MPEG-TS, sent by a thread in real time as a camera
    sends: the frame sent at time ``t`` shows index ``floor((t - start) * fps)`` (:func:`index_image`), so a sender
    that falls behind on a loaded machine skips indices instead of sending old pictures, and :meth:`now` is the index
    on the wire now. :attr:`sent` lists the indices sent; :meth:`stop` kills the stream mid-run (no more packets:
    to the receiver, a sender gone); another one on the same ``port`` brings it back. A context manager."""

    def __init__(
        self, fps: float = 30.0, size: tuple[int, int] = (240, 320), gop: int = 15, port: int | None = None
    ) -> None:
        self.port = port or free_udp_port()
        self.url = f"udp://127.0.0.1:{self.port}"
        self.fps = fps
        self.size = size
        self.gop = gop
        self.sent: list[int] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.start = time.monotonic()
        self._thread = threading.Thread(target=self._send, name="loopback stream", daemon=True)
        self._thread.start()

    def now(self, at: float | None = None) -> int:
        """The index the sender's clock says it is sending at ``at`` (default: now; ``time.monotonic()``)."""
        return int(((time.monotonic() if at is None else at) - self.start) * self.fps)

    def _send(self) -> None:
        try:
            # omit_video_pes_length 0: each frame's PES packet says its length, so the receiver's demuxer hands the
            # frame on when its last datagram arrives, not when the next frame starts (MPEG-TS's own frame of delay)
            out = av.open(
                f"{self.url}?pkt_size=1316", mode="w", format="mpegts", options={"omit_video_pes_length": "0"}
            )
            rate = Fraction(self.fps).limit_denominator(1001)
            stream = out.add_stream("libx264", rate=rate)
            stream.height, stream.width = self.size
            stream.pix_fmt = "yuv420p"
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(self.gop), "bf": "0"}
            last = -1
            while not self._stop.is_set():
                index = self.now()
                if index == last:
                    time.sleep(max(0.0, self.start + (index + 1) / self.fps - time.monotonic()))
                    continue
                frame = av.VideoFrame.from_ndarray(index_image(index, *self.size), format="rgb24")
                frame.pts, frame.time_base = index, 1 / rate
                for packet in stream.encode(frame):
                    out.mux(packet)
                self.sent.append(index)
                last = index
            out.close()  # no encoder flush: the stream just stops, as a killed sender's does
        except BaseException as exc:  # told to the test through self.error
            self.error = exc

    def stop(self) -> None:
        """Kill the stream: no packet is sent after this returns."""
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> LoopbackStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def loopback() -> Iterator[LoopbackStream]:
    """A :class:`LoopbackStream` at 30 FPS, stopped after the test."""
    with LoopbackStream() as stream:
        yield stream


# -- tracking ------------------------------------------------------------------------------------------
class OracleBackend:
    """A backend whose detections are a moving-shapes video's ground truth (score 0.9): it recognises each frame
    given to it as the video's nearest frame (so JPEG-decoded frames work too)."""

    def __init__(self, video: MovingShapes) -> None:
        self.video = video
        self.name, self.class_names, self.precision = "oracle", list(video.classes), "fp32"
        self.image_size, self.device = video.size, torch.device("cpu")
        self.postprocess = build("ssd_tiny160", 3).postprocess
        self.thumbs = torch.stack([self._thumb(video[t][0]) for t in range(len(video))])

    @staticmethod
    def _thumb(image: Tensor) -> Tensor:
        return image[:, ::8, ::8].float()

    def prepare(self, images: Sequence[Tensor]) -> list[Tensor]:
        return list(images)

    def infer(self, batch: list[Tensor]) -> tuple[Tensor]:
        distance = [(self.thumbs - self._thumb(im)).abs().flatten(1).mean(1) for im in batch]
        return (torch.stack([d.argmin() for d in distance]),)

    def detections(
        self, outputs: tuple[Tensor, ...], sizes: Sequence[tuple[int, int]], settings: PostSettings
    ) -> list[dict[str, Tensor]]:
        found = []
        for t in outputs[0].tolist():
            target = self.video[t][1]
            n = len(target["labels"])
            found.append({"boxes": target["boxes"], "scores": torch.full((n,), 0.9), "labels": target["labels"]})
        return found
