"""The API key on the Lambda target, under the real Runtime Interface Emulator.

Function URL (payload 2.0) and API Gateway REST (payload 1.0) events need
`Authorization: Bearer <key>` exactly as FastAPI does; direct invocations need none (IAM's
lambda:InvokeFunction already authorised them); /status stays open. The key may come from
API_KEY, or be read once at init from an SSM SecureString or a Secrets Manager secret: those
run against moto's server on loopback, reached through boto3's AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys

import httpx
import pytest

from cases import GOOD, assert_openai_error
from conftest import INVOKE_PATH, RieServer, service_env
from test_lambda_rie import event, function_url_event

KEY = "sk-lambda-" + secrets.token_hex(16)
WRONG = "sk-wrong-" + secrets.token_hex(16)
BODY = json.dumps(GOOD).encode()


def rest_event(path: str, authorization: str | None) -> dict:
    result = event("api_gateway_rest_v1.json")
    result.update(httpMethod="POST", path=path, body=BODY.decode(), isBase64Encoded=False)
    result["headers"] = {"Content-Type": "application/json"}
    if authorization is not None:
        result["headers"]["Authorization"] = authorization  # REST events keep the header's case
    return result


def url_event(method: str, path: str, authorization: str | None) -> dict:
    result = function_url_event(method, path, BODY if method == "POST" else None)
    result["headers"].pop("authorization", None)
    if authorization is not None:
        result["headers"]["authorization"] = authorization
    return result


class Rie:
    def __init__(self, tmp_path, **env: str):
        self.server = RieServer(tmp_path / "rie.log", **env)
        self.client = httpx.Client(timeout=120)

    def invoke(self, payload: dict) -> dict:
        response = self.client.post(self.server.url + INVOKE_PATH, json=payload)
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


def assert_unauthorized(result: dict) -> None:
    assert result["statusCode"] == 401, result
    assert result["headers"]["www-authenticate"] == "Bearer"
    assert_openai_error(json.loads(result["body"]), "invalid_api_key")
    assert KEY not in json.dumps(result) and WRONG not in json.dumps(result)


@pytest.fixture(scope="module")
def rie(tmp_path_factory):
    server = Rie(tmp_path_factory.mktemp("rie-key"), API_KEY=KEY, LOG_LEVEL="debug")
    yield server
    server.stop()


@pytest.mark.parametrize("method,path", [
    ("POST", "/"), ("POST", "/v1/embeddings"), ("POST", "/embeddings"), ("GET", "/v1/models"),
    ("GET", "/models"), ("GET", "/v1/models/sentence-transformers/all-MiniLM-L6-v2"), ("GET", "/health"),
])
@pytest.mark.parametrize("authorization", [None, f"Bearer {WRONG}", f"Basic {KEY}", KEY, f"Bearer {KEY}x", ""],
                         ids=["missing", "wrong", "basic", "bare-key", "longer", "empty"])
def test_given_a_function_url_event_without_the_key_then_401(rie, method, path, authorization):
    assert_unauthorized(rie.invoke(url_event(method, path, authorization)))


@pytest.mark.parametrize("scheme", ["Bearer", "bearer"])
def test_given_a_function_url_event_with_the_key_then_served(rie, scheme):
    result = rie.invoke(url_event("POST", "/v1/embeddings", f"{scheme} {KEY}"))
    assert result["statusCode"] == 200, result
    assert len(json.loads(result["body"])["data"][0]["embedding"]) == 384


def test_given_a_rest_event_then_the_key_is_checked_the_same_way(rie):
    assert_unauthorized(rie.invoke(rest_event("/v1/embeddings", None)))
    assert_unauthorized(rie.invoke(rest_event("/v1/embeddings", f"Bearer {WRONG}")))
    assert rie.invoke(rest_event("/v1/embeddings", f"Bearer {KEY}"))["statusCode"] == 200


def test_given_status_then_open_without_a_key(rie):
    assert rie.invoke(url_event("GET", "/status", None))["statusCode"] == 200


def test_given_a_direct_invocation_then_no_key_is_needed(rie):
    # IAM (lambda:InvokeFunction) authorised the caller; the seed's event has no headers at all.
    body = rie.invoke(GOOD)
    assert len(body["embedding"]) == 384


def test_given_right_and_wrong_keys_then_neither_is_logged(rie):
    rie.invoke(url_event("POST", "/v1/embeddings", f"Bearer {KEY}"))
    rie.invoke(url_event("POST", "/v1/embeddings", f"Bearer {WRONG}"))
    logs = rie.server.logs()
    assert '"message":"invocation"' in logs, logs[-2000:]
    assert KEY not in logs and WRONG not in logs and KEY[10:] not in logs


# ------------------------------------------------------------- the key from SSM / Secrets Manager


@pytest.fixture(scope="module")
def stored_keys(moto):
    ssm_key, secret_key = "sk-ssm-" + secrets.token_hex(16), "sk-sm-" + secrets.token_hex(16)
    name = f"/embedding/api-key-{secrets.token_hex(4)}"
    moto.client("ssm").put_parameter(Name=name, Value=ssm_key, Type="SecureString")
    arn = moto.client("secretsmanager").create_secret(
        Name=f"embedding-api-key-{secrets.token_hex(4)}", SecretString=secret_key
    )["ARN"]
    return {"ssm": (name, ssm_key), "secret": (arn, secret_key)}


@pytest.mark.parametrize("source,variable", [("ssm", "API_KEY_SSM_PARAMETER"), ("secret", "API_KEY_SECRET_ARN")])
def test_given_the_key_in_aws_then_read_once_at_init_and_enforced(tmp_path, moto, stored_keys, source, variable):
    reference, key = stored_keys[source]
    rie = Rie(tmp_path, **moto.aws_env(), **{variable: reference})
    try:
        assert_unauthorized(rie.invoke(url_event("POST", "/v1/embeddings", None)))
        assert_unauthorized(rie.invoke(url_event("POST", "/v1/embeddings", f"Bearer {WRONG}")))
        result = rie.invoke(url_event("POST", "/v1/embeddings", f"Bearer {key}"))
        assert result["statusCode"] == 200, result
        logs = rie.server.logs()
        assert '"message":"api key loaded"' in logs and f'"source":"{variable}"' in logs, logs[-3000:]
        assert logs.count('"message":"api key loaded"') == 1  # once, at init
        assert key not in logs
    finally:
        rie.stop()


@pytest.mark.parametrize("variable,reference", [
    ("API_KEY_SSM_PARAMETER", "/embedding/no-such-parameter"),
    ("API_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:no-such-secret-AbCdEf"),
])
def test_given_a_key_that_cannot_be_read_then_init_fails_naming_the_variable(tmp_path, moto, variable, reference):
    rie = Rie(tmp_path, **moto.aws_env(), **{variable: reference})
    try:
        response = rie.client.post(rie.server.url + INVOKE_PATH, json=url_event("GET", "/status", None))
        # The function never serves without its key: the runtime reports the init error.
        assert response.status_code == 502, response.text
        assert response.json()["errorType"] == "ApiKeyError"
        assert response.json()["errorMessage"].startswith(f"{variable}={reference}: could not read the API key")
        assert variable in rie.server.logs(), rie.server.logs()[-3000:]
    finally:
        rie.stop()


def test_given_no_aws_key_source_then_boto3_is_never_imported():
    """boto3 ships in the Lambda base image but the service imports it only for the key."""
    code = ("import sys; import embedding_service.lambda_function, embedding_service.main; "
            "sys.exit('boto3 imported' if 'boto3' in sys.modules or 'botocore' in sys.modules else 0)")
    result = subprocess.run([sys.executable, "-c", code], env=service_env(API_KEY=KEY),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
