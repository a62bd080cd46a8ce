"""Hostile uploads against `onestage serve`: clients that send the largest requests it accepts,
and some just past its limits, all at once; the server's memory and answers.

Usage:
  python benchmarks/serve_hostile.py [--weights animals] [--clients 8] [--requests 10]
                                     [--max-queue 16 8 4] [--record]

For each --max-queue value, starts `onestage serve` (the default backend, the default limits
but --max-queue) on a free loopback port, sends 8 warm-up requests of a 320x320 PNG, reads the
server's resident memory (the baseline), then has --clients keep-alive clients each send
--requests POST /predict at once, cycling through these uploads (each client from another):

- body: a PNG of noise just under the body limit (20 MB), 7 Mpx (200);
- pixels: a 4096 x 4096 PNG, the largest image accepted, its top rows noise so that its body
  too is just under the limit: the most a request may hold (200);
- pixels, draw: the same with draw=true, the annotated image in the answer (200);
- over body: the body limit + 1 byte (413, refused from its Content-Length);
- bomb: a black 8000 x 8000 PNG, 0.2 MB that decode to 183 MiB (413, refused from its header).

A full queue answers 503 instead. Reports, per --max-queue, the count of each status, the
answers other than the expected status or 503, the server's RSS at the baseline, its peak
(the kernel's high-water mark, VmHWM) and after, and the wall time; then the statuses of each
upload. Bounded: --requests per client; a request waits at most 300 s. Loopback only. Prints
Markdown tables; --record appends them to BENCHMARKS.md with the machine.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import io
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bench_common import command_line, report, rss_mb, run_together
from onestage.data.icons import SEED_CLASS_NAMES
from onestage.engine.device import machine_description
from onestage.engine.evaluator import synthetic_eval_set
from onestage.limits import MEGABYTE
from onestage.serve.limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_MB
from serve_load import png_bytes, serving

WARMUP = 8


@dataclass(frozen=True)
class Upload:
    """One kind of request: its name, query, body and the status it should get."""

    name: str
    query: str
    body: bytes
    expected: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="animals")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    parser.add_argument("--max-queue", type=int, nargs="+", default=[16, 8, 4])
    parser.add_argument("--record", action="store_true", help="append the tables to BENCHMARKS.md")
    args = parser.parse_args()

    scene = synthetic_eval_set(tuple(SEED_CLASS_NAMES), 1).load_image(0)  # (320, 320, 3)
    uploads = hostile_uploads(scene)
    sizes = ", ".join(f"{u.name} {len(u.body) / MEGABYTE:.2f} MB" for u in uploads)
    print(f"uploads: {sizes}", flush=True)
    ordinary = png_bytes(scene)

    lines = [
        "| --max-queue | requests | 200 | 413 | 503 | other | unexpected | server RSS baseline MB "
        "| peak (VmHWM) MB | after MB | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_upload: dict[int, Counter] = {}
    for max_queue in args.max_queue:
        options = ("--weights", args.weights, "--max-queue", str(max_queue))
        with serving(*options) as (port, pid):
            result = attack(port, pid, args, uploads, ordinary)
        statuses = Counter()
        for (_, status), count in result["answers"].items():
            statuses[status] += count
        unexpected = sum(
            count
            for (name, status), count in result["answers"].items()
            if status not in (_expected(uploads, name), 503)
        )
        other = sum(n for status, n in statuses.items() if status not in (200, 413, 503))
        lines.append(
            f"| {max_queue} | {statuses.total()} | {statuses[200]} | {statuses[413]} | "
            f"{statuses[503]} | {other} | {unexpected} | {result['baseline']:.0f} | "
            f"{result['peak']:.0f} | {result['after']:.0f} | {result['seconds']:.1f} |"
        )
        print(lines[-1], flush=True)
        by_upload[max_queue] = result["answers"]

    lines += ["", _upload_table(uploads, by_upload)]
    header = (
        f"\n`{command_line()}`: weights {args.weights}, default backend and limits "
        f"({DEFAULT_MAX_UPLOAD_MB:g} MB a body, {DEFAULT_MAX_PIXELS:,} pixels an image); "
        f"{args.clients} clients x {args.requests} requests; uploads: {sizes}; "
        f"{machine_description()}.\n\n"
    )
    report(header, lines, args.record)


def hostile_uploads(scene: np.ndarray) -> list[Upload]:
    """The five uploads of the module doc, sized from the serving defaults."""
    limit = int(DEFAULT_MAX_UPLOAD_MB * MEGABYTE)
    largest = _largest_png(scene, math.isqrt(DEFAULT_MAX_PIXELS), limit)
    return [
        Upload("body", "", _noise_png_under(limit), 200),
        Upload("pixels", "", largest, 200),
        Upload("pixels, draw", "?draw=true", largest, 200),
        Upload("over body", "", b"\0" * (limit + 1), 413),
        Upload("bomb", "", _bomb_png(8000), 413),
    ]


def attack(
    port: int, pid: int, args: argparse.Namespace, uploads: list[Upload], ordinary: bytes
) -> dict:
    """Warm-up, baseline, then the clients at once; (upload, status) counts and RSS."""
    warm = _Client(port)
    for _ in range(WARMUP):
        warm.send(Upload("warm-up", "", ordinary, 200))
    baseline = rss_mb(pid)
    clients = [_Client(port) for _ in range(args.clients)]
    seconds = run_together(
        [
            functools.partial(client.run, uploads, args.requests, offset)
            for offset, client in enumerate(clients)
        ]
    )
    answers = sum((client.answers for client in clients), Counter())
    return {
        "answers": answers,
        "baseline": baseline,
        "peak": rss_mb(pid, "VmHWM"),
        "after": rss_mb(pid),
        "seconds": seconds,
    }


class _Client:
    """One keep-alive HTTP connection sending requests one after another."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.answers: Counter = Counter()  # (upload name, status or "connection error")

    def send(self, upload: Upload) -> None:
        try:
            self.connection.request(
                "POST", f"/predict{upload.query}", upload.body, {"Content-Type": "image/png"}
            )
            reply = self.connection.getresponse()
            reply.read()
            self.answers[upload.name, reply.status] += 1
        except (OSError, http.client.HTTPException):
            self.connection.close()  # reconnects on the next request
            self.answers[upload.name, "connection error"] += 1

    def run(self, uploads: list[Upload], requests: int, offset: int) -> None:
        for index in range(requests):
            self.send(uploads[(index + offset) % len(uploads)])


