"""Load on `onestage serve`: concurrent clients over loopback against a server started here.

Usage:
  python benchmarks/serve_load.py [--weights animals] [--clients 8] [--requests 250]
                                  [--concurrency batch threads] [--record]

For each concurrency mode, starts `onestage serve` (the default backend of `onestage predict`)
on a free loopback port, sends `--clients` keep-alive clients x `--requests` POST /predict of
320x320 PNG images (8 different synthetic scenes) at once, and reports errors, requests/s, p50
and p99 latency, and the server's resident memory before and after the load (after --warmup
requests, default 20; also sampled every 0.5 s during it). In the same run, and first, the
backend's own batch-1 `Detector.predict` throughput on the same decoded images in this process
(the ceiling a server of one model approaches).
Bounded: at most --requests per client and --timeout seconds per mode. Prints a Markdown table;
--record appends it to BENCHMARKS.md with the machine.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import numpy as np

from bench_common import RssSampler, command_line, report, rss_mb, run_together
from onestage.engine.device import machine_description
from onestage.engine.evaluator import synthetic_eval_set
from onestage.engine.predictor import open_detector

SCENES = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="animals")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=250, help="per client")
    parser.add_argument("--concurrency", nargs="*", default=["batch", "threads"])
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mode, at most")
    parser.add_argument("--warmup", type=int, default=20, help="requests before the load")
    parser.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = parser.parse_args()

    detector = open_detector(args.weights, "cpu")
    images = [
        synthetic_eval_set(detector.class_names, 1, seed=seed).load_image(0)
        for seed in range(SCENES)
    ]
    bodies = [png_bytes(image) for image in images]
    ceiling = predict_throughput(detector, images)
    backend = detector.runtime_description
    del detector

    lines = [
        "| concurrency | errors | requests/s | x Detector.predict | p50 ms | p99 ms | p99 / p50 "
        "| server RSS before MB | after MB | growth MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in args.concurrency:
        result = load_run(args, mode, bodies)
        latencies = sorted(result["latencies"])
        p50 = statistics.median(latencies) * 1e3
        p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3
        rate = len(latencies) / result["seconds"]
        lines.append(
            f"| {mode} | {result['errors']} | {rate:.1f} | {rate / ceiling:.2f} | {p50:.1f} | "
            f"{p99:.1f} | {p99 / p50:.2f} | {result['rss_before']:.0f} | "
            f"{result['rss_after']:.0f} | {result['rss_after'] - result['rss_before']:.1f} |"
        )
        print(lines[-1], flush=True)
    command = command_line()
    header = (
        f"\n`{command}`: weights {args.weights}, backend {backend}; {args.clients} clients x "
        f"{args.requests} requests of 320x320 PNG; Detector.predict batch 1 in the same run: "
        f"{ceiling:.1f} images/s; {machine_description()}.\n\n"
    )
    report(header, lines, args.record)


def predict_throughput(detector, images: list[np.ndarray], seconds: float = 10.0) -> float:
    """Images per second of `detector.predict` one image at a time (after 10 warm-up calls)."""
    for image in images + images[:2]:
        detector.predict(image)
    count, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        detector.predict(images[count % len(images)])
        count += 1
    return count / (time.perf_counter() - began)


def load_run(args: argparse.Namespace, mode: str, bodies: list[bytes]) -> dict:
    """One server in `mode` under the load; its latencies, errors, wall time and RSS."""
    with serving("--weights", args.weights, "--concurrency", mode) as (port, pid):
        return _measure(port, pid, args, bodies)


@contextmanager
def serving(*options: str) -> Iterator[tuple[int, int]]:
    """`onestage serve OPTIONS` on a free loopback port, once it answers /health: its (port,
    process id); stopped on leaving."""
    port = free_port()
    command = [sys.executable, "-m", "onestage", "serve", "--port", str(port), *options]
    with tempfile.TemporaryFile(mode="w+") as log:  # the server's stderr, shown if it fails
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            _wait_for_health(port, server, log)
            yield port, server.pid
        finally:
            server.terminate()
            server.wait(timeout=60)


def _measure(port: int, pid: int, args: argparse.Namespace, bodies: list[bytes]) -> dict:
    warm = _Client(port)
    for index in range(args.warmup):
        warm.post(bodies[index % len(bodies)])
    rss_before, hwm_before = rss_mb(pid), rss_mb(pid, "VmHWM")
    sampler = RssSampler(pid).start()
    deadline = time.monotonic() + args.timeout
    clients = [_Client(port) for _ in range(args.clients)]
    seconds = run_together(
        [
            functools.partial(client.run, bodies, args.requests, deadline, offset)
            for offset, client in enumerate(clients)
        ]
    )
    samples = sampler.stop()
    return {
        "latencies": [t for client in clients for t in client.latencies],
        "errors": sum(client.errors for client in clients),
        "seconds": seconds,
        "rss_before": rss_before,
        "hwm_before": hwm_before,
        "rss_after": rss_mb(pid),
        "rss_peak": max(mb for _, mb, _ in samples),
        "samples": samples,
    }


class _Client:
    """One keep-alive HTTP connection sending requests one after another."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.latencies: list[float] = []
        self.errors = 0

    def post(self, body: bytes) -> bool:
        began = time.perf_counter()
        try:
            self.connection.request("POST", "/predict", body, {"Content-Type": "image/png"})
            reply = self.connection.getresponse()
            ok = reply.status == 200 and "detections" in json.loads(reply.read())
        except (OSError, http.client.HTTPException, json.JSONDecodeError):
            self.connection.close()
            ok = False
        if ok:
            self.latencies.append(time.perf_counter() - began)
        else:
            self.errors += 1
        return ok

    def run(self, bodies: list[bytes], requests: int, deadline: float, offset: int) -> None:
        for index in range(requests):
            if time.monotonic() > deadline:
                break
            self.post(bodies[(index + offset) % len(bodies)])


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_health(
    port: int, server: subprocess.Popen, log: IO[str], timeout: float = 120.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise SystemExit(f"the server exited: {log.read()}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer /health in time")


if __name__ == "__main__":
    main()
