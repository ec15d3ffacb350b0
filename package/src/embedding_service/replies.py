"""Replies and request bodies, transport-free: both adapters and every operation use these.

A `Reply` is what an operation answers (status, JSON body bytes, headers, counts for logs and
metrics); each adapter renders it once. `decode_json` and `validate` turn body bytes into a
request schema with a clear 4xx for every way that can go wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from embedding_service.errors import ApiError, bad_request, too_large, unsupported_media_type
from embedding_service.settings import Limits

JSON_HEADERS = {"content-type": "application/json"}


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))
    items: int = 0  # texts embedded, for logs and metrics
    tokens: int = 0
    truncated: int = 0  # texts cut at the model's maximum length
    error_code: str | None = None


def encode_json(payload: Any) -> bytes:
    """orjson writes float32 vectors natively, in their shortest exact form."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, encode_json(payload), {**JSON_HEADERS, **(headers or {})})


def error_reply(error: ApiError) -> Reply:
    reply = json_reply(error.status, error.body(), error.headers)
    reply.error_code = error.code
    return reply


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media in ("", "application/json", "text/json") or media.endswith("+json")


def decode_json(body: bytes, content_type: str | None, limits: Limits) -> Any:
    """Body bytes -> JSON value, with a clear 4xx for every way that can go wrong.

    The content type is not required (curl without -H sends form encoding): a body that
    parses as JSON is accepted, and one that doesn't is blamed on a declared non-JSON type.
    """
    if len(body) > limits.max_body_bytes:
        raise too_large(f"request body is {len(body)} bytes; at most {limits.max_body_bytes}")
    if not body.strip():
        raise bad_request(
            'request body is empty; send JSON like {"input": "hello, world!"}', code="missing_body"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if content_type and not _is_json_type(content_type):
            raise unsupported_media_type(content_type) from None
        raise bad_request(f"request body is not valid JSON: {error}", code="invalid_json") from None


def validate(model: type[BaseModel], payload: Any, limits: Limits) -> Any:
    if not isinstance(payload, dict):
        raise bad_request('request body must be a JSON object like {"input": "hello, world!"}')
    try:
        return model.model_validate(payload, context={"limits": limits})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = f"'{param}' is required"
        elif first["type"] != "value_error" and param:
            message = f"{param}: {message}"
        raise bad_request(message, param=(param or "").split(".")[0] or None) from None
