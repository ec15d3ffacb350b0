"""The API key: where it comes from (once, at start-up) and how a request proves it has it.

One check for both targets: FastAPI passes the `Authorization` header of every request,
Lambda that of Function URL and API Gateway events. Direct Lambda invocations carry no
header and need none: IAM (lambda:InvokeFunction) already decided who may call. The key is
compared in constant time and never logged; routes declared open (`needs_key=False` in routes.py:
`/status`, for health checks) are never checked.

boto3 is imported only when the key lives in SSM Parameter Store or Secrets Manager: it
ships in the Lambda base image, and nothing else in the service needs it.
"""

from __future__ import annotations

import hmac
import logging

from embedding_service.errors import unauthorized
from embedding_service.settings import Settings

log = logging.getLogger("embedding.auth")


class ApiKeyError(RuntimeError):
    """The configured key could not be read; the service must not start without it."""


class ApiKeyCheck:
    """`Authorization: Bearer <key>` when a key is configured; no check otherwise."""

    def __init__(self, api_key: str | None):
        self._key = api_key.encode() if api_key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(self, authorization: str | None) -> None:
        """Raise 401 unless the header carries the key (or no key is configured)."""
        if self._key is None:
            return
        scheme, _, token = (authorization or "").partition(" ")
        presented = token.strip().encode("utf-8", errors="surrogateescape")
        # compare_digest on bytes takes the same time whatever the first differing byte is.
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, self._key):
            raise unauthorized()


def load_api_key(settings: Settings) -> str | None:
    """API_KEY itself, or the value of API_KEY_SSM_PARAMETER / API_KEY_SECRET_ARN read now.

    Called once per process (FastAPI start-up, Lambda init): a rotated secret takes effect
    with the next cold start. Failures stop start-up with the variable's name, never the value.
    """
    if settings.api_key_ssm_parameter:
        return _read("API_KEY_SSM_PARAMETER", settings.api_key_ssm_parameter, _from_ssm)
    if settings.api_key_secret_arn:
        return _read("API_KEY_SECRET_ARN", settings.api_key_secret_arn, _from_secrets_manager)
    return settings.api_key


def _read(variable: str, name: str, fetch) -> str:
    try:
        value = fetch(name)
    except Exception as error:  # botocore's errors: no credentials, access denied, not found
        raise ApiKeyError(
            f"{variable}={name}: could not read the API key ({type(error).__name__}: {error})"
        ) from None
    value = (value or "").strip()
    if not value:
        raise ApiKeyError(f"{variable}={name}: the stored API key is empty")
    log.info("api key loaded", extra={"source": variable})
    return value


def _from_ssm(name: str) -> str:
    import boto3  # only here: see the module docstring

    response = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)
    return response["Parameter"]["Value"]


def _from_secrets_manager(secret_id: str) -> str:
    import boto3

    response = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    if "SecretString" not in response:
        raise ValueError("the secret holds binary data; store the key as a string")
    return response["SecretString"]
