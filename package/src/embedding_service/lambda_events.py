"""Lambda events <-> the service's (method, path, headers, body) and back.

Three shapes reach the handler: the seed's direct invocation (`{"input": ...}`), Function
URL / HTTP API events (payload 2.0) and API Gateway REST proxy events (payload 1.0), the
last two possibly with base64 bodies. Field names follow AWS's documented payloads (see
tests/service/events/ for recorded examples). Which route a path or a direct event means is the
route table's call (`routes.RouteTable.resolve`, `.direct_operation`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from embedding_service.contract import LAMBDA_RESPONSE_LIMIT_BYTES  # noqa: F401 (the adapter's limit)
from embedding_service.errors import bad_request
from embedding_service.replies import Reply, encode_json


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    payload_version: str  # "1.0" or "2.0"


def payload_version(event: Any) -> str | None:
    """"2.0" (Function URL / HTTP API), "1.0" (REST proxy) or None (direct invocation)."""
    if not isinstance(event, dict):
        return None
    if event.get("version") == "2.0" and isinstance(event.get("requestContext"), dict):
        return "2.0"
    if isinstance(event.get("httpMethod"), str):
        return "1.0"
    return None


def is_http_event(event: Any) -> bool:
    return payload_version(event) is not None


def with_status_in_body(reply: Reply) -> Reply:
    """A direct invocation has no status line, so an error carries its HTTP-equivalent status
    in the body (`error.status`): clients tell a bad request (400, don't retry) from overload
    or a timeout (429/503/504, retry) without parsing messages."""
    if reply.status >= 400:
        payload = orjson.loads(reply.body)
        payload["error"]["status"] = reply.status
        reply.body = encode_json(payload)
    return reply


def parse_http_event(event: dict) -> HttpRequest:
    """Translate a payload 2.0 or 1.0 event; raises ApiError(400) for a broken body."""
    raw_headers = event.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise bad_request("the event's headers must be an object")
    headers = {str(k).lower(): str(v) for k, v in raw_headers.items()}
    version = payload_version(event)
    if version == "2.0":
        context = event["requestContext"]
        http = context.get("http") or {}
        if not isinstance(http, dict):
            raise bad_request("the event's requestContext.http must be an object")
        method = str(http.get("method", "GET"))
        path = str(event.get("rawPath") or http.get("path") or "/")
        stage = context.get("stage")
        stage = stage if isinstance(stage, str) else None
        if stage and stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]  # HTTP API named stages prefix the path
    else:
        method = event["httpMethod"]
        path = str(event.get("path") or "/")  # REST proxy paths exclude the stage
    raw = event.get("body")
    if raw is None:
        body = b""
    elif event.get("isBase64Encoded"):
        try:
            body = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("request body is marked base64 but is not valid base64") from None
    else:
        body = str(raw).encode("utf-8", errors="surrogatepass")
    return HttpRequest(method, path, headers, body, version)


def http_result(reply: Reply) -> dict:
    """The proxy-integration result both payload versions accept."""
    return {
        "statusCode": reply.status,
        "headers": reply.headers,
        "body": reply.body.decode("utf-8"),
        "isBase64Encoded": False,
    }
