"""The Starlette application behind tk serve: routes, the bearer-token guard, metrics, the micro-batcher.

Starlette rather than FastAPI: /predict reads its body itself, so the size limit
is enforced while the body streams in and every refusal has tk's own JSON shape
(FastAPI's validation answers 422 in its own); the OpenAPI document is written
out in ``openapi.py`` and a test checks it against the routes.
"""

from __future__ import annotations

import contextlib
import hmac
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from toolkit.runs.answers import answer, backend_of, prediction_rows
from toolkit.serving import openapi
from toolkit.serving.batcher import MicroBatcher
from toolkit.serving.limits import ServeSettings
from toolkit.serving.metrics import ServeMetrics
from toolkit.serving.requests import BadRequest, read_body, texts_of

OPEN_PATHS = {"/health"}  # answered without a token: a load balancer's liveness probe carries none


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def metadata_of(model: Any, settings: ServeSettings) -> dict[str, Any]:
    """What a client needs to know about the input the model expects and the answers it gives."""
    task = model.task
    chunks = task.reads_in_windows
    return {"schema": "tk.serve.metadata/1", "folder": settings.folder, "run_dir": str(Path(model.run_dir).resolve()),
            "backend": backend_of(model), "labels": list(model.labels),
            "problem": task.problem, "thresholds": (dict(zip(model.labels, map(float, model.thresholds)))
                                                    if model.multi_label else None),
            "max_length": task.max_length, "truncation": task.truncation, "long_text": task.long_text,
            "stride": task.window_stride if chunks else None, "pooling": task.pooling if chunks else None,
            "limits": {"max_texts": settings.max_texts, "max_body_bytes": settings.max_body_bytes,
                       "max_batch": settings.max_batch, "max_wait_ms": settings.max_wait_ms}}


def create_app(model: Any, settings: ServeSettings) -> Starlette:
    """``model``: a loaded run (``toolkit.runs.saved.SavedRun``) or export, already warmed up."""
    metrics = ServeMetrics()
    batcher = MicroBatcher(lambda texts: prediction_rows(model, texts, *answer(model, texts)),
                           settings.max_batch, settings.max_wait_ms / 1000, metrics.batch_texts.observe)
    schema = openapi.document(model.labels, model.multi_label, settings.max_texts, settings.max_body_bytes,
                              settings.token is not None)
    metadata = metadata_of(model, settings)
    state = {"ready": False}

    async def predict(request: Request) -> Response:
        try:
            texts = texts_of(await read_body(request, settings.max_body_bytes), settings.max_texts)
        except BadRequest as refused:
            metrics.errors.labels(refused.reason).inc()
            return error(refused.status, refused.message)
        try:
            rows = await batcher.predict(texts)
        except Exception:  # a bug: said in the server's log and to the client; the service stays up
            traceback.print_exc(file=sys.stderr)
            metrics.errors.labels("scoring_failed").inc()
            return error(500, "the model failed to score this request's texts; the server log has the traceback")
        return JSONResponse({"schema": "tk.predict/1", "run_dir": metadata["run_dir"],
                             "backend": metadata["backend"], "labels": metadata["labels"], "predictions": rows})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        return JSONResponse({"status": "ready"}) if state["ready"] else JSONResponse({"status": "starting"}, 503)

    async def describe(request: Request) -> Response:
        return JSONResponse(metadata)

    async def exposition(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def openapi_document(request: Request) -> Response:
        return JSONResponse(schema)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        metrics.errors.labels("not_found" if exc.status_code == 404 else "bad_method").inc()
        known = ", ".join(sorted(("POST " if path == "/predict" else "GET ") + path for path in schema["paths"]))
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}. Endpoints: {known}",
                     headers=getattr(exc, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False
        await batcher.stop()

    routes = [Route("/predict", predict, methods=["POST"]), Route("/health", health), Route("/ready", ready),
              Route("/metadata", describe), Route("/metrics", exposition), Route("/openapi.json", openapi_document)]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    return Guard(app, settings.token, metrics)


class Guard:
    """ASGI middleware: the bearer token on every path but /health, compared in constant time; every request
    counted and timed for /metrics."""

    def __init__(self, app: Any, token: str | None, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics
        self.expected = token.encode() if token is not None else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if self.expected is not None and scope["path"] not in OPEN_PATHS and not self.authorised(scope):
                self.metrics.errors.labels("unauthorised").inc()
                response = error(401, "this endpoint needs the header 'Authorization: Bearer TOKEN' with the "
                                      "token tk serve was started with (--token or TK_SERVE_TOKEN)",
                                 headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            self.metrics.observe(scope["path"], status[0], time.perf_counter() - started)

    def authorised(self, scope) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        scheme, _, credentials = given.partition(b" ")
        bearer = scheme.lower() == b"bearer"  # HTTP auth schemes are case-insensitive (RFC 9110, 11.1)
        # compare_digest also when the scheme is wrong: the time taken says nothing about the token
        return hmac.compare_digest(credentials.strip(), self.expected) and bearer
