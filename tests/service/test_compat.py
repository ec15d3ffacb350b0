"""What OpenAI-compatible clients and framework defaults expect, on both targets.

Model aliases (MODEL_ALIASES), OpenAI's routes without /v1, GET /v1/models/{id} for ids with
a '/', 404s that say which base URL works, and x-truncated-inputs for texts cut at the
model's maximum length.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest

from cases import assert_openai_error
from conftest import RieServer, UvicornServer
from test_lambda_rie import function_url_event

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
ALIASES = "text-embedding-ada-002, text-embedding-3-small"
LONG = "word " * 400  # far past the model's 256 tokens


@pytest.fixture(scope="module")
def aliased(tmp_path_factory):
    server = UvicornServer(tmp_path_factory.mktemp("aliases") / "server.log", MODEL_ALIASES=ALIASES)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aliased_rie(tmp_path_factory):
    server = RieServer(tmp_path_factory.mktemp("aliases-rie") / "rie.log", MODEL_ALIASES=ALIASES)
    client = httpx.Client(timeout=120)

    def invoke(event: dict) -> dict:
        response = client.post(server.url + "/2015-03-31/functions/function/invocations", json=event)
        assert response.status_code == 200, response.text
        return response.json()

    yield invoke
    client.close()
    server.stop()


def url_event(method: str, path: str, payload=None) -> dict:
    return function_url_event(method, path, None if payload is None else json.dumps(payload).encode())


# ------------------------------------------------------------------------------- aliases


@pytest.mark.parametrize("name", ["text-embedding-ada-002", "TEXT-EMBEDDING-3-SMALL", MODEL_ID, "all-MiniLM-L6-v2"])
def test_given_an_alias_then_served_and_the_response_names_the_served_model(aliased, name):
    client = openai.OpenAI(base_url=f"{aliased.url}/v1", api_key="unused", max_retries=0)
    result = client.embeddings.create(model=name, input=["hello, world!"])
    assert result.model == MODEL_ID and len(result.data[0].embedding) == 384
    assert client.models.retrieve(name).id == MODEL_ID


def test_given_an_alias_on_lambda_then_served_and_the_response_names_the_served_model(aliased_rie):
    result = aliased_rie(url_event("POST", "/v1/embeddings", {"input": "hi", "model": "text-embedding-ada-002"}))
    assert result["statusCode"] == 200 and json.loads(result["body"])["model"] == MODEL_ID
    result = aliased_rie(url_event("GET", "/v1/models/text-embedding-3-small"))
    assert json.loads(result["body"])["id"] == MODEL_ID


def test_given_no_aliases_then_openai_model_names_are_404_that_name_the_served_model(http):
    response = http.post("/v1/embeddings", json={"input": "hi", "model": "text-embedding-ada-002"})
    assert response.status_code == 404
    assert_openai_error(response.json(), "model_not_found")
    assert MODEL_ID in response.json()["error"]["message"]


# ------------------------------------------------------------------------------- routes


def test_given_a_base_url_without_v1_then_embeddings_and_models_work(http_url):
    client = openai.OpenAI(base_url=http_url, api_key="unused", max_retries=0)
    with_v1 = openai.OpenAI(base_url=f"{http_url}/v1", api_key="unused", max_retries=0)
    assert client.embeddings.create(model=MODEL_ID, input="hi").data[0].embedding == \
        with_v1.embeddings.create(model=MODEL_ID, input="hi").data[0].embedding
    assert [m.id for m in client.models.list()] == [MODEL_ID]


@pytest.mark.parametrize("base", ["/v1", ""])
def test_given_the_openai_client_then_models_retrieve_works_with_a_slash_in_the_id(http_url, base):
    client = openai.OpenAI(base_url=f"{http_url}{base}", api_key="unused", max_retries=0)
    model = client.models.retrieve(MODEL_ID)  # sent as /models/sentence-transformers%2Fall-MiniLM-L6-v2
    assert model.id == MODEL_ID and model.object == "model"
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-4o")
    assert raised.value.code == "model_not_found"


@pytest.mark.parametrize("path", [f"/v1/models/{MODEL_ID}", "/v1/models/sentence-transformers%2Fall-MiniLM-L6-v2",
                                  f"/models/{MODEL_ID}/", "/v1/models/all-MiniLM-L6-v2"])
def test_given_model_paths_then_both_targets_return_the_card(http, invoke, path):
    response = http.get(path)
    assert response.status_code == 200, response.text
    result = invoke(url_event("GET", path))
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"]) == response.json()
    assert response.json()["id"] == MODEL_ID


@pytest.mark.parametrize("path", ["/v1/models/", "/models/"])
def test_given_the_models_path_with_a_slash_then_the_list_on_both_targets(http, invoke, path):
    response = http.get(path)
    assert response.status_code == 200 and response.json()["object"] == "list"
    assert json.loads(invoke(url_event("GET", path))["body"]) == response.json()


@pytest.mark.parametrize("path", ["/embeddings", "/v1/embeddings"])
def test_given_a_function_url_event_on_either_prefix_then_embedded(invoke, path):
    result = invoke(url_event("POST", path, {"input": ["a", "b"]}))
    assert result["statusCode"] == 200 and len(json.loads(result["body"])["data"]) == 2
    assert invoke(url_event("GET", path.replace("embeddings", "models")))["statusCode"] == 200


@pytest.mark.parametrize("path,hint", [
    ("/api/v1/embeddings", "set the client's base URL to http(s)://<host>/v1"),
    ("/v1/v1/embeddings", "set the client's base URL to http(s)://<host>/v1"),
    ("/openai/models", "set the client's base URL to http(s)://<host>/v1"),
    ("/v1/chat/completions", "this server serves embeddings only: POST /v1/embeddings"),
])
def test_given_an_openai_route_under_the_wrong_base_url_then_the_404_says_which_works(http, invoke, path, hint):
    response = http.post(path, json={"input": "hi"})
    assert response.status_code == 404
    assert_openai_error(response.json(), "unknown_url")
    assert hint in response.json()["error"]["message"]
    result = invoke(url_event("POST", path, {"input": "hi"}))
    assert result["statusCode"] == 404 and json.loads(result["body"]) == response.json()


def test_given_an_unrelated_path_then_a_plain_404(http):
    assert http.get("/favicon.ico").json()["error"]["message"] == "no route for /favicon.ico"


# ------------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("path", ["/", "/v1/embeddings"])
def test_given_texts_past_the_maximum_then_the_header_counts_them_and_usage_counts_what_was_read(http, path):
    response = http.post(path, json={"input": [LONG, "short", LONG]})
    assert response.status_code == 200
    assert response.headers["x-truncated-inputs"] == "2"
    assert response.json()["usage"]["prompt_tokens"] == 256 + 3 + 256
    assert http.post(path, json={"input": ["short"]}).headers["x-truncated-inputs"] == "0"


def test_given_exactly_the_maximum_then_not_counted_as_truncated(http):
    # 254 words + [CLS] + [SEP] = 256 tokens: read whole, nothing cut.
    response = http.post("/v1/embeddings", json={"input": "x " * 254})
    assert response.json()["usage"]["prompt_tokens"] == 256
    assert response.headers["x-truncated-inputs"] == "0"
    assert http.post("/v1/embeddings", json={"input": "x " * 255}).headers["x-truncated-inputs"] == "1"


def test_given_a_function_url_event_with_a_long_text_then_the_header_counts_it(invoke):
    result = invoke(url_event("POST", "/v1/embeddings", {"input": [LONG, "short"]}))
    assert result["statusCode"] == 200
    assert result["headers"]["x-truncated-inputs"] == "1"


def test_given_a_long_text_then_the_server_logs_a_truncation_line(tmp_path):
    server = UvicornServer(tmp_path / "server.log")
    try:
        httpx.post(f"{server.url}/v1/embeddings", json={"input": [LONG, LONG, "short"]}, timeout=60)
        httpx.get(f"{server.url}/status")
        lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        (truncated,) = [line for line in lines if line["message"] == "inputs truncated"]
        assert truncated["truncated_inputs"] == 2 and truncated["inputs"] == 3
        assert truncated["max_seq_length"] == 256 and truncated["level"] == "WARNING"
        (embedded,) = [line for line in lines if line["message"] == "embedded"]
        assert embedded["truncated_inputs"] == 2
    finally:
        server.stop()


def test_given_a_direct_invocation_then_the_body_is_unchanged_by_truncation(invoke):
    body = invoke({"input": LONG})
    assert set(body) == {"fragment", "embedding", "model", "usage"}
    assert body["usage"]["prompt_tokens"] == 256
    assert np.isclose(np.linalg.norm(body["embedding"]), 1.0, atol=1e-5)
