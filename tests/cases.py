"""The bad-input matrix, defined once and run against every target.

Each case: (id, body bytes, content type, expected status, expected error code).
"""

from __future__ import annotations

import json

GOOD = {"input": "hello, world!"}

BAD_BODIES = [
    ("not-json", b"this is not json", "application/json", 400, "invalid_json"),
    ("truncated-json", b'{"input": "hello', "application/json", 400, "invalid_json"),
    ("empty-body", b"", "application/json", 400, "missing_body"),
    ("json-array", b'["hello"]', "application/json", 400, "invalid_value"),
    ("json-string", b'"hello"', "application/json", 400, "invalid_value"),
    ("missing-input", b'{"text": "hello"}', "application/json", 400, "invalid_value"),
    ("input-null", b'{"input": null}', "application/json", 400, "invalid_value"),
    ("input-number", b'{"input": 42}', "application/json", 400, "invalid_value"),
    ("input-object", b'{"input": {"a": 1}}', "application/json", 400, "invalid_value"),
    ("empty-string", b'{"input": ""}', "application/json", 400, "invalid_value"),
    ("empty-list", b'{"input": []}', "application/json", 400, "invalid_value"),
    ("null-item", b'{"input": ["ok", null]}', "application/json", 400, "invalid_value"),
    ("empty-item", b'{"input": ["ok", ""]}', "application/json", 400, "invalid_value"),
    # 100256 is a gap in cl100k_base; "/" takes no token ids at all.
    ("token-ids-outside-the-vocabulary", b'{"input": [101, 7592, 100256]}', "application/json", 400, "invalid_value"),
    ("nested-lists", b'{"input": [["a"]]}', "application/json", 400, "invalid_value"),
    ("invalid-utf8", b'{"input": "\xff\xfe\xfd"}', "application/json", 400, "invalid_json"),
    ("lone-surrogate", b'{"input": "\\ud800"}', "application/json", 400, "invalid_json"),
    ("absurd-nesting", b'{"input": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json", 400, "invalid_json"),
    ("too-many-items", json.dumps({"input": ["x"] * 2049}).encode(), "application/json", 400, "invalid_value"),
    ("item-too-long", json.dumps({"input": "x" * 100_001}).encode(), "application/json", 400, "invalid_value"),
    ("form-encoded", b"input=hello", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
]

OPENAI_BAD_BODIES = [
    ("unknown-encoding", {"input": "x", "encoding_format": "hex"}, 400, "invalid_value"),
    ("wrong-model", {"input": "x", "model": "text-embedding-3-small"}, 404, "model_not_found"),
    ("wrong-dimensions", {"input": "x", "dimensions": 128}, 400, "invalid_value"),
    ("dimensions-not-int", {"input": "x", "dimensions": "384"}, 400, "invalid_value"),
    ("model-not-string", {"input": "x", "model": 7}, 400, "invalid_value"),
    ("token-id-negative", {"input": [15339, -1]}, 400, "invalid_value"),
    ("token-id-too-big", {"input": [[15339], [2**40]]}, 400, "invalid_value"),
    ("token-id-boolean", {"input": [True, 1]}, 400, "invalid_value"),
    ("token-array-empty", {"input": [[15339], []]}, 400, "invalid_value"),
    ("token-ids-mixed-with-text", {"input": ["hello", 15339]}, 400, "invalid_value"),
    ("text-mixed-with-token-ids", {"input": [15339, "hello"]}, 400, "invalid_value"),
    ("token-arrays-mixed-with-text", {"input": [[15339], "hello"]}, 400, "invalid_value"),
    ("token-array-of-fractions", {"input": [[15339.5]]}, 400, "invalid_value"),
]


def assert_openai_error(payload: dict, code: str, status: int | None = None) -> None:
    """OpenAI's nested error shape, with our code and a human message. `status`: a direct
    Lambda invocation's error, which carries its HTTP-equivalent status in the body too."""
    assert set(payload) == {"error"}, payload
    error = payload["error"]
    fields = {"message", "type", "param", "code"} | ({"status"} if status is not None else set())
    assert set(error) == fields, error
    assert error.get("status") == status, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and len(error["message"]) > 10, error
    assert "Traceback" not in error["message"]