def _upload_table(uploads: list[Upload], answers: dict[int, Counter]) -> str:
    queues = list(answers)
    rows = [
        "| upload | expected | " + " | ".join(f"--max-queue {q}" for q in queues) + " |",
        "|---|---|" + "---|" * len(queues),
    ]
    for upload in uploads:
        cells = []
        for queue_size in queues:
            counts = {
                status: n
                for (name, status), n in answers[queue_size].items()
                if name == upload.name
            }
            cells.append(
                ", ".join(f"{n} x {status}" for status, n in sorted(counts.items(), key=str))
            )
        rows.append(f"| {upload.name} | {upload.expected} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _expected(uploads: list[Upload], name: str) -> int:
    return next(upload.expected for upload in uploads if upload.name == name)


def _noise_png_under(limit: int) -> bytes:
    """A PNG of random pixels (incompressible) as large as fits under `limit` bytes."""
    rng = np.random.default_rng(0)
    side = math.isqrt(limit // 3)
    while True:
        body = png_bytes(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        if len(body) <= limit:
            return body
        side -= 8


def _largest_png(scene: np.ndarray, side: int, limit: int) -> bytes:
    """`scene` scaled up to side x side, its top rows random pixels: a PNG at the pixel limit
    whose body is just under `limit` bytes."""
    image = np.asarray(Image.fromarray(scene).resize((side, side), Image.NEAREST))
    rng = np.random.default_rng(1)
    rows = (limit - len(png_bytes(image))) // (side * 3)
    while True:
        noisy = image.copy()
        noisy[:rows] = rng.integers(0, 256, (rows, side, 3), dtype=np.uint8)
        body = png_bytes(noisy)
        if len(body) <= limit:
            return body
        rows -= 8


def _bomb_png(side: int) -> bytes:
    """A side x side black PNG: a few hundred KB that would decode to side² x 3 bytes."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side)).save(buffer, "PNG", compress_level=9)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
