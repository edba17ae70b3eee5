"""What keeps ``xrec serve`` within bounds whatever a client sends (see docs/operations.md).

* :class:`Guard`: the operator's settings: connection cap, header and body timeouts, header size,
  the hosts the server answers to, and the token that unlocks ``POST /reload`` and the detailed
  ``/health``.
* :func:`protocol_class`: uvicorn's HTTP protocol with the connection cap (connections beyond it
  get 503 with ``Retry-After`` and are closed), a deadline and a size limit on each request's
  headers (408 / 431, then closed). uvicorn itself bounds idle keep-alive connections.
* :func:`check_request`: refuses a foreign ``Host`` (DNS rebinding) and cross-origin ``POST`` s
  (a web page posting ``text/plain`` needs no CORS preflight).
* :func:`read_body`: reads a body (chunked or not) while counting it, so an oversized one is
  refused at the limit, not after it has arrived.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import ClientDisconnect, Request

from xrec.serve.schema import RequestError

#: Environment variable holding the token of ``POST /reload`` and ``/health?detail=1``.
TOKEN_ENV = "XREC_SERVE_TOKEN"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class Guard:
    """Bounds on what clients may hold, and who may change state (``xrec serve`` options)."""

    max_connections: int = 1000  #: open connections; more get 503 + Retry-After
    header_timeout_s: float = 10.0  #: a request's line and headers must arrive within this
    body_timeout_s: float = 30.0  #: a request's body must arrive within this
    max_header_bytes: int = 64 * 1024  #: request line plus headers
    max_body_bytes: int = 1 << 20  #: request body, counted while it streams
    max_json_depth: int = 32  #: nesting of arrays and objects in a body
    allowed_hosts: tuple[str, ...] = ()  #: Host names answered besides loopback and the bound address
    token: str | None = None  #: unlocks POST /reload and the detailed /health; None: /reload is off

    @classmethod
    def from_env(cls, **options: Any) -> Guard:
        """A guard whose token comes from ``$XREC_SERVE_TOKEN`` (empty or unset: no token)."""
        return cls(token=os.environ.get(TOKEN_ENV) or None, **options)

    def hosts(self, bound: str) -> set[str]:
        """Host names this server answers to when listening on ``bound``; ``*`` in
        :attr:`allowed_hosts` answers any (only behind a proxy that checks Host itself)."""
        return {name.lower().strip("[]") for name in (*LOOPBACK_NAMES, bound, *self.allowed_hosts)}

    def authorised(self, request: Request) -> bool:
        """True when the request carries ``Authorization: Bearer <token>`` with this guard's token."""
        if not self.token:
            return False
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())


def _host_name(authority: str) -> str:
    """``example.org`` of ``example.org:8000``, ``::1`` of ``[::1]:8000``."""
    return (urlsplit(f"//{authority}").hostname or "").lower()


def check_request(request: Request, hosts: set[str]) -> None:
    """Raise :class:`RequestError` for a foreign ``Host`` (421) or a cross-origin ``POST`` (403)."""
    host = request.headers.get("host", "")
    if "*" not in hosts and _host_name(host) not in hosts:
        raise RequestError(421, f"this server does not answer to Host {host[:100]!r}; an operator can "
                                "allow it with --allow-host")
    if request.method != "GET":
        origin = request.headers.get("origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
            raise RequestError(403, f"cross-origin request from {origin[:100]!r} refused")
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise RequestError(403, "cross-site request refused")


async def read_body(request: Request, guard: Guard) -> bytes:
    """The body of ``request``, read while counting: 413 as soon as it exceeds the limit (chunked
    or not), 408 when it takes longer than the body timeout, :class:`ClientDisconnect` when the
    client goes away."""
    limit = guard.max_body_bytes
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise RequestError(400, f"Content-Length {length[:40]!r} is not a number")
        if int(length) > limit:
            raise RequestError(413, f"request body of {int(length)} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(guard.body_timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"request body exceeds the {limit}-byte limit "
                                            f"(stopped reading at {size} bytes)")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"request body not received within {guard.body_timeout_s:g} s") from None
    return b"".join(chunks)


def _raw_response(status: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


async def _busy(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI app a connection over the cap gets: 503 with Retry-After, then closed."""
    body = b'{"error": "server busy (too many open connections); retry later"}'
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                            (b"connection", b"close"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def protocol_class(guard: Guard) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with :class:`Guard`'s connection cap, header deadline and
    header size limit."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    too_slow = _raw_response("408 Request Timeout", f"request headers not received within {guard.header_timeout_s:g} s")
    too_big = _raw_response("431 Request Header Fields Too Large",
                            f"request headers exceed {guard.max_header_bytes} bytes")

    class GuardedProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _awaiting = False
        _head_bytes = 0

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > guard.max_connections:
                self.app = _busy  # answered after its headers, then closed
            self._await_headers()

        def _await_headers(self) -> None:
            self._awaiting, self._head_bytes = True, 0
            self._cancel()
            self._timer = self.loop.call_later(guard.header_timeout_s, self._refuse, too_slow)

        def _cancel(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _refuse(self, response: bytes) -> None:
            self._cancel()
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._awaiting:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._awaiting and self._head_bytes > guard.max_header_bytes:
                self._refuse(too_big)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if not self._awaiting:  # the next request on a kept-alive connection
                self._await_headers()

        def on_headers_complete(self) -> None:
            self._awaiting = False
            self._cancel()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

    return GuardedProtocol


__all__ = ["ClientDisconnect", "Guard", "TOKEN_ENV", "check_request", "protocol_class", "read_body"]
