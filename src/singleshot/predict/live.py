"""Live video sources for ``predict``: webcams, capture devices and network streams, read as they happen.

A live source is a webcam index (``0`` is ``/dev/video0``), a ``/dev/video*`` device (both through Video4Linux2),
or a URL whose scheme is one of :data:`LIVE_SCHEMES` (``rtsp://``, ``rtmp://``, ``udp://``, ``tcp://``, ``srt://``,
``http(s)://``, ...; which ones work is up to the FFmpeg that PyAV bundles: its wheels have no SRT, for one).

A live stream does not wait for the model, so :class:`LiveReader` never queues frames: a daemon thread of its own
demuxes and decodes the stream as fast as it comes and keeps only the newest decoded frame; each time the model
asks, it gets the frame of the present, and the frames overwritten meanwhile are counted as skipped. Each frame's
index counts the stream's frames since the reader opened it, skipped ones included (so ``vid_stride`` does not
apply to live sources: the model already takes every frame it has time for, the newest). FFmpeg is asked for low
latency: no buffering of the packets read while probing the stream, a decoder in low-delay mode and without frame
threading (which holds back one frame per thread; slice threads hold back none).

Failures:

* a source that cannot be opened (nothing received within ``timeout``, a refused connection, a missing camera, a
  protocol this FFmpeg lacks) raises :class:`LiveSourceError`, a ValueError naming the source and the cause;
* a stream that drops later (a read error, nothing received for ``timeout``, the end of the stream) is reopened
  after 0.5 s, 1 s, 2 s, ... (at most 8 s) for up to ``reconnect`` attempts in a row, each logged; then the reader
  logs that it gives up and its frames end normally, so a caller writes its outputs completely;
* a packet the decoder rejects (damaged in transit) is dropped and counted; the next keyframe repairs the picture.

Bounded waits: FFmpeg's interrupt callback ends any open or read after ``timeout`` seconds, so the thread never
blocks forever; :meth:`LiveReader.close` stops it (between two packets, or at the latest after ``timeout``) and
waits for it at most :data:`CLOSE_WAIT` seconds.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
from av.codec.context import Flags

from singleshot.predict.frame import Frame, SourceReport, decoded_image

#: URL schemes read as live streams.
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "http", "https")
#: Frame rate assumed for a stream that does not say its own.
DEFAULT_FPS = 30.0
#: Seconds before the first reconnect attempt; each further attempt waits twice as long, at most :data:`BACKOFF_MAX`.
BACKOFF_START = 0.5
BACKOFF_MAX = 8.0
#: Seconds :meth:`LiveReader.close` waits for the reading thread (which then ends by itself within the timeout).
CLOSE_WAIT = 1.0
#: The reasons live readers add to a :class:`~singleshot.predict.frame.SourceReport`.
SKIPPED = "live frames skipped (the model was slower than the stream)"
DROPS = "live stream drops (frames lost while it was down)"
CORRUPT = "live packets the decoder rejected (damaged in transit)"


class LiveSourceError(ValueError):
    """A live source that cannot be opened; ``cause`` says why (a ValueError, as an unreadable file is)."""

    def __init__(self, source: str, cause: str) -> None:
        url, _ = address(source)
        named = shown(source) + (f" ({url})" if url != source else "")
        super().__init__(f"live source {named}: cannot open it ({cause})")
        self.cause = cause


def is_live(source: Any) -> bool:
    """Whether ``source`` is a live source: a webcam index (an int, or a string of digits), a ``/dev/video*``
    device, or a URL with a scheme of :data:`LIVE_SCHEMES`."""
    if isinstance(source, int) and not isinstance(source, bool):
        return source >= 0
    if not isinstance(source, (str, Path)):
        return False
    text = str(source)
    if text.isdigit() or text.startswith("/dev/video"):
        return True
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in LIVE_SCHEMES


def address(source: str | int) -> tuple[str, str | None]:
    """What FFmpeg opens for the live ``source``: the URL or device, and the input format (``v4l2`` for cameras;
    None lets FFmpeg probe)."""
    text = str(source)
    if text.isdigit():
        return f"/dev/video{int(text)}", "v4l2"
    if text.startswith("/dev/video"):
        return text, "v4l2"
    return text, None


def shown(source: str) -> str:
    """``source`` as logs and errors show it: a password in a URL replaced by ``***``."""
    return re.sub(r"^(\w+://[^/@:]*):[^/@]*@", r"\1:***@", source)


def safe_name(source: str | int) -> str:
    """A file name stem for the live ``source``: ``webcam0`` for index 0, ``video2`` for ``/dev/video2``,
    ``udp_127.0.0.1_5000`` for ``udp://127.0.0.1:5000`` (host, port and path; never credentials or a query);
    letters, digits and ``._-`` only."""
    text = str(source)
    if text.isdigit():
        return f"webcam{int(text)}"
    if text.startswith("/dev/"):
        text = text.removeprefix("/dev/")
    elif "://" in text:
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:  # not a number: left out
            port = None
        text = "/".join(str(p) for p in (parts.scheme, parts.hostname, port, parts.path) if p)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")
    return name[:100] or "stream"


def live_problems(timeout: float, reconnect: int) -> list[str]:
    """What is wrong with these live settings, each as ``name=value (why)``."""
    bad = []
    if not timeout > 0:
        bad.append(f"timeout={timeout} (seconds to wait for a live source, must be > 0)")
    if reconnect < 0:
        bad.append(f"reconnect={reconnect} (reconnect attempts after a live stream drops, must be >= 0)")
    return bad


@dataclass(frozen=True)
class LiveSettings:
    """How long to wait for a live source and how often to reopen it.

    Args:
        timeout: seconds to wait when opening or reading before the source counts as unreachable (at opening) or
            dropped (later).
        reconnect: attempts in a row to reopen a dropped stream, after 0.5 s, 1 s, 2 s, ... (at most 8 s); 0 ends
            the frames at the first drop.

    Raises:
        ValueError: ``timeout <= 0`` or ``reconnect < 0``.
    """

    timeout: float = 10.0
    reconnect: int = 5

    def __post_init__(self) -> None:
        bad = live_problems(self.timeout, self.reconnect)
        if bad:
            raise ValueError(f"invalid live source settings: {', '.join(bad)}")


@dataclass
class LiveStats:
    """What a :class:`LiveReader` did: frames decoded, delivered to the caller and skipped (overwritten by a newer
    one before the caller took it, or left when it closed), drops, successful reconnects, rejected packets.
    ``decoded == delivered + skipped`` once the reader is closed."""

    decoded: int = 0
    delivered: int = 0
    skipped: int = 0
    drops: int = 0
    reconnects: int = 0
    corrupt: int = 0

    def report(self, report: SourceReport, source: str) -> None:
        """Add the frames skipped, the drops and the rejected packets to ``report``."""
        for reason, n in ((SKIPPED, self.skipped), (DROPS, self.drops), (CORRUPT, self.corrupt)):
            if n:
                report.add(reason, shown(source), n)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class _Decoded:
    """The newest decoded frame, its index in the stream and when it was decoded (``time.monotonic()``)."""

    frame: av.VideoFrame
    index: int
    captured: float


@dataclass
class _Connection:
    """One open connection to the source: the container and its video stream."""

    container: Any  # an av InputContainer
    stream: Any  # its first av VideoStream
    fps: float = field(init=False)

    def __post_init__(self) -> None:
        self.fps = float(self.stream.average_rate or self.stream.guessed_rate or DEFAULT_FPS)


class LiveReader:
    """The newest frames of the live ``source``, decoded by a daemon thread of its own (module docstring).

    Iterating yields :class:`~singleshot.predict.frame.Frame` s (``path`` None, ``stream`` the source as given,
    ``frame`` its index in the stream counting skipped frames and running on across reconnects, ``fps`` the
    stream's rate or 30, ``captured`` when it was decoded, ``read_ms`` the wait for it plus its colour conversion),
    until the stream ends for good or :meth:`close` is called (an unexpected error of the thread, not a stream's
    failure, is raised as a RuntimeError). Also a context manager; close it when done (the thread holds it alive).

    Args:
        source: a webcam index, ``/dev/video*`` device or stream URL (see :func:`is_live`).
        reduce_to: scale frames down by 2, 4 or 8 while both sides stay at least this (``reload`` gives the full
            frame), as :func:`~singleshot.predict.sources.video_frames` does.
        log: where drops, reconnect attempts and giving up are told (default: standard error).

    Raises:
        LiveSourceError: the source cannot be opened (within about ``settings.timeout``).
    """

    def __init__(
        self,
        source: str | int,
        settings: LiveSettings | None = None,
        *,
        reduce_to: int | None = None,
        log: Callable[[str], None] = _to_stderr,
    ) -> None:
        self.source = str(source)
        self.settings = settings or LiveSettings()
        self.reduce_to = reduce_to
        self.log = log
        self.stats = LiveStats()
        self._url, self._format = address(source)
        self._condition = threading.Condition()
        self._latest: _Decoded | None = None
        self._ended = False
        self._failure: BaseException | None = None  # what ended the thread unexpectedly (raised to the caller)
        self._stop = threading.Event()
        connection = self._open()
        self.fps = connection.fps
        self._thread = threading.Thread(
            target=self._read, args=(connection,), name=f"live {shown(self.source)}", daemon=True
        )
        self._thread.start()

    # -- the reading thread ---------------------------------------------------------------------------------
    def _open(self) -> _Connection:
        t = self.settings.timeout
        options = {"fflags": "nobuffer"}  # packets read while probing are not replayed (they are old by then)
        if self._url.startswith("udp://"):
            options["overrun_nonfatal"] = "1"  # a full receive buffer loses packets, not the stream
        try:
            container = av.open(self._url, format=self._format, timeout=(t, t), options=options)
        except av.error.ExitError as exc:  # FFmpeg's interrupt callback: the timeout
            raise LiveSourceError(self.source, f"nothing received within {t:g} s") from exc
        except (av.error.FFmpegError, OSError) as exc:
            raise LiveSourceError(self.source, _cause(exc)) from exc
        if not container.streams.video:
            container.close()
            raise LiveSourceError(self.source, "no video stream in it")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"  # frame threads would hold back a frame each
        stream.codec_context.flags |= Flags.low_delay
        return _Connection(container, stream)

    def _read(self, connection: _Connection) -> None:
        """The thread: decode until stopped; on a drop, reconnect with backoff, and give up after
        ``settings.reconnect`` failed attempts in a row."""
        attempts = 0
        current: _Connection | None = connection
        try:
            while current is not None:
                reason, flowed = self._drain(current)
                if reason is None:  # stopped
                    return
                self.stats.drops += 1
                attempts = 0 if flowed else attempts
                current = None
                limit = self.settings.reconnect
                while current is None:
                    if attempts == limit:
                        self.log(
                            f"stream {shown(self.source)}: giving up after {limit} failed reconnect attempts ({reason})"
                            if limit
                            else f"stream {shown(self.source)} dropped ({reason}); not reconnecting (reconnect 0)"
                        )
                        return
                    attempts += 1
                    delay = min(BACKOFF_START * 2 ** (attempts - 1), BACKOFF_MAX)
                    self.log(
                        f"stream {shown(self.source)} dropped ({reason}); reconnecting in {delay:g} s "
                        f"(attempt {attempts} of {limit})"
                    )
                    if self._stop.wait(delay):
                        return
                    try:
                        current = self._open()
                    except LiveSourceError as exc:
                        reason = exc.cause
                self.stats.reconnects += 1
                self.log(f"stream {shown(self.source)} reconnected")
        except BaseException as exc:  # not a stream's failure (those are handled above): a bug, memory; told on
            self._failure = exc
        finally:
            with self._condition:
                self._ended = True
                self._condition.notify_all()

    def _drain(self, connection: _Connection) -> tuple[str | None, bool]:
        """Decode ``connection`` into the slot until it fails or ends (returns why, and whether any frame came)
        or the reader is stopped (returns None); closes it."""
        flowed = False
        packets = connection.container.demux(connection.stream)
        try:
            for packet in packets:
                if self._stop.is_set():
                    return None, flowed
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:  # a damaged packet: skip it, the next keyframe repairs the picture
                    self.stats.corrupt += 1
                    continue
                for frame in decoded:
                    self._put(frame)
                    flowed = True
            return (None if self._stop.is_set() else "end of stream"), flowed
        except av.error.ExitError:  # FFmpeg's interrupt callback: the read timeout
            return (None if self._stop.is_set() else f"nothing received for {self.settings.timeout:g} s"), flowed
        except (av.error.FFmpegError, OSError) as exc:
            return (None if self._stop.is_set() else _cause(exc)), flowed
        finally:
            packets.close()
            connection.container.close()

    def _put(self, frame: av.VideoFrame) -> None:
        """Make ``frame`` the newest; the one it replaces, never taken, counts as skipped."""
        with self._condition:
            if self._stop.is_set():
                return
            if self._latest is not None:
                self.stats.skipped += 1
            self._latest = _Decoded(frame, self.stats.decoded, time.monotonic())
            self.stats.decoded += 1
            self._condition.notify_all()

    # -- the caller's side ----------------------------------------------------------------------------------
    def _take(self) -> _Decoded | None:
        """The newest frame not yet taken, waiting for one; None once the stream has ended or the reader closed."""
        with self._condition:
            while self._latest is None and not self._ended and not self._stop.is_set():
                self._condition.wait(0.25)  # woken by each new frame; the timeout only bounds a missed wake-up
            if self._stop.is_set():
                return None
            latest, self._latest = self._latest, None
            if latest is not None:
                self.stats.delivered += 1
            return latest

    def __iter__(self) -> Iterator[Frame]:
        while True:
            start = time.perf_counter()
            latest = self._take()
            if latest is None:
                if self._failure is not None:
                    raise RuntimeError(f"live source {shown(self.source)}: reading failed") from self._failure
                return
            image, size, reload = decoded_image(latest.frame, self.reduce_to)
            yield Frame(
                image, size, None, frame=latest.index, fps=self.fps, stream=self.source,
                read_ms=(time.perf_counter() - start) * 1e3, reload=reload, captured=latest.captured,
            )  # fmt: skip  # the Frame's fields grouped by line

    def close(self) -> None:
        """Stop the thread (waiting for it at most :data:`CLOSE_WAIT` s: a read in progress ends by the timeout);
        a frame decoded but never taken counts as skipped."""
        self._stop.set()
        with self._condition:
            if self._latest is not None:
                self.stats.skipped += 1
                self._latest = None
            self._condition.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(CLOSE_WAIT)

    def __enter__(self) -> LiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def live_frames(
    source: str | int,
    settings: LiveSettings | None = None,
    reduce_to: int | None = None,
    report: SourceReport | None = None,
    log: Callable[[str], None] | None = None,
) -> Iterator[Frame]:
    """The frames of a :class:`LiveReader` on ``source`` (``log`` default: standard error), the reader closed when
    they end or the generator is closed, and its skipped frames, drops and rejected packets then added to ``report``.

    Raises:
        LiveSourceError: the source cannot be opened.
    """
    reader = LiveReader(source, settings, reduce_to=reduce_to, log=log or _to_stderr)
    try:
        yield from reader
    finally:
        reader.close()
        if report is not None:
            reader.stats.report(report, reader.source)


def _cause(exc: BaseException) -> str:
    """An FFmpeg or OS error in a few words: its message without the ``[Errno N]`` prefix and the repeated URL."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip() or type(exc).__name__
