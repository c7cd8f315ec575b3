"""The HTTP application of ``singleshot serve`` (FastAPI on Starlette).

Endpoints: ``POST /predict`` (an image as a multipart upload, a JSON ``{"image": "<base64>"}`` body, or the raw
bytes with an ``image/*`` content type; query ``conf``, ``iou``, ``max_det``, ``classes``; without ``conf``, the
weights' per-class thresholds when they carry them, else 0.25) answers the detections in the uploaded image's
pixels with the timings; ``GET /health/live``, ``GET /health/ready`` (200 once a warm-up
batch has run, else 503), ``GET /metadata`` and ``GET /`` (the page, :file:`page.html`).

Safety: the body is read in chunks and refused with 413 as soon as it passes the upload limit (at once when its
``Content-Length`` says so); the image header is checked (empty, not an image, decompression bomb) before any pixel
is decoded, and decoding runs on at most one thread per core; inference runs on the :class:`MicroBatcher`'s
thread, never on the event loop, and a full queue answers 429 with ``Retry-After``. With an API key, every endpoint
but ``/health/*`` needs ``Authorization: Bearer KEY`` (or HTTP Basic with the key as password, which a browser
asks for when it opens the page), compared in constant time.

The endpoints, the exception handlers and the API key check are module functions: they read the served detector,
its config, the page, the decoder limiter and the batcher from ``request.app.state``, which :func:`create_app` sets.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any, ClassVar, Literal

import anyio
import torch
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from singleshot.config import Config, setting, shared
from singleshot.cpu import cpu_features
from singleshot.data.images import ImageError, decode_image_bytes
from singleshot.postprocess import PREDICT, PostSettings
from singleshot.predict import Detector
from singleshot.predict.slicing import DEFAULT_MERGE, DEFAULT_OVERLAP, MAX_OVERLAP, SliceSettings
from singleshot.serve.batching import BatchRunner, MicroBatcher, QueueFullError

#: Seconds a client told 429 is asked to wait before trying again.
RETRY_AFTER_S = 1
#: Content types /predict takes as the image's own bytes.
RAW_TYPES = ("image/", "application/octet-stream")


@dataclass
class ServeConfig(Config):
    """What ``singleshot serve`` serves, where, and its limits."""

    what: ClassVar[str] = "serve"

    weights: str = shared("model_file", task="serve")
    host: str = setting("127.0.0.1", "address to listen on (loopback by default; another address wants --api-key)")
    port: int = setting(8000, "TCP port to listen on")
    max_batch: int = setting(8, "most requests gathered into one forward pass")
    max_wait_ms: float = setting(10.0, "longest a request waits for others to join its batch, milliseconds")
    max_queue: int = setting(64, "most requests waiting; beyond it the server answers 429 with Retry-After")
    max_upload_mb: float = setting(10.0, "largest request body (image upload), MiB; larger ones get 413")
    api_key: str | None = setting(
        None, "require 'Authorization: Bearer KEY' on every endpoint but /health/*; none: $SINGLESHOT_API_KEY if set"
    )
    device: str = shared("device")
    backend: Literal["auto", "pytorch", "onnxruntime", "openvino"] = shared("backend")
    precision: Literal["auto", "fp32", "bf16", "int8"] = shared("precision")
    threads: int | None = setting(None, "CPU threads for the forward pass; none: one per physical core")

    def problems(self) -> list[str]:
        bad = [f"{k}={v}" for k, v in {"max_batch": self.max_batch, "max_queue": self.max_queue}.items() if v < 1]
        if self.max_wait_ms < 0 or self.max_upload_mb <= 0 or not 0 <= self.port < 65536:
            bad.append(f"max_wait_ms={self.max_wait_ms} >= 0, max_upload_mb={self.max_upload_mb} > 0, port={self.port}")
        if self.threads is not None and self.threads < 1:
            bad.append(f"threads={self.threads}")
        return bad


class _RequestError(Exception):
    """A request answered with ``status`` and ``detail`` (the message names the problem)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers


