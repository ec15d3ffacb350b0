"""AWS Lambda adapter: translates events to the shared service and back.

The model loads at import, i.e. in Lambda's init phase, once per sandbox; every invocation
after that reuses it. Direct invocations (the seed's `{"input": "hello, world!"}`, or a
`/v1/embeddings` body: any OpenAI-only field such as `encoding_format` selects that route) get
the response JSON object itself (not a JSON string inside JSON), errors with their status in
the body. Function URL and API Gateway events get a proxy result `{"statusCode", "headers",
"body"}` with the same JSON bodies as the FastAPI target.

Events named by a key of `contract.EventKey` (embed-corpus's shard jobs) are not request bodies:
`build_handler` takes an operation for each, and this image's `handler` has none, so it answers
them `shard_jobs_unsupported` and the client embeds through its own path. The bulk image's
handler (`embedding_client.workers.lambda_bulk.handler`, client side) is this same handler built
with the shard operations, so every event shares one time budget and one error rendering.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from embedding_service.contract import SHARD_EVENT_KEYS, ErrorCode
from embedding_service.api import EmbeddingAPI, Reply, encode_json, error_reply, json_reply, resolve
from embedding_service.errors import ApiError, bad_request, internal_error, too_large
from embedding_service.lambda_events import (
    LAMBDA_RESPONSE_LIMIT_BYTES,
    direct_operation,
    http_result,
    is_http_event,
    parse_http_event,
    with_status_in_body,
)
from embedding_service.logs import configure_logging
from embedding_service.model import model_load
from embedding_service.settings import load_settings

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


# An operation on a keyed event: (the event, the seconds it may take or None) -> a JSON value,
# or raises ApiError.
EventOperation = Callable[[dict, "float | None"], Any]


def _event_key(event: Any) -> str | None:
    if isinstance(event, dict):
        return next((key for key in SHARD_EVENT_KEYS if key in event), None)
    return None


def _unsupported(event: dict, budget_s: float | None) -> Any:
    raise ApiError(
        400,
        "this function's image can't run shard jobs: deploy the bulk image (build arg BULK=1, the "
        "Terraform's bulk function) or run embed-corpus with --io client",
        code=ErrorCode.SHARD_JOBS_UNSUPPORTED,
    )


def _respond(event: Any, context: Any, operations: Mapping[str, EventOperation]) -> tuple[str, Reply, bool]:
    http = is_http_event(event)
    operation, path = "embed", "/"
    try:
        key = None if http else _event_key(event)
        if http:
            request = parse_http_event(event)
            operation, path = resolve(request.method, request.path), request.path
            # HTTP events carry the API key; direct invocations were authorised by IAM.
            API.authorize(operation, request.headers.get("authorization"))
            reply = API.handle(operation, request.body, request.headers.get("content-type"),
                               budget_s=_budget(context), path=path)
        elif key is not None:
            operation = key
            run = operations.get(key, _unsupported)
            reply = json_reply(200, run(event, _budget(context)))
        else:
            body = _direct_body(event)  # first: it refuses a non-object event
            operation = direct_operation(event)
            reply = API.handle(operation, body, "application/json", budget_s=_budget(context), path=path)
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


def build_handler(operations: Mapping[str, EventOperation]) -> Callable[[Any, Any], "dict | bytes"]:
    """A Lambda handler that also serves the keyed events in `operations` (see the docstring)."""
    unknown = set(operations) - set(SHARD_EVENT_KEYS)
    if unknown:
        raise ValueError(f"not event keys of the contract: {sorted(unknown)}")

    def handler(event: Any, context: Any) -> dict | bytes:
        return _handle(event, context, operations)

    return handler


def _handle(event: Any, context: Any, operations: Mapping[str, EventOperation]) -> dict | bytes:
    started = time.perf_counter()
    try:
        operation, reply, http = _respond(event, context, operations)
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


handler = build_handler({})
