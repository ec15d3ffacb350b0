"""The client's SigV4 signer against botocore's own implementation, on fixed requests and times.

Each case signs one request with `embedding_client.sigv4.SigV4Auth` and the same request with
botocore's `SigV4Auth` at the same instant; the Authorization headers must be identical.
The end-to-end check (a server that verifies signatures) is in tests/docs/test_recipes.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json

import botocore.auth
import botocore.credentials
import httpx
import pytest
from botocore.awsrequest import AWSRequest

from embedding_client.sigv4 import PayloadHashAuth, SigningError, SigV4Auth, region_from_url

FIXED = dt.datetime(2026, 11, 26, 10, 30, 15, tzinfo=dt.timezone.utc)
URL = "https://abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws"
ACCESS, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLE//token=="
JSON = {"content-type": "application/json"}
SPACED = {"content-type": "application/json;   charset=utf-8"}  # signed with runs of spaces folded

CASES = {
    "post-json": ("POST", f"{URL}/v1/embeddings", JSON, json.dumps({"input": "hello, world!"}).encode()),
    "post-root-unicode-body": ("POST", f"{URL}/", JSON, '{"input": "héllo 世界"}'.encode()),
    "empty-body-post": ("POST", f"{URL}/", {}, b""),
    "get-no-body": ("GET", f"{URL}/v1/models", {}, b""),
    "query-string": ("GET", f"{URL}/v1/models?b=2&a=1&a=0&empty=&x=%20y%2Fz&flag", {}, b""),
    "unicode-path": ("GET", f"{URL}/v1/models/sentence-transformers/modèle-ünï 世界", {}, b""),
    "reserved-chars-path": ("GET", f"{URL}/a%2Fb/c%20d/~tilde/(x)", {}, b""),
    "repeated-slashes-and-trailing": ("GET", f"{URL}//v1//models/", {}, b""),
    "spaces-in-content-type": ("POST", f"{URL}/", SPACED, b"{}"),
    "other-port": ("POST", "http://127.0.0.1:18080/v1/embeddings", JSON, b'{"input": "x"}'),
}


def static_credentials(token: str | None = TOKEN):
    return botocore.credentials.Credentials(ACCESS, SECRET, token)


def ours(method, url, headers, body, credentials, region="eu-west-1") -> httpx.Request:
    request = httpx.Request(method, url, headers=headers, content=body)
    return SigV4Auth(region=region, credentials=credentials, clock=lambda: FIXED).sign(request)


def botocores(method, url, headers, body, credentials, monkeypatch, region="eu-west-1") -> AWSRequest:
    """botocore signs the headers it's given (plus host); give it the ones ours signs."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    signer = botocore.auth.SigV4Auth(credentials, "lambda", region)
    request.headers["X-Amz-Content-SHA256"] = signer.payload(request)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FIXED.replace(tzinfo=None))
    signer.add_auth(request)
    return request


@pytest.mark.parametrize("token", [TOKEN, None], ids=["session-token", "long-lived-keys"])
@pytest.mark.parametrize("case", list(CASES))
def test_given_a_fixed_request_and_time_then_the_same_authorization_as_botocore(case, token, monkeypatch):
    method, url, headers, body = CASES[case]
    credentials = static_credentials(token)
    signed = ours(method, url, headers, body, credentials)
    reference = botocores(method, str(signed.url), headers, body, credentials, monkeypatch)
    assert signed.headers["authorization"] == reference.headers["Authorization"]
    assert signed.headers["x-amz-date"] == reference.headers["X-Amz-Date"] == "20261126T103015Z"
    assert signed.headers["x-amz-content-sha256"] == hashlib.sha256(body).hexdigest()
    if token:
        assert signed.headers["x-amz-security-token"] == reference.headers["X-Amz-Security-Token"] == token
    else:
        assert "x-amz-security-token" not in signed.headers


def test_given_a_different_secret_or_time_then_a_different_signature(monkeypatch):
    method, url, headers, body = CASES["post-json"]
    good = ours(method, url, headers, body, static_credentials()).headers["authorization"]
    wrong = botocore.credentials.Credentials(ACCESS, SECRET + "x", TOKEN)
    assert ours(method, url, headers, body, wrong).headers["authorization"] != good
    later = SigV4Auth(region="eu-west-1", credentials=static_credentials(),
                      clock=lambda: FIXED + dt.timedelta(seconds=1))
    request = httpx.Request(method, url, headers=headers, content=body)
    assert later.sign(request).headers["authorization"] != good