def create_app(detector: Detector, config: ServeConfig) -> FastAPI:
    """The application serving ``detector`` under ``config``'s limits (module docstring); the batcher and its
    warm-up start with the application (``with TestClient(app)`` or a server) and stop with it."""
    app = FastAPI(
        title="singleshot",
        summary=f"SSD detector {detector.name}",
        lifespan=_lifespan,
        exception_handlers={_RequestError: _problem, RequestValidationError: _invalid},
    )
    threads = config.threads or cpu_features().physical_cores
    app.state.detector, app.state.config, app.state.threads = detector, config, threads
    app.state.page = resources.files("singleshot.serve").joinpath("page.html").read_text(encoding="utf-8")
    app.state.upload_limit = int(config.max_upload_mb * 2**20)
    app.state.decoders = anyio.CapacityLimiter(threads)
    app.add_api_route("/health/live", live, methods=["GET"])
    app.add_api_route("/health/ready", ready, methods=["GET"])
    app.add_api_route("/metadata", metadata, methods=["GET"], dependencies=[Depends(_key)])
    app.add_api_route("/", index, methods=["GET"], response_class=HTMLResponse, dependencies=[Depends(_page_key)])
    app.add_api_route("/predict", predict, methods=["POST"], dependencies=[Depends(_key)])
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the batcher and its warm-up batch (``app.state.ready`` once it has run); close the batcher at the end."""
    detector: Detector = app.state.detector
    config: ServeConfig = app.state.config
    batcher = MicroBatcher(_runner(detector, app.state.threads), config.max_batch, config.max_wait_ms, config.max_queue)
    app.state.batcher, app.state.ready = batcher, False
    warm_up = torch.zeros(3, *detector.image_size, dtype=torch.uint8)
    future = batcher.submit((warm_up, tuple(detector.image_size), detector.postprocess.settings, None))
    future.add_done_callback(lambda f: setattr(app.state, "ready", f.exception() is None))
    try:
        yield
    finally:
        await anyio.to_thread.run_sync(batcher.close)


async def _problem(_: Request, exc: _RequestError) -> JSONResponse:
    """A :class:`_RequestError` as ``{"detail": ...}`` with its status and headers."""
    return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)


async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A failed validation (query parameters) as a 400 naming each problem."""
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"detail": f"invalid request: {where}"}, 400)


