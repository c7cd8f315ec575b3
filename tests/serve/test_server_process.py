"""A real ``singleshot serve`` process: uploads refused before they are sent, clients that vanish, the CLI's
security warning, and ONNX files served like weights."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from conftest import Server, start_server, stop_server, write_synthetic_images

from singleshot.serve import ServeConfig
from singleshot.serve import command as server_module

pytestmark = pytest.mark.slow


def _png(tmp_path: Path) -> bytes:
    return write_synthetic_images(tmp_path, 1, size=(120, 160), seed=3)[0][0].read_bytes()


def _multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "singleshot-test-boundary"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
    body = (head + "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _request_head(server: Server, length: int, content_type: str) -> bytes:
    return (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _response(sock: socket.socket) -> str:
    """One whole HTTP response read from ``sock`` (headers, then ``Content-Length`` bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return (head + b"\r\n\r\n" + body).decode(errors="replace")


def _detects(server: Server, png: bytes) -> None:
    response = httpx.post(f"{server.url}/predict", files={"image": ("a.png", png)}, params={"conf": 0.05}, timeout=30)
    assert response.status_code == 200 and response.json()["detections"], response.text


def test_an_upload_over_the_limit_is_refused_before_it_is_sent(served_tiny: Server, tmp_path: Path) -> None:
    # the request says 50 MiB are coming (the limit is 1 MiB); only 1 KiB is ever sent
    with socket.create_connection(("127.0.0.1", served_tiny.port), timeout=10) as sock:
        sock.sendall(_request_head(served_tiny, 50 * 2**20, "image/png") + b"\0" * 1024)
        started = time.perf_counter()
        answer = _response(sock)
    assert answer.startswith("HTTP/1.1 413"), answer
    assert "over the 1048576-byte upload limit" in answer and time.perf_counter() - started < 5
    _detects(served_tiny, _png(tmp_path))


def test_clients_that_disconnect_leak_nothing(served_tiny: Server, tmp_path: Path) -> None:
    png = _png(tmp_path)
    body, content_type = _multipart(png)
    _detects(served_tiny, png)
    _detects(served_tiny, png)  # the decoding threads (one per core) exist by now
    threads, files = served_tiny.threads(), served_tiny.open_files()
    for _ in range(10):
        with socket.create_connection(("127.0.0.1", served_tiny.port), timeout=10) as sock:  # half a body, gone
            sock.sendall(_request_head(served_tiny, len(body), content_type) + body[: len(body) // 2])
        with socket.create_connection(("127.0.0.1", served_tiny.port), timeout=10) as sock:  # gone before the answer
            sock.sendall(_request_head(served_tiny, len(body), content_type) + body)
    time.sleep(1.0)
    _detects(served_tiny, png)  # the worker goes on
    stats = httpx.get(f"{served_tiny.url}/health/ready", timeout=10).json()
    assert stats["waiting"] == 0 and stats["status"] == "ready"
    assert served_tiny.threads() <= threads + 2, (threads, served_tiny.threads())
    assert served_tiny.open_files() <= files + 2, (files, served_tiny.open_files())


def test_an_onnx_file_is_served(trained_tiny: Path, tmp_path: Path) -> None:
    from singleshot.deploy.command import ExportConfig
    from singleshot.deploy.command import run as export_model

    onnx = tmp_path / "tiny.onnx"
    export_model(ExportConfig(weights=str(trained_tiny), output=str(onnx)))
    running = start_server(onnx, tmp_path / "log.txt", "--api-key", "k")
    try:
        headers = {"Authorization": "Bearer k"}
        meta = httpx.get(f"{running.url}/metadata", headers=headers, timeout=10).json()
        assert meta["classes"] == ["circle", "square", "triangle"]
        # --backend auto (the default) measured the file's two runtimes and says which it serves with
        short = {"onnxruntime": "ort", "openvino": "ov"}[meta["backend"]]
        assert f"backend auto: {short}-fp32 (network" in running.log.read_text()
        png = _png(tmp_path)
        from_onnx = httpx.post(f"{running.url}/predict", files={"image": ("a.png", png)}, headers=headers, timeout=30)
        assert from_onnx.status_code == 200 and from_onnx.json()["detections"]
        assert "(API key required)" in running.log.read_text()
    finally:
        stop_server(running)


def test_listening_beyond_loopback_without_a_key_warns(monkeypatch: pytest.MonkeyPatch, capsys, trained_tiny: Path):
    import uvicorn

    served: list[tuple[str, int]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: served.append((host, port)))
    monkeypatch.delenv(server_module.API_KEY_ENV, raising=False)
    server_module.run(ServeConfig(weights=str(trained_tiny), host="0.0.0.0", port=8123, device="cpu"))
    assert served == [("0.0.0.0", 8123)]
    assert "WARNING: listening on 0.0.0.0 without an API key" in capsys.readouterr().err
    for host, key in (("127.0.0.1", None), ("0.0.0.0", "k"), ("::1", None), ("localhost", None)):
        server_module.run(ServeConfig(weights=str(trained_tiny), host=host, api_key=key, device="cpu"))
        assert "WARNING" not in capsys.readouterr().err, host
    monkeypatch.setenv(server_module.API_KEY_ENV, "from-env")
    config = ServeConfig(weights=str(trained_tiny), host="0.0.0.0", device="cpu")
    server_module.run(config)
    assert config.api_key == "from-env" and "WARNING" not in capsys.readouterr().err
    assert not server_module.is_loopback("example.org") and server_module.is_loopback("127.0.0.2")
