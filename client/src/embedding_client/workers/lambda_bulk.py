"""The bulk image's Lambda handler: the service's handler, plus embed-corpus's shard jobs.

Set as the bulk image's command (`embedding_client.workers.lambda_bulk.handler`). Every event that
is not a shard job goes to the service's own handling, unchanged; shard jobs run here, on the model
the service loaded in the init phase, under the same time budget and error rendering.
"""

from __future__ import annotations

from embedding_service import lambda_function
from embedding_service.contract import SHARD_EVENT_KEYS

from embedding_client.workers.shard_worker import run_shard_event


def _shard(event: dict, budget_s: float | None) -> dict:
    return run_shard_event(event, lambda_function.SETTINGS, lambda_function.API.embedder, budget_s)


handler = lambda_function.build_handler({key: _shard for key in SHARD_EVENT_KEYS})
