"""Running one detector for many concurrent requests without blocking the event loop.

Two strategies (`onestage serve --concurrency`):

- `BatchingRunner` ("batch"): one inference thread; requests that arrive while it is busy wait
  and go through the next forward together (up to `max_batch` images with the same
  post-processing options), so a burst of clients costs one forward per batch. Before the
  first request it runs a blank batch of `max_batch` images, so that the runtime allocates
  the buffers of its largest batch at start, not during the first burst.
- `ThreadedRunner` ("threads"): every request runs `Detector.detect` on a worker thread, at
  most `workers` at once (the runtimes release the GIL while they compute).

Both answer `await runner.detect(image, options)` with the image's detections and the
seconds its forward and post-processing took (shared by the images of one batch).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import numpy as np

from onestage.detections import ImageDetections
from onestage.engine.predictor import Detector
from onestage.errors import OnestageError, first_line
from onestage.predict_options import PredictOptions

CONCURRENCY_MODES = ("batch", "threads")
Timings = dict[str, float]  # "forward" and "postprocess" seconds
log = logging.getLogger("onestage.serve")


class Runner(Protocol):
    """What the app needs from a strategy."""

    async def detect(
        self, image: np.ndarray, options: PredictOptions
    ) -> tuple[ImageDetections, Timings]: ...

    def close(self) -> None: ...


@dataclass
class _Job:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    options: PredictOptions
    future: Future = field(default_factory=Future)


class BatchingRunner:
    """One inference thread that batches the requests waiting for it (see the module doc)."""

    def __init__(self, detector: Detector, max_batch: int = 8) -> None:
        self.detector = detector
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.warmed_up = threading.Event()  # set once the blank batch has run
        self._thread = threading.Thread(target=self._work, name="onestage-inference", daemon=True)
        self._thread.start()

    async def detect(
        self, image: np.ndarray, options: PredictOptions
    ) -> tuple[ImageDetections, Timings]:
        """Detections for one (H, W, 3) uint8 RGB image, computed on the inference thread."""
        job = _Job(image, options)
        self._jobs.put(job)
        return await asyncio.wrap_future(job.future)

    def close(self) -> None:
        """Finish the queued requests and stop the inference thread."""
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        blank = np.zeros((self.detector.input_size, self.detector.input_size, 3), np.uint8)
        try:
            self.detector.detect([blank] * self.max_batch)
        except Exception as error:  # the thread lives on: requests meet the failure and answer it
            log.warning("warm-up batch failed: %s", first_line(error))
        finally:
            self.warmed_up.set()
        while (job := self._jobs.get()) is not None:
            waiting = [job]
            while len(waiting) < self.max_batch:
                try:
                    extra = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if extra is None:  # close(): run what was taken, then stop
                    self._jobs.put(None)
                    break
                waiting.append(extra)
            for options in dict.fromkeys(job.options for job in waiting):
                self._run([job for job in waiting if job.options == options], options)

    def _run(self, jobs: list[_Job], options: PredictOptions) -> None:
        timing: Timings = {}
        try:
            found = self.detector.detect([job.image for job in jobs], options, timing)
        except Exception as error:  # handed to the requests, which answer it
            for job in jobs:
                job.future.set_exception(error)
            return
        for job, detections in zip(jobs, found, strict=True):
            job.future.set_result((detections, timing))


class ThreadedRunner:
    """Each request on a worker thread, at most `workers` at once (see the module doc)."""

    def __init__(self, detector: Detector, workers: int) -> None:
        self.detector = detector
        self.workers = workers
        self._limiter: anyio.CapacityLimiter | None = None  # made in the event loop

    async def detect(
        self, image: np.ndarray, options: PredictOptions
    ) -> tuple[ImageDetections, Timings]:
        """Detections for one (H, W, 3) uint8 RGB image, computed on a worker thread."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.workers)
        return await anyio.to_thread.run_sync(self._detect, image, options, limiter=self._limiter)

    def close(self) -> None:
        """Nothing to stop: the worker threads belong to the event loop."""

    def _detect(
        self, image: np.ndarray, options: PredictOptions
    ) -> tuple[ImageDetections, Timings]:
        timing: Timings = {}
        (detections,) = self.detector.detect([image], options, timing)
        return detections, timing


def make_runner(detector: Detector, mode: str, workers: int) -> Runner:
    """The runner of `mode` ("batch": batches of up to 8; "threads": `workers` threads)."""
    if mode == "batch":
        return BatchingRunner(detector)
    if mode == "threads":
        return ThreadedRunner(detector, workers)
    raise OnestageError(f"unknown concurrency {mode!r}; valid: {', '.join(CONCURRENCY_MODES)}")
