"""The HTTP layer of ``xrec serve``: a Starlette app over a :class:`~xrec.serve.service.Service`, and how to run it.

Routes: ``GET /`` (the exploring page), ``GET /health``, ``POST /similar``, ``POST /recommend``,
``POST /embed`` and ``POST /reload``. Errors are JSON ``{"error": ..., "field": ...}``: 400 for a
body that is not a JSON object (or nested too deeply), 413 for one over the size limit, 408 for
one too slow, 422 for a bad field, 404 for an unknown item or user, 503 (with ``Retry-After``)
when the queue or the connection cap is full, 409 when a reload fails (the old index stays), 403
and 401 for ``/reload`` without the token, 421 for a foreign ``Host``, 403 for a cross-origin
``POST``. The bounds are a :class:`~xrec.serve.guard.Guard` (docs/operations.md). Answers carry a
``Server-Timing`` header (queue, encode, search, app).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from xrec.errors import XrecError
from xrec.serve.batcher import Overloaded
from xrec.serve.guard import TOKEN_ENV, ClientDisconnect, Guard, check_request, protocol_class, read_body
from xrec.serve.schema import RequestError, parse_body
from xrec.serve.service import Service

log = logging.getLogger(__name__)


def create_app(service: Service, guard: Guard | None = None, host: str = "127.0.0.1") -> Starlette:
    """The ASGI app answering from ``service``, within ``guard``'s bounds, for a server bound to ``host``."""
    guard = guard or Guard()
    page = files("xrec.serve").joinpath("page.html").read_text(encoding="utf-8")

    async def index(_: Request) -> Response:
        return HTMLResponse(page)

    async def health(request: Request) -> Response:
        info = service.health()
        return JSONResponse(info if guard.authorised(request) else public_health(info))

    async def reload(request: Request) -> Response:
        if not guard.token:
            return JSONResponse({"error": f"POST /reload is off: start xrec serve with ${TOKEN_ENV} set and send "
                                          "'Authorization: Bearer <token>', or send the server SIGHUP"},
                                status_code=403)
        if not guard.authorised(request):
            return JSONResponse({"error": "POST /reload needs 'Authorization: Bearer <token>'"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            await run_in_threadpool(service.reload)
        except XrecError as exc:
            log.warning("reload failed, still serving the previous index: %s", exc)
            return JSONResponse({"error": f"reload failed, still serving the previous index: {exc}"},
                                status_code=409)
        return JSONResponse(service.health())

    def endpoint(submit: Callable[[dict], Future]) -> Callable:
        async def handle(request: Request) -> Response:
            return await answer(request, submit, guard)
        return handle

    async def not_found(_: Request, exc: HTTPException) -> Response:
        return JSONResponse({"error": f"{exc.detail}"}, status_code=exc.status_code)

    async def crashed(_: Request, exc: Exception) -> Response:
        log.exception("request failed")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    routes = [Route("/", index), Route("/health", health),
              Route("/similar", endpoint(service.submit_similar), methods=["POST"]),
              Route("/recommend", endpoint(service.submit_recommend), methods=["POST"]),
              Route("/embed", endpoint(service.submit_embed), methods=["POST"]),
              Route("/reload", reload, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: crashed},  # pyright: ignore[reportArgumentType]
                    middleware=[Middleware(_Checked, hosts=guard.hosts(host))])
    app.state.service = service
    return app


class _Checked:
    """ASGI middleware refusing foreign-Host and cross-origin requests (:func:`check_request`)."""

    def __init__(self, app: Any, hosts: set[str]) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            try:
                check_request(Request(scope), self.hosts)
            except RequestError as exc:
                await JSONResponse(exc.payload(), status_code=exc.status)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def public_health(info: dict[str, Any]) -> dict[str, Any]:
    """``/health`` without file paths or user ids (the full answer needs the token)."""
    out = {**info, "index": {k: v for k, v in info["index"].items() if k != "path"}}
    if info.get("ranker") is not None:
        out["ranker"] = {k: v for k, v in info["ranker"].items() if k not in ("path", "example_users")}
    return out


async def answer(request: Request, submit: Callable[[dict], Future], guard: Guard) -> Response:
    """Read (bounded), parse, validate and queue one request; the JSON answer or a JSON error."""
    start = time.perf_counter()
    try:
        body = parse_body(await read_body(request, guard), guard.max_json_depth)
        result, timing = await asyncio.wrap_future(submit(body))
    except RequestError as exc:  # a refused body may be unread: close the connection after answering
        headers = {"Connection": "close"} if exc.status in (400, 408, 413) else None
        return JSONResponse(exc.payload(), status_code=exc.status, headers=headers)
    except ClientDisconnect:  # the client went away mid-body: nobody to answer, nothing to log
        log.debug("client disconnected before its request body was complete")
        return Response(status_code=400)
    except Overloaded as exc:
        return JSONResponse({"error": f"server busy ({exc}); retry later"}, status_code=503,
                            headers={"Retry-After": "1"})
    except XrecError as exc:  # e.g. a DataError raised by the library for this request
        return JSONResponse({"error": str(exc)}, status_code=422)
    response = JSONResponse(result)
    app_ms = (time.perf_counter() - start) * 1e3
    response.headers["Server-Timing"] = f"{timing.header()}, app;dur={app_ms:.3f}"
    return response


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening TCP socket (``port=0``: any free port; read it from ``getsockname()``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_server(service: Service, guard: Guard | None = None, host: str = "127.0.0.1", **options: Any):
    """A ``uvicorn.Server`` for the app within ``guard``'s bounds (quiet logs, no access log,
    HTTP/1.1 keep-alive closed after 5 s idle)."""
    import uvicorn

    guard = guard or Guard()
    config = uvicorn.Config(create_app(service, guard, host), log_level=options.pop("log_level", "warning"),
                            access_log=False, timeout_graceful_shutdown=5, http=protocol_class(guard),
                            timeout_keep_alive=5, **options)
    return uvicorn.Server(config)


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str], None] | None = None, guard: Guard | None = None) -> None:
    """Serve until SIGINT/SIGTERM; SIGHUP reloads the index (and ranker, topics) from disk."""
    sock = bind(host, port)
    bound = sock.getsockname()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}"

    def on_hup(*_: Any) -> None:
        def run() -> None:
            try:
                service.reload()
                log.warning("reloaded %s", service.paths["index"])
            except XrecError as exc:
                log.warning("reload failed, still serving the previous index: %s", exc)
        threading.Thread(target=run, name="xrec-serve-reload", daemon=True).start()

    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)
    if on_ready is not None:
        on_ready(url)
    try:
        uvicorn_server(service, guard, host).run(sockets=[sock])
    finally:
        service.close()


class ServerThread:
    """The real server on a loopback port in a background thread (tests, benchmarks, notebooks).

    ``with ServerThread(service) as url: ...`` serves at ``url`` until the block ends."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0, guard: Guard | None = None) -> None:
        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn_server(service, guard, host)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="xrec-serve", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise XrecError("xrec serve did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
