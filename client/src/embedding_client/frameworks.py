"""LangChain and LlamaIndex embedding objects pointed at a deployed function.

Both frameworks take httpx clients, so `AWS_IAM` Function URLs work through `SigV4Auth`
(no `api_key`), and `NONE` + `API_KEY` deployments through a bearer key (`api_key=...`).
The frameworks are imported only when asked for: the package doesn't depend on them.
"""

from __future__ import annotations

from typing import Any

from embedding_client.openai_compat import (
    SERVED_MODEL,
    SIGNED_PLACEHOLDER_KEY,
    async_http_client,
    http_client,
    openai_base_url,
    require,
)


def _auth_kwargs(api_key: str | None, region: str | None, credentials) -> dict:
    if api_key is not None:
        return {"api_key": api_key}
    return {"api_key": SIGNED_PLACEHOLDER_KEY, "http_client": http_client(region, credentials),
            "async_http_client": async_http_client(region, credentials)}


def langchain_embeddings(url: str, model: str = SERVED_MODEL, api_key: str | None = None,
                         region: str | None = None, credentials=None, **kwargs: Any):
    """`langchain_openai.OpenAIEmbeddings` for the function at `url`.

    Sends text, not tiktoken ids (`check_embedding_ctx_length=False`): the server tokenises
    with its own model's tokenizer and truncates at the model's maximum, and nothing needs
    tiktoken's files. Pass `check_embedding_ctx_length=True` to restore LangChain's default.
    """
    OpenAIEmbeddings = require("langchain_openai", "langchain").OpenAIEmbeddings
    auth = _auth_kwargs(api_key, region, credentials)
    if "async_http_client" in auth:
        auth["http_async_client"] = auth.pop("async_http_client")
    options = {"check_embedding_ctx_length": False, **kwargs}
    return OpenAIEmbeddings(model=model, base_url=openai_base_url(url), **auth, **options)


def llamaindex_embeddings(url: str, model: str = SERVED_MODEL, api_key: str | None = None,
                          region: str | None = None, credentials=None, **kwargs: Any):
    """`OpenAILikeEmbedding` for the function at `url` (LlamaIndex's `OpenAIEmbedding`
    accepts only OpenAI's own model names)."""
    OpenAILikeEmbedding = require("llama_index.embeddings.openai_like", "llamaindex").OpenAILikeEmbedding
    return OpenAILikeEmbedding(model_name=model, api_base=openai_base_url(url),
                               **_auth_kwargs(api_key, region, credentials), **kwargs)
