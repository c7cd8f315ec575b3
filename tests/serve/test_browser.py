"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven by selenium) opens
the page of a real ``singleshot serve`` process, uploads a synthetic-shapes image, and its drawn detections and
table must match ``/predict``'s JSON for the same image: first those above the weights' per-class thresholds (the
served weights carry their final evaluation's), then those above the slider. The screenshot is kept in
runs/test-artifacts/."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
from conftest import Server, write_synthetic_images

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "runs" / "test-artifacts"
PAGE_CONF = 0.01  # the page asks for every detection above 0.01 and shows those above the thresholds or its slider


def _rows(driver: object) -> list[dict]:
    return driver.execute_script(  # type: ignore[attr-defined]
        "return [...document.querySelectorAll('#detections tbody tr')].map(r => ({label: +r.dataset.label, "
        "score: +r.dataset.score, box: JSON.parse(r.dataset.box), name: r.cells[1].textContent}));"
    )


def test_the_page_draws_and_lists_what_predict_returns(browser: object, served_tiny: Server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    image = write_synthetic_images(tmp_path, 1, size=(240, 320), seed=11)[0][0]
    driver.get(f"{served_tiny.url}/")  # type: ignore[attr-defined]
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("ssd_tiny160"))
    driver.find_element(By.ID, "file").send_keys(str(image))  # type: ignore[attr-defined]
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready") == "true")

    expected = httpx.post(
        f"{served_tiny.url}/predict", params={"conf": PAGE_CONF}, files={"image": (image.name, image.read_bytes())}
    ).json()
    every = expected["detections"]
    defaults = httpx.get(f"{served_tiny.url}/metadata").json()["defaults"]
    limits = [defaults["conf"] if t is None else t for t in defaults["class_conf"]]
    shown = [d for d in every if d["score"] > limits[d["label"] - 1]]  # the weights' per-class thresholds
    assert shown, "the trained tiny model should find shapes in this image"
    assert "per-class thresholds" in driver.find_element(By.ID, "confValue").text  # type: ignore[attr-defined]
    rows = _rows(driver)
    assert [r["label"] for r in rows] == [d["label"] for d in shown]
    assert [r["name"] for r in rows] == [d["name"] for d in shown]
    assert [r["box"] for r in rows] == [d["box"] for d in shown]
    assert [r["score"] for r in rows] == pytest.approx([d["score"] for d in shown], abs=1e-6)
    timing = driver.find_element(By.ID, "timing").text  # type: ignore[attr-defined]
    assert f"{len(shown)} of {len(every)} detections shown" in timing and "ms" in timing

    # every shown box is drawn on the canvas, at its place, in its class colour
    canvas = driver.execute_script(  # type: ignore[attr-defined]
        "const c = document.getElementById('view'); const x = c.getContext('2d');"
        "return {w: c.width, h: c.height, px: arguments[0].map(([px, py]) => "
        "Array.from(x.getImageData(px, py, 1, 1).data.slice(0, 3)))};",
        # the pixel row floor(y2) lies wholly inside the 2-pixel line centred on y2: its colour is the line's
        [[math.floor((d["box"][0] + d["box"][2]) / 2), min(math.floor(d["box"][3]), 239)] for d in shown],
    )
    assert (canvas["w"], canvas["h"]) == (320, 240)  # drawn at full size: boxes in image pixels
    colours = driver.execute_script("return COLOURS.map(c => [1, 3, 5].map(i => parseInt(c.slice(i, i + 2), 16)));")
    label_colours = {tuple(colours[(d["label"] - 1) % len(colours)]) for d in shown}
    on_edges = [tuple(p) in label_colours for p in canvas["px"]]
    assert sum(on_edges) >= 0.8 * len(on_edges), canvas["px"]  # overlapping boxes may cover a few edges

    # the slider filters in the page, without asking the server again
    driver.execute_script(  # type: ignore[attr-defined]
        "const s = document.getElementById('conf'); s.value = '0.5'; s.dispatchEvent(new Event('input'));"
    )
    assert [r["box"] for r in _rows(driver)] == [d["box"] for d in every if d["score"] >= 0.5]
    driver.find_element(By.ID, "perClass").click()  # type: ignore[attr-defined]  # back to the thresholds
    assert [r["box"] for r in _rows(driver)] == [d["box"] for d in shown]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "serve_page.png"))  # type: ignore[attr-defined]
    (ARTIFACTS / "serve_page.json").write_text(json.dumps(expected, indent=1))


def test_a_bad_file_is_reported_on_the_page(browser: object, served_tiny: Server, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    driver.get(f"{served_tiny.url}/")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "file").send_keys(str(broken))  # type: ignore[attr-defined]
    status = WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.ID, "status").text if "HTTP 400" in d.find_element(By.ID, "status").text else None
    )
    assert "broken.png: not a readable image" in status
