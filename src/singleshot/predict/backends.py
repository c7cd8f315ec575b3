"""Inference backends behind :class:`~singleshot.predict.Detector`: PyTorch (fp32 or bf16 autocast) and ONNX Runtime.

A backend takes a batch of images through three timed stages, :meth:`prepare` (resize, normalise), :meth:`infer`
(the network) and :meth:`detections` (thresholds, NMS, top-k on the host). Both backends end in the same
vectorised :class:`~singleshot.postprocess.PostProcessor`, so their detections agree to float rounding.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import sys
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from singleshot.cpu import cpu_features
from singleshot.export.onnx_format import INPUT, onnx_props, read_metadata
from singleshot.export.openvino_file import read_openvino_props
from singleshot.postprocess import PostProcessor, PostSettings
from singleshot.predict.precision import (
    PRECISIONS,
    autocast_dtype,
    bf16_or_fp32,
    choose_precision,
    use_bf16_layout,
)
from singleshot.ssd import SSD, resize


class Backend(Protocol):
    """What :class:`~singleshot.predict.Detector` needs of an inference engine."""

    name: str  # the model's builder name
    runtime: str  # pytorch | onnxruntime | openvino
    class_names: list[str]  # labels 1..C
    image_size: tuple[int, int]  # the network's input (H, W)
    postprocess: PostProcessor  # the model's own settings
    precision: str  # fp32 | bf16 | int8
    device: torch.device  # where the network runs

    def prepare(self, images: Sequence[Tensor]) -> Any: ...

    def infer(self, batch: Any) -> tuple[Tensor, ...]: ...

    def detections(
        self, outputs: tuple[Tensor, ...], sizes: Sequence[tuple[int, int]], settings: PostSettings
    ) -> list[dict[str, Tensor]]: ...


class TorchBackend:
    """An :class:`~singleshot.ssd.SSD` in PyTorch on ``device``, in fp32 or under bf16 autocast.

    Args:
        precision: ``fp32``, ``bf16`` (autocast; pays on CPUs with AVX512-BF16 or AMX, and on recent GPUs) or
            ``auto`` (the faster of the two, measured once on this machine and cached; see
            :func:`~singleshot.predict.precision.choose_precision`). ``bf16`` where the CPU has no native bf16
            runs fp32 with a warning, unless ``force_bf16`` (or :data:`~singleshot.predict.precision.FORCE_BF16`).
    """

    runtime = "pytorch"

    def __init__(
        self,
        model: SSD,
        class_names: Sequence[str],
        device: torch.device,
        precision: str = "fp32",
        force_bf16: bool = False,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
        if len(class_names) != model.num_classes:
            raise ValueError(f"{len(class_names)} class names for a model of {model.num_classes} classes")
        self.model = model.eval().to(device)
        self.device = device
        self.name = model.name
        self.class_names = list(class_names)
        self.image_size = model.preprocessing.image_size
        self.postprocess = model.postprocess
        if precision == "bf16":
            precision = bf16_or_fp32(device, 'precision="bf16"', force_bf16)
        self.precision = choose_precision(self.model, device) if precision == "auto" else precision
        self._dtype = autocast_dtype(self.precision)
        if self.precision == "bf16":
            use_bf16_layout(self.model, device)

    def prepare(self, images: Sequence[Tensor]) -> Tensor:
        return self.model.normalize([im.to(self.device, non_blocking=True) for im in images])

    def infer(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        with self._autocast():
            return self.model.head_outputs(batch)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._dtype)

    def detections(
        self, outputs: tuple[Tensor, ...], sizes: Sequence[tuple[int, int]], settings: PostSettings
    ) -> list[dict[str, Tensor]]:
        cls_logits, bbox_regression = outputs
        return self.postprocess(cls_logits, bbox_regression, sizes, settings, priors_cxcywh=self.model.priors)


class ExportedBackend:
    """What the runtimes of a file exported by ``singleshot export`` (:mod:`singleshot.export`) share: the file's
    metadata (model name, classes, input size, post-processing settings), the uint8 input batch, and the
    post-processing of the graph's outputs. Subclasses own the runtime (:meth:`infer`).

    A file exported with ``--nms`` does NMS in the graph at its own IoU threshold; the host then only applies
    ``conf`` (or the per-class ``class_conf``), ``classes`` and ``max_det`` (an ``iou`` other than the file's is
    reported once and not applied).
    """

    def _read(self, props: Mapping[str, str], path: Path) -> None:
        meta, self.graph, self.precision = read_metadata(dict(props), path)
        self.meta = meta
        self.name = meta.model
        self.class_names = meta.class_names
        self.image_size = meta.image_size
        self.device = torch.device("cpu")
        self.postprocess = PostProcessor.from_metadata(meta.postprocess or {})
        self._warned_iou = False

    def prepare(self, images: Sequence[Tensor]) -> np.ndarray:
        batch = []
        for image in images:
            image = image.cpu()
            if image.is_floating_point():  # the graph takes pixels: [0, 1] floats are scaled and rounded
                image = (image * 255).round().clamp(0, 255).to(torch.uint8)
            if tuple(image.shape[-2:]) != self.image_size:
                image = resize(image, self.image_size)
            batch.append(image)
        return torch.stack(batch).contiguous().numpy()

    def detections(
        self, outputs: tuple[Tensor, ...], sizes: Sequence[tuple[int, int]], settings: PostSettings
    ) -> list[dict[str, Tensor]]:
        if self.graph == "decoded":
            scores, boxes = outputs
            return self.postprocess(scores, boxes, sizes, settings)
        return self._from_nms_graph(outputs[0], sizes, settings)

    def _from_nms_graph(
        self, rows: Tensor, sizes: Sequence[tuple[int, int]], settings: PostSettings
    ) -> list[dict[str, Tensor]]:
        """Detections from the graph's padded ``(B, max_det, 6)`` rows (sorted by score, zero rows padding)."""
        own = self.postprocess.settings
        if settings.iou != own.iou and not self._warned_iou:
            warnings.warn(
                f"this ONNX model does NMS in its graph at IoU {own.iou}; iou={settings.iou} is not applied",
                stacklevel=3,
            )
            self._warned_iou = True
        classes = None if settings.classes is None else torch.tensor(settings.classes, dtype=torch.int64)
        limits = None if settings.class_conf is None else settings.class_limits(len(self.class_names))
        out = []
        for row, (h, w) in zip(rows, sizes, strict=True):
            labels = row[:, 5].round().to(torch.int64)
            limit = settings.conf if limits is None else limits[(labels - 1).clamp(min=0)]  # padding rows: label 0
            keep = (row[:, 4] > limit) & (labels > 0)
            if classes is not None:
                keep &= torch.isin(labels, classes)
            row, labels = row[keep][: settings.max_det], labels[keep][: settings.max_det]
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            out.append({"boxes": row[:, :4] * scale, "scores": row[:, 4].contiguous(), "labels": labels})
        return out

    def infer(self, batch: np.ndarray) -> tuple[Tensor, ...]:
        """The graph's outputs for a ``(B, 3, H, W)`` uint8 batch (the runtime's own)."""
        raise NotImplementedError