def _check_key(request: Request, page: bool) -> None:
    """Refuse a request without ``app.state.config.api_key`` (none when it is None): ``Bearer KEY``, or HTTP Basic
    with the key as password; for the page, the 401 asks a browser for Basic credentials."""
    api_key: str | None = request.app.state.config.api_key
    if api_key is None:
        return
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    given = credential.strip() if scheme.lower() == "bearer" else ""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(credential.strip(), validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            given = ""
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        challenge = 'Basic realm="singleshot"' if page else 'Bearer realm="singleshot"'
        raise _RequestError(
            401, "missing or wrong API key: send 'Authorization: Bearer <key>'", {"WWW-Authenticate": challenge}
        )


async def _key(request: Request) -> None:  # async: FastAPI would run a plain function on a thread
    """Dependency: the API key check of every endpoint but ``/health/*`` and the page."""
    _check_key(request, page=False)


async def _page_key(request: Request) -> None:
    """Dependency: the API key check of the page (a 401 asks a browser for Basic credentials)."""
    _check_key(request, page=True)


# -- the endpoints: they read the detector, config, page, decoder limiter and batcher from ``request.app.state``;
# comments rather than docstrings, which FastAPI would publish as the endpoints' OpenAPI descriptions.


# Always ``{"status": "live"}``.
async def live() -> dict[str, str]:
    return {"status": "live"}


# 200 once the warm-up batch has run, else 503; with the batcher's counters.
async def ready(request: Request) -> JSONResponse:
    stats = request.app.state.batcher.snapshot()
    if not request.app.state.ready:
        return JSONResponse({"status": "warming up", **stats}, 503)
    return JSONResponse({"status": "ready", **stats})


# The model, its classes, input size, backend, precision and device; the defaults and the limits.
async def metadata(request: Request) -> dict[str, Any]:
    detector: Detector = request.app.state.detector
    config: ServeConfig = request.app.state.config
    return {
        "model": detector.name,
        "classes": detector.names,
        "input_size": list(detector.image_size),
        "backend": detector.runtime,
        "precision": detector.precision,
        "device": str(detector.device),
        # class_conf: the weights' per-class thresholds (labels 1..C, null for a class without one: conf), or null
        "defaults": {
            "conf": PREDICT.conf,
            "class_conf": detector.postprocess.class_conf,
            "iou": PREDICT.iou,
            "max_det": PREDICT.max_det,
        },
        "limits": {
            "max_batch": config.max_batch,
            "max_wait_ms": config.max_wait_ms,
            "max_queue": config.max_queue,
            "max_upload_mb": config.max_upload_mb,
        },
    }


# The page (:file:`page.html`).
async def index(request: Request) -> HTMLResponse:
    return HTMLResponse(request.app.state.page)


# The detections in the uploaded image's pixels, with the timings (module docstring).
async def predict(
    request: Request,
    conf: Annotated[
        float | None,
        Query(ge=0, le=1, description="least score kept; none: the weights' per-class thresholds, else 0.25"),
    ] = None,
    iou: Annotated[float, Query(ge=0, le=1, description="NMS IoU threshold")] = PREDICT.iou,
    max_det: Annotated[int, Query(ge=1, le=10_000, description="most detections kept")] = PREDICT.max_det,
    classes: Annotated[list[str] | None, Query(description="keep only these classes: names or labels")] = None,
    slice: Annotated[
        int | None, Query(ge=1, le=100_000, description="sliced inference: tiles of this side (native pixels)")
    ] = None,
    overlap: Annotated[
        float, Query(ge=0, le=MAX_OVERLAP, description="with slice: overlap of neighbouring tiles")
    ] = DEFAULT_OVERLAP,
    full_image: Annotated[
        bool, Query(description="with slice: also run the whole image, for objects larger than a tile")
    ] = True,
    merge: Annotated[
        Literal["nms", "nmm"],
        Query(description="with slice: merge across tiles by NMS, or by non-maximum merging (union of boxes)"),
    ] = DEFAULT_MERGE,
) -> JSONResponse:
    detector: Detector = request.app.state.detector
    started = time.perf_counter()
    wanted = [c.strip() for item in classes or [] for c in item.split(",") if c.strip()]
    try:
        labels = detector.class_labels(wanted) if wanted else None
    except ValueError as exc:
        raise _RequestError(400, str(exc)) from None
    name, data = await _upload(request, request.app.state.upload_limit)
    received = time.perf_counter()
    reduce_to = max(detector.image_size) if slice is None else None  # tiles are cut at native resolution
    try:
        image, info = await anyio.to_thread.run_sync(
            lambda: decode_image_bytes(data, name, reduce_to=reduce_to), limiter=request.app.state.decoders
        )
    except ImageError as exc:
        raise _RequestError(400, str(exc)) from None
    decoded = time.perf_counter()
    settings = detector.postprocess.predict_settings(conf, iou=iou, max_det=max_det, classes=labels)
    try:
        slicing = SliceSettings.of(slice, overlap, full_image, merge)
        future = request.app.state.batcher.submit((image, (info.height, info.width), settings, slicing))
    except QueueFullError as exc:
        raise _RequestError(429, f"server busy: {exc}", {"Retry-After": str(RETRY_AFTER_S)}) from None
    (detection, ms, batch_size), queued_ms = await _result(request, future)
    ms = dict(ms)
    tiles = int(ms.pop("tiles", 1))  # windows run: 1 for a whole image
    timings = {
        "read": (received - started) * 1e3,
        "decode": (decoded - received) * 1e3,
        "queue": queued_ms,
        **ms,
        "total": (time.perf_counter() - started) * 1e3,
    }
    return JSONResponse(
        {
            "model": detector.name,
            "image": {"name": name, "width": info.width, "height": info.height},
            "detections": _detections(detection, detector.names),
            "batch_size": batch_size,
            "tiles": tiles,
            "timings_ms": {k: round(v, 3) for k, v in timings.items()},
        }
    )


def _runner(detector: Detector, threads: int) -> BatchRunner:
    """The batch runner: one forward pass for the batch on ``threads`` threads, each image with its own
    post-processing; returns per image ``(detection, batch milliseconds per stage, batch size)``."""
    configured: set[int] = set()

    def run(payloads: Sequence[tuple[torch.Tensor, tuple[int, int], PostSettings, SliceSettings | None]]) -> list[Any]:
        if threading.get_ident() not in configured:  # OpenMP's thread count is per calling thread
            torch.set_num_threads(threads)
            configured.add(threading.get_ident())
        out: list[Any] = [None] * len(payloads)
        whole = [i for i, p in enumerate(payloads) if p[3] is None]
        if whole:  # one forward pass for the requests of whole images
            images, sizes, settings, _ = zip(*(payloads[i] for i in whole), strict=True)
            detections, ms = detector.detect(images, sizes, settings)
            for i, d in zip(whole, detections, strict=True):
                out[i] = (d, ms, len(whole))
        for i, (image, _, post, slicing) in enumerate(payloads):
            if slicing is not None:  # its tiles, batched through the forward pass
                d, ms = detector.detect_sliced(image, slicing, post)
                out[i] = (d, ms, 1)
        return out

    return run


def _detections(detection: dict[str, torch.Tensor], names: list[str]) -> list[dict[str, Any]]:
    """The JSON rows: ``box`` (xyxy pixels of the uploaded image), ``score``, ``label`` (1..C), ``name``."""
    boxes, scores, labels = detection["boxes"].tolist(), detection["scores"].tolist(), detection["labels"].tolist()
    return [
        {"box": [round(v, 2) for v in box], "score": round(score, 5), "label": label, "name": names[label - 1]}
        for box, score, label in zip(boxes, scores, labels, strict=True)
    ]


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes (before reading it when its declared
    length does)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _RequestError(413, f"request body of {int(declared)} bytes is over the {limit}-byte upload limit")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _RequestError(413, f"request body is over the {limit}-byte upload limit")
            chunks.append(chunk)
    except ClientDisconnect:
        raise _RequestError(400, "client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def _upload(request: Request, limit: int) -> tuple[str, bytes]:
    """The uploaded image's name and bytes, from a multipart form (the ``image`` field, else its only file), a JSON
    body ``{"image": base64, "name"?: str}`` or a raw ``image/*`` body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/json", *RAW_TYPES)):
        raise _RequestError(
            415, f"unsupported content type {content_type!r}: send multipart/form-data, application/json or image/*"
        )
    body = await _body(request, limit)
    if content_type.startswith(RAW_TYPES):
        return "upload", body
    if content_type.startswith("application/json"):
        return _json_image(body)
    return await _form_image(request, body)


def _json_image(body: bytes) -> tuple[str, bytes]:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _RequestError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("image"), str):
        raise _RequestError(400, 'JSON body must be an object with "image": a base64-encoded image')
    text = document["image"]
    if text.startswith("data:") and "," in text:  # a data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _RequestError(400, f'"image" is not valid base64: {exc}') from None
    return str(document.get("name") or "upload"), data


async def _form_image(request: Request, body: bytes) -> tuple[str, bytes]:
    """The image file of a multipart body (already read and limited), parsed by Starlette."""
    replayed = False

    async def receive() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, receive).form(max_files=4, max_fields=16) as form:
            files = [v for v in form.values() if hasattr(v, "read")]
            upload = form.get("image") if hasattr(form.get("image"), "read") else (files[0] if files else None)
            if upload is None:
                raise _RequestError(400, 'multipart body has no file: send the image in a field named "image"')
            # the ignore below: a form value with .read is an UploadFile
            return upload.filename or "upload", await upload.read()  # type: ignore[union-attr]
    except HTTPException as exc:  # Starlette's multipart errors (malformed body, too many parts)
        raise _RequestError(400, f"malformed multipart body: {exc.detail}") from None


async def _result(request: Request, future: Any) -> Any:
    """Wait for the batcher's answer without blocking the event loop; if the client goes away meanwhile, cancel
    the job (the worker skips it when it has not started) and stop."""
    waiting = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=0.05)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            waiting.cancel()
            raise _RequestError(499, "client disconnected")
