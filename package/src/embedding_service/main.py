"""FastAPI adapter: HTTP in, the shared service, HTTP out.

Routes, auth, body limits, metrics and the dynamic batcher live here; validation and
response bodies come from `api.py`, exactly as the Lambda adapter uses them. The model
loads once in the lifespan and is released on shutdown; uvicorn's graceful shutdown
finishes in-flight requests before the lifespan's exit runs.

Run: `uvicorn main:app --host 0.0.0.0 --port 8000` from package/src (or `make serve`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from functools import partial

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedding_service.api import EmbeddingAPI, Reply, error_reply
from embedding_service.batcher import Batcher
from embedding_service.errors import ApiError, internal_error, method_not_allowed, not_found
from embedding_service.http_support import read_body, request_body_doc, requires_key, responses_doc
from embedding_service.logs import configure_logging
from embedding_service.metrics import Metrics
from embedding_service.model import model_load, model_unload
from embedding_service.model_config import ModelFilesError, read_model_spec
from embedding_service.quantize import CALIBRATED_TYPES, CALIBRATION_FILE, EMBEDDING_TYPES
from embedding_service.schemas import (
    ChunkRequest,
    ChunkResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    SeedEmbeddingRequest,
    SeedEmbeddingResponse,
    StatusResponse,
)
from embedding_service.settings import Settings, load_settings

log = logging.getLogger("embedding.http")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    api = EmbeddingAPI(settings)  # reads the API key once (auth.py)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        embedder = await asyncio.to_thread(model_load, settings)
        batcher = Batcher(
            embedder.embed,
            max_items=settings.batch_max_items,
            max_wait_s=settings.batch_wait_ms / 1000,
            max_queue_items=settings.queue_max_items,
            on_batch=metrics.batch_size.observe,
        )
        await batcher.start()
        api.embedder = embedder
        app.state.batcher = batcher
        log.info("ready", extra={"model": settings.model_id, "auth": api.auth.enabled})
        yield
        api.embedder = None  # from here on /health answers 503
        await batcher.stop()
        model_unload(embedder)
        log.info("stopped")

    app = FastAPI(
        title="Embedding service",
        version="1.0.0",
        summary=f"Sentence embeddings from {settings.model_id}, seed- and OpenAI-compatible.",
        lifespan=lifespan,
    )
    app.state.api = api
    app.state.metrics = metrics

    def send(operation: str, reply: Reply, started: float) -> Response:
        metrics.observe(
            operation, reply.status, time.perf_counter() - started, reply.error_code, reply.items, reply.tokens
        )
        batcher = getattr(app.state, "batcher", None)
        if batcher is not None:
            metrics.queue_items.set(batcher.queued_items)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    async def serve(operation: str, request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = await read_body(request, settings.limits.max_body_bytes)
        except ApiError as error:
            return send(operation, error_reply(error), started)
        batcher: Batcher = request.app.state.batcher
        embed = partial(batcher.embed, timeout_s=settings.request_timeout_s)
        reply = await api.handle_async(
            # the decoded path as received: request.url.path goes through urlsplit, which drops
            # "\n" and "\t", so /v1/models/%0A would read as /v1/models/ (the list)
            operation, body, request.headers.get("content-type"), embed, request.scope["path"]
        )
        if reply.items:
            log.info(
                "embedded",
                extra={"operation": operation, "batch_size": reply.items, "tokens": reply.tokens,
                       "truncated_inputs": reply.truncated,
                       "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
            )
        return send(operation, reply, started)

    def protected(operation: str) -> list:
        return [Depends(requires_key(api, operation))]

    def endpoint(operation: str):
        async def run(request: Request) -> Response:
            return await serve(operation, request)

        return run

    seed_body = request_body_doc(SeedEmbeddingRequest, settings.limits, None)
    openai_body = request_body_doc(
        OpenAIEmbeddingRequest,
        settings.limits,
        _documented_dimension(settings),
        ordinary_tokens=api.token_decoder.spec.ordinary_tokens if api.token_decoder else None,
        embedding_types=_documented_types(settings),
    )
    chunk_body = request_body_doc(ChunkRequest, settings.limits, None)
    prometheus_text = {200: {"description": "Prometheus text format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}}

    @app.post("/", dependencies=protected("embed"), openapi_extra=seed_body,
              responses=responses_doc(SeedEmbeddingResponse), summary="Embed text (the seed's API)")
    async def create_embedding(request: Request) -> Response:
        return await serve("embed", request)

    # OpenAI's routes, with and without the /v1 prefix (api.ROUTES serves both on Lambda too).
    for prefix in ("/v1", ""):
        app.add_api_route(
            f"{prefix}/embeddings", endpoint("openai_embeddings"), methods=["POST"],
            dependencies=protected("openai_embeddings"), openapi_extra=openai_body,
            responses=responses_doc(OpenAIEmbeddingResponse),
            summary=f"Embed text (OpenAI-compatible){'' if prefix else ', without /v1'}",
            operation_id=f"create_embeddings{prefix.replace('/', '_')}",
        )
        app.add_api_route(
            f"{prefix}/chunks", endpoint("chunks"), methods=["POST"],
            dependencies=protected("chunks"), openapi_extra=chunk_body,
            responses=responses_doc(ChunkResponse),
            summary=f"Cut long texts into chunks that fit the window (ours){'' if prefix else ', without /v1'}",
            operation_id=f"create_chunks{prefix.replace('/', '_')}",
        )
        app.add_api_route(
            f"{prefix}/models", endpoint("models"), methods=["GET"], dependencies=protected("models"),
            responses=responses_doc(ModelList),
            summary=f"The served model{'' if prefix else ', without /v1'}",
            operation_id=f"list_models{prefix.replace('/', '_')}",
        )

        async def retrieve_model(model_id: str, request: Request) -> Response:
            return await serve("model", request)

        app.add_api_route(
            f"{prefix}/models/{{model_id:path}}", retrieve_model, methods=["GET"],
            dependencies=protected("model"), responses=responses_doc(ModelCard),
            summary=f"The served model by id or alias (ids contain '/'){'' if prefix else ', without /v1'}",
            operation_id=f"retrieve_model{prefix.replace('/', '_')}",
        )

    @app.get("/status", responses=responses_doc(StatusResponse), summary="Liveness (the seed's check)")
    async def status(request: Request) -> Response:
        return await serve("status", request)

    @app.get("/health", dependencies=protected("health"), responses=responses_doc(HealthResponse),
             summary="Readiness: 200 once the model is loaded")
    async def health(request: Request) -> Response:
        return await serve("health", request)

    @app.get("/metrics", dependencies=protected("metrics"), response_class=Response, responses=prometheus_text,
             summary="Prometheus metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

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

    return app


def _documented_types(settings: Settings) -> tuple[str, ...]:
    """embedding_types this folder can serve: int8/uint8 need its calibration ranges."""
    if (settings.model_dir / (settings.calibration_file or CALIBRATION_FILE)).is_file():
        return EMBEDDING_TYPES
    return tuple(t for t in EMBEDDING_TYPES if t not in CALIBRATED_TYPES)


def _documented_dimension(settings: Settings) -> int | None:
    """The model's dimension for /docs, read from its config (None if not prepared yet)."""
    try:
        return read_model_spec(settings.model_dir).dimension
    except ModelFilesError:
        return None


app = create_app()
