"""AWS Lambda adapter: the handler the runtime imports (`embedding_service.lambda_function.handler`).

The model loads at import, i.e. in Lambda's init phase, once per sandbox; every invocation
after that reuses it. Direct invocations (the seed's `{"input": "hello, world!"}`, or a
`/v1/embeddings` body: any OpenAI-only field such as `encoding_format` selects that route) get
the response JSON object itself (not a JSON string inside JSON), errors with their status in
the body. Function URL and API Gateway events get a proxy result `{"statusCode", "headers",
"body"}` with the same JSON bodies as the FastAPI target. Both are served from the route table
(routes.py) by `lambda_handler.make_handler`.

Events named by a key of `contract.EventKey` (embed-corpus's shard jobs) are not request bodies:
`build_handler` takes an operation for each, and this image's `handler` has none, so it answers
them `shard_jobs_unsupported` and the client embeds through its own path. The bulk image's
handler (`embedding_client.workers.lambda_bulk.handler`, client side) is this same handler built
with the shard operations, so every event shares one time budget and one error rendering.
"""

from __future__ import annotations

from typing import Mapping

from embedding_service.api import EmbeddingAPI
from embedding_service.lambda_handler import SAFETY_MARGIN_S, EventOperation, Handler, make_handler  # noqa: F401
from embedding_service.logs import configure_logging
from embedding_service.model import model_load, models_load
from embedding_service.settings import load_settings

SETTINGS = load_settings()
configure_logging(SETTINGS.log_level)
API = EmbeddingAPI(SETTINGS)
API.attach(models_load(SETTINGS, model_load))  # every served model (MODELS, or MODEL_DIR alone), in the init phase


def build_handler(operations: Mapping[str, EventOperation]) -> Handler:
    """A Lambda handler that also serves the keyed events in `operations` (see the docstring)."""
    return make_handler(API, operations)


handler = build_handler({})
