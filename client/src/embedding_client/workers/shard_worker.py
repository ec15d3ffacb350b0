"""One shard job (or probe) in a worker: read a split from S3, embed it here, write its part.

`embed-corpus` sends these when INPUT and OUTPUT are both on S3 and the worker can reach them, so
corpus text and vectors move between S3 and the workers, never through the client. The reading,
checking, chunking and Parquet writing are `corpus.shard_job`'s, so a worker writes exactly the
rows the client would. Errors carry the status the client's retry layer understands: 403 a missing
S3 grant, 422 bad input (not retried), 503 S3 or the model failing for now, 504 out of time.
"""

from __future__ import annotations

import time
from typing import Any

from embedding_service.contract import ErrorCode, EventKey
from embedding_service.errors import ApiError, timed_out
from embedding_service.model import DeadlineExceeded

from embedding_client.corpus import errors, locations, shard_job
from embedding_client.corpus.target_local import LocalTarget
from embedding_client.corpus.targets import EmbedOptions

PROBE_OBJECT = "_embed-corpus-probe"


def run_shard_event(event: dict, settings, embedder, budget_s: float | None = None) -> dict:
    """The job's (or probe's) result, or raises ApiError."""
    storage = locations.Storage()
    try:
        if EventKey.SHARD_PROBE in event:
            return probe(event[EventKey.SHARD_PROBE], storage)
        job = event[EventKey.SHARD_JOB]
        if not isinstance(job, dict) or not isinstance(job.get("options"), dict):
            raise ApiError(400, "shard_job must be an object made by embed-corpus", code=ErrorCode.INVALID_VALUE)
        options = job["options"]
        deadline = None if budget_s is None else time.monotonic() + budget_s
        target = LocalTarget(
            EmbedOptions(options.get("input_type"), options.get("embedding_type", "float")),
            (settings, embedder),
            deadline=deadline,
        )
        return shard_job.run_job(job, target, storage)
    except errors.AccessDenied as error:
        raise ApiError(403, str(error), "permission_error", code=ErrorCode.S3_ACCESS_DENIED) from None
    except errors.InputError as error:
        raise ApiError(422, str(error), code=ErrorCode.BAD_INPUT) from None
    except DeadlineExceeded:
        raise timed_out(budget_s or 0.0) from None
    except errors.CorpusError as error:
        raise ApiError(503, str(error), "server_error", code=ErrorCode.S3_UNAVAILABLE) from None
    except (KeyError, TypeError, ValueError) as error:
        raise ApiError(
            400, f"a malformed shard job ({type(error).__name__}: {error})", code=ErrorCode.INVALID_VALUE
        ) from None


def probe(request: Any, storage) -> dict:
    """Can this worker read INPUT and write under OUTPUT? A small object under OUTPUT proves the
    write grant (the client deletes it); a HEAD of the first input object proves the read one."""
    source = locations.Location(request["input"])
    storage.head(source)
    target = locations.Location(request["output"]).child(PROBE_OBJECT)
    storage.write_bytes(target, b"shard jobs can write here\n")
    return {"shard_jobs": True, "probe_object": target.uri}
