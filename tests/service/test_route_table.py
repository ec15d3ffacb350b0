"""One route table, both transports: an endpoint is one declaration plus its operation.

A toy endpoint (`POST /v1/echo`, and `/echo` through `with_bare_aliases`) is added to the
service's table here, in this file only; the FastAPI app (`main.create_app`) and the Lambda
handler (`lambda_handler.make_handler`) built from the extended table both serve it, with its
OpenAPI docs, the API key, a 4xx JSON body on bad input, and direct Lambda events picked by the
fields only its schema has. The model is a stub: nothing here needs the real one.
"""

from __future__ import annotations

import base64
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from pydantic import BaseModel, ConfigDict, Field
from starlette.testclient import TestClient

from embedding_service import main
from embedding_service.api import EmbeddingAPI
from embedding_service.lambda_handler import make_handler
from embedding_service.model import Embeddings
from embedding_service.model_config import ModelSpec
from embedding_service.operations import OPERATIONS
from embedding_service.replies import json_reply
from embedding_service.routes import ROUTES, SERVICE_ROUTES, Route, RouteTable, with_bare_aliases
from embedding_service.settings import load_settings

SETTINGS = load_settings({"MODEL_ID": "sentence-transformers/all-MiniLM-L6-v2", "MODEL_DIR": "/nonexistent"})


class StubEmbedder:
    """Enough of `model.Embedder` for the lifespan, the batcher and the embedding operations."""

    dimension = 384
    spec = ModelSpec(path=SimpleNamespace(), dimension=384, max_seq_length=256, pooling="mean", normalize=True)
    backend = SimpleNamespace(name="stub", close=lambda: None)
    calibration_ranges = None

    def embed(self, texts: list[str], deadline: float | None = None, prompt: str | None = None) -> Embeddings:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vectors[:, 0] = 1.0
        return Embeddings(vectors, [len(t) + 2 for t in texts], [False] * len(texts))


# ----------------------------------------------------------------- the whole of the toy endpoint

class EchoRequest(BaseModel):
    """Repeat a text (a toy endpoint)."""

    model_config = ConfigDict(strict=True)
    echo: str = Field(min_length=1, description="The text to repeat.")
    times: int = Field(default=1, ge=1, le=3, description="How many times, 1 to 3.")


class EchoResponse(BaseModel):
    echo: str
    model: str


ECHO = Route("POST", "/v1/echo", "echo", EchoRequest, EchoResponse, "Repeat a text", "create_echo_v1")


def echo(api: EmbeddingAPI, request: EchoRequest, path: str):
    return json_reply(200, {"echo": request.echo * request.times, "model": api.settings.model_id})


TABLE = RouteTable((*ROUTES, *with_bare_aliases(ECHO)))
OPS = {**OPERATIONS, "echo": echo}

# ------------------------------------------------------------------------------------------


@pytest.fixture
def stub_model(monkeypatch):
    monkeypatch.setattr(main, "model_load", lambda settings: StubEmbedder())


def client_for(routes: RouteTable, operations=OPS, settings=SETTINGS) -> TestClient:
    return TestClient(main.create_app(settings, routes=routes, operations=operations), raise_server_exceptions=False)


