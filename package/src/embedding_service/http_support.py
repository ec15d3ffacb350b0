"""HTTP-only helpers for the FastAPI adapter: the routes of the table, the API-key dependency,
bounded body reads, the OpenAPI docs of each route.

Kept apart from main.py so the app file stays about the app: its lifespan, metrics and errors.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Awaitable, Callable, Mapping

from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from embedding_service.api import EmbeddingAPI
from embedding_service.chunking import MIN_CHUNK_TOKENS
from embedding_service.errors import ApiError, too_large
from embedding_service.model_config import ModelFilesError, read_model_spec
from embedding_service.quantize import CALIBRATED_TYPES, CALIBRATION_FILE, EMBEDDING_TYPES
from embedding_service.routes import Route, Text
from embedding_service.schemas import ErrorResponse
from embedding_service.settings import Limits, Settings

Serve = Callable[[str, Request], Awaitable[Response]]  # (operation, request) -> the response


def add_routes(app: FastAPI, api: EmbeddingAPI, serve: Serve, local: Mapping[str, Callable]) -> None:
    """One FastAPI route per entry of `api`'s route table, in its order, with its OpenAPI docs.
    `local` holds the operations the app answers itself (/metrics); `serve` runs the others."""
    bodies: dict[type[BaseModel], dict] = {}  # one document per request schema, shared by its aliases
    for route in api.routes.routes:
        if route.operation in local:
            call = local[route.operation]
        elif route.operation in api.operations:
            call = _endpoint(route, serve)
        else:
            raise ValueError(f"{route.method} {route.path}: no operation {route.operation!r}")
        if isinstance(route.response, Text):
            docs = {"response_class": Response, "responses": {200: {
                "description": route.response.description,
                "content": {route.response.media_type: {"schema": {"type": "string"}}}}}}
        else:
            docs = {"responses": responses_doc(route.response)}
        if route.request is not None:
            if route.request not in bodies:
                bodies[route.request] = _request_doc(route.request, api)
            docs["openapi_extra"] = bodies[route.request]
        app.add_api_route(
            route.path, call, methods=[route.method], summary=route.summary, operation_id=route.operation_id,
            dependencies=[Depends(requires_key(api, route.operation))] if route.needs_key else None, **docs,
        )


def _endpoint(route: Route, serve: Serve) -> Callable[..., Awaitable[Response]]:
    """The route's FastAPI endpoint: the operation reads the body and the path itself; a path
    parameter is declared only so the OpenAPI document lists it."""

    async def run(request: Request, **path_parameters: str) -> Response:
        return await serve(route.operation, request)

    parameters = [inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    if route.parameter:
        parameters.insert(0, inspect.Parameter(route.parameter, inspect.Parameter.KEYWORD_ONLY, annotation=str))
    run.__signature__ = inspect.Signature(parameters)
    return run


def _request_doc(model: type[BaseModel], api: EmbeddingAPI) -> dict:
    settings = api.settings
    return request_body_doc(
        model,
        settings.limits,
        _documented_dimension(settings),
        ordinary_tokens=api.token_decoder.spec.ordinary_tokens if api.token_decoder else None,
        embedding_types=_documented_types(settings),
    )


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

BODY_READ_TIMEOUT_S = 30.0  # a client that trickles its body this long is cut off (408)


def requires_key(api: EmbeddingAPI, operation: str) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency running the shared API-key check (auth.py) before the body is
    read, so an unauthenticated request costs nothing."""

    async def check(request: Request) -> None:
        api.authorize(operation, request.headers.get("authorization"))

    return check


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be too big (before reading
    when Content-Length says so), and with 408 when the client sends it too slowly."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"request body is {declared} bytes; at most {limit}")

    async def collect() -> bytes:
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                raise too_large(f"request body exceeds {limit} bytes")
        return bytes(chunks)

    try:
        return await asyncio.wait_for(collect(), BODY_READ_TIMEOUT_S)
    except ClientDisconnect:
        raise ApiError(400, "the client closed the connection", "invalid_request_error", None,
                       "client_disconnected") from None
    except asyncio.TimeoutError:
        raise ApiError(
            408, "the request body arrived too slowly", "invalid_request_error", None, "request_timeout"
        ) from None


def request_body_doc(
    model: type[BaseModel],
    limits: Limits,
    dimension: int | None,
    ordinary_tokens: int | None = None,
    embedding_types: tuple[str, ...] | None = None,
) -> dict:
    """OpenAPI request body from the shared schema (the route reads raw bytes itself), with
    the runtime limits written in, so the document promises exactly what validation accepts.
    Token ids are documented up to the encoding's last ordinary token (`ordinary_tokens`; special
    tokens are accepted too, but the gaps between them are not); None documents no token ids."""
    schema = model.model_json_schema()
    # the texts (or token ids) to work on: `input` (ours, OpenAI's) or `inputs` (TEI's)
    field = next((name for name in ("input", "inputs") if "anyOf" in schema["properties"].get(name, {})), None)
    if field:
        longest = limits.max_body_bytes if getattr(model, "whole_texts", False) else limits.max_item_chars
        text = {"type": "string", "minLength": 1, "maxLength": longest}
        shapes = [text, {"type": "array", "items": text, "minItems": 1, "maxItems": limits.max_items}]
        item_types = [shape.get("items") for shape in schema["properties"][field]["anyOf"]]
        if ordinary_tokens and {"type": "integer"} in item_types:
            token_id = {"type": "integer", "minimum": 0, "maximum": ordinary_tokens - 1}
            ids = {"type": "array", "items": token_id, "minItems": 1, "maxItems": limits.max_item_chars}
            shapes += [ids, {"type": "array", "items": ids, "minItems": 1, "maxItems": limits.max_items}]
        schema["properties"][field]["anyOf"] = shapes
    if "dimensions" in schema["properties"] and dimension is not None:
        schema["properties"]["dimensions"]["anyOf"] = [
            {"type": "integer", "enum": [dimension]},
            {"type": "null"},
        ]
    if "embedding_types" in schema["properties"] and embedding_types is not None:
        # int8/uint8 only where the model folder has calibration ranges
        schema["properties"]["embedding_types"]["anyOf"][0]["items"] = {"enum": list(embedding_types), "type": "string"}
    if "chunk_tokens" in schema["properties"]:
        # The upper bounds depend on each other and on the prompt (chunk_overlap < chunk_tokens / 2 <=
        # the window / 2): the descriptions say so and a 400 names the one broken.
        schema["properties"]["chunk_tokens"]["anyOf"] = [{"type": "integer", "minimum": MIN_CHUNK_TOKENS}, {"type": "null"}]
        schema["properties"]["chunk_overlap"].update({"type": "integer", "minimum": 0})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


ERROR_STATUSES = {
    400: "Invalid request (including token ids outside TOKEN_ARRAY_ENCODING's vocabulary)",
    401: "Missing or wrong API key (when API_KEY is set)",
    404: "Unknown model",
    408: "Body sent too slowly",
    413: "Body too large",
    415: "Body is not JSON",
    429: "Overloaded; retry after Retry-After seconds",
    503: "Model not loaded",
    504: "Request timed out",
}


def responses_doc(model: type[BaseModel]) -> dict:
    errors = {status: {"model": ErrorResponse, "description": text} for status, text in ERROR_STATUSES.items()}
    return {200: {"model": model}, **errors}
