"""Errors as values: one status table, rendered by each adapter in OpenAI's nested shape.

Validation (400), auth (401), not found (404), wrong method (405), too large (413),
wrong media type (415), overloaded (429), not ready (503) and timeout (504) stay distinct,
so clients can tell "fix your request" from "retry later". Internal exception text is
logged, never sent to a client.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def bad_request(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


# The last part of an OpenAI route, and the path this server serves it at.
OPENAI_ROUTES = {"embeddings": "/v1/embeddings", "models": "/v1/models"}


def not_found(path: str) -> ApiError:
    return ApiError(404, f"no route for {path}{_route_hint(path)}", "not_found_error", None, "unknown_url")


def _route_hint(path: str) -> str:
    """For a path that looks like an OpenAI route under the wrong base URL (/api/v1/embeddings,
    /v1/v1/embeddings, /openai/embeddings), say which base URL works; other OpenAI routes
    (chat, completions) are not served at all."""
    parts = [part for part in path.split("/") if part]
    for name, route in OPENAI_ROUTES.items():
        if name in parts:
            return (
                f"; this server serves {route} (and /{name}): set the client's base URL to http(s)://<host>/v1"
                " with nothing after /v1, e.g. OpenAI(base_url='http://localhost:8000/v1')"
            )
    if "v1" in parts or any(part in ("chat", "completions", "responses") for part in parts):
        return "; this server serves embeddings only: POST /v1/embeddings (GET /v1/models lists the model)"
    return ""


def method_not_allowed(method: str, path: str, allowed: list[str]) -> ApiError:
    return ApiError(
        405,
        f"{method} is not allowed on {path}; use {', '.join(allowed)}",
        "invalid_request_error",
        None,
        "method_not_allowed",
        {"allow": ", ".join(allowed)},
    )


def too_large(message: str) -> ApiError:
    return ApiError(413, message, "invalid_request_error", None, "request_too_large")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(
        415,
        f"Content-Type {content_type!r} is not JSON; send a JSON body "
        "(curl -H 'Content-Type: application/json' -d '{\"input\": \"...\"}')",
        "invalid_request_error",
        None,
        "unsupported_media_type",
    )


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "missing or invalid API key: send 'Authorization: Bearer <API_KEY>'",
        "authentication_error",
        None,
        "invalid_api_key",
        {"www-authenticate": "Bearer"},
    )


def overloaded(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        "the server is at capacity; retry after a short wait",
        "rate_limit_error",
        None,
        "overloaded",
        {"retry-after": str(retry_after_s)},
    )


def not_ready() -> ApiError:
    return ApiError(503, "the model is still loading", "service_unavailable", None, "not_ready", {"retry-after": "1"})


def timed_out(seconds: float) -> ApiError:
    return ApiError(504, f"the request took longer than {seconds:g}s", "timeout_error", None, "timeout")


def internal_error() -> ApiError:
    return ApiError(500, "internal error; the server logged the details", "server_error", None, "internal_error")
