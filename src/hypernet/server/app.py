"""The ASGI app of `hypernet serve`: the webui-compatible API at `/sdapi/v1`, OpenAPI at
`/docs`, and the web UI at `/`, all on one `Service` (one model, one job queue).

Every failure is a JSON answer with a message: our own errors are 4xx (404 for unknown
names, 422 for bad values, 501 for what is not built yet, 503 with Retry-After for a full
queue), anything unexpected a 500 that names the error type, never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..errors import HypernetError
from ..library import AmbiguousNameError, UnknownNameError
from .checkpoints import UnknownCheckpointError
from .jobs import JobCancelled, QueueFull, ServerStopping

log = logging.getLogger("hypernet.server")
MAX_BODY_BYTES = 64 * 1024 * 1024


def _status(error: HypernetError) -> int:
    from .api import NotImplementedYet

    if isinstance(error, QueueFull):
        return 503
    if isinstance(error, (ServerStopping, JobCancelled)):
        return 503
    if isinstance(error, NotImplementedYet):
        return 501
    if isinstance(error, (UnknownNameError, UnknownCheckpointError)):
        return 404
    if isinstance(error, AmbiguousNameError):
        return 409
    return 422


def _answer(status: int, error: BaseException, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": type(error).__name__, "detail": message, "errors": message}, status_code=status,
                        headers=headers)


def create_app(service, ui: bool = True, api_auth: str | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               manage_service: bool = True) -> FastAPI:
    """The app; with `manage_service` its lifespan starts and stops the service."""
    from .api import router

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if manage_service:
            service.start()
        try:
            yield
        finally:
            if manage_service:
                service.stop()

    app = FastAPI(title="hypernet", description="Stable Diffusion hypernetworks: webui-compatible API",
                  lifespan=lifespan)
    app.state.service = service

    @app.exception_handler(HypernetError)
    async def hypernet_error(request: Request, error: HypernetError):
        status = _status(error)
        headers = {"Retry-After": str(error.retry_after_seconds)} if isinstance(error, QueueFull) else None
        return _answer(status, error, str(error), headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return _answer(503, error, "out of accelerator memory: lower the size or the batch size and try again")
        log.exception("unexpected error in %s", request.url.path)
        return _answer(500, error, f"internal error ({type(error).__name__}: {str(error)[:300]}); "
                                   "the server is still running, see its log")

    app.include_router(router(service))
    # Starlette answers a handler for `Exception` and then re-raises, so uvicorn drops the
    # connection (a keep-alive client's next request is reset): answer it here instead
    app.middleware("http")(_catch_unexpected(unexpected))
    app.middleware("http")(_body_limit(max_body_bytes))
    if api_auth:
        app.middleware("http")(_basic_auth(api_auth))
    if ui:
        from ..webui import mount

        mount(app, service)
    return app


def _catch_unexpected(handler):
    async def middleware(request: Request, call_next):
        try:
            return await call_next(request)
        except Exception as error:  # noqa: BLE001 - answered 500 with a message, logged by the handler
            return await handler(request, error)

    return middleware


def _body_limit(max_bytes: int):
    async def middleware(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            message = f"request body of {int(length)} bytes is larger than the server accepts ({max_bytes})"
            return JSONResponse({"error": "PayloadTooLarge", "detail": message, "errors": message}, status_code=413)
        if length is None and "chunked" in request.headers.get("transfer-encoding", "").lower():
            # a chunked body says no length: read it here, up to the limit (Starlette hands
            # the body read in a middleware on to the app)
            received = bytearray()
            async for chunk in request.stream():
                received += chunk
                if len(received) > max_bytes:
                    message = f"request body is larger than the server accepts ({max_bytes} bytes)"
                    return JSONResponse({"error": "PayloadTooLarge", "detail": message, "errors": message},
                                        status_code=413)
            request._body = bytes(received)
        return await call_next(request)

    return middleware


def _basic_auth(credentials: str):
    """HTTP basic auth on every path (API and UI), compared in constant time."""
    if ":" not in credentials:
        raise HypernetError("--api-auth must look like user:password")
    expected = credentials.encode("utf-8")

    async def middleware(request: Request, call_next):
        header = request.headers.get("authorization", "")
        given = b""
        if header.lower().startswith("basic "):
            try:
                given = base64.b64decode(header[6:].strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
        if not hmac.compare_digest(given, expected):
            message = "authentication required: HTTP basic auth with the server's --api-auth user:password"
            return JSONResponse({"error": "Unauthorized", "detail": message, "errors": message}, status_code=401,
                                headers={"WWW-Authenticate": 'Basic realm="hypernet"'})
        return await call_next(request)

    return middleware
