"""`onestage serve`."""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from onestage.cli.app import app, console
from onestage.cli.options import (
    BackendOption,
    DeviceOption,
    PluginOption,
    PrecisionOption,
    TrustPluginOption,
    WeightsOption,
    load_user_plugins,
)
from onestage.errors import OnestageError
from onestage.limits import MEGABYTE
from onestage.serve.limits import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_READ_TIMEOUT_S,
)


@app.command("serve")
def serve_command(
    weights: WeightsOption = "animals",
    backend: BackendOption = None,
    precision: PrecisionOption = None,
    device: DeviceOption = "auto",
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_upload_mb: Annotated[
        float, typer.Option("--max-upload-mb", help="Largest request body accepted, MB.")
    ] = DEFAULT_MAX_UPLOAD_MB,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels",
            help="Largest image accepted, width x height (default 4096 x 4096); a larger one "
            "gets 413 before its pixels are decoded.",
        ),
    ] = DEFAULT_MAX_PIXELS,
    max_queue: Annotated[
        int,
        typer.Option(
            "--max-queue",
            help="Predictions in flight at once (being read, decoded, waiting or computed); "
            "one more gets 503 with Retry-After.",
        ),
    ] = DEFAULT_MAX_QUEUE,
    read_timeout: Annotated[
        float,
        typer.Option(
            "--read-timeout",
            help="Seconds a request's body may take to arrive whole; a slower one gets 408.",
        ),
    ] = DEFAULT_READ_TIMEOUT_S,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="NAME",
            help="Host header to answer besides those --host implies (a reverse proxy's name; "
            "repeatable; *.domain for subdomains). A loopback --host implies 127.0.0.1, "
            "localhost and [::1]; another address, itself; 0.0.0.0 or ::, any host until "
            "--allowed-host is given (then the loopback names and these).",
        ),
    ] = None,
    concurrency: Annotated[
        str,
        typer.Option(
            "--concurrency",
            help="batch (one inference thread batching waiting requests) or threads.",
        ),
    ] = "batch",
    workers: Annotated[
        int, typer.Option("--workers", help="threads: requests computed at once.")
    ] = os.cpu_count() or 1,
    plugin: PluginOption = None,
    trust_plugin: TrustPluginOption = None,
) -> None:
    """Serve a detector over HTTP: a web page at /, the API at /predict, /model and /health,
    its documentation at /docs. Without --backend, as `onestage predict` chooses."""
    import uvicorn

    from onestage.engine.predictor import open_detector
    from onestage.serve.app import create_app
    from onestage.serve.hosts import allowed_hosts_for
    from onestage.serve.runners import make_runner

    for option, amount in (("--max-upload-mb", max_upload_mb), ("--read-timeout", read_timeout)):
        if not amount > 0:
            raise OnestageError(f"{option} must be positive, got {amount}")
    for option, value in (("--max-pixels", max_pixels), ("--max-queue", max_queue)):
        if value < 1:
            raise OnestageError(f"{option} must be at least 1, got {value}")
    allowed_hosts = allowed_hosts_for(host, allowed_host or ())
    _check_port_free(host, port)
    load_user_plugins(plugin, trust_plugin)
    detector = open_detector(weights, device, backend, precision)
    runner = make_runner(detector, concurrency, workers)
    application = create_app(
        detector,
        runner,
        int(max_upload_mb * MEGABYTE),
        max_pixels,
        max_queue,
        allowed_hosts,
        read_timeout,
    )
    console.print(
        f"weights: {weights} ({detector.metadata['model']}); backend: "
        f"{detector.runtime_description}; concurrency: {concurrency}\n"
        f"limits: {max_upload_mb:g} MB a body, {max_pixels:,} pixels an image, {max_queue} "
        f"predictions in flight; Host: {', '.join(allowed_hosts or ['any'])}\n"
        f"serving on [bold]http://{host}:{port}[/] (API documentation at /docs); Ctrl+C stops",
        highlight=False,
    )
    uvicorn.run(application, host=host, port=port, log_level="warning", access_log=False)


def _check_port_free(host: str, port: int) -> None:
    """A one-line error, before loading anything, when the address cannot be listened on."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise OnestageError(f"cannot listen on {host}:{port} ({error.strerror})") from None
