"""Property tests (hypothesis) of validation and of the Lambda event translation, in-process.

No model and no server: `EmbeddingAPI.prepare` validates before it needs the model, so an
API without an embedder answers every valid request with 503 not_ready, and one with a stub
embedder returns the job. The properties: arbitrary JSON (and arbitrary bytes) never raise
anything but an ApiError with a 4xx (or the documented 503), exactly the requests an
independent oracle calls valid get through, and texts reach the model unchanged; generated
Function URL (2.0) and REST (1.0) events round-trip their bodies; junk events never crash.
"""

from __future__ import annotations

import base64
import json
import string
import importlib
import sys
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from embedding_service.api import EmbedJob, EmbeddingAPI, Reply, decode_json
from embedding_service.routes import resolve
from embedding_service.errors import ApiError
from embedding_service.lambda_events import HttpRequest, is_http_event, parse_http_event
from embedding_service.model import Embeddings
from embedding_service.model_config import ModelSpec
from offline_tiktoken import get_encoding
from embedding_service.settings import load_settings

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMALL = {"MAX_INPUT_ITEMS": "4", "MAX_INPUT_CHARS": "24", "MAX_BODY_BYTES": "2048", "MODEL_ID": MODEL_ID}
SETTINGS = load_settings(SMALL)
LIMITS = SETTINGS.limits
PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class StubEmbedder:
    """Enough of `model.Embedder` for prepare/handle: unit vectors, one token per character."""

    dimension = 384
    spec = ModelSpec(path=SimpleNamespace(), dimension=384, max_seq_length=256, pooling="mean", normalize=True)
    backend = SimpleNamespace(name="stub")
    calibration_ranges = None  # int8/uint8 output types are refused with a 400

    def chunk_window(self, prompt: str | None = None) -> int:
        return 254

    def embed(self, texts: list[str], deadline: float | None = None, prompt: str | None = None) -> Embeddings:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vectors[:, 0] = 1.0
        return Embeddings(vectors, [min(len(t), 254) + 2 for t in texts], [len(t) > 254 for t in texts])


# --------------------------------------------------------------------------- strategies

# Text that stresses tokenizers and JSON: emoji (incl. ZWJ sequences), RTL, combining
# marks, NUL and other controls, zero-width characters, BOM, private use; no lone
# surrogates (JSON can't carry them as UTF-8; see the invalid-utf8 cases elsewhere).
NASTY = [
    "👩‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\x00", "\x01", "\x7f",
    "\u202e", "\u2066", "שלום", "مرحبا", "e\u0301", "a\u0300\u0301\u0302\u0303", "Z̤͔ͧ̑̓", "\ue000",
    "\U0010fffd", "\u00a0", "\r\n", "\t", "\\", '"', "﷽", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ｆｕｌｌ",
]
texts = st.one_of(
    st.text(max_size=30),
    st.lists(st.sampled_from(NASTY) | st.text(alphabet=string.printable, max_size=3), max_size=10).map("".join),
)
json_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20,
)
good_texts = texts.filter(lambda t: 1 <= len(t) <= LIMITS.max_item_chars)
# cl100k_base (the default TOKEN_ARRAY_ENCODING) defines ids 0..100255 and five special tokens.
CL100K_IDS = set(range(100256)) | {100257, 100258, 100259, 100260, 100276}
token_ids = (st.integers(-2, 100300) | st.sampled_from([100256, 100257, 100261, 100276, 100277, 15339.0, 7.5])
             | st.booleans())
inputs = st.one_of(
    good_texts,
    st.lists(good_texts, min_size=1, max_size=LIMITS.max_items),
    texts,
    st.lists(texts, max_size=6),
    st.lists(json_values, max_size=6),
    json_values,
    st.lists(token_ids, max_size=6),
    st.lists(st.lists(token_ids, max_size=4), max_size=6),
)
option_values = {
    "model": st.none() | st.sampled_from([MODEL_ID, MODEL_ID.upper(), "all-MiniLM-L6-v2", "gpt-4", ""]) | json_values,
    "encoding_format": st.none() | st.sampled_from(["float", "base64", "hex", "FLOAT"]) | json_values,
    "dimensions": st.none() | st.sampled_from([384, 128, 0, -1, True, 384.0, "384"]) | json_values,
    "user": st.none() | texts | json_values,
    "input_type": st.none() | st.sampled_from(["query", "document", "passage", "QUERY"]) | json_values,
    "embedding_types": st.none() | st.lists(st.sampled_from(["float", "int8", "binary", "ubinary", "bit"]), max_size=3)
    | json_values,
}


