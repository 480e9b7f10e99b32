"""End to end in a real browser: Debian's chromium driven by Playwright against ``steelkd serve``.

Uploads an image on the page, sees the overlay and the defect table, rejects one defect and confirms
another, then finds both in the data set ``steelkd data export-reviewed`` writes. Skipped with a reason
where chromium or Playwright is missing (``.ci/run`` installs chromium). With ``STEELKD_SCREENSHOT=PATH``
the page (1366x768) is saved there: ``docs/img/service.png`` is made this way (docs/service.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'steelkd[serve]')")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)", allow_module_level=True)

from serve_helpers import BRIGHT, DARK, frame, pixel_model  # noqa: E402

pytestmark = pytest.mark.slow

#: The image the test uploads: one dark (class 1) and one bright (class 2) defect.
BOXES = [(60, 40, 120, 50, DARK), (420, 110, 160, 60, BRIGHT)]


def _steelkd() -> list[str]:
    exe = Path(sys.executable).with_name("steelkd")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from steelkd.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``steelkd serve`` in a subprocess on loopback; yields (base URL, db)."""
    model, db, port = pixel_model(tmp_path / "pixel.onnx"), tmp_path / "svc" / "i.db", _free_port()
    log = (tmp_path / "serve.log").open("wb")
    cmd = [*_steelkd(), "serve", "--model", str(model), "--db", str(db), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as res:
                    assert json.loads(res.read())["status"] == "ok"
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"steelkd serve did not start: {(tmp_path / 'serve.log').read_text()}")
                time.sleep(0.2)
        yield url, db
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _row(page, n: int):  # type: ignore[no-untyped-def]
    return page.locator(f'#defects tbody tr[data-n="{n}"]')


def test_upload_review_and_export_in_a_real_browser(service: tuple[str, Path], tmp_path: Path) -> None:
    url, db = service
    image = tmp_path / "frame_0001.png"
    Image.fromarray(frame(BOXES, h=200, w=800)).save(image)
    earlier = [tmp_path / f"frame_000{i}.png" for i in (2, 3)]
    for i, p in enumerate(earlier):
        Image.fromarray(frame([(100 + 200 * i, 20, 60, 30, DARK)], h=200, w=800)).save(p)
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                      "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_function("document.querySelector('#model-info').textContent.includes('pixel.onnx')")
        page.fill("#coil-id", "COIL-17")
        for pos, p in zip(("4.2", "11.5"), earlier, strict=True):  # two earlier frames of the coil
            page.fill("#position", pos)
            page.set_input_files("#file", str(p))
            page.wait_for_function(f"document.querySelector('#status').textContent.startsWith('{p.name}:')")
        page.fill("#position", "7.0")
        page.set_input_files("#file", str(image))
        page.wait_for_function(f"document.querySelector('#status').textContent.startsWith('{image.name}:')")
        assert "2 defect(s)" in page.text_content("#status")
        page.wait_for_function("document.querySelector('#overlay').complete && "
                               "document.querySelector('#overlay').naturalWidth === 800")
        assert page.locator("#defects tbody tr").count() == 2
        assert "dark" in _row(page, 1).text_content() and "bright" in _row(page, 2).text_content()
        assert "dark" in page.text_content("#legend") and "scratch" in page.text_content("#legend")

        _row(page, 2).locator("button.reject").click()
        page.wait_for_function("document.querySelector('#defects tbody tr[data-n=\"2\"] .status')"
                               ".textContent === 'rejected'")
        _row(page, 1).locator("button.confirm").click()
        page.wait_for_function("document.querySelector('#defects tbody tr[data-n=\"1\"] .status')"
                               ".textContent === 'confirmed'")
        assert page.locator("#recent li").count() == 3
        page.wait_for_selector("#coil-chart svg rect")
        assert page.locator("#coil-table tbody tr").count() == 3
        if os.environ.get("STEELKD_SCREENSHOT"):
            page.screenshot(path=os.environ["STEELKD_SCREENSHOT"])
        assert not errors, errors
        browser.close()

    out = tmp_path / "reviewed"
    res = subprocess.run([*_steelkd(), "data", "export-reviewed", "--db", str(db), "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    masks = list((out / "masks").glob("*.png"))
    assert len(masks) == 1  # only the reviewed frame
    mask = np.asarray(Image.open(masks[0]))
    (x1, y1, w1, h1, _), (x2, y2, w2, h2, _) = BOXES
    assert (mask[y1 : y1 + h1, x1 : x1 + w1] == 1).all()  # confirmed: in the data set as dark
    assert (mask[y2 : y2 + h2, x2 : x2 + w2] == 0).all()  # rejected: background in the data set
    assert int((mask > 0).sum()) == w1 * h1
