"""Which Host headers `onestage serve` answers: a defence against DNS rebinding, where a web page
gets its visitor's browser to call a server on the visitor's machine under the attacker's host
name (which the browser then treats as the page's own origin).

`allowed_hosts_for` derives the names from the address the server listens on; `HostCheck` refuses
the others with 400, matching as Starlette's `TrustedHostMiddleware` does.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onestage.errors import OnestageError

# The names of this machine's loopback interface, as a Host header writes them (IPv6 in brackets).
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")
_NAME = re.compile(r"(\*\.)?[a-z0-9_.-]+")
_ALLOWED = "onestage.host_allowed"  # the scope key HostCheck's probe sets
log = logging.getLogger("onestage.serve")


def allowed_hosts_for(bind: str, extra: Sequence[str] = ()) -> list[str] | None:
    """The Host names a server listening on `bind` answers, ports aside, with `extra` (names or
    `*.domain` patterns) added: a loopback bind, the loopback names; another address or name,
    itself; a wildcard bind (0.0.0.0, ::), any host (None), or with `extra` only the loopback
    names and `extra`. A malformed name is an OnestageError."""
    added = [_host_name(name) for name in extra]
    if bind in WILDCARD_BINDS:
        return [*LOOPBACK_NAMES, *added] if added else None
    own = [*LOOPBACK_NAMES, _host_name(bind)] if _is_loopback(bind) else [_host_name(bind)]
    return list(dict.fromkeys([*own, *added]))


def _is_loopback(bind: str) -> bool:
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(name: str) -> str:
    """`name` as a Host header carries it: lower case, an IPv6 address in brackets."""
    text = name.strip().lower()
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        if _NAME.fullmatch(text):
            return text
        raise OnestageError(
            f"invalid host name {name!r}: expected a name or an address without a port, or *.domain"
        ) from None
    return f"[{address}]" if address.version == 6 else str(address)


class HostCheck:
    """ASGI middleware: a request whose Host header is not one of `allowed_hosts` gets 400 with
    a JSON detail and one log line. The matching is Starlette's `TrustedHostMiddleware`'s (port
    ignored, IPv6 in brackets, `*.domain` patterns); only its plain-text refusal is replaced."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self._matcher = TrustedHostMiddleware(_mark_allowed, allowed_hosts, www_redirect=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not await self._allowed(scope):
            host = Headers(scope=scope).get("host")
            log.warning("%s %s -> 400: Host %r not allowed", scope["method"], scope["path"], host)
            detail = f"Host {host!r} not allowed (onestage serve --allowed-host NAME allows it)"
            await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _allowed(self, scope: Scope) -> bool:
        """Whether the matcher passes the request on (its refusal is sent nowhere)."""
        probe = dict(scope)
        await self._matcher(probe, _no_body, _discard)
        return probe.get(_ALLOWED, False)


async def _mark_allowed(scope: Scope, receive: Receive, send: Send) -> None:
    scope[_ALLOWED] = True


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Any) -> None:
    pass
