"""Behaviour hashes: SHA-256 of what the commands produce, to prove a restructuring changed nothing a user sees.

Run it with the code before a change and after it, on the same machine, and compare the two JSON files::

    python benchmarks/behaviour_hashes.py runs/hashes-after        # from the repository root, with .venv built
    PYTHONPATH=/path/to/old/checkout/src python benchmarks/behaviour_hashes.py runs/hashes-before
    diff runs/hashes-before/hashes.json runs/hashes-after/hashes.json

What is hashed (the commands are the ``singleshot`` console script, so ``PYTHONPATH`` picks the code):

* every tensor of a fixed-seed 100-step ``singleshot train --config recipes/demo.yaml --max-steps 100 --workers 0``
  run (``last.pt``: model, EMA, optimiser, RNG states; ``weights/last.safetensors``), and of the same recipe on
  ``../shared/data/BCCD`` (whose classes the commands below need);
* ``singleshot val`` on BCCD with those weights: ``metrics.json`` without its timings, ``predictions.json``;
* ``singleshot predict`` on BCCD's ``JPEGImages``: ``predictions.json`` without timings;
* ``singleshot export`` (fp32, and ``--nms``): ONNX Runtime's outputs on 8 BCCD images;
* ``singleshot serve``: the ``/predict`` answers for 3 images, without timings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from safetensors.torch import load_file

BCCD = "../shared/data/BCCD"
SINGLESHOT = str(Path(sys.executable).with_name("singleshot"))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensor_hash(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's bytes, dtype and shape."""
    return sha256(t.detach().contiguous().cpu().numpy().tobytes() + f"{t.dtype}{tuple(t.shape)}".encode())


def without_timings(value: Any) -> Any:
    """``value`` with every key naming a timing or a speed left out (they differ from run to run)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "timing" not in k and "speed" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def json_hash(value: Any) -> str:
    return sha256(json.dumps(without_timings(value), sort_keys=True).encode())


def singleshot(*args: str) -> None:
    print("$ singleshot", " ".join(args), flush=True)
    subprocess.run([SINGLESHOT, *args], check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONHASHSEED="0"))


def tensors(prefix: str, value: Any, out: dict[str, str]) -> None:
    """Hash every tensor inside ``value`` (nested dicts and lists) under its path."""
    if isinstance(value, torch.Tensor):
        out[prefix] = tensor_hash(value)
    elif isinstance(value, dict):
        for k in sorted(value, key=str):
            tensors(f"{prefix}/{k}", value[k], out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            tensors(f"{prefix}/{i}", v, out)


def train_hashes(runs: Path, name: str, extra: list[str], out: dict[str, str]) -> Path:
    """Train the demo recipe for 100 steps; hash its checkpoint and weights; return the weights."""
    singleshot("train", "--config", "recipes/demo.yaml", *extra, "--max-steps", "100", "--workers", "0",
               "--project", str(runs / "train"), "--name", name, "--exist-ok")  # fmt: skip  # the flags by pairs
    folder = runs / "train" / name
    tensors(f"{name}/last.pt", torch.load(folder / "last.pt", map_location="cpu", weights_only=True), out)
    weights = folder / "weights" / "last.safetensors"
    tensors(f"{name}/last.safetensors", load_file(str(weights)), out)
    return weights


def serve_hashes(weights: Path, images: list[Path], out: dict[str, str], port: int = 8765) -> None:
    """Start ``singleshot serve``, post each image to ``/predict``, hash the answers."""
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([SINGLESHOT, "serve", "--weights", str(weights), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip  # two lines
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        for path in images:
            answer = httpx.post(f"{url}/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
            answer.raise_for_status()
            out[f"serve/{path.name}"] = json_hash(answer.json())
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for the runs and hashes.json")
    args = parser.parse_args()
    runs, out = args.out / "runs", {}
    train_hashes(runs, "demo", [], out)
    weights = train_hashes(runs, "bccd", ["--data", BCCD], out)

    singleshot("val", "--weights", str(weights), "--data", BCCD, "--project", str(runs / "val"), "--name", "v",
               "--exist-ok")  # fmt: skip  # the flags by pairs
    for name in ("metrics.json", "predictions.json"):
        out[f"val/{name}"] = json_hash(json.loads((runs / "val" / "v" / name).read_text()))
    singleshot("predict", "--weights", str(weights), "--source", f"{BCCD}/JPEGImages", "--project",
               str(runs / "predict"), "--name", "p", "--exist-ok")  # fmt: skip  # the flags by pairs
    out["predict/predictions.json"] = json_hash(json.loads((runs / "predict" / "p" / "predictions.json").read_text()))

    images = sorted(Path(BCCD, "JPEGImages").glob("*.jpg"))[:8]
    for tag, flags in (("onnx", []), ("onnx-nms", ["--nms"])):
        file = args.out / f"{tag}.onnx"
        singleshot("export", "--weights", str(weights), "--output", str(file), *flags)
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        _, _, h, w = session.get_inputs()[0].shape
        side = (160, 160) if isinstance(h, str) else (w, h)
        batch = np.stack(
            [np.asarray(Image.open(p).convert("RGB").resize(side, Image.BILINEAR)).transpose(2, 0, 1) for p in images]
        )
        outputs = session.run(None, {session.get_inputs()[0].name: batch})
        for meta, value in zip(session.get_outputs(), outputs, strict=True):
            out[f"{tag}/{meta.name}"] = sha256(value.tobytes())
    serve_hashes(weights, images[:3], out)

    (args.out / "hashes.json").write_text(json.dumps(out, indent=1, sort_keys=True))
    print(f"{len(out)} hashes; all together {sha256(json.dumps(out, sort_keys=True).encode())}")


if __name__ == "__main__":
    main()