@st.composite
def request_payloads(draw) -> dict:
    payload: dict = {}
    if draw(st.booleans()) or draw(st.booleans()):
        payload["input"] = draw(inputs)
    for name, values in option_values.items():
        if draw(st.integers(0, 3)) == 0:
            payload[name] = draw(values)
    payload.update(draw(st.dictionaries(texts, json_values, max_size=2)))
    return payload


# --------------------------------------------------------------------------- oracle


def is_token_id(value) -> bool:
    """An integer JSON number (7.0 included, as JSON Schema counts it) that cl100k_base defines."""
    if type(value) is float and value.is_integer():
        value = int(value)
    return type(value) is int and value in CL100K_IDS


def as_ids(values: list) -> list[int]:
    return [int(v) for v in values]


def decoded(ids: list[int]) -> str:
    """tiktoken itself (offline) is the reference decoder."""
    return get_encoding("cl100k_base").decode(ids)


def valid_token_array(ids) -> bool:
    return (isinstance(ids, list) and 1 <= len(ids) <= LIMITS.max_item_chars
            and all(is_token_id(i) for i in ids) and len(decoded(as_ids(ids))) <= LIMITS.max_item_chars)


def valid_input(value, token_arrays: bool = False) -> bool:
    if token_arrays and isinstance(value, list) and value and type(value[0]) in (int, float):
        return valid_token_array(value)
    if token_arrays and isinstance(value, list) and value and isinstance(value[0], list):
        return len(value) <= LIMITS.max_items and all(valid_token_array(ids) for ids in value)
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        items = value
        if not 1 <= len(items) <= LIMITS.max_items:
            return False
    else:
        return False
    return all(isinstance(item, str) and 1 <= len(item) <= LIMITS.max_item_chars for item in items)


def oracle_valid(operation: str, payload, dimension: int | None) -> bool:
    """An independent statement of the request rules (README + OpenAI's API). `dimension=None`:
    no model yet, so what depends on it (the dimension, int8's calibration) cannot be judged."""
    token_arrays = operation == "openai_embeddings"
    if not isinstance(payload, dict) or "input" not in payload or not valid_input(payload["input"], token_arrays):
        return False
    if payload.get("input_type") not in (None, "query", "document"):
        return False
    if operation == "embed":
        return True
    types = payload.get("embedding_types")
    if types is not None and (
        not isinstance(types, list) or not types
        or not all(t in ("float", "binary", "ubinary") or (t == "int8" and dimension is None) for t in types)
    ):  # int8 needs calibration ranges, which the test model has none of
        return False
    model = payload.get("model")
    if model is not None and (not isinstance(model, str) or model.lower() not in {MODEL_ID.lower(), "all-minilm-l6-v2"}):
        return False
    if "encoding_format" in payload and payload["encoding_format"] not in ("float", "base64"):
        return False  # absent means float; an explicit null is not one of the two formats
    dimensions = payload.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimension not in (None, dimensions)):
        return False
    user = payload.get("user")
    return user is None or isinstance(user, str)


def body_of(payload) -> bytes:
    return orjson.dumps(payload)


# --------------------------------------------------------------------------- validation


@PROPERTY
@given(operation=st.sampled_from(["embed", "openai_embeddings"]), payload=request_payloads())
def test_given_any_json_object_then_prepare_gives_a_job_or_a_4xx_and_agrees_with_the_oracle(operation, payload):
    api = EmbeddingAPI(SETTINGS, StubEmbedder())
    body = body_of(payload)
    assume(len(body) <= LIMITS.max_body_bytes)
    try:
        job = api.prepare(operation, body, "application/json")
    except ApiError as error:
        event(f"rejected {error.status}")
        assert 400 <= error.status < 500, error
        assert error.body()["error"]["message"]
        assert not oracle_valid(operation, payload, 384), (payload, error)
        return
    event("accepted")
    assert isinstance(job, EmbedJob)
    assert oracle_valid(operation, payload, 384), payload
    expected = [payload["input"]] if isinstance(payload["input"], str) else payload["input"]
    if type(expected[0]) in (int, float):  # one token array
        expected = [decoded(as_ids(expected))]
    elif isinstance(expected[0], list):
        expected = [decoded(as_ids(ids)) for ids in expected]
    assert job.texts == expected  # unicode passes through untouched (NUL, ZWJ, RTL, ...)


