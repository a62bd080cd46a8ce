"""A real `onestage serve` process on a free loopback port: called over HTTP, its page driven in
headless Chromium (Debian's package, through Playwright's Python API), stopped cleanly."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import bomb_png, encode, free_port, scene
from onestage.data.icons import SEED_CLASS_NAMES

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# No sandbox (CI runs as root); no background connections (this network is closed).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def start_server(port: int, *options: str) -> subprocess.Popen:
    """`onestage serve` on `port`, answering /health (or a failed test with its stderr)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "onestage", "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if json.load(reply) == {"status": "ok"}:
                    return process
        except OSError:
            time.sleep(0.3)
    process.kill()
    pytest.fail("the server did not answer /health within 300 s")


def stop(process: subprocess.Popen) -> tuple[int, str, str]:
    """Ctrl+C, as a person stops it: (exit code, stdout, stderr)."""
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


def post_image(base: str, body: bytes, query: str = "") -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/predict{query}", data=body, headers={"Content-Type": "image/png"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    process = start_server(port, "--backend", "torch")
    yield f"http://127.0.0.1:{port}"
    stop(process)


def test_a_real_server_answers_over_http_and_stops_cleanly():
    port = free_port()
    process = start_server(port)  # the default backend, as `onestage predict` picks it
    base = f"http://127.0.0.1:{port}"
    png = encode(scene(tuple(SEED_CLASS_NAMES), index=5))

    status, body = post_image(base, png)
    assert status == 200 and len(body["detections"]) >= 3
    assert body["backend"] == "onnxruntime"
    status, refused = post_image(base, b"not an image")
    assert status == 415 and "not a readable image" in refused["detail"]
    assert post_image(base, png)[0] == 200  # still serving
    with urllib.request.urlopen(f"{base}/docs", timeout=10) as docs:
        assert docs.status == 200

    code, stdout, stderr = stop(process)
    assert code == 0, stderr
    assert f"serving on http://127.0.0.1:{port}" in stdout
    assert "Traceback" not in stderr
    assert stderr.count("-> 415") == 1


def test_a_port_in_use_is_a_one_line_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "onestage", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in (
        done.stderr
    )


def test_a_real_server_refuses_foreign_hosts_and_pixel_bombs(server):
    port = server.rsplit(":", 1)[1]
    for host, status in (
        (f"localhost:{port}", 200),
        (f"[::1]:{port}", 200),
        ("attacker.example", 400),
        (f"attacker.example:{port}", 400),
    ):
        request = urllib.request.Request(f"{server}/health", headers={"Host": host})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                assert (host, reply.status) == (host, status)
        except urllib.error.HTTPError as error:
            assert (host, error.code) == (host, status)
            assert "not allowed" in json.load(error)["detail"]
    status, refused = post_image(server, bomb_png(8000))  # 64M pixels: over the serving limit
    assert status == 413 and "over the limit of 16,777,216" in refused["detail"]


def test_the_page_in_a_real_browser(server, tmp_path):
    if CHROMIUM is None:
        pytest.fail("no chromium on PATH: `make test` installs Debian's (apt-get install chromium)")
    first, second = tmp_path / "first.png", tmp_path / "second.png"
    first.write_bytes(encode(scene(tuple(SEED_CLASS_NAMES), index=7)))
    second.write_bytes(encode(scene(tuple(SEED_CLASS_NAMES), index=8, size=480)))
    status, expected = post_image(server, first.read_bytes(), "?conf=0.25")
    assert status == 200 and expected["detections"]
    # Playwright's asyncio API: its sync API runs on greenlets, which crashed this test process
    # later, in unrelated tests.
    asyncio.run(_drive_the_page(server, first, second, expected["detections"], tmp_path))
    assert (tmp_path / "page.png").stat().st_size > 10_000


async def _drive_the_page(
    server: str, first: Path, second: Path, expected: list[dict], folder: Path
) -> None:
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 760})
        await page.goto(server)
        await expect(page.locator("#model")).to_contain_text("csp-n")
        await page.set_input_files("#file", str(first))
        rows = page.locator("#detections tbody tr")
        await expect(rows).to_have_count(len(expected), timeout=60_000)
        await page.wait_for_function("document.getElementById('canvas').dataset.drawnBoxes !== '0'")
        table = await page.eval_on_selector_all(
            "#detections tbody tr",
            "rows => rows.map(r => ({name: r.dataset.className, score: Number(r.dataset.score),"
            " box: r.dataset.box.split(',').map(Number)}))",
        )
        for shown, answered in zip(table, expected, strict=True):
            assert shown["name"] == answered["class_name"]
            assert shown["score"] == pytest.approx(answered["score"], abs=1e-4)
            assert shown["box"] == pytest.approx(answered["box_xyxy"], abs=0.05)
        await expect(page.locator("#latency")).to_contain_text("forward")
        await page.screenshot(path=str(folder / "page.png"), full_page=True)

        scores = sorted(d["score"] for d in expected)
        threshold = math.ceil(scores[0] * 100 + 1e-6) / 100  # above the lowest score
        await page.fill("#conf", f"{threshold:.2f}")
        kept = sum(score >= threshold for score in scores)
        await expect(rows).to_have_count(kept)
        assert kept < len(scores)
        assert await page.locator("#canvas").get_attribute("data-drawn-boxes") == str(kept)

        await page.set_input_files("#file", str(second))
        await expect(page.locator("#history button")).to_have_count(2, timeout=60_000)
        await expect(page.locator("#status")).to_contain_text("second.png: done")
        await browser.close()
