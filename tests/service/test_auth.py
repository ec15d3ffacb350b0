"""Optional bearer auth (API_KEY) on a real uvicorn server.

With API_KEY set: every route but /status needs `Authorization: Bearer <API_KEY>` (the
embedding routes with and without /v1, the model routes, /health and /metrics); /status stays
open for load balancers and the container HEALTHCHECK, which carry no secrets; a missing or
wrong key gets 401 in OpenAI's error shape with `WWW-Authenticate: Bearer`; and neither the
key nor a wrong token ever reaches the server's log. tests/service/test_auth_lambda.py runs the same
check on the Lambda target.
"""

from __future__ import annotations

import json
import secrets
import socket
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from cases import GOOD, assert_openai_error
from conftest import UvicornServer

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
KEY = "sk-test-" + secrets.token_hex(16)
WRONG = "sk-wrong-" + secrets.token_hex(16)

PROTECTED = [
    ("POST", "/", GOOD),
    ("POST", "/v1/embeddings", GOOD),
    ("POST", "/embeddings", GOOD),
    ("GET", "/v1/models", None),
    ("GET", "/models", None),
    ("GET", f"/v1/models/{MODEL_ID}", None),
    ("GET", "/health", None),
    ("GET", "/metrics", None),
]
OPEN = ["/status"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = UvicornServer(tmp_path_factory.mktemp("auth") / "server.log", API_KEY=KEY, LOG_LEVEL="debug")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def call(client: httpx.Client, method: str, path: str, body, headers: dict | None = None) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers or {})


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert_openai_error(body, "invalid_api_key")
    assert body["error"]["type"] == "authentication_error"
    assert KEY not in response.text and WRONG not in response.text


@pytest.mark.parametrize("method,path,body", PROTECTED, ids=[p for _, p, _ in PROTECTED])
@pytest.mark.parametrize("authorization", [
    None,
    f"Bearer {WRONG}",
    "Bearer",
    f"Basic {KEY}",  # the right secret in the wrong scheme
    KEY,  # no scheme at all
    f"Bearer {KEY}x",  # one character too many
    f"Bearer {KEY[:-1]}",  # one too few
], ids=["missing", "wrong", "scheme-only", "basic", "bare-key", "longer", "shorter"])
def test_given_no_or_a_wrong_key_then_401_in_openai_shape(client, method, path, body, authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    assert_unauthorized(call(client, method, path, body, headers))


@pytest.mark.parametrize("method,path,body", PROTECTED, ids=[p for _, p, _ in PROTECTED])
@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_given_the_right_key_then_served(client, method, path, body, scheme):
    response = call(client, method, path, body, {"authorization": f"{scheme} {KEY}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", OPEN)
def test_given_status_then_open_without_a_key(client, path):
    assert client.get(path).status_code == 200
    assert client.get(path, headers={"authorization": f"Bearer {WRONG}"}).status_code == 200


def raw_post(url: str, path: str, authorization: bytes, body: bytes = b'{"input": "hi"}') -> tuple[int, dict, bytes]:
    """One request over a plain socket, for header bytes no HTTP client will send."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: " + authorization + b"\r\nContent-Length: " + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n" + body
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(": ")
        headers[name.lower()] = value
    return int(lines[0].split()[1]), headers, payload


@pytest.mark.parametrize("authorization", [
    b"Bearer ", b"Bearer  ", b"Bearer \xff\xfe\xfd", "Bearer ключ".encode(), b"Bearer " + b"A" * 8000,
    b"Bearer\tx", b"Bearer \x01\x02", b"", b"Bearer " + KEY.encode() + b"\x00",
], ids=["empty", "spaces", "latin1", "utf8", "huge", "tab", "controls", "blank", "key-plus-nul"])
def test_given_an_odd_authorization_header_then_401_or_400_never_a_crash(server, authorization):
    status, headers, payload = raw_post(server.url, "/v1/embeddings", authorization)
    # uvicorn itself may refuse an illegal header value with a bare 400 before the app sees it.
    assert status in (400, 401), (status, payload[:300])
    if status == 401:
        assert headers["www-authenticate"] == "Bearer"
        assert_openai_error(json.loads(payload), "invalid_api_key")
    assert httpx.get(f"{server.url}/status").status_code == 200


def test_given_an_unauthenticated_big_body_then_401_without_the_body_being_processed(client):
    big = b'{"input": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post("/", content=big, headers={"content-type": "application/json"})
    assert_unauthorized(response)


def test_given_the_official_openai_client_then_the_key_works_and_a_wrong_one_raises(server):
    good = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    result = good.embeddings.create(model=MODEL_ID, input=["hello, world!"])
    assert len(result.data[0].embedding) == 384
    assert [m.id for m in good.models.list()] == [MODEL_ID]
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key=WRONG, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        bad.embeddings.create(model=MODEL_ID, input="hello")
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert WRONG not in str(raised.value)


def test_given_requests_with_right_and_wrong_keys_then_neither_appears_in_the_log(server, client):
    # Runs last in this module: by now the log holds every request above (debug level).
    call(client, "POST", "/v1/embeddings", GOOD, {"authorization": f"Bearer {KEY}"})
    call(client, "POST", "/v1/embeddings", GOOD, {"authorization": f"Bearer {WRONG}"})
    call(client, "GET", "/nope", None, {"authorization": f"Bearer {WRONG}"})
    assert client.get("/status").status_code == 200  # the server is up and has flushed
    logs = server.logs()
    assert '"message":"embedded"' in logs, logs[-2000:]  # the log is really being written
    assert KEY not in logs
    assert WRONG not in logs
    assert KEY[8:] not in logs and WRONG[9:] not in logs  # not even without the prefix
