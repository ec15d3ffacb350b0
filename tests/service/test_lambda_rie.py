"""The Lambda handler under the real Runtime Interface Emulator, with recorded event JSON.

Runs against `make lambda-local`'s setup here, or a container via EMBED_LAMBDA_URL.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path

import numpy as np
import pytest

from cases import BAD_BODIES, GOOD, assert_openai_error

EVENTS = Path(__file__).parent / "events"


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def function_url_event(method: str = "POST", path: str = "/", body: bytes | None = None,
                       content_type: str = "application/json", base64_body: bool = False) -> dict:
    result = event("function_url_v2.json")
    result["rawPath"] = path
    result["requestContext"]["http"].update(method=method, path=path)
    result["headers"]["content-type"] = content_type
    if body is None:
        result.pop("body")
    elif base64_body:
        result["body"], result["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        result["body"], result["isBase64Encoded"] = body.decode("utf-8", "surrogateescape"), False
    return result


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_given_the_seed_direct_event_then_the_response_object_itself(invoke, reference_model):
    # The seed's curl: -d '{"input": "hello, world!"}' .../2015-03-31/functions/function/invocations
    body = invoke(event("direct.json"))
    assert isinstance(body, dict), "a JSON object, not a JSON string inside JSON"
    assert body["fragment"] == {"input": "hello, world!"}
    assert len(body["embedding"]) == 384
    assert cosine(body["embedding"], reference_model.encode("hello, world!")) > 0.9999


def test_given_a_direct_list_event_then_one_vector_per_item(invoke):
    body = invoke({"input": ["one", "two", "three"]})
    assert [len(v) for v in body["embedding"]] == [384, 384, 384]
    assert body["usage"]["prompt_tokens"] == 9


def test_given_a_function_url_event_then_proxy_result_with_the_fastapi_body(invoke, reference_model):
    result = invoke(event("function_url_v2.json"))
    assert result["statusCode"] == 200
    assert result["headers"]["content-type"] == "application/json"
    body = json.loads(result["body"])
    assert body["fragment"] == {"input": "hello, world!"}
    assert cosine(body["embedding"], reference_model.encode("hello, world!")) > 0.9999


def test_given_a_base64_function_url_body_then_decoded(invoke):
    payload = json.dumps({"input": ["héllo wörld 🚀"], "encoding_format": "base64"}).encode()
    result = invoke(function_url_event(path="/v1/embeddings", body=payload, base64_body=True))
    assert result["statusCode"] == 200, result
    item = json.loads(result["body"])["data"][0]
    assert np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4").shape == (384,)


def test_given_a_rest_api_v1_event_then_routed_to_openai_embeddings(invoke):
    result = invoke(event("api_gateway_rest_v1.json"))
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]


@pytest.mark.parametrize("method,path,status,key", [
    ("GET", "/status", 200, "status"),
    ("GET", "/health", 200, "status"),
    ("GET", "/v1/models", 200, "data"),
])
def test_given_get_routes_then_same_bodies_as_fastapi(invoke, method, path, status, key):
    result = invoke(function_url_event(method=method, path=path, body=None))
    assert result["statusCode"] == status
    assert key in json.loads(result["body"])


def test_given_unknown_path_or_method_then_404_and_405(invoke):
    missing = invoke(function_url_event(path="/nope", body=b"{}"))
    assert missing["statusCode"] == 404
    assert_openai_error(json.loads(missing["body"]), "unknown_url")
    wrong = invoke(function_url_event(method="DELETE", path="/", body=None))
    assert wrong["statusCode"] == 405
    assert_openai_error(json.loads(wrong["body"]), "method_not_allowed")


@pytest.mark.parametrize("case", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_given_bad_input_in_a_function_url_event_then_4xx_and_the_runtime_keeps_serving(invoke, case):
    _, body, content_type, status, code = case
    result = invoke(function_url_event(body=body, content_type=content_type, base64_body=True))
    assert result["statusCode"] == status, result
    assert_openai_error(json.loads(result["body"]), code)
    assert invoke(event("function_url_v2.json"))["statusCode"] == 200


def test_given_an_event_over_lambdas_6mb_payload_limit_then_refused_and_runtime_survives(lambda_url, invoke):
    # Lambda (and the RIE) refuse such an event before the handler runs; what matters is
    # that the caller gets a clear error and the sandbox goes on serving.
    import httpx

    huge = json.dumps(function_url_event(body=b'{"input": "' + b"x" * (6 * 1024 * 1024) + b'"}'))
    response = httpx.post(lambda_url, content=huge, timeout=60)
    assert response.status_code == 413 or "statusCode" not in response.json()
    assert invoke(event("function_url_v2.json"))["statusCode"] == 200


def test_given_broken_base64_then_400(invoke):
    broken = function_url_event(body=b"{}", base64_body=True)
    broken["body"] = "%%%not base64%%%"
    result = invoke(broken)
    assert result["statusCode"] == 400
    assert "base64" in json.loads(result["body"])["error"]["message"]


@pytest.mark.parametrize("bad_event", [
    {"text": "no input key"},
    {"input": None},
    {"input": []},
    {"input": ["ok", 3]},
    ["not", "an", "object"],
    "just a string",
    42,
])
def test_given_a_malformed_direct_event_then_an_error_object_not_a_crash(invoke, bad_event):
    body = invoke(bad_event)
    assert_openai_error(body, "invalid_value", status=400)
    assert len(invoke(copy.deepcopy(GOOD))["embedding"]) == 384


def test_given_a_response_over_lambdas_6mb_limit_then_413_with_advice(invoke):
    texts = [f"text number {i}" for i in range(2048)]
    result = invoke(function_url_event(path="/v1/embeddings", body=json.dumps({"input": texts}).encode()))
    assert result["statusCode"] == 413
    assert "base64" in json.loads(result["body"])["error"]["message"]
    as_base64 = json.dumps({"input": texts, "encoding_format": "base64"}).encode()
    ok = invoke(function_url_event(path="/v1/embeddings", body=as_base64))
    assert ok["statusCode"] == 200
    assert len(json.loads(ok["body"])["data"]) == 2048


def test_given_a_direct_event_with_openai_fields_then_answered_as_v1_embeddings(invoke):
    body = invoke({"input": ["hello, world!", "second text"], "encoding_format": "base64", "token_counts": True})
    assert body["object"] == "list" and [item["index"] for item in body["data"]] == [0, 1]
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(vector, np.asarray(invoke(copy.deepcopy(GOOD))["embedding"], dtype=np.float32))
    assert [item["tokens"] for item in body["data"]] == [6, 4]
    assert "tokens" not in invoke({"input": ["hello"], "encoding_format": "base64"})["data"][0]


@pytest.mark.parametrize("bad_event, status, code", [
    ({"input": ["x"], "model": "someone/else"}, 404, "model_not_found"),
    ({"input": [""], "encoding_format": "base64"}, 400, "invalid_value"),
    ({"input": "x", "dimensions": 12}, 400, "invalid_value"),
])
def test_given_a_bad_direct_openai_event_then_its_status_is_in_the_body(invoke, bad_event, status, code):
    assert_openai_error(invoke(bad_event), code, status=status)


def test_given_a_shard_event_then_the_query_handler_refuses_it_by_code(invoke):
    """The query image has no shard worker: embed-corpus reads the code and embeds itself."""
    for key in ("shard_job", "shard_probe"):
        body = invoke({key: {"version": 1, "input": "s3://b/in.jsonl", "output": "s3://b/out/"}})
        assert_openai_error(body, "shard_jobs_unsupported", status=400)
        assert "--io client" in body["error"]["message"]