@PROPERTY
@given(operation=st.sampled_from(["embed", "openai_embeddings"]), payload=request_payloads() | json_values)
@example(operation="openai_embeddings", payload={"input": [[100256]]})  # outside cl100k: 400, not "retry"
@example(operation="openai_embeddings", payload={"input": "a", "dimensions": 384, "embedding_types": ["int8"]})
def test_given_no_model_yet_then_valid_requests_get_503_and_invalid_ones_a_4xx(operation, payload):
    api = EmbeddingAPI(SETTINGS)  # the embedder is not attached yet
    body = body_of(payload)
    assume(len(body) <= LIMITS.max_body_bytes)
    with pytest.raises(ApiError) as raised:
        api.prepare(operation, body, "application/json")
    error = raised.value
    if error.status == 503:
        assert error.code == "not_ready" and error.headers.get("retry-after")
        assert oracle_valid(operation, payload, None), payload
    else:
        assert 400 <= error.status < 500, error
        assert not oracle_valid(operation, payload, None), (payload, error)


content_types = st.none() | st.sampled_from([
    "application/json", "application/json; charset=utf-8", "text/json", "application/vnd.api+json",
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", ";;;", "APPLICATION/JSON",
]) | st.text(max_size=20)


@PROPERTY
@given(body=st.binary(max_size=3000) | json_values.map(body_of), content_type=content_types)
def test_given_any_bytes_then_decode_json_returns_a_value_or_a_4xx(body, content_type):
    try:
        value = decode_json(body, content_type, LIMITS)
    except ApiError as error:
        assert error.status in (400, 413, 415), error
        if error.status == 413:
            assert len(body) > LIMITS.max_body_bytes
        return
    assert value == orjson.loads(body)


@PROPERTY
@given(value=json_values)
def test_given_any_json_then_decode_json_round_trips(value):
    body = body_of(value)
    assume(len(body) <= LIMITS.max_body_bytes and body.strip())
    assert decode_json(body, "application/json", LIMITS) == value


@PROPERTY
@given(
    operation=st.sampled_from(["embed", "openai_embeddings", "status", "health", "models"]),
    body=st.binary(max_size=300) | request_payloads().map(body_of),
    content_type=content_types,
)
def test_given_anything_then_handle_always_replies_never_5xx(operation, body, content_type):
    reply = EmbeddingAPI(SETTINGS, StubEmbedder()).handle(operation, body, content_type, budget_s=5.0)
    assert isinstance(reply, Reply)
    assert reply.status == 200 or 400 <= reply.status < 500, reply
    payload = orjson.loads(reply.body)
    if reply.status != 200:
        assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}


@PROPERTY
@given(method=st.text(max_size=10), path=st.text(max_size=30))
def test_given_any_method_and_path_then_resolve_names_an_operation_or_404_405(method, path):
    try:
        assert resolve(method, path) in {"embed", "openai_embeddings", "status", "health", "models", "model"}
    except ApiError as error:
        assert error.status in (404, 405)


# --------------------------------------------------------------------------- Lambda events

header_names = st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE", "Content-type", "X-Amzn-Trace-Id",
                                "Authorization", "Accept"]) | st.text(string.ascii_letters + "-", min_size=1, max_size=12)
header_values = st.text(max_size=30)
bodies = st.none() | st.binary(max_size=200) | st.text(max_size=100).map(lambda t: t.encode("utf-8")) \
    | request_payloads().map(body_of)


def random_case(draw, name: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)


@st.composite
def http_events(draw):
    version = draw(st.sampled_from(["1.0", "2.0"]))
    method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT", "post", "Get"]))
    path = draw(st.sampled_from(["/", "/v1/embeddings", "/status", "/health", "/v1/models", "/nope"])
                | st.text(string.ascii_letters + "/-_.", max_size=20).map(lambda p: "/" + p))
    headers = draw(st.dictionaries(header_names, header_values, max_size=5))
    content_type = draw(st.none() | st.sampled_from(["application/json", "text/plain; charset=utf-8"]))
    if content_type is not None:
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers[random_case(draw, "content-type")] = content_type
    body = draw(bodies)
    as_base64 = body is not None and (draw(st.booleans()) or _not_utf8(body))
    stage = draw(st.sampled_from(["$default", "prod", None]))
    if version == "2.0":
        event = {
            "version": "2.0", "routeKey": "$default",
            "rawPath": (f"/{stage}{path}" if stage not in (None, "$default") else path),
            "headers": headers,
            "requestContext": {"http": {"method": method, "path": path}, "stage": stage or "$default"},
        }
    else:
        event = {"resource": "/{proxy+}", "path": path, "httpMethod": method, "headers": headers or None,
                 "requestContext": {"stage": stage or "prod"}}
    if body is not None:
        event["body"] = base64.b64encode(body).decode() if as_base64 else body.decode("utf-8")
        event["isBase64Encoded"] = as_base64
    # What the runtime hands the handler: the event after a JSON round trip.
    return json.loads(json.dumps(event)), (version, method, path, headers, body)


