"""A bound on the prediction requests in flight: past it, the server refuses at once with 503
instead of letting requests (and their bodies and decoded images) pile up in memory."""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onestage.serve.limits import RETRY_AFTER_SECONDS

log = logging.getLogger("onestage.serve")


class QueueLimit:
    """ASGI middleware: at most `max_queue` requests to `paths` in flight at once, from their
    arrival until their answer is complete (being read, decoded, waiting or computed). One more
    gets 503 with a `Retry-After` header and a JSON detail, before its body is read. Other paths
    (`/health`) are never refused."""

    def __init__(self, app: ASGIApp, max_queue: int, paths: Collection[str]) -> None:
        self.app = app
        self.max_queue = max_queue
        self.paths = frozenset(paths)
        self.in_flight = 0  # changed on the event loop only: no lock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_queue:
            log.warning(
                "%s %s -> 503: %d requests in flight",
                scope["method"],
                scope["path"],
                self.in_flight,
            )
            detail = (
                f"server busy: {self.max_queue} requests in flight (--max-queue); "
                f"retry in {RETRY_AFTER_SECONDS} s"
            )
            refusal = JSONResponse(
                {"detail": detail},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            await refusal(scope, receive, send)
            return
        self.in_flight += 1
        counted = True

        async def send_and_release(message: Message) -> None:
            """Frees the place as the answer's last bytes go out: the client may send its next
            request before this one's task has wound down."""
            nonlocal counted
            if counted and message["type"] == "http.response.body" and not message.get("more_body"):
                counted = False
                self.in_flight -= 1
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            if counted:  # no complete answer: an error, or the client went away
                self.in_flight -= 1
