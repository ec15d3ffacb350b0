"""OpenAI-compatible clients pointed at a deployed function, for either way it can be secured.

- `AWS_IAM` Function URL (the deployment's default): no `api_key`; every request is SigV4-signed
  with the caller's AWS credentials through an httpx client carrying `SigV4Auth`.
- `NONE` Function URL with the service's `API_KEY`: pass `api_key`; it travels as
  `Authorization: Bearer <key>`, as the FastAPI target expects too.

The same calls work for a FastAPI server (`url="http://localhost:8000"`, `api_key` if it has one).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import httpx

from embedding_client.sigv4 import SigV4Auth

SERVED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# openai-python insists on an api_key; under SigV4 it is replaced by the signature, never sent.
SIGNED_PLACEHOLDER_KEY = "aws-iam-sigv4"
DEFAULT_TIMEOUT_S = 60.0


def require(module: str, extra: str) -> ModuleType:
    """Import an optional framework, or say in one sentence how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this helper needs {module}: pip install 'embedding-client[{extra}]' (or the package itself)"
        ) from None


def openai_base_url(url: str) -> str:
    """A Function URL or server root -> the OpenAI base URL (`.../v1`)."""
    root = url.rstrip("/")
    return root if root.endswith("/v1") else f"{root}/v1"


def http_client(region: str | None = None, credentials=None, timeout: float = DEFAULT_TIMEOUT_S,
                **kwargs: Any) -> httpx.Client:
    """A sync httpx client that SigV4-signs every request for a Function URL."""
    return httpx.Client(auth=SigV4Auth(region, credentials), timeout=timeout, **kwargs)


def async_http_client(region: str | None = None, credentials=None, timeout: float = DEFAULT_TIMEOUT_S,
                      **kwargs: Any) -> httpx.AsyncClient:
    """The same for async code (AsyncOpenAI, LangChain's and LlamaIndex's async paths)."""
    return httpx.AsyncClient(auth=SigV4Auth(region, credentials), timeout=timeout, **kwargs)


def _client_kwargs(url: str, api_key: str | None, region: str | None, credentials, asynchronous: bool,
                   kwargs: dict) -> dict:
    kwargs = {"base_url": openai_base_url(url), **kwargs}
    if api_key is not None:
        return {"api_key": api_key, **kwargs}
    factory = async_http_client if asynchronous else http_client
    return {"api_key": SIGNED_PLACEHOLDER_KEY, "http_client": factory(region, credentials), **kwargs}


def openai_client(url: str, api_key: str | None = None, region: str | None = None, credentials=None,
                  **kwargs: Any):
    """`openai.OpenAI` for the function at `url`: SigV4 without `api_key`, bearer key with it."""
    openai = require("openai", "openai")
    return openai.OpenAI(**_client_kwargs(url, api_key, region, credentials, False, kwargs))


def async_openai_client(url: str, api_key: str | None = None, region: str | None = None, credentials=None,
                        **kwargs: Any):
    """`openai.AsyncOpenAI`, likewise."""
    openai = require("openai", "openai")
    return openai.AsyncOpenAI(**_client_kwargs(url, api_key, region, credentials, True, kwargs))
