"""The Lambda handler for an API and its route table: event -> operation -> result.

Kept apart from lambda_function.py, which loads the model at import (Lambda's init phase), so a
handler can be built for any `EmbeddingAPI` (tests build one over an extended route table).
Function URL / API Gateway events are resolved through the route table and carry the API key;
direct events are the body of the route `RouteTable.direct_operation` picks; events named by a
key of `contract.EventKey` (shard jobs) run the operation given for that key. All of them share
one time budget, the 6 MB response check and one error rendering.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping

from embedding_service.api import EmbeddingAPI
from embedding_service.contract import SHARD_EVENT_KEYS, ErrorCode
from embedding_service.errors import ApiError, bad_request, internal_error, too_large
from embedding_service.lambda_events import (
    LAMBDA_RESPONSE_LIMIT_BYTES,
    http_result,
    is_http_event,
    parse_http_event,
    with_status_in_body,
)
from embedding_service.replies import Reply, encode_json, error_reply, json_reply

SAFETY_MARGIN_S = 1.0  # leave time to answer before Lambda's own timeout kills the sandbox
log = logging.getLogger("embedding.lambda")

# An operation on a keyed event: (the event, the seconds it may take or None) -> a JSON value,
# or raises ApiError.
EventOperation = Callable[[dict, "float | None"], Any]
Handler = Callable[[Any, Any], "dict | bytes"]


def make_handler(api: EmbeddingAPI, operations: Mapping[str, EventOperation]) -> Handler:
    """A Lambda handler over `api`'s route table that also serves the keyed events in `operations`."""
    unknown = set(operations) - set(SHARD_EVENT_KEYS)
    if unknown:
        raise ValueError(f"not event keys of the contract: {sorted(unknown)}")
    missing = {route.operation for route in api.routes.routes if route.on_lambda} - set(api.operations)
    if missing:
        raise ValueError(f"routes without an operation: {sorted(missing)}")

    def handler(event: Any, context: Any) -> dict | bytes:
        return _handle(api, event, context, operations)

    return handler


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


def _respond(
    api: EmbeddingAPI, event: Any, context: Any, operations: Mapping[str, EventOperation]
) -> tuple[str, Reply, bool]:
    http = is_http_event(event)
    operation, path = api.routes.direct_default or "unknown", "/"
    try:
        key = None if http else _event_key(event)
        if http:
            request = parse_http_event(event)
            operation, path = api.routes.resolve(request.method, request.path), request.path
            # HTTP events carry the API key; direct invocations were authorised by IAM.
            api.authorize(operation, request.headers.get("authorization"))
            reply = api.handle(operation, request.body, request.headers.get("content-type"),
                               budget_s=_budget(context), path=path)
        elif key is not None:
            operation = key
            run = operations.get(key, _unsupported)
            reply = json_reply(200, run(event, _budget(context)))
        else:
            body = _direct_body(event)  # first: it refuses a non-object event
            operation = api.routes.direct_operation(event)
            reply = api.handle(operation, body, "application/json", budget_s=_budget(context), path=path)
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


def _handle(api: EmbeddingAPI, event: Any, context: Any, operations: Mapping[str, EventOperation]) -> dict | bytes:
    started = time.perf_counter()
    try:
        operation, reply, http = _respond(api, event, context, operations)
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