def test_given_an_openai_bearer_placeholder_then_it_is_replaced_not_signed_alongside():
    request = ours("POST", f"{URL}/v1/embeddings", {**JSON, "authorization": "Bearer unused"}, b"{}",
                   static_credentials())
    assert request.headers.get_list("authorization")[0].startswith("AWS4-HMAC-SHA256 Credential=")
    assert len(request.headers.get_list("authorization")) == 1


def test_given_a_function_url_then_the_region_comes_from_its_host():
    assert region_from_url(URL) == "eu-west-1"
    assert region_from_url("https://abc123.lambda-url.ap-southeast-2.on.aws/v1") == "ap-southeast-2"
    assert region_from_url("http://127.0.0.1:8080") is None
    request = SigV4Auth(credentials=static_credentials(), clock=lambda: FIXED).sign(
        httpx.Request("GET", "https://abc123.lambda-url.ap-southeast-2.on.aws/status"))
    assert "/20261126/ap-southeast-2/lambda/aws4_request" in request.headers["authorization"]


def test_given_no_region_anywhere_then_a_clear_error(monkeypatch, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    auth = SigV4Auth(credentials=static_credentials())
    with pytest.raises(SigningError, match="region"):
        auth.sign(httpx.Request("GET", "http://127.0.0.1:9/status"))


def test_given_no_credentials_anywhere_then_a_clear_error(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SigningError, match="no AWS credentials"):
        SigV4Auth()


def test_given_the_environment_chain_then_its_keys_and_session_token_sign(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDFROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    request = httpx.Request("POST", f"{URL}/", headers=JSON, content=b"{}")
    request = SigV4Auth(clock=lambda: FIXED).sign(request)
    assert "Credential=AKIDFROMENV/20261126/eu-west-1/lambda/" in request.headers["authorization"]
    assert request.headers["x-amz-security-token"] == TOKEN


def test_given_refreshable_credentials_then_expired_ones_are_refreshed_before_signing():
    issued = []

    def refresh():
        issued.append(f"AKIDREFRESH{len(issued)}")
        lifetime = dt.timedelta(hours=1) if len(issued) > 1 else dt.timedelta(0)  # the first is expired
        expiry = dt.datetime.now(dt.timezone.utc) + lifetime
        return {"access_key": issued[-1], "secret_key": SECRET, "token": f"token-{len(issued)}",
                "expiry_time": expiry.isoformat()}

    credentials = botocore.credentials.RefreshableCredentials.create_from_metadata(
        refresh(), refresh_using=refresh, method="sts-assume-role")
    request = SigV4Auth(region="eu-west-1", credentials=credentials, clock=lambda: FIXED).sign(
        httpx.Request("POST", f"{URL}/", headers=JSON, content=b"{}"))
    assert "Credential=AKIDREFRESH1/" in request.headers["authorization"]  # not the expired AKIDREFRESH0
    assert request.headers["x-amz-security-token"] == "token-2"


def _capture(seen: list[httpx.Request]):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})
    return handler


def test_given_sync_and_async_httpx_clients_then_streamed_bodies_are_signed_like_botocore(monkeypatch):
    auth = SigV4Auth(region="eu-west-1", credentials=static_credentials(), clock=lambda: FIXED)
    seen: list[httpx.Request] = []
    body = json.dumps({"input": ["a", "b"]}).encode()

    def chunks():
        yield body[:5]
        yield body[5:]

    async def achunks():
        yield body[:5]
        yield body[5:]

    with httpx.Client(auth=auth, transport=httpx.MockTransport(_capture(seen))) as client:
        client.post(f"{URL}/v1/embeddings", content=chunks(), headers=JSON)

    async def run_async():
        async with httpx.AsyncClient(auth=auth, transport=httpx.MockTransport(_capture(seen))) as client:
            await client.post(f"{URL}/v1/embeddings", content=achunks(), headers=JSON)

    asyncio.run(run_async())
    reference = botocores("POST", f"{URL}/v1/embeddings", JSON, body, static_credentials(), monkeypatch)
    assert [r.headers["authorization"] for r in seen] == [reference.headers["Authorization"]] * 2


def test_given_payload_hash_auth_then_only_the_body_hash_is_added():
    seen: list[httpx.Request] = []
    with httpx.Client(auth=PayloadHashAuth(), transport=httpx.MockTransport(_capture(seen))) as client:
        client.post(f"{URL}/", content=b'{"input": "x"}', headers=JSON)
        client.get(f"{URL}/status")
    assert seen[0].headers["x-amz-content-sha256"] == hashlib.sha256(b'{"input": "x"}').hexdigest()
    assert seen[1].headers["x-amz-content-sha256"] == hashlib.sha256(b"").hexdigest()
    assert "authorization" not in seen[0].headers