def function_url_event(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> dict:
    return {
        "version": "2.0", "rawPath": path, "headers": {"content-type": "application/json", **(headers or {})},
        "requestContext": {"http": {"method": method, "path": path}, "stage": "$default"},
        "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
    }


class Context:
    aws_request_id = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def lambda_handler(routes: RouteTable, settings=SETTINGS):
    return make_handler(EmbeddingAPI(settings, StubEmbedder(), routes=routes, operations=OPS), {})


@pytest.mark.parametrize("path", ["/v1/echo", "/echo"])
def test_given_a_toy_declaration_when_the_app_is_built_then_it_serves_it_and_refuses_bad_input(stub_model, path):
    with client_for(TABLE) as client:
        good = client.post(path, json={"echo": "ab", "times": 2})
        missing = client.post(path, json={"times": 2})
        out_of_range = client.post(path, json={"echo": "ab", "times": 9})
        wrong_method = client.get(path)
        embeddings = client.post("/v1/embeddings", json={"input": "still served"})
        counted = client.get("/metrics").text
    assert good.status_code == 200, good.text
    assert good.json() == {"echo": "abab", "model": "sentence-transformers/all-MiniLM-L6-v2"}
    assert missing.status_code == 400
    assert missing.json() == {"error": {"message": "'echo' is required", "type": "invalid_request_error",
                                        "param": "echo", "code": "invalid_value"}}
    assert out_of_range.status_code == 400 and out_of_range.json()["error"]["param"] == "times"
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert embeddings.status_code == 200 and len(embeddings.json()["data"][0]["embedding"]) == 384
    assert 'embedding_requests_total{operation="echo",status="200"} 1.0' in counted


def test_given_a_toy_declaration_then_the_openapi_document_has_it_with_its_body_and_alias(stub_model):
    with client_for(TABLE) as client:
        document = client.get("/openapi.json").json()
    paths = list(document["paths"])
    assert paths[-2:] == ["/v1/echo", "/echo"]  # after the service's own, /v1 first
    operation = document["paths"]["/v1/echo"]["post"]
    assert (operation["summary"], operation["operationId"]) == ("Repeat a text", "create_echo_v1")
    alias = document["paths"]["/echo"]["post"]
    assert (alias["summary"], alias["operationId"]) == ("Repeat a text, without /v1", "create_echo")
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"echo", "times"} and schema["required"] == ["echo"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/EchoResponse")
    assert {"400", "401", "503"} <= set(operation["responses"])


def test_given_an_api_key_then_the_toy_route_needs_it_on_both_transports(stub_model):
    keyed = load_settings({"MODEL_ID": "sentence-transformers/all-MiniLM-L6-v2", "MODEL_DIR": "/nonexistent",
                           "API_KEY": "sk-test"})
    with client_for(TABLE, settings=keyed) as client:
        assert client.post("/v1/echo", json={"echo": "a"}).status_code == 401
        assert client.post("/v1/echo", json={"echo": "a"}, headers={"authorization": "Bearer sk-test"}).status_code == 200
    handler = lambda_handler(TABLE, settings=keyed)
    body = b'{"echo": "a"}'
    assert handler(function_url_event("POST", "/v1/echo", body), Context())["statusCode"] == 401
    allowed = handler(function_url_event("POST", "/v1/echo", body, {"authorization": "Bearer sk-test"}), Context())
    assert allowed["statusCode"] == 200


@pytest.mark.parametrize("path", ["/v1/echo", "/echo"])
def test_given_a_toy_declaration_when_the_lambda_handler_is_built_then_function_url_events_reach_it(path):
    handler = lambda_handler(TABLE)
    good = handler(function_url_event("POST", path, b'{"echo": "ab", "times": 3}'), Context())
    bad = handler(function_url_event("POST", path, b'{"echo": ""}'), Context())
    assert good["statusCode"] == 200, good
    assert orjson.loads(good["body"])["echo"] == "ababab"
    assert bad["statusCode"] == 400 and orjson.loads(bad["body"])["error"]["param"] == "echo"
    assert bad["headers"]["content-type"] == "application/json"


def test_given_a_toy_declaration_then_direct_events_naming_its_own_fields_are_its_body():
    handler = lambda_handler(TABLE)
    good = orjson.loads(handler({"echo": "hi", "times": 2}, Context()))
    bad = orjson.loads(handler({"echo": "hi", "times": 0}, Context()))
    seed = orjson.loads(handler({"input": "hi"}, Context()))  # the service's own choices are unchanged
    chunks_fields = TABLE.direct_operation({"input": "hi", "chunk_tokens": 16})
    assert good == {"echo": "hihi", "model": "sentence-transformers/all-MiniLM-L6-v2"}
    assert bad["error"]["status"] == 400 and bad["error"]["param"] == "times"
    assert len(seed["embedding"]) == 384
    assert chunks_fields == "chunks"
    assert TABLE.direct_operation({"input": "hi", "encoding_format": "base64"}) == "openai_embeddings"


def test_given_the_service_table_alone_then_the_toy_is_served_by_neither_transport(stub_model):
    """The declaration is what serves it: without it, both answer 404 (and a direct event is the seed's)."""
    with client_for(SERVICE_ROUTES) as client:
        assert client.post("/v1/echo", json={"echo": "ab"}).status_code == 404
    handler = lambda_handler(SERVICE_ROUTES)
    assert handler(function_url_event("POST", "/v1/echo", b'{"echo": "ab"}'), Context())["statusCode"] == 404
    assert orjson.loads(handler({"echo": "ab"}, Context()))["error"]["param"] == "input"


def test_given_a_declaration_without_its_operation_then_neither_transport_builds():
    table = RouteTable((*ROUTES, ECHO))
    with pytest.raises(ValueError, match="echo"):
        main.create_app(SETTINGS, routes=table, operations=OPERATIONS)
    with pytest.raises(ValueError, match="echo"):
        make_handler(EmbeddingAPI(SETTINGS, StubEmbedder(), routes=table, operations=OPERATIONS), {})


def test_given_an_operation_declared_twice_with_different_schemas_then_the_table_refuses_it():
    with pytest.raises(ValueError, match="another schema"):
        RouteTable((*ROUTES, Route("POST", "/v2/embeddings", "embed", EchoRequest, EchoResponse, "x", "x")))
