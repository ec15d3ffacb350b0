"""FastAPI adapter: HTTP in, the shared service, HTTP out.

The routes come from the route table (routes.py, added by `http_support.add_routes` with their
OpenAPI docs); auth, body limits, metrics and the dynamic batcher live here and in
http_support.py; validation and response bodies come from `api.py`, exactly as the Lambda
adapter uses them. The model loads once in the lifespan and is released on shutdown; uvicorn's
graceful shutdown finishes in-flight requests before the lifespan's exit runs.

Run: `uvicorn main:app --host 0.0.0.0 --port 8000` from package/src (or `make serve`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from functools import partial
from typing import Callable, Mapping

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedding_service.api import EmbeddingAPI
from embedding_service.batcher import Batcher
from embedding_service.errors import ApiError, internal_error, method_not_allowed, not_found
from embedding_service.http_support import add_routes, read_body
from embedding_service.logs import configure_logging
from embedding_service.metrics import Metrics
from embedding_service.model import model_load, model_unload, models_load
from embedding_service.operations import OPERATIONS, Operation
from embedding_service.replies import Reply, error_reply
from embedding_service.routes import SERVICE_ROUTES, RouteTable
from embedding_service.settings import Settings, load_settings

log = logging.getLogger("embedding.http")


def create_app(
    settings: Settings | None = None, routes: RouteTable = SERVICE_ROUTES,
    operations: Mapping[str, Operation] = OPERATIONS,
) -> FastAPI:
    """The app serving `routes` (the service's table unless a test extends it) with `operations`."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    api = EmbeddingAPI(settings, routes=routes, operations=operations)  # reads the API key once (auth.py)
    metrics = Metrics()
    app = FastAPI(
        title="Embedding service",
        version="1.0.0",
        summary=f"Sentence embeddings from {settings.model_id}, seed- and OpenAI-compatible.",
        lifespan=_lifespan(api, metrics),
    )
    app.state.api = api
    app.state.metrics = metrics

    def send(operation: str, reply: Reply, started: float) -> Response:
        metrics.observe(
            operation, reply.status, time.perf_counter() - started, reply.error_code, reply.items, reply.tokens
        )
        batchers = getattr(app.state, "batchers", None)
        if batchers:
            metrics.queue_items.set(sum(batcher.queued_items for batcher in batchers.values()))
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    async def serve(operation: str, request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_body(request, settings.limits.max_body_bytes)
        except ApiError as error:
            return send(operation, error_reply(error), started)
        batcher: Batcher = request.app.state.batcher
        embed = partial(batcher.embed, timeout_s=settings.request_timeout_s)
        embed_for = {
            model_id: partial(each.embed, timeout_s=settings.request_timeout_s)
            for model_id, each in request.app.state.batchers.items()
        }
        reply = await api.handle_async(
            # the decoded path as received: request.url.path goes through urlsplit, which drops
            # "\n" and "\t", so /v1/models/%0A would read as /v1/models/ (the list)
            operation, body, request.headers.get("content-type"), embed, request.scope["path"], embed_for
        )
        if reply.items:
            log.info(
                "embedded",
                extra={"operation": operation, "batch_size": reply.items, "tokens": reply.tokens,
                       "truncated_inputs": reply.truncated,
                       "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
            )
        return send(operation, reply, started)

    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    add_routes(app, api, serve, local={"metrics": prometheus_metrics})
    _render_errors(app, send)
    return app


def _lifespan(api: EmbeddingAPI, metrics: Metrics):
    settings = api.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Every model loads here, before the first request (MODELS: all of them; see docs/containers.md).
        models = await asyncio.to_thread(models_load, settings, model_load)
        batchers = {  # one queue per model: a model call serves one model's texts
            model_id: Batcher(
                embedder.embed,
                max_items=settings.batch_max_items,
                max_wait_s=settings.batch_wait_ms / 1000,
                max_queue_items=settings.queue_max_items,
                on_batch=metrics.batch_size.observe,
            )
            for model_id, embedder in models.items()
        }
        for batcher in batchers.values():
            await batcher.start()
        api.attach(models)
        app.state.batchers = batchers
        app.state.batcher = next(iter(batchers.values()))
        log.info("ready", extra={"model": settings.model_id, "models": list(models), "auth": api.auth.enabled})
        yield
        api.attach(None)  # from here on /health answers 503
        for batcher in batchers.values():
            await batcher.stop()
        for embedder in models.values():
            model_unload(embedder)
        log.info("stopped")

    return lifespan


def _render_errors(app: FastAPI, send: Callable[[str, Reply, float], Response]) -> None:
    """Errors raised outside an operation (auth, routing, bugs) in the same shape as the rest."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return send("auth" if error.status == 401 else "unknown", error_reply(error), time.perf_counter())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        if error.status_code == 404:
            mapped = not_found(request.url.path)
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "").split(", ")
            mapped = method_not_allowed(request.method, request.url.path, allowed)
        else:
            mapped = ApiError(error.status_code, str(error.detail), "invalid_request_error")
        return send("unknown", error_reply(mapped), time.perf_counter())

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        log.error("unhandled error", exc_info=error)
        return send("unknown", error_reply(internal_error()), time.perf_counter())


app = create_app()
