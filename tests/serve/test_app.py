"""`onestage serve`'s application in process: every endpoint, every bad input, concurrency."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import httpx2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from helpers import SERVE_BODY_LIMIT, bomb_png, encode, scene
from onestage.engine.predictor import Detector, PredictOptions
from onestage.serve.app import create_app
from onestage.serve.runners import BatchingRunner, ThreadedRunner, make_runner


@pytest.fixture
def client(detector: Detector):
    with TestClient(
        create_app(detector, BatchingRunner(detector), SERVE_BODY_LIMIT)
    ) as test_client:
        yield test_client


def test_health_and_model_card(client, detector):
    assert client.get("/health").json() == {"status": "ok"}
    card = client.get("/model").json()
    assert card["class_names"] == list(detector.class_names)
    assert card["input_size"] == 320 and card["architecture"] == "csp-n"
    assert card["backend"] == "torch" and card["parameters"] > 1_000_000
    assert "train/loss" in card["metrics"]


def test_predict_answers_what_the_detector_finds(client, detector, png):
    answer = client.post("/predict", files={"file": ("scene.png", png, "image/png")})
    assert answer.status_code == 200
    body = answer.json()
    expected = detector.predict(scene(detector.class_names, index=3))

    assert body["image"] == {"name": "scene.png", "width": 320, "height": 320}
    assert len(body["detections"]) == len(expected) >= 3
    for mine, theirs in zip(body["detections"], expected, strict=True):
        assert mine["class_name"] == theirs.class_name == detector.class_names[mine["class_id"]]
        assert mine["score"] == pytest.approx(theirs.score, abs=1e-4)
        np.testing.assert_allclose(mine["box_xyxy"], theirs.box_xyxy, atol=0.01)
    assert set(body["timings_ms"]) == {"decode", "forward", "postprocess", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["forward"] > 0


def test_raw_body_multipart_and_query_options(client, png):
    multipart = client.post("/predict", files={"file": ("a.png", png, "image/png")}).json()
    raw = client.post("/predict", content=png, headers={"content-type": "image/png"}).json()
    assert raw["detections"] == multipart["detections"] and raw["image"]["name"] == "body"

    best = client.post("/predict?max_det=1", content=png).json()["detections"]
    assert best == multipart["detections"][:1]
    lowest = min(d["score"] for d in multipart["detections"])
    strict = client.post(f"/predict?conf={lowest + 1e-3}", content=png).json()["detections"]
    assert len(strict) == len(multipart["detections"]) - 1


def test_the_iou_query_reaches_nms(client, png, nms_thresholds):
    for iou in (0.3, 0.9):
        assert client.post(f"/predict?iou={iou}", content=png).status_code == 200
    # the runner's warm-up batch (default options) may come first, and runs before any request
    assert nms_thresholds[-2:] == [0.3, 0.9]


def test_draw_answers_the_annotated_image(client, detector, png):
    answer = client.post("/predict?draw=true", content=png)
    assert answer.headers["content-type"] == "image/png"
    drawn = np.asarray(Image.open(__import__("io").BytesIO(answer.content)).convert("RGB"))
    original = scene(detector.class_names, index=3)
    assert drawn.shape == original.shape and (drawn != original).any(axis=2).mean() > 0.01


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"", 400, "empty request"),
        (b"this is no image\n", 415, "not a readable image"),
        ("truncated", 400, "corrupt or truncated"),
        ("bomb", 413, "pixel limit"),
        (b"x" * (SERVE_BODY_LIMIT + 1), 413, "over the limit of 2 MB"),
    ],
)
def test_bad_bodies_are_json_errors_and_the_server_keeps_serving(
    client, png, body, status, fragment, caplog
):
    payload = {"truncated": png[: len(png) // 2], "bomb": bomb_png()}.get(body, body)
    answer = client.post("/predict", content=payload)
    assert answer.status_code == status
    assert fragment in answer.json()["detail"] and "Traceback" not in answer.text
    logged = [r.getMessage() for r in caplog.records if r.name == "onestage.serve"]
    assert len(logged) == 1 and f"-> {status}" in logged[0]
    assert client.post("/predict", content=png).status_code == 200


def test_bad_multipart_forms_and_queries(client, png):
    no_file = client.post("/predict", files={"note": (None, "hello")})
    assert no_file.status_code == 400
    broken = client.post(
        "/predict",
        content=b'--xyz\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc',
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert broken.status_code in (400, 415) and "detail" in broken.json()
    assert client.post("/predict?conf=3", content=png).status_code == 422
    large = client.post(
        "/predict", content=png, headers={"content-length": str(SERVE_BODY_LIMIT + 10)}
    )
    assert large.status_code == 413


def test_an_unexpected_failure_is_a_generic_500_with_a_request_id(detector, png, caplog):
    class Broken:
        async def detect(self, image, options):
            raise RuntimeError("the runtime fell over at /srv/secret/path\nsecond line")

        def close(self) -> None:
            pass

    with TestClient(
        create_app(detector, Broken(), SERVE_BODY_LIMIT), raise_server_exceptions=False
    ) as c:
        answer = c.post("/predict", content=png)
        assert answer.status_code == 500
        request_id = answer.headers["x-request-id"]
        assert answer.json() == {"detail": "internal error", "request_id": request_id}
        assert "fell over" not in answer.text and "secret" not in answer.text
        assert c.get("/health").status_code == 200
        assert c.post("/predict", content=png).headers["x-request-id"] != request_id
    logged = [r.getMessage() for r in caplog.records if "-> 500" in r.getMessage()]
    assert len(logged) == 2 and request_id in logged[0]
    assert logged[0].endswith("RuntimeError: the runtime fell over at /srv/secret/path")


class CountingDetector:
    """A detector wrapper that counts its `detect` calls and the images per call."""

    def __init__(self, detector: Detector, delay: float = 0.0) -> None:
        self.inner, self.delay, self.batches = detector, delay, []
        self.class_names, self.metadata = detector.class_names, detector.metadata
        self.model, self.input_size = detector.model, detector.input_size
        self.runtime_description = detector.runtime_description

    def detect(self, images, options=None, timing=None):
        self.batches.append(len(images))
        time.sleep(self.delay)
        return self.inner.detect(images, options, timing)


async def _concurrent_predictions(app, bodies: list[bytes]) -> list[httpx2.Response]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
        return await asyncio.gather(*(http.post("/predict", content=b) for b in bodies))


@pytest.mark.parametrize("mode", ["batch", "threads"])
def test_concurrent_requests_get_their_own_detections(detector, mode):
    images = [scene(detector.class_names, index=index) for index in range(6)]
    counting = CountingDetector(detector, delay=0.05)
    runner = make_runner(counting, mode, workers=2)
    answers = asyncio.run(
        _concurrent_predictions(
            create_app(counting, runner, SERVE_BODY_LIMIT), [encode(i) for i in images]
        )
    )
    runner.close()

    for image, answer in zip(images, answers, strict=True):
        expected = detector.detect([image])[0]
        assert answer.status_code == 200
        scores = [d["score"] for d in answer.json()["detections"]]
        np.testing.assert_allclose(scores, expected.scores, atol=1e-4)
    if mode == "batch":  # a blank batch at start, then requests that waited went together
        warm_up, *batches = counting.batches
        assert warm_up == runner.max_batch and sum(batches) == len(images) and max(batches) > 1
    else:
        assert counting.batches == [1] * len(images)


def test_uploads_are_decoded_on_a_few_dedicated_threads(detector, monkeypatch):
    """Each thread that allocates gets a malloc arena of its own: decoding on the event loop's
    pool of up to 40 threads grew the server's memory under load."""
    import onestage.serve.app as app_module

    threads: list[str] = []
    decode = app_module.decode_upload

    def recording_decode(*args):
        threads.append(threading.current_thread().name)
        time.sleep(0.02)  # so that the uploads overlap
        return decode(*args)

    monkeypatch.setattr(app_module, "decode_upload", recording_decode)
    runner = BatchingRunner(detector)
    bodies = [encode(scene(detector.class_names, index=index)) for index in range(12)]
    answers = asyncio.run(
        _concurrent_predictions(create_app(detector, runner, SERVE_BODY_LIMIT), bodies)
    )
    runner.close()

    assert [answer.status_code for answer in answers] == [200] * len(bodies)
    assert len(threads) == len(bodies)
    assert all(name.startswith("onestage-image") for name in threads)
    assert len(set(threads)) <= os.cpu_count()


