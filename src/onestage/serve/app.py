"""The FastAPI application of `onestage serve`: health, model card, predictions, the page.

Inference never runs on the event loop: decoding goes to one of a few dedicated threads (one
per core) and detection to the runner (`onestage.serve.runners`). Every refusal is a JSON
`{"detail": ...}` with its status (`onestage.serve.uploads`); anything unexpected is a 500 with
a one-line detail. Either way the server logs one line and keeps serving; the client never sees
a traceback.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from onestage.data.images import DEFAULT_MAX_PIXELS
from onestage.drawing import draw_boxes
from onestage.engine.predictor import Detector
from onestage.errors import first_line
from onestage.postprocess import PredictOptions
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
) -> FastAPI:
    """The application serving `detector` through `runner`; request bodies over
    `max_upload_bytes` and images over `max_pixels` are refused with 413."""

    # A few long-lived decoding threads: each thread that allocates gets its own malloc arena;
    # decoding on the event loop's default pool (up to 40 threads) grew the server by about
    # 15 MB more under load (BENCHMARKS.md, serving under load).
    decoder = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="onestage-decode")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runner.close()
        decoder.shutdown()

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
        """An unexpected error becomes a 500 and one log line (Starlette's own handler would
        log a traceback)."""
        try:
            return await call_next(request)
        except Exception as error:
            log.error("%s %s -> 500: %s", request.method, request.url.path, first_line(error))
            detail = f"internal error ({first_line(error)})"
            return JSONResponse({"detail": detail}, status_code=500)

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
        conf: Annotated[float, Query(ge=0.0, le=1.0, description="Score threshold.")] = 0.25,
        iou: Annotated[float, Query(gt=0.0, le=1.0, description="NMS IoU threshold.")] = 0.5,
        max_det: Annotated[int, Query(ge=1, le=1000, description="Detections kept.")] = 100,
        draw: Annotated[bool, Query(description="Answer the annotated image (PNG).")] = False,
    ) -> Any:
        """Detect objects in an image sent as a multipart file (field `file`) or as the raw
        body. Answers pixel xyxy boxes, scores and classes, the image size and timings in ms
        (with `draw=true`: the image with its boxes drawn, PNG)."""
        began = time.perf_counter()
        name, data = await read_upload(request, max_upload_bytes)
        image = await asyncio.get_running_loop().run_in_executor(
            decoder, decode_upload, name, data, max_pixels
        )
        decoded = time.perf_counter()
        options = PredictOptions(conf=conf, iou=iou, max_det=max_det)
        found, timing = await runner.detect(image, options)
        if draw:
            picture = draw_boxes(
                image, found.boxes_xyxy, found.class_ids, detector.class_names, found.scores
            )
            buffer = io.BytesIO()
            picture.save(buffer, "PNG")
            return Response(buffer.getvalue(), media_type="image/png")
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
