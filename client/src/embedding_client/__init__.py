"""Client side of the embedding service.

Runs on the user's machine, never in the service: request signing for a Lambda Function URL,
helpers that point OpenAI-compatible clients and RAG frameworks at a deployment, and the
bulk `embed-corpus` command.
"""

from embedding_client.frameworks import langchain_embeddings, llamaindex_embeddings
from embedding_client.openai_compat import (
    async_http_client,
    async_openai_client,
    http_client,
    openai_base_url,
    openai_client,
)
from embedding_client.sigv4 import PayloadHashAuth, SigV4Auth

__version__ = "0.1.0"
__all__ = [
    "PayloadHashAuth",
    "SigV4Auth",
    "async_http_client",
    "async_openai_client",
    "http_client",
    "langchain_embeddings",
    "llamaindex_embeddings",
    "openai_base_url",
    "openai_client",
]
