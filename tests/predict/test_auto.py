"""``backend="auto"``: the candidates a machine allows (never emulated bf16, int8 only from a checked file of these
weights), the fastest chosen but never one slower than fp32, measured once per machine, model, input size and set
of runtimes; and the chosen runtime detects what PyTorch detects."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_same_detections, write_synthetic_images

import singleshot
from singleshot import build
from singleshot.cpu import CpuFeatures
from singleshot.data.images import read_image
from singleshot.export.onnx_file import add_metadata, export_onnx
from singleshot.export.onnx_format import INT8_CHECK
from singleshot.folders import file_sha256
from singleshot.predict import auto, precision
from singleshot.predict.auto import Candidate, candidates, choose
from singleshot.weights import save_weights

CLASSES = ["a", "b", "c"]


def fake_cpu(bf16: bool) -> CpuFeatures:
    """A CPU with AVX-512 and VNNI, and AVX512-BF16 and AMX only if ``bf16``."""
    return CpuFeatures("Fake CPU", avx2=True, avx512=True, vnni=True, bf16=bf16, amx=bf16, physical_cores=2,
                       logical_cores=2)  # fmt: skip  # keywords on two lines


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SINGLESHOT_CACHE", str(folder))
    return folder


@pytest.fixture
def with_cpu(monkeypatch: pytest.MonkeyPatch):  # a setter
    """Fake the CPU-feature reader that both the bf16 rule and the cache key read."""

    def use(bf16: bool) -> None:
        features = fake_cpu(bf16)
        monkeypatch.setattr(precision, "cpu_features", lambda: features)
        monkeypatch.setattr(auto, "cpu_features", lambda: features)

    return use


@pytest.fixture
def runtimes(monkeypatch: pytest.MonkeyPatch):  # a setter
    """Fake which runtime packages are installed (and their versions)."""

    def use(**versions: str) -> None:
        monkeypatch.setattr(auto, "runtimes_installed", lambda: {"pytorch": torch.__version__, **versions})

    use(onnxruntime="1.0", openvino="1.0")
    return use  # use() with no versions: PyTorch alone


def weights_file(folder: Path, size: int = 160, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    path = folder / f"tiny{size}-{seed}.safetensors"
    save_weights(build("ssd_tiny160", 3, image_size=size), path, CLASSES)
    return path


def no_export(target: Path, sha256: str) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"stands for an export")  # candidates() only needs the path
    return target


def fake_int8_beside(weights: Path, passed: bool, sha256: str | None = None) -> Path:
    """An int8 file beside ``weights`` as ``singleshot export --int8`` leaves it (only its metadata is read here)."""
    model = build("ssd_tiny160", 3)
    path = export_onnx(model, CLASSES, auto.int8_file_beside(weights), source_sha256=sha256 or file_sha256(weights))
    add_metadata(path, {"precision": "int8", INT8_CHECK: json.dumps({"passed": passed})})
    return path


def labels(found: list[Candidate]) -> list[str]:
    return [c.label for c in found]


def test_bf16_is_a_candidate_only_where_the_cpu_has_it(tmp_path: Path, cache: Path, with_cpu, runtimes) -> None:
    weights = weights_file(tmp_path)
    with_cpu(bf16=False)
    found, skipped, _ = candidates(weights, "auto", "auto", no_export)
    assert labels(found) == ["torch-fp32", "ort-fp32", "ov-fp32"]
    assert "no native bf16: emulated" in skipped["torch-bf16"]
    assert "no tiny160-0-int8.onnx beside the weights" in skipped["ort-int8"]
    with_cpu(bf16=True)
    found, _, _ = candidates(weights, "auto", "auto", no_export)
    assert labels(found) == ["torch-fp32", "torch-bf16", "ort-fp32", "ov-fp32"]
    runtimes(onnxruntime="1.0")  # no openvino
    found, skipped, _ = candidates(weights, "auto", "fp32", no_export)
    assert labels(found) == ["torch-fp32", "ort-fp32"] and "pip install openvino" in skipped["ov"]


def test_int8_only_from_a_checked_file_of_these_weights(tmp_path: Path, cache: Path, with_cpu, runtimes) -> None:
    with_cpu(bf16=False)
    weights = weights_file(tmp_path)
    fake_int8_beside(weights, passed=True)
    found, _, _ = candidates(weights, "auto", "auto", no_export)
    assert labels(found) == ["torch-fp32", "ort-fp32", "ort-int8", "ov-fp32", "ov-int8"]
    assert found[2].file == auto.int8_file_beside(weights)
    fake_int8_beside(weights, passed=False)  # written with --force after failing its check
    _, skipped, _ = candidates(weights, "auto", "auto", no_export)
    assert "did not pass its accuracy check" in skipped["ov-int8"]
    fake_int8_beside(weights, passed=True, sha256="0" * 64)  # from other weights
    _, skipped, _ = candidates(weights, "auto", "auto", no_export)
    assert "was not exported from these weights" in skipped["ort-int8"]
    with pytest.raises(ValueError, match="nothing here runs it with backend=auto, precision=int8"):
        candidates(weights, "auto", "int8", no_export)


def test_onnx_files_run_at_their_own_precision(tmp_path: Path, cache: Path, runtimes) -> None:
    path = export_onnx(build("ssd_tiny160", 3), CLASSES, tmp_path / "m.onnx")
    found, _, identity = candidates(path, "auto", "auto", None)
    assert labels(found) == ["ort-fp32", "ov-fp32"] and identity == file_sha256(path)
    with pytest.raises(ValueError, match="an exported fp32 file; it runs on onnxruntime or openvino, at fp32"):
        candidates(path, "auto", "int8", None)
    with pytest.raises(ValueError, match="an exported file runs on onnxruntime or openvino; backend=pytorch"):
        candidates(path, "pytorch", "auto", None)
    runtimes()  # neither installed: a clear error, not an empty choice
    with pytest.raises(ValueError, match=r"pip install onnxruntime or openvino"):
        candidates(path, "auto", "auto", None)


def timer_of(times: dict[str, float], calls: list[str]):  # a timer
    def timer(candidate: Candidate) -> float:
        calls.append(candidate.label)
        return times[candidate.label]

    return timer


def test_auto_never_picks_an_emulated_path_nor_one_slower_than_fp32(
    tmp_path: Path, cache: Path, with_cpu, runtimes
) -> None:
    weights = weights_file(tmp_path)
    fake_int8_beside(weights, passed=True)
    # as measured on an AVX2-only CPU with bf16 emulated: bf16 would "win" only if it were asked, and is not timed
    times = {"torch-fp32": 10.0, "torch-bf16": 1.0, "ort-fp32": 9.8, "ov-fp32": 11.0, "ort-int8": 12.0, "ov-int8": 20.0}
    with_cpu(bf16=False)
    calls: list[str] = []
    found, skipped, _ = candidates(weights, "auto", "auto", no_export)
    choice = choose(found, skipped, "key-1", timer_of(times, calls))
    assert "torch-bf16" not in calls
    # ort-fp32 is 2% faster: within noise (MIN_GAIN 5%), so fp32 on PyTorch stays; int8 measured slower, not chosen
    assert choice.chosen.label == "torch-fp32" and not choice.cached
    assert "torch-bf16: this CPU (Fake CPU) has no native bf16" in choice.describe()
    times["ov-int8"] = 4.0  # int8 on OpenVINO clearly faster: chosen
    choice = choose(found, skipped, "key-2", timer_of(times, calls))
    assert choice.chosen.label == "ov-int8" and choice.chosen.file == auto.int8_file_beside(weights)
    assert "backend auto: ov-int8 (network 4.0 ms; torch-fp32 10.0" in choice.describe()
    with_cpu(bf16=True)  # native bf16 (AMX): now timed, and chosen
    found, skipped, _ = candidates(weights, "auto", "auto", no_export)
    assert choose(found, skipped, "key-3", timer_of(times, [])).chosen.label == "torch-bf16"


def test_the_choice_is_measured_once_and_again_when_model_size_or_runtimes_change(
    tmp_path: Path, cache: Path, with_cpu, runtimes, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_cpu(bf16=False)
    calls: list[str] = []
    times = {"torch-fp32": 10.0, "ort-fp32": 5.0, "ov-fp32": 6.0}

    def chosen(weights: Path) -> tuple[str, int]:
        found, skipped, identity = candidates(weights, "auto", "fp32", no_export)
        key = auto.cache_key(identity, found, threads=2, torch_threads=2)
        before = len(calls)
        return choose(found, skipped, key, timer_of(times, calls)).chosen.label, len(calls) - before

    weights = weights_file(tmp_path)
    assert chosen(weights) == ("ort-fp32", 3)  # measured
    assert chosen(weights) == ("ort-fp32", 0)  # remembered (the file, not this process: nothing else is kept)
    assert json.loads((cache / "backend.json").read_text())
    times["ov-fp32"] = 1.0
    assert chosen(weights) == ("ort-fp32", 0)
    shutil.copy(weights, tmp_path / "copy.safetensors")  # the same model under another name: remembered
    assert chosen(tmp_path / "copy.safetensors") == ("ort-fp32", 0)
    assert chosen(weights_file(tmp_path, seed=1)) == ("ov-fp32", 3)  # other weights: measured
    assert chosen(weights_file(tmp_path, size=128)) == ("ov-fp32", 3)  # another input size: measured
    runtimes(onnxruntime="1.0", openvino="2.0")  # a runtime upgraded: measured again
    assert chosen(weights) == ("ov-fp32", 3)
    runtimes(onnxruntime="1.0")  # openvino uninstalled: measured again, without it
    times["ort-fp32"] = 7.0
    assert chosen(weights) == ("ort-fp32", 2)


@pytest.mark.numeric
def test_load_auto_runs_the_choice_and_detects_what_pytorch_detects(
    trained_tiny: Path, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "w.safetensors"
    shutil.copy(trained_tiny, weights)
    detector = singleshot.load(weights, device="cpu")
    assert detector.choice is not None and not detector.choice.cached
    assert detector.runtime == detector.choice.chosen.runtime
    assert set(detector.choice.times_ms) >= {"torch-fp32", "ort-fp32"}
    assert len(list((cache / "onnx").glob("w-*.onnx"))) == 1  # exported on the fly, once
    monkeypatch.setattr(auto, "measure", lambda infer: pytest.fail("measured twice"))
    again = singleshot.load(weights, device="cpu")
    assert again.choice is not None and again.choice.cached and again.runtime == detector.runtime
    images = [read_image(p) for p, _ in write_synthetic_images(tmp_path / "s", 4, (160, 160), seed=3)]
    got, _ = detector.detect(images)
    want, _ = singleshot.load(weights, device="cpu", backend="pytorch", precision="fp32").detect(images)
    assert sum(len(d["scores"]) for d in want) >= 4
    for g, w in zip(got, want, strict=True):
        assert_same_detections(g, w)
    for backend in ("pytorch", "onnxruntime"):  # asked by name: no choice made
        assert singleshot.load(weights, device="cpu", backend=backend, precision="fp32").choice is None
