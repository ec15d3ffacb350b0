"""The FastAPI target through a real server (uvicorn here, or a container via EMBED_HTTP_URL)."""

from __future__ import annotations

import base64
import json

import numpy as np
import openai
import pytest

from cases import BAD_BODIES, GOOD, OPENAI_BAD_BODIES, assert_openai_error

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_given_the_seed_status_call_then_200_ok(http):
    response = http.get("/status")
    assert response.status_code == 200
    assert response.json() == {"status": "200 OK"}


def test_given_the_seed_curl_then_one_unit_vector_matching_sentence_transformers(http, reference_model):
    # The seed's exact call: curl -H 'Content-Type: application/json' -d '{"input": "hello, world!"}'
    response = http.post("/", content=json.dumps(GOOD), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["fragment"] == {"input": "hello, world!"}
    vector = body["embedding"]
    assert len(vector) == 384 and all(isinstance(x, float) for x in vector)
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert cosine(vector, reference_model.encode("hello, world!")) > 0.9999
    assert body["usage"] == {"prompt_tokens": 6, "total_tokens": 6}  # [CLS] hello , world ! [SEP]


def test_given_curl_without_content_type_then_json_body_still_accepted(http):
    response = http.post("/", content=b'{"input": "hello, world!"}',
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 200, response.text
    assert len(response.json()["embedding"]) == 384


def test_given_a_list_then_one_vector_per_item_in_input_order(http, reference_model):
    texts = ["a short one", "a considerably longer sentence about embeddings " * 5, "z"]
    response = http.post("/", json={"input": texts})
    assert response.status_code == 200
    vectors = response.json()["embedding"]
    assert len(vectors) == 3
    for text, vector in zip(texts, vectors):
        assert cosine(vector, reference_model.encode(text)) > 0.9999


def test_given_a_text_beyond_the_model_maximum_then_truncated_and_usage_says_so(http):
    response = http.post("/", json={"input": "word " * 2000})
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens"] == 256


def test_given_openai_float_request_then_openai_shaped_response(http, reference_model):
    response = http.post("/v1/embeddings", json={"input": ["hello", "world"], "model": MODEL_ID,
                                                 "encoding_format": "float"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == MODEL_ID
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert all(item["object"] == "embedding" for item in body["data"])
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == 6
    assert cosine(body["data"][1]["embedding"], reference_model.encode("world")) > 0.9999


def test_given_base64_encoding_then_little_endian_float32_equal_to_float(http):
    floats = http.post("/v1/embeddings", json={"input": "hello"}).json()["data"][0]["embedding"]
    encoded = http.post("/v1/embeddings", json={"input": "hello", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    assert decoded.shape == (384,)
    np.testing.assert_array_equal(decoded, np.asarray(floats, dtype=np.float32))


@pytest.mark.parametrize("encoding_format", [None, "float"])
def test_given_the_official_openai_client_then_embeddings_match(http_url, reference_model, encoding_format):
    client = openai.OpenAI(base_url=f"{http_url}/v1", api_key="unused", max_retries=0)
    kwargs = {} if encoding_format is None else {"encoding_format": encoding_format}  # default: base64
    result = client.embeddings.create(model=MODEL_ID, input=["hello, world!", "second"], **kwargs)
    assert len(result.data) == 2 and len(result.data[0].embedding) == 384
    assert cosine(result.data[0].embedding, reference_model.encode("hello, world!")) > 0.9999
    assert result.usage.prompt_tokens > 0


def test_given_the_official_client_and_a_bad_request_then_it_raises_with_our_message(http_url):
    client = openai.OpenAI(base_url=f"{http_url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=MODEL_ID, input="")
    assert "empty" in str(raised.value)


def test_models_health_docs_and_metrics(http):
    models = http.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL_ID
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["dimension"] == 384 and health["max_seq_length"] == 256
    assert health["precision"] == "fp32"
    assert "swagger-ui" in http.get("/docs").text.lower()
    assert "redoc" in http.get("/redoc").text.lower()
    spec = http.get("/openapi.json").json()
    assert {"/", "/v1/embeddings", "/status", "/health"} <= set(spec["paths"])
    request_schema = spec["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "input" in request_schema["properties"]
    metrics = http.get("/metrics").text
    assert 'embedding_requests_total{operation="embed",status="200"}' in metrics
    assert "embedding_model_batch_size_bucket" in metrics and "embedding_tokens_total" in metrics


@pytest.mark.parametrize("path", ["/", "/v1/embeddings"])
@pytest.mark.parametrize("case", BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_given_bad_input_then_clear_4xx_and_server_keeps_serving(http, path, case):
    _, body, content_type, status, code = case
    response = http.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert_openai_error(response.json(), code)
    assert http.post(path, json=GOOD).status_code == 200


@pytest.mark.parametrize("case", OPENAI_BAD_BODIES, ids=[c[0] for c in OPENAI_BAD_BODIES])
def test_given_bad_openai_options_then_clear_4xx(http, case):
    _, payload, status, code = case
    response = http.post("/v1/embeddings", json=payload)
    assert response.status_code == status, response.text
    assert_openai_error(response.json(), code)


def test_given_a_body_over_the_limit_then_413_before_reading_it(http):
    big = b'{"input": "' + b"x" * (7 * 1024 * 1024) + b'"}'
    response = http.post("/", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert_openai_error(response.json(), "request_too_large")
    assert http.post("/", json=GOOD).status_code == 200


def test_given_unknown_route_or_method_then_404_and_405_in_openai_shape(http):
    missing = http.get("/nope")
    assert missing.status_code == 404
    assert_openai_error(missing.json(), "unknown_url")
    wrong = http.get("/v1/embeddings")
    assert wrong.status_code == 405
    assert_openai_error(wrong.json(), "method_not_allowed")


def test_a_model_id_of_a_newline_is_not_the_model_list(http):
    """urlsplit drops "\\n" from URLs: the id must come from the path as received (found by schemathesis)."""
    response = http.get("/v1/models/%0A")
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