def _not_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


@PROPERTY
@given(generated=http_events())
def test_given_generated_v1_and_v2_events_then_method_path_headers_and_body_round_trip(generated):
    event, (version, method, path, headers, body) = generated
    assert is_http_event(event)
    request = parse_http_event(event)
    assert isinstance(request, HttpRequest)
    assert request.payload_version == version
    assert request.method == method and request.path == path
    assert request.body == (body or b"")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert request.headers == lowered  # names are case-insensitive, values untouched


junk_http_fields = {
    "version": st.sampled_from(["2.0", "1.0", 2.0, None]) | json_values,
    "requestContext": st.fixed_dictionaries({}, optional={
        "http": json_values | st.fixed_dictionaries({}, optional={"method": json_values, "path": json_values}),
        "stage": json_values,
    }) | json_values,
    "httpMethod": st.sampled_from(["POST", "GET", ""]) | json_values,
    "rawPath": json_values,
    "path": json_values,
    "headers": st.dictionaries(texts, json_values, max_size=3) | json_values,
    "body": json_values,
    "isBase64Encoded": json_values,
}


@st.composite
def junk_events(draw):
    event = {}
    for name, values in junk_http_fields.items():
        if draw(st.booleans()):
            event[name] = draw(values)
    return json.loads(json.dumps(event))


@PROPERTY
@given(event=junk_events() | json_values)
def test_given_junk_events_then_is_http_event_decides_and_parsing_never_crashes(event):
    http = is_http_event(event)
    assert http in (True, False)
    if not http:
        return  # the handler treats it as a direct invocation: validated like any body
    try:
        request = parse_http_event(event)
    except ApiError as error:
        assert 400 <= error.status < 500, error
        return
    assert isinstance(request.method, str) and isinstance(request.path, str)
    assert isinstance(request.body, bytes)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in request.headers.items())


# --------------------------------------------------------------------------- the Lambda handler


@pytest.fixture(scope="module")
def lambda_handler():
    """lambda_function.handler with a stub model (the module loads the model at import)."""
    from embedding_service import model
    original = model.model_load
    model.model_load = lambda settings=None: StubEmbedder()
    sys.modules.pop("embedding_service.lambda_function", None)
    try:  # import_module: a fresh import (the package attribute may hold an earlier one)
        lambda_function = importlib.import_module("embedding_service.lambda_function")
    finally:
        model.model_load = original
    yield lambda_function.handler
    sys.modules.pop("embedding_service.lambda_function", None)


class FakeContext:
    aws_request_id = "8f5a5a8e-0000-4000-8000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@PROPERTY
@given(event=junk_events() | json_values | http_events().map(lambda g: g[0]) | request_payloads())
@example(event={"httpMethod": "POST", "version": "2.0"})  # found by hypothesis: v1 marker, v2 version
def test_given_any_event_then_the_handler_answers_without_raising_and_never_500(lambda_handler, event):
    result = lambda_handler(event, FakeContext())
    if is_http_event(event):
        assert isinstance(result, dict) and set(result) == {"statusCode", "headers", "body", "isBase64Encoded"}
        status, payload = result["statusCode"], orjson.loads(result["body"])
        assert status == 200 or 400 <= status < 500, (event, result)
    else:
        payload = orjson.loads(result)
        status = 200 if "error" not in payload else None
        if status is None:
            assert payload["error"]["code"] != "internal_error", (event, payload)
    assert isinstance(payload, dict)


@pytest.mark.parametrize("event", [
    {"input": "x", "n": 123456789012345678901234567890},  # bigger than 64 bits: JSON allows it
    {"input": "x", "dimensions": 10**30},
    {"input": ["x"], "note": [1, 2, -(10**40)]},
    {"input": float("nan")},  # the runtime's simplejson accepts NaN; it must not become a 500 either
])
def test_given_a_direct_event_with_a_huge_integer_then_a_400_not_an_internal_error(lambda_handler, event):
    payload = orjson.loads(lambda_handler(event, FakeContext()))
    if "error" in payload:
        assert payload["error"]["code"] != "internal_error", payload
        assert payload["error"]["type"] == "invalid_request_error"
    else:
        assert len(payload["embedding"]) == 384

