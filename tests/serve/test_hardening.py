"""`onestage serve` against hostile requests: pixel bombs, floods past the queue, slow drawing,
foreign Host headers (DNS rebinding), formats that would run Ghostscript; and the command's
options that set those limits."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import statistics
import threading
import time

import httpx2
import pytest
from fastapi.testclient import TestClient
from PIL import EpsImagePlugin, Image, ImageFile

import onestage.data.images
import onestage.engine.predictor
from helpers import SERVE_BODY_LIMIT, bomb_png, encode, free_port, run_in_process
from onestage.engine.predictor import Detector
from onestage.serve.admission import QueueLimit
from onestage.serve.app import create_app
from onestage.serve.hosts import allowed_hosts_for
from onestage.serve.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_QUEUE
from onestage.serve.runners import ThreadedRunner

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
POSTSCRIPT = b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\n%%Pages: 1\n%%EndComments\nshowpage\n"
PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def app_for(detector: Detector, **limits):
    """An app on a one-thread runner (nothing to close), with `limits` passed to create_app."""
    return create_app(detector, ThreadedRunner(detector, workers=1), SERVE_BODY_LIMIT, **limits)


def test_the_serving_pixel_limit_is_4096_squared_below_the_librarys():
    assert DEFAULT_MAX_PIXELS == 4096 * 4096 < onestage.data.images.DEFAULT_MAX_PIXELS


def test_a_pixel_bomb_under_the_byte_limit_is_413_before_decoding(detector, png, monkeypatch):
    loads: list[str] = []
    load = ImageFile.ImageFile.load

    def recording_load(image):
        loads.append(f"{image.format} {image.size}")
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    bomb = bomb_png(8000)  # 64M pixels: within the library's limit, over the server's
    assert len(bomb) < 200
    with TestClient(app_for(detector)) as client:
        answer = client.post("/predict", files={"file": ("bomb.png", bomb, "image/png")})
        assert answer.status_code == 413
        assert (
            "8000x8000 = 64,000,000 pixels, over the limit of 16,777,216" in answer.json()["detail"]
        )
        assert loads == []  # refused from the header
        assert client.post("/predict", content=png).status_code == 200
        assert set(loads) == {"PNG (320, 320)"}  # the control: a decode is seen


def test_max_pixels_is_the_apps_limit(detector):
    side = 100
    with TestClient(app_for(detector, max_pixels=side * side)) as client:
        image = Image.new("RGB", (side, side), (90, 140, 60))
        assert client.post("/predict", content=encode(image)).status_code == 200
        larger = Image.new("RGB", (side, side + 1), (90, 140, 60))
        assert client.post("/predict", content=encode(larger)).status_code == 413


class HeldRunner:
    """A runner whose requests wait for `release` before computing: requests in flight that
    stay there until the test lets them go."""

    def __init__(self, detector: Detector) -> None:
        self.inner = ThreadedRunner(detector, workers=1)
        self.waiting = 0
        self.release: asyncio.Event | None = None  # made in the event loop

    async def detect(self, image, options):
        self.release = self.release or asyncio.Event()
        self.waiting += 1
        await self.release.wait()
        return await self.inner.detect(image, options)

    def close(self) -> None:
        pass


async def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


def test_past_max_queue_a_request_gets_503_at_once_without_its_body_read(detector, png):
    held = HeldRunner(detector)
    app = create_app(detector, held, SERVE_BODY_LIMIT, max_queue=2)
    body_read = []

    async def streamed_body():
        body_read.append(True)
        yield png

    async def scenario():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            first = [asyncio.create_task(http.post("/predict", content=png)) for _ in range(2)]
            await _until(lambda: held.waiting == 2)
            began = time.perf_counter()
            refused = await http.post("/predict", content=streamed_body())
            refused_after = time.perf_counter() - began
            health = await http.get("/health")
            held.release.set()
            answered = await asyncio.gather(*first)
            again = await http.post("/predict", content=png)
            return refused, refused_after, health, answered, again

    refused, refused_after, health, answered, again = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "detail": "server busy: 2 requests in flight (--max-queue); retry in 1 s"
    }
    assert body_read == [] and refused_after < 1.0
    assert health.status_code == 200  # only predictions are counted
    assert [a.status_code for a in answered] == [200, 200] and again.status_code == 200
    assert held.waiting == 3


def test_a_body_that_does_not_arrive_in_time_is_408_and_frees_its_place(detector, png):
    """A slow client (its body stalls after the first bytes) is answered 408 once the read
    timeout passes, and the queue place it held serves the next request."""
    app = app_for(detector, max_queue=1, read_timeout_s=0.3)
    stalled = asyncio.Event()

    async def stalling_body():
        yield png[:100]
        await stalled.wait()  # never set: the rest never comes
        yield png[100:]

    async def scenario():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            began = time.perf_counter()
            slow = await http.post("/predict", content=stalling_body())
            waited = time.perf_counter() - began
            return slow, waited, await http.post("/predict", content=png)

    slow, waited, after = asyncio.run(asyncio.wait_for(scenario(), 10))  # without it: forever
    assert slow.status_code == 408 and 0.3 <= waited < 5.0
    assert slow.json() == {"detail": "request body not received within 0.3 s (--read-timeout)"}
    assert after.status_code == 200


def test_a_place_is_free_once_the_answer_is_sent_not_when_its_task_ends():
    """Over a keep-alive connection the client sends its next request as soon as it has the
    answer, maybe before the server's task for the last one has wound down."""
    winding_down = asyncio.Event()

    async def answer_then_linger(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        await winding_down.wait()

    limit = QueueLimit(answer_then_linger, max_queue=1, paths=("/predict",))
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def scenario() -> list[list[dict]]:
        answers: list[list[dict]] = [[], []]
        tasks = []
        for messages in answers:

            async def send(message, messages=messages):
                messages.append(message)

            tasks.append(asyncio.create_task(limit(dict(scope), receive, send)))
            await _until(lambda messages=messages: len(messages) == 2)
        winding_down.set()
        await asyncio.gather(*tasks)
        return answers

    answers = asyncio.run(scenario())
    assert [messages[0]["status"] for messages in answers] == [200, 200]
    assert limit.in_flight == 0


def test_refused_and_failed_requests_give_their_place_back(detector, png):
    class FailingOnce:
        def __init__(self) -> None:
            self.inner, self.failed = ThreadedRunner(detector, workers=1), False

        async def detect(self, image, options):
            if not self.failed:
                self.failed = True
                raise RuntimeError("boom")
            return await self.inner.detect(image, options)

        def close(self) -> None:
            pass

    app = create_app(detector, FailingOnce(), SERVE_BODY_LIMIT, max_queue=1)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/predict", content=png).status_code == 500
        assert client.post("/predict", content=bomb_png()).status_code == 413
        assert client.post("/predict", content=b"no image").status_code == 415
        assert client.post("/predict", content=b"x" * (SERVE_BODY_LIMIT + 1)).status_code == 413
        assert client.post("/predict", content=png).status_code == 200


def test_drawing_and_png_encoding_run_off_the_event_loop(detector, png, monkeypatch):
    import onestage.serve.app as app_module

    started, release = threading.Event(), threading.Event()
    released: list[bool] = []
    draw = app_module.draw_boxes

    def slow_draw(*args, **kwargs):
        """Draws once the test lets it (or after 3 s): slow, for as long as the test needs."""
        started.set()
        released.append(release.wait(timeout=3.0))
        return draw(*args, **kwargs)

    monkeypatch.setattr(app_module, "draw_boxes", slow_draw)
    app = app_for(detector)

    async def scenario():
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:

            async def health_seconds() -> float:
                began = time.perf_counter()
                assert (await http.get("/health")).status_code == 200
                return time.perf_counter() - began

            await health_seconds()  # the first request builds the middleware stack
            quiet = [await health_seconds() for _ in range(7)]
            drawing = asyncio.create_task(http.post("/predict?draw=true", content=png))
            await _until(started.is_set)
            busy = [await health_seconds() for _ in range(7)]
            release.set()
            return quiet, busy, await drawing

    quiet, busy, answer = asyncio.run(scenario())
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert released == [True], "the drawing ended before /health answered: on the event loop"
    assert statistics.median(busy) < 5 * statistics.median(quiet), (quiet, busy)
    assert max(busy) < 0.1, busy


@pytest.mark.parametrize(
    ("bind", "extra", "expected"),
    [
        ("127.0.0.1", (), ["127.0.0.1", "localhost", "[::1]"]),
        ("localhost", (), ["127.0.0.1", "localhost", "[::1]"]),
        ("::1", (), ["127.0.0.1", "localhost", "[::1]"]),
        ("127.0.0.1", ("Proxy.Example",), ["127.0.0.1", "localhost", "[::1]", "proxy.example"]),
        ("192.168.1.20", (), ["192.168.1.20"]),
        ("fe80::1", ("*.lan",), ["[fe80::1]", "*.lan"]),
        ("0.0.0.0", (), None),
        ("::", (), None),
        ("0.0.0.0", ("detector.example",), ["127.0.0.1", "localhost", "[::1]", "detector.example"]),
    ],
)
def test_allowed_hosts_follow_the_listening_address(bind, extra, expected):
    assert allowed_hosts_for(bind, extra) == expected


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("127.0.0.1:8000", 200),
        ("localhost", 200),
        ("LOCALHOST:1234", 200),
        ("[::1]:8000", 200),
        ("proxy.example", 200),
        ("attacker.example", 400),
        ("127.0.0.1.attacker.example", 400),
        ("localhost.", 400),
        ("[::2]", 400),
        ("not a host", 400),
    ],
)
def test_a_foreign_host_header_is_a_json_400(detector, host, status, caplog):
    app = app_for(detector, allowed_hosts=allowed_hosts_for("127.0.0.1", ["proxy.example"]))
    with TestClient(app) as client:
        answer = client.get("/health", headers={"host": host})
        assert answer.status_code == status
        if status == 400:
            detail = f"Host {host!r} not allowed (onestage serve --allowed-host NAME allows it)"
            assert answer.json() == {"detail": detail}
            assert any("-> 400: Host" in r.getMessage() for r in caplog.records)


