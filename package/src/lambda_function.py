"""AWS Lambda adapter: translates events to the shared service and back.

The model loads at import, i.e. in Lambda's init phase, once per sandbox; every invocation
after that reuses it. Direct invocations (the seed's `{"input": "hello, world!"}`, or a
`/v1/embeddings` body: any OpenAI-only field such as `encoding_format` selects that route) get
the response JSON object itself (not a JSON string inside JSON), errors with their status in
the body; `{"shard_job": ...}` events (embed-corpus's worker mode) go to shard_jobs.py; Function URL and API Gateway events get a proxy result `{"statusCode", "headers",
"body"}` with the same JSON bodies as the FastAPI target.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import shard_jobs
from api import EmbeddingAPI, Reply, encode_json, error_reply, json_reply, resolve
from errors import ApiError, bad_request, internal_error, too_large
from lambda_events import (
    LAMBDA_RESPONSE_LIMIT_BYTES,
    direct_operation,
    http_result,
    is_http_event,
    parse_http_event,
    with_status_in_body,
)
from logs import configure_logging
from model import model_load
from settings import load_settings

SAFETY_MARGIN_S = 1.0  # leave time to answer before Lambda's own timeout kills the sandbox

SETTINGS = load_settings()
configure_logging(SETTINGS.log_level)
log = logging.getLogger("embedding.lambda")
API = EmbeddingAPI(SETTINGS, model_load(SETTINGS))


def _direct_body(event: Any) -> bytes:
    if not isinstance(event, dict):
        raise bad_request('the event must be a JSON object like {"input": "hello, world!"}')
    try:
        return encode_json(event)
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        raise bad_request("the event holds a value JSON can't carry here (an integer beyond 64 bits?)") from None


def _budget(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return None if remaining is None else max(0.0, remaining() / 1000 - SAFETY_MARGIN_S)


def _respond(event: Any, context: Any) -> tuple[str, Reply, bool]:
    http = is_http_event(event)
    operation, path = "embed", "/"
    try:
        if http:
            request = parse_http_event(event)
            operation, path = resolve(request.method, request.path), request.path
            # HTTP events carry the API key; direct invocations were authorised by IAM.
            API.authorize(operation, request.headers.get("authorization"))
            body, content_type = request.body, request.headers.get("content-type")
        elif shard_jobs.is_shard_event(event):  # embed-corpus's worker mode: S3 in, S3 out
            operation = "shard_job" if "shard_job" in event else "shard_probe"
            return operation, json_reply(200, shard_jobs.handle(event, SETTINGS, API.embedder)), False
        else:
            body, content_type = _direct_body(event), "application/json"
            operation = direct_operation(event)
        reply = API.handle(operation, body, content_type, budget_s=_budget(context), path=path)
    except ApiError as error:
        reply = error_reply(error)
    if len(reply.body) > LAMBDA_RESPONSE_LIMIT_BYTES:
        reply = error_reply(
            too_large(
                f"the response ({len(reply.body)} bytes) exceeds Lambda's 6 MB limit; "
                "send fewer inputs per request or use encoding_format=base64 on /v1/embeddings"
            )
        )
    return operation, reply, http


def handler(event: Any, context: Any) -> dict | bytes:
    started = time.perf_counter()
    try:
        operation, reply, http = _respond(event, context)
    except Exception:  # never let one bad event take the runtime down
        log.exception("unhandled error", extra={"request_id": getattr(context, "aws_request_id", None)})
        operation, reply, http = "unknown", error_reply(internal_error()), is_http_event(event)
    log.info(
        "invocation",
        extra={
            "request_id": getattr(context, "aws_request_id", None),
            "operation": operation,
            "status": reply.status,
            "batch_size": reply.items,
            "tokens": reply.tokens,
            "truncated_inputs": reply.truncated,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "event": "http" if http else "direct",
        },
    )
    # Direct invocations get the JSON document itself; bytes pass through the runtime
    # untouched, so float32 vectors keep orjson's short form.
    return http_result(reply) if http else with_status_in_body(reply).body