def test_inference_does_not_block_the_event_loop(detector, png):
    slow = CountingDetector(detector, delay=1.0)
    app = create_app(slow, BatchingRunner(slow), SERVE_BODY_LIMIT)

    async def scenario() -> tuple[float, float]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http:
            began = time.perf_counter()
            prediction = asyncio.create_task(http.post("/predict", content=png))
            await asyncio.sleep(0.2)
            assert (await http.get("/health")).status_code == 200
            health_done = time.perf_counter() - began
            assert (await prediction).status_code == 200
            return health_done, time.perf_counter() - began

    health_done, prediction_done = asyncio.run(scenario())
    assert health_done < 0.9 < prediction_done


def test_batching_runner_groups_only_equal_options(detector):
    counting = CountingDetector(detector, delay=0.2)
    runner = BatchingRunner(counting)
    image = scene(detector.class_names, index=1)
    assert runner.warmed_up.wait(timeout=30)

    async def burst() -> list:
        first = asyncio.create_task(runner.detect(image, PredictOptions()))
        await asyncio.sleep(0.05)  # the first is computing; these wait together
        rest = [runner.detect(image, PredictOptions(conf=conf)) for conf in (0.25, 0.5, 0.25, 0.5)]
        return [await first, *await asyncio.gather(*rest)]

    results = asyncio.run(burst())
    runner.close()
    assert counting.batches == [runner.max_batch, 1, 2, 2]  # the blank batch first
    assert len(results[2][0].scores) <= len(results[1][0].scores)


def test_threaded_runner_bounds_the_threads_at_work(detector):
    counting = CountingDetector(detector, delay=0.1)
    active, most = [0], [0]
    lock = threading.Lock()
    original = counting.detect

    def tracked(images, options=None, timing=None):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            return original(images, options, timing)
        finally:
            with lock:
                active[0] -= 1

    counting.detect = tracked
    runner = ThreadedRunner(counting, workers=2)
    image = scene(detector.class_names, index=2)

    async def burst() -> None:
        await asyncio.gather(*(runner.detect(image, PredictOptions()) for _ in range(6)))

    asyncio.run(burst())
    assert most[0] == 2


def test_a_failing_warm_up_leaves_the_batching_runner_answering(detector):
    class Failing:
        input_size = detector.input_size

        def detect(self, images, options=None, timing=None):
            raise RuntimeError("the runtime fell over")

    runner = BatchingRunner(Failing())
    assert runner.warmed_up.wait(timeout=30)

    async def one_request() -> None:
        image = scene(detector.class_names, index=3)
        await asyncio.wait_for(runner.detect(image, PredictOptions()), timeout=30)

    with pytest.raises(RuntimeError, match="fell over"):
        asyncio.run(one_request())
    runner.close()