class OnnxBackend(ExportedBackend):
    """A file of ``singleshot export`` run by ONNX Runtime on the CPU with all graph optimisations and one thread
    per physical core (:class:`ExportedBackend` for what every exported file's runtime shares)."""

    runtime = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:  # imported here to keep onnxruntime optional for `import singleshot` (PyTorch weights need only torch)
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError(f"{path}: ONNX models run with the onnxruntime package: pip install onnxruntime") from exc
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or cpu_features().physical_cores
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning after each run, leaving the cores to the host's resizing and
        # post-processing (SSD300 network measured 7% faster too, on 2 cores).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ValueError(f"{path}: not a readable ONNX model ({exc})") from exc
        self._read(self.session.get_modelmeta().custom_metadata_map, path)

    def infer(self, batch: np.ndarray) -> tuple[Tensor, ...]:
        return tuple(torch.from_numpy(o) for o in self.session.run(None, {INPUT: batch}))


class _StackT(ctypes.Structure):
    """POSIX ``stack_t``: a thread's alternate signal stack."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def kept_signal_stack() -> Iterator[None]:
    """Restore this thread's alternate signal stack after the block (Linux; elsewhere a no-op).

    OpenVINO 2026.4's ``compile_model`` installs an alternate signal stack (about 10 KB) on the calling thread, and
    once several models were compiled and freed out of order it stays installed after every model is gone
    (measured). Python runs its signal handlers on that stack (``SA_ONSTACK``), so a later handled signal (a child's
    SIGCHLD, Ctrl-C) writes its frame into memory OpenVINO no longer owns: with ``backend="auto"`` compiling several
    models per process, the test suite died with SIGSEGV (``si_code`` SI_KERNEL, inside ``waitpid``, or a corrupted
    heap at random places). The thread keeps the stack it had before the compile instead.
    """
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
    before = _StackT()
    if libc is None or libc.sigaltstack(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        libc.sigaltstack(ctypes.byref(before), None)


#: OpenVINO backends alive: :func:`_release_openvino` frees them at exit.
_live_openvino: weakref.WeakSet[OpenVinoBackend] = weakref.WeakSet()


def _release_openvino() -> None:
    """Free every OpenVINO compiled model while the interpreter and OpenVINO's libraries are still whole: one still
    alive when the modules are torn down can crash the process at exit (seen as exit status 139 after a test run
    that left detectors in module-level state)."""
    for backend in list(_live_openvino):
        backend.release()
    gc.collect()


class OpenVinoBackend(ExportedBackend):
    """A file of ``singleshot export`` (an ``.onnx``, fp32 or the int8 QDQ file, which OpenVINO runs in int8; or the
    OpenVINO IR ``.xml`` of ``--format openvino``) run by OpenVINO on the CPU, in fp32 arithmetic for fp32 models
    (OpenVINO's default on a CPU with bf16 units would be bf16), ``threads`` threads (default one per physical
    core), tuned for latency."""

    runtime = "openvino"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        try:  # imported here: openvino is optional (pip install openvino), and costs 0.2 s to import
            import openvino
        except ImportError as exc:
            raise ImportError(f"{path}: the OpenVINO backend needs the openvino package: pip install openvino") from exc
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        core = openvino.Core()
        try:
            model = core.read_model(str(path))
            props = read_openvino_props(model) if path.suffix.lower() == ".xml" else onnx_props(path)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable ONNX model or OpenVINO IR ({exc})") from exc
        self._read(props, path)
        config = {
            "INFERENCE_NUM_THREADS": threads or cpu_features().physical_cores,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32",
        }
        with kept_signal_stack():
            self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        # (re-)registered after openvino's import: exit handlers run last-registered first, so it runs before any
        # of openvino's own, once
        atexit.unregister(_release_openvino)
        atexit.register(_release_openvino)
        _live_openvino.add(self)

    def release(self) -> None:
        """Free the compiled model now (it cannot run afterwards)."""
        self.__dict__.pop("request", None)
        self.__dict__.pop("compiled", None)

    def infer(self, batch: np.ndarray) -> tuple[Tensor, ...]:
        results = self.request.infer({INPUT: batch})
        return tuple(torch.from_numpy(np.array(results[output])) for output in self.compiled.outputs)
