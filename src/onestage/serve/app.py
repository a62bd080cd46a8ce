"""The FastAPI application of `onestage serve`: health, model card, predictions, the page.

Neither inference nor image work runs on the event loop: decoding an upload and drawing and
encoding an annotated image go to a few dedicated threads (one per core), detection to the
runner (`onestage.serve.runners`). Before a request reaches them, a foreign Host header is
refused (`onestage.serve.hosts`) and so is a prediction past the queue (`onestage.serve.
admission`). Every refusal is a JSON `{"detail": ...}` with its status
(`onestage.serve.uploads`); anything unexpected is a 500 with a generic detail and a request id,
the error itself only in the server's log line with that id. Either way the server logs one line
and keeps serving; the client never sees a traceback.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from onestage.detections import ImageDetections
from onestage.drawing import draw_boxes
from onestage.engine.predictor import Detector
from onestage.errors import first_line
from onestage.predict_options import PREDICTION, PredictOptions
from onestage.serve.admission import QueueLimit
from onestage.serve.hosts import HostCheck
from onestage.serve.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_QUEUE, DEFAULT_READ_TIMEOUT_S
from onestage.serve.runners import Runner
from onestage.serve.uploads import UploadError, decode_upload, read_upload

STATIC_DIR = Path(__file__).parent / "static"
log = logging.getLogger("onestage.serve")

# /docs: the two ways to send an image.
PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def create_app(
    detector: Detector,
    runner: Runner,
    max_upload_bytes: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    allowed_hosts: Sequence[str] | None = None,
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
) -> FastAPI:
    """The application serving `detector` through `runner`. Request bodies over
    `max_upload_bytes` and images over `max_pixels` are refused with 413, bodies not received
    within `read_timeout_s` seconds with 408, predictions past
    `max_queue` in flight with 503, Host headers other than `allowed_hosts` (names or `*.domain`
    patterns, ports aside) with 400; None allows any host (`onestage serve` derives the names
    from --host: `onestage.serve.hosts.allowed_hosts_for`)."""

    # A few long-lived image threads: each thread that allocates gets its own malloc arena;
    # decoding on the event loop's default pool (up to 40 threads) grew the server by about
    # 15 MB more under load (BENCHMARKS.md, serving under load).
    images = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="onestage-image")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runner.close()
        images.shutdown()

    app = FastAPI(
        title="onestage",
        summary="One-stage object detection over HTTP.",
        version="1",
        lifespan=lifespan,
    )
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    model_card = _model_card(detector)

    @app.exception_handler(UploadError)
    async def refused(request: Request, error: UploadError) -> JSONResponse:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, error.status, error)
        return JSONResponse({"detail": str(error)}, status_code=error.status)

    @app.middleware("http")
    async def contain_failures(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """An unexpected error becomes a 500 with a generic detail and a request id, and one
        log line with that id and the error (Starlette's own handler would log a traceback)."""
        try:
            return await call_next(request)
        except Exception as error:
            request_id = uuid.uuid4().hex
            log.error(
                "%s %s -> 500 [request %s]: %s",
                request.method,
                request.url.path,
                request_id,
                first_line(error),
            )
            return JSONResponse(
                {"detail": "internal error", "request_id": request_id},
                status_code=500,
                headers={"X-Request-ID": request_id},
            )

    # Middleware added last runs first: a foreign Host is refused before anything else, then a
    # prediction past the queue, both before contain_failures.
    app.add_middleware(QueueLimit, max_queue=max_queue, paths=("/predict",))
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed_hosts=allowed_hosts)

    async def decoded_upload(request: Request) -> tuple[str, np.ndarray]:
        """The request's (name, image), decoded on an image thread. The encoded bytes are
        not kept while the image waits for inference."""
        name, data = await read_upload(request, max_upload_bytes, read_timeout_s)
        loop = asyncio.get_running_loop()
        return name, await loop.run_in_executor(images, decode_upload, name, data, max_pixels)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Whether the server is up."""
        return {"status": "ok"}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        """Class names, input size, backend, architecture and the metrics stored with the
        weights."""
        return model_card

    @app.post("/predict", openapi_extra=PREDICT_BODY)
    async def predict(
        request: Request,
        conf: Annotated[
            float, Query(ge=0.0, le=1.0, description="Score threshold.")
        ] = PREDICTION.conf,
        iou: Annotated[
            float, Query(gt=0.0, le=1.0, description="NMS IoU threshold.")
        ] = PREDICTION.iou,
        max_det: Annotated[
            int, Query(ge=1, le=1000, description="Detections kept.")
        ] = PREDICTION.max_det,
        draw: Annotated[bool, Query(description="Answer the annotated image (PNG).")] = False,
    ) -> Any:
        """Detect objects in an image sent as a multipart file (field `file`) or as the raw
        body. Answers pixel xyxy boxes, scores and classes, the image size and timings in ms
        (with `draw=true`: the image with its boxes drawn, PNG)."""
        began = time.perf_counter()
        name, image = await decoded_upload(request)
        decoded = time.perf_counter()
        options = PredictOptions(conf=conf, iou=iou, max_det=max_det)
        found, timing = await runner.detect(image, options)
        if draw:
            png = await asyncio.get_running_loop().run_in_executor(
                images, _annotated_png, image, found, detector.class_names
            )
            return Response(png, media_type="image/png")
        detections = [
            {
                "box_xyxy": [round(float(v), 2) for v in box],
                "score": round(float(score), 5),
                "class_id": int(class_id),
                "class_name": detector.class_names[int(class_id)],
            }
            for box, score, class_id in zip(
                found.boxes_xyxy, found.scores, found.class_ids, strict=True
            )
        ]
        milliseconds = {
            "decode": decoded - began,
            "forward": timing["forward"],
            "postprocess": timing["postprocess"],
            "total": time.perf_counter() - began,
        }
        return {
            "image": {"name": name, "width": image.shape[1], "height": image.shape[0]},
            "detections": detections,
            "timings_ms": {key: round(value * 1e3, 3) for key, value in milliseconds.items()},
            "backend": detector.runtime_description,
        }

    return app


def _annotated_png(image: np.ndarray, found: ImageDetections, class_names: Sequence[str]) -> bytes:
    """`image` with the boxes of `found` drawn and labelled, encoded as PNG."""
    picture = draw_boxes(image, found.boxes_xyxy, found.class_ids, class_names, found.scores)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def _model_card(detector: Detector) -> dict[str, Any]:
    metadata = detector.metadata
    parameters = metadata.get("parameters")  # exported files carry it; weights: counted
    if parameters is None and detector.model is not None:
        parameters = sum(tensor.numel() for tensor in detector.model.parameters())
    return {
        "architecture": metadata.get("model"),
        "class_names": list(detector.class_names),
        "input_size": detector.input_size,
        "backend": detector.runtime_description,
        "parameters": parameters,
        "training_images": metadata.get("training_images"),
        "metrics": metadata.get("metrics", {}),
    }
