"""SigV4 request signing for a Lambda Function URL, as an `httpx.Auth`.

A Function URL with `AWS_IAM` auth (the deployment's default) accepts only requests signed
with Signature Version 4 for the service `lambda`. Any httpx-based client (openai-python,
LangChain, LlamaIndex) can carry this auth, so none of them needs to know about AWS.

Signing follows AWS's algorithm as botocore implements it (the tests compare the
Authorization header with botocore's `SigV4Auth` on fixed requests and times): the path is
normalised and URI-encoded once more, the query's pairs are sorted, and only headers a proxy
will not rewrite are signed (`host`, `content-type`, `x-amz-*`), so hop-by-hop headers such
as `connection` can change in transit without breaking the signature.
`x-amz-content-sha256` carries the body's hash; CloudFront's origin access control needs it on
POST requests to a Function URL origin, and `PayloadHashAuth` sets only that header for
callers who reach the function through CloudFront instead of directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from typing import Callable, Generator
from urllib.parse import quote, urlsplit

import httpx

SERVICE = "lambda"
ALGORITHM = "AWS4-HMAC-SHA256"
# <url-id>.lambda-url.<region>.on.aws is the only host form a Function URL has.
_FUNCTION_URL_HOST = re.compile(r"^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")
_SIGNED_ALWAYS = ("host", "x-amz-content-sha256", "x-amz-date")
_SIGNED_IF_PRESENT = ("content-type", "x-amz-security-token")


class SigningError(RuntimeError):
    """The request can't be signed: no credentials, or no region to sign for."""


def region_from_url(url: str | httpx.URL) -> str | None:
    """The region named in a Function URL's host, or None for any other host."""
    match = _FUNCTION_URL_HOST.match(httpx.URL(str(url)).host)
    return match.group(1) if match else None


def default_credentials():
    """Credentials from the standard AWS chain (environment, shared files, SSO, container, IMDS)."""
    import botocore.session

    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise SigningError(
            "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or run where a role is available"
        )
    return credentials


def default_region() -> str | None:
    """The region the standard AWS configuration names (AWS_REGION, AWS_DEFAULT_REGION, profile)."""
    import botocore.session

    return botocore.session.get_session().get_config_variable("region")


def payload_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, with repeated slashes collapsed, as AWS normalises paths."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    trailing = "/" if path.endswith("/") and segments else ""
    return "/" + "/".join(segments) + trailing


def canonical_path(raw_path: str) -> str:
    """The URL's (already percent-encoded) path, normalised and encoded once more."""
    return quote(_remove_dot_segments(raw_path or "/"), safe="/~")


def canonical_query(raw_query: str) -> str:
    """The query's `key=value` pairs as sent, sorted by key then value."""
    if not raw_query:
        return ""
    pairs = sorted(pair.partition("=")[::2] for pair in raw_query.split("&"))
    return "&".join(f"{key}={value}" for key, value in pairs)


def _trim(value: str) -> str:
    return " ".join(value.split())


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret_key}".encode("utf-8"), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


class SigV4Auth(httpx.Auth):
    """Signs every request (retries included, each with a fresh date) for `service` in `region`.

    credentials: anything with `get_frozen_credentials()` (botocore's `Credentials`, including
    refreshable and temporary ones with a session token); default: the standard AWS chain,
    resolved once here and refreshed by botocore as they near expiry.
    region: default: the one in a Function URL's host, else the AWS configuration's region.
    clock: the signing time (tests pass a fixed one).
    """

    requires_request_body = True  # the body's hash is part of the signature

    def __init__(self, region: str | None = None, credentials=None, service: str = SERVICE,
                 clock: Callable[[], dt.datetime] = _utc_now):
        self.credentials = credentials if credentials is not None else default_credentials()
        self.region = region
        self.service = service
        self.clock = clock

    def _region_for(self, url: httpx.URL) -> str:
        region = self.region or region_from_url(url) or default_region()
        if not region:
            raise SigningError(
                f"can't tell which AWS region {url.host} is in: pass region=... or set AWS_REGION"
            )
        return region

    def sign(self, request: httpx.Request) -> httpx.Request:
        """Add x-amz-date, x-amz-content-sha256, the session token and Authorization."""
        frozen = self.credentials.get_frozen_credentials()
        region = self._region_for(request.url)
        timestamp = self.clock().astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        headers = request.headers
        headers.pop("authorization", None)  # e.g. openai-python's placeholder bearer token
        headers.pop("x-amz-security-token", None)
        headers["x-amz-date"] = timestamp
        headers["x-amz-content-sha256"] = payload_hash(request.content)
        if frozen.token:
            headers["x-amz-security-token"] = frozen.token
        names = sorted(set(_SIGNED_ALWAYS) | {n for n in _SIGNED_IF_PRESENT if n in headers})
        canonical_headers = "".join(
            f"{name}:{','.join(_trim(v) for v in headers.get_list(name))}\n" for name in names
        )
        signed_headers = ";".join(names)
        raw_path, _, raw_query = request.url.raw_path.decode("ascii").partition("?")
        canonical_request = "\n".join([
            request.method.upper(), canonical_path(raw_path), canonical_query(raw_query),
            canonical_headers, signed_headers, headers["x-amz-content-sha256"],
        ])
        scope = f"{timestamp[:8]}/{region}/{self.service}/aws4_request"
        string_to_sign = "\n".join([
            ALGORITHM, timestamp, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ])
        key = signing_key(frozen.secret_key, timestamp[:8], region, self.service)
        signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"{ALGORITHM} Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return request

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield self.sign(request)


class PayloadHashAuth(httpx.Auth):
    """Only `x-amz-content-sha256`: for a Function URL behind CloudFront origin access control,
    where CloudFront signs the request but needs the body's hash from the caller."""

    requires_request_body = True

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["x-amz-content-sha256"] = payload_hash(request.content)
        yield request