def test_postscript_and_pdf_uploads_are_415_and_never_reach_ghostscript(
    detector, tmp_path, monkeypatch
):
    marker = tmp_path / "ghostscript-ran"
    stub = tmp_path / "bin" / "gs"
    stub.parent.mkdir()
    stub.write_text(f"#!/bin/sh\necho \"$@\" >> '{marker}'\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # looked up again, on PATH

    with TestClient(app_for(detector)) as client:
        for name, body in (("figure.eps", EPS), ("page.ps", POSTSCRIPT), ("doc.pdf", PDF)):
            multipart = client.post("/predict", files={"file": (name, body, "application/pdf")})
            raw = client.post("/predict", content=body)
            for answer in (multipart, raw):
                assert answer.status_code == 415, (name, answer.text)
                assert "not a readable image" in answer.json()["detail"]
    assert not marker.exists()

    with contextlib.suppress(Exception):  # control: Pillow's own EPS plugin runs the stub
        Image.open(io.BytesIO(EPS)).load()
    assert marker.exists()


def test_serve_options_set_the_apps_limits_and_hosts(detector, monkeypatch, capsys):
    import uvicorn

    served: dict = {}
    monkeypatch.setattr(onestage.engine.predictor, "open_detector", lambda *_: detector)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    port = str(free_port())
    options = ("--max-pixels", "10000", "--max-queue", "3", "--allowed-host", "proxy.example")
    done = run_in_process(monkeypatch, capsys, "serve", "--port", port, *options)
    assert done.returncode == 0, done.stderr
    assert "limits: 20 MB a body, 10,000 pixels an image, 3 predictions in flight; " in done.stdout
    assert "Host: 127.0.0.1, localhost, [::1], proxy.example\n" in done.stdout

    app = served["app"]
    queue_limits = [m.kwargs for m in app.user_middleware if m.cls is QueueLimit]
    assert queue_limits == [{"max_queue": 3, "paths": ("/predict",)}]
    with TestClient(app, base_url="http://proxy.example") as client:
        assert client.get("/health", headers={"host": f"localhost:{port}"}).status_code == 200
        assert client.get("/health", headers={"host": "attacker.example"}).status_code == 400
        image = Image.new("RGB", (100, 100), (90, 140, 60))
        assert client.post("/predict", content=encode(image)).status_code == 200
        larger = Image.new("RGB", (100, 101), (90, 140, 60))
        assert client.post("/predict", content=encode(larger)).status_code == 413


def test_serve_help_names_the_limits_and_their_defaults(monkeypatch, capsys):
    shown = " ".join(run_in_process(monkeypatch, capsys, "serve", "--help").stdout.split())
    for option in (
        "--max-pixels",
        "--max-queue",
        "--allowed-host",
        "--max-upload-mb",
        "--read-timeout",
    ):
        assert option in shown
    assert "4096 x 4096" in shown and f"[default: {DEFAULT_MAX_PIXELS}]" in shown
    assert f"[default: {DEFAULT_MAX_QUEUE}]" in shown


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--max-pixels", "0"), "--max-pixels must be at least 1, got 0"),
        (("--max-queue", "-2"), "--max-queue must be at least 1, got -2"),
        (("--read-timeout", "0"), "--read-timeout must be positive, got 0.0"),
        (("--allowed-host", "proxy:8080"), "invalid host name 'proxy:8080'"),
        (("--allowed-host", "a*.example"), "invalid host name 'a*.example'"),
    ],
)
def test_bad_serve_limits_are_one_line_errors(options, message, monkeypatch, capsys):
    done = run_in_process(monkeypatch, capsys, "serve", "--port", str(free_port()), *options)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr
