"""The HTTP API of ``singleshot serve``, in process (Starlette's test client): every endpoint, every bad input,
and after each bad input the server still answering."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import png_header, write_synthetic_images, write_unusual_images
from fastapi.testclient import TestClient
from PIL import Image

import singleshot
from singleshot.data.synthetic import SyntheticShapes
from singleshot.models import build
from singleshot.serve import ServeConfig, create_app
from singleshot.weights import save_weights

CONF = 0.05  # low enough that the trained tiny model has several detections per image


def _client(weights: Path, **limits: object) -> TestClient:
    detector = singleshot.load(weights, device="cpu", backend="pytorch", precision="fp32")
    return TestClient(create_app(detector, ServeConfig(weights=str(weights), **limits)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(trained_tiny: Path) -> Iterator[TestClient]:
    with _client(trained_tiny, max_upload_mb=0.05) as c:  # 51200 bytes
        yield c


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_images(tmp_path_factory.mktemp("images"), 1, size=(120, 160), seed=3)[0][0]


def _post(client: TestClient, path: Path, **query: object) -> dict:
    with path.open("rb") as f:
        response = client.post("/predict", params={"conf": CONF, **query}, files={"image": (path.name, f)})
    assert response.status_code == 200, response.text
    return response.json()


def _answers(client: TestClient, image: Path) -> None:
    """The server still detects after whatever came before."""
    assert _post(client, image)["detections"]


def _same_as_predict(body: dict, result: singleshot.Result) -> None:
    """``/predict``'s JSON equals ``Detector.predict``'s result for the same file (boxes to 0.01 px)."""
    rows = body["detections"]
    assert [r["label"] for r in rows] == result.labels.tolist()
    assert [r["name"] for r in rows] == result.class_names
    np.testing.assert_allclose([r["score"] for r in rows], result.scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.array([r["box"] for r in rows]).reshape(-1, 4), result.boxes.numpy(), atol=0.01)
    assert (body["image"]["height"], body["image"]["width"]) == result.orig_size


@pytest.mark.numeric
def test_the_three_upload_forms_give_predicts_detections(client: TestClient, image: Path, trained_tiny: Path) -> None:
    detector = singleshot.load(trained_tiny, device="cpu")
    (expected,) = detector.predict(image, conf=CONF)
    assert len(expected) >= 2
    multipart = _post(client, image)
    _same_as_predict(multipart, expected)
    assert multipart["model"] == "ssd_tiny160" and multipart["batch_size"] == 1
    assert multipart["image"] == {"name": image.name, "width": 160, "height": 120}
    timings = multipart["timings_ms"]
    assert set(timings) == {"read", "decode", "queue", "preprocess", "inference", "postprocess", "total"}
    assert all(v >= 0 for v in timings.values()) and timings["total"] >= timings["inference"]
    encoded = base64.b64encode(image.read_bytes()).decode()
    as_json = client.post("/predict", params={"conf": CONF}, json={"image": encoded, "name": "x.png"}).json()
    as_data_url = client.post("/predict", params={"conf": CONF}, json={"image": "data:image/png;base64," + encoded})
    raw = client.post(
        "/predict", params={"conf": CONF}, content=image.read_bytes(), headers={"content-type": "image/png"}
    ).json()
    for body in (as_json, as_data_url.json(), raw):
        assert body["detections"] == multipart["detections"]
    assert as_json["image"]["name"] == "x.png"


@pytest.mark.numeric
def test_query_settings_filter_like_predict(client: TestClient, image: Path, trained_tiny: Path) -> None:
    detector = singleshot.load(trained_tiny, device="cpu")
    full = _post(client, image)["detections"]
    top = _post(client, image, max_det=1)["detections"]
    assert top == full[:1]
    name = full[0]["name"]
    by_name = _post(client, image, classes=name)["detections"]
    assert by_name and {r["name"] for r in by_name} == {name}
    assert _post(client, image, classes=str(full[0]["label"]))["detections"] == by_name  # a label works too
    (expected,) = detector.predict(image, conf=0.3, iou=0.2, max_det=3, classes=[name])
    _same_as_predict(_post(client, image, conf=0.3, iou=0.2, max_det=3, classes=name), expected)
    both = client.post(
        "/predict", params=[("conf", CONF), ("classes", "circle,square"), ("classes", "triangle")],
        files={"image": (image.name, image.read_bytes())},
    )  # fmt: skip
    assert both.status_code == 200 and len(both.json()["detections"]) == len(full)


@pytest.mark.numeric
def test_without_conf_the_weights_thresholds_apply_and_a_conf_overrides_them(image: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "thresholds.safetensors"
    # an untrained model: scores 0.26 to 0.36; class 2 has no threshold (0.25, prediction's default conf)
    save_weights(build("ssd_tiny160", 3), weights, list(SyntheticShapes.classes), class_conf=(0.3, None, 0.275))
    detector = singleshot.load(weights, device="cpu")
    with _client(weights) as c:
        assert c.get("/metadata").json()["defaults"]["class_conf"] == [0.3, None, 0.275]
        (expected,) = detector.predict(image)
        by_thresholds = c.post("/predict", files={"image": (image.name, image.read_bytes())}).json()
        _same_as_predict(by_thresholds, expected)
        limits = torch.tensor([0.3, 0.25, 0.275])
        assert len(expected) > 0 and bool((expected.scores > limits[expected.labels - 1]).all())
        (overridden,) = detector.predict(image, conf=0.25)
        _same_as_predict(_post(c, image, conf=0.25), overridden)
        assert len(overridden) > len(expected)


def test_health_metadata_and_page(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["batches"] >= 1
    meta = client.get("/metadata").json()
    assert meta["model"] == "ssd_tiny160" and meta["classes"] == ["circle", "square", "triangle"]
    assert meta["input_size"] == [160, 160] and meta["backend"] == "pytorch" and meta["precision"] == "fp32"
    assert meta["limits"]["max_batch"] == 8 and meta["limits"]["max_upload_mb"] == 0.05
    thresholds = meta["defaults"]["class_conf"]  # the trained weights carry their final evaluation's thresholds
    assert len(thresholds) == 3 and all(t is None or 0 < t < 1 for t in thresholds) and meta["defaults"]["conf"] == 0.25
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert '<canvas id="view"' in html and 'type="range"' in html and 'id="detections"' in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere


def _wait_ready(c: TestClient) -> None:
    deadline = time.monotonic() + 20
    while c.get("/health/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.get("/health/ready").json()["status"] == "ready"


def test_ready_is_503_until_the_warm_up_batch_has_run(trained_tiny: Path) -> None:
    detector = singleshot.load(trained_tiny, device="cpu")
    detect, release = detector.detect, threading.Event()

    def slow_first_batch(*args: object, **kwargs: object) -> object:
        release.wait(20)
        return detect(*args, **kwargs)  # type: ignore[arg-type]

    detector.detect = slow_first_batch  # type: ignore[method-assign]
    with TestClient(create_app(detector, ServeConfig(weights=str(trained_tiny)))) as c:
        warming = c.get("/health/ready")
        assert warming.status_code == 503 and warming.json()["status"] == "warming up"
        assert c.get("/health/live").status_code == 200
        release.set()
        _wait_ready(c)


def test_bad_uploads_get_400_or_413_naming_the_problem(client: TestClient, image: Path, tmp_path: Path) -> None:
    jpeg = io.BytesIO()
    Image.open(image).save(jpeg, format="JPEG", quality=95)
    cases = {
        "empty": (b"", 400, "upload: empty file (0 bytes)"),
        "text": (b"hello, this is not an image", 400, "upload: not a readable image"),
        "truncated": (jpeg.getvalue()[: len(jpeg.getvalue()) // 2], 400, "upload: corrupt or truncated image data"),
        # 30000 x 30000 claimed in a 60-byte file: refused from the header (with no pixel data, decoding could only
        # fail as corrupt)
        "bomb": (png_header(30000, 30000), 400, "decompression bomb"),
        "too large": (b"\0" * 60_000, 413, "over the 52428-byte upload limit"),
    }
    for what, (data, status, message) in cases.items():
        response = client.post("/predict", content=data, headers={"content-type": "image/jpeg"})
        assert response.status_code == status, (what, response.text)
        assert message in response.json()["detail"], (what, response.text)
        _answers(client, image)
    big = client.post("/predict", files={"image": ("big.png", b"\0" * 60_000)})
    assert big.status_code == 413 and "upload limit" in big.json()["detail"]
    named = client.post("/predict", files={"image": ("cat.gif", b"GIF89a-broken")})
    assert named.status_code == 400 and "cat.gif: not a readable image" in named.json()["detail"]
    _answers(client, image)


def test_malformed_requests_get_400(client: TestClient, image: Path) -> None:
    headers = {"content-type": "application/json"}
    cases = [
        (client.post("/predict", content=b"{not json", headers=headers), 400, "malformed JSON body"),
        (client.post("/predict", json={"picture": "abc"}), 400, 'JSON body must be an object with "image"'),
        (client.post("/predict", json={"image": "***not base64***"}), 400, '"image" is not valid base64'),
        (client.post("/predict", files={"other": ("x.txt", b"x")}, params={"conf": 2}), 400, "query.conf"),
        (client.post("/predict", content=b"x", headers={"content-type": "text/plain"}), 415, "unsupported content"),
        (client.post("/predict", params={"max_det": 0}, json={"image": ""}), 400, "query.max_det"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["detail"], response.text
        _answers(client, image)
    boundary = "XyZ"
    broken = f"--{boundary}\r\nContent-Disposition: form-data; name=image; filename=a.png\r\n\r\nabc".encode()
    response = client.post(
        "/predict", content=broken, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 400
    _answers(client, image)


def test_form_without_a_file_names_the_field(client: TestClient) -> None:
    response = client.post("/predict", files={"note": (None, "hello")})  # multipart with a text field only
    assert response.status_code == 400
    assert 'send the image in a field named "image"' in response.json()["detail"]


def test_unknown_class_lists_the_models_classes(client: TestClient, image: Path) -> None:
    response = client.post("/predict", params={"classes": "dog"}, files={"image": (image.name, image.read_bytes())})
    assert response.status_code == 400
    assert (
        response.json()["detail"] == "unknown class 'dog'; this model's classes are 1: circle, 2: square, 3: triangle"
    )
    _answers(client, image)


@pytest.mark.numeric
def test_unusual_images_are_read_as_training_reads_them(client: TestClient, tmp_path: Path, trained_tiny: Path):
    detector = singleshot.load(trained_tiny, device="cpu")
    rgb = np.asarray(SyntheticShapes(1, (120, 160), seed=5)[0][0].permute(1, 2, 0))
    for name, path in write_unusual_images(tmp_path, rgb).items():
        (expected,) = detector.predict(path, conf=CONF)
        body = _post(client, path)
        _same_as_predict(body, expected)
        if name == "rotated.jpg":  # stored 160 x 120, EXIF-rotated: 120 wide, 160 high
            assert (body["image"]["width"], body["image"]["height"]) == (120, 160)


def test_api_key(trained_tiny: Path, image: Path) -> None:
    with _client(trained_tiny, api_key="s3cret") as c:
        upload = {"image": (image.name, image.read_bytes())}
        missing = c.post("/predict", files=upload)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert "missing or wrong API key" in missing.json()["detail"]
        for header in ("Bearer wrong", "Bearer s3cret2", "Token s3cret", "Basic !!!", "s3cret"):
            assert c.post("/predict", files=upload, headers={"Authorization": header}).status_code == 401, header
        assert c.post("/predict", files=upload, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        basic = "Basic " + base64.b64encode(b"anyone:s3cret").decode()
        assert c.post("/predict", files=upload, headers={"Authorization": basic}).status_code == 200
        assert c.get("/metadata").status_code == 401
        assert c.get("/metadata", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        page = c.get("/")
        assert page.status_code == 401 and page.headers["www-authenticate"] == 'Basic realm="singleshot"'
        assert c.get("/", headers={"Authorization": basic}).status_code == 200  # what a browser sends
        assert c.get("/health/live").status_code == 200 and c.get("/health/ready").status_code == 200


def test_a_full_queue_answers_429_with_retry_after(trained_tiny: Path, image: Path) -> None:
    with _client(trained_tiny, max_batch=1, max_queue=2, max_wait_ms=0) as c:
        _wait_ready(c)  # the warm-up batch has gone through
        batcher = c.app.state.batcher  # type: ignore[attr-defined]
        run, hold, entered = batcher.run, threading.Event(), threading.Event()

        def held(payloads: list) -> list:
            entered.set()
            hold.wait(20)
            return run(payloads)

        batcher.run = held
        statuses: list[int] = []
        upload = image.read_bytes()

        def request() -> None:
            statuses.append(c.post("/predict", files={"image": ("a.png", upload)}).status_code)

        first = threading.Thread(target=request)
        first.start()
        assert entered.wait(20)  # the worker holds request 1
        waiting = [threading.Thread(target=request) for _ in range(2)]
        for t in waiting:
            t.start()
        deadline = time.monotonic() + 20
        while batcher.waiting < 2 and time.monotonic() < deadline:  # requests 2 and 3 fill the queue
            time.sleep(0.01)
        refused = c.post("/predict", files={"image": ("a.png", upload)})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert "server busy: 2 requests are waiting already" in refused.json()["detail"]
        hold.set()
        for t in (first, *waiting):
            t.join(30)
        assert statuses == [200, 200, 200]
        assert c.post("/predict", files={"image": ("a.png", upload)}).status_code == 200


@pytest.mark.numeric
def test_sliced_requests_equal_sliced_predict(client: TestClient, trained_tiny: Path, tmp_path: Path) -> None:
    """Query ``slice``/``overlap``: the same detections as ``Detector.predict(slice=...)``, with the tiles counted."""
    ((path, _),) = write_synthetic_images(tmp_path, 1, size=(200, 280), seed=21, suffix=".jpg")  # under the limit
    detector = singleshot.load(trained_tiny, device="cpu")
    (expected,) = detector.predict(path, conf=CONF, slice=96, overlap=0.25)
    body = _post(client, path, slice=96, overlap=0.25)
    _same_as_predict(body, expected)
    assert body["tiles"] == expected.speed["tiles"] == 3 * 4 + 1 and "tiles" not in body["timings_ms"]
    assert _post(client, path)["tiles"] == 1
    (merged,) = detector.predict(path, conf=CONF, slice=96, overlap=0.25, full_image=False, merge="nmm")
    body = _post(client, path, slice=96, overlap=0.25, full_image=False, merge="nmm")
    _same_as_predict(body, merged)
    assert body["tiles"] == merged.speed["tiles"] == 3 * 4
    upload = {"image": (path.name, path.read_bytes())}
    bad = client.post("/predict", params={"slice": 96, "overlap": 0.95}, files=upload)
    assert bad.status_code == 400 and "overlap" in bad.text
    bad = client.post("/predict", params={"slice": 96, "merge": "union"}, files=upload)
    assert bad.status_code == 400 and "merge" in bad.text
