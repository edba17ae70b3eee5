"""The HTTP layer of ``xrec serve``: a Starlette app over a :class:`~xrec.serve.service.Service`, and how to run it.

Routes: ``GET /`` (the exploring page), ``GET /health``, ``POST /similar``, ``POST /recommend``,
``POST /embed`` and ``POST /reload``. Errors are JSON ``{"error": ..., "field": ...}``: 400 for a
body that is not a JSON object, 413 for one over the size limit, 422 for a bad field, 404 for an
unknown item or user, 503 (with ``Retry-After``) when the queue is full, 409 when a reload fails
(the old index stays). Answers carry a ``Server-Timing`` header (queue, encode, search, app).
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
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from xrec.errors import XrecError
from xrec.serve.batcher import Overloaded
from xrec.serve.schema import MAX_BODY, RequestError, parse_body
from xrec.serve.service import Service

log = logging.getLogger(__name__)


def create_app(service: Service) -> Starlette:
    """The ASGI app answering from ``service``."""
    page = files("xrec.serve").joinpath("page.html").read_text(encoding="utf-8")

    async def index(_: Request) -> Response:
        return HTMLResponse(page)

    async def health(_: Request) -> Response:
        return JSONResponse(service.health())

    async def reload(_: Request) -> Response:
        try:
            info = await run_in_threadpool(service.reload)
        except XrecError as exc:
            log.warning("reload failed, still serving the previous index: %s", exc)
            return JSONResponse({"error": f"reload failed, still serving the previous index: {exc}"},
                                status_code=409)
        return JSONResponse(info)

    def endpoint(submit: Callable[[dict], Future]) -> Callable:
        async def handle(request: Request) -> Response:
            return await answer(request, submit)
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
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found, Exception: crashed})
    app.state.service = service
    return app


async def answer(request: Request, submit: Callable[[dict], Future]) -> Response:
    """Parse, validate and queue one request; the JSON answer or a JSON error."""
    start = time.perf_counter()
    try:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY:
            raise RequestError(413, f"request body of {length} bytes exceeds the {MAX_BODY}-byte limit")
        body = parse_body(await request.body())
        result, timing = await asyncio.wrap_future(submit(body))
    except RequestError as exc:
        return JSONResponse(exc.payload(), status_code=exc.status)
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


def uvicorn_server(service: Service, **options: Any):
    """A ``uvicorn.Server`` for the app (quiet logs, no access log, HTTP/1.1 keep-alive)."""
    import uvicorn

    config = uvicorn.Config(create_app(service), log_level=options.pop("log_level", "warning"),
                            access_log=False, timeout_graceful_shutdown=5, **options)
    return uvicorn.Server(config)


def serve(service: Service, host: str = "127.0.0.1", port: int = 8000,
          on_ready: Callable[[str], None] | None = None) -> None:
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
        uvicorn_server(service).run(sockets=[sock])
    finally:
        service.close()


class ServerThread:
    """The real server on a loopback port in a background thread (tests, benchmarks, notebooks).

    ``with ServerThread(service) as url: ...`` serves at ``url`` until the block ends."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = uvicorn_server(service)
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
