"""Shard jobs: a Lambda worker reads its split of the corpus from S3, embeds it, writes its part.

`embed-corpus` sends these when INPUT and OUTPUT are both on S3 and the function can reach them,
so corpus text and vectors move between S3 and the workers, never through the client. The job's
reading, checking, chunking and Parquet writing are the client package's own (`embedding_client`,
in the bulk image), so a worker writes exactly the rows the client would. An image without it
(the lean query image) refuses jobs with code `shard_jobs_unsupported`, and the client then
embeds through its own path. Errors carry the status the client's retry layer understands:
403 a missing S3 grant, 422 bad input (not retried), 503 S3 or the model failing for now.
"""

from __future__ import annotations

import logging
from typing import Any

from errors import ApiError

log = logging.getLogger("embedding.shard_jobs")
UNSUPPORTED = "shard_jobs_unsupported"
PROBE_OBJECT = "_embed-corpus-probe"


def is_shard_event(event: Any) -> bool:
    return isinstance(event, dict) and ("shard_job" in event or "shard_probe" in event)


def handle(event: dict, settings, embedder) -> dict:
    """The job's (or probe's) result, or raises ApiError."""
    try:
        from embedding_client.corpus import errors, locations, shard_job
        from embedding_client.corpus.target_local import LocalTarget
        from embedding_client.corpus.targets import EmbedOptions
    except ImportError as error:
        raise ApiError(
            400,
            f"this function's image can't run shard jobs ({error}): deploy the bulk image (build arg "
            "BULK=1, the Terraform's bulk function) or run embed-corpus with --io client",
            code=UNSUPPORTED,
        ) from None
    storage = locations.Storage()
    try:
        if "shard_probe" in event:
            return _probe(event["shard_probe"], storage, locations)
        job = event["shard_job"]
        if not isinstance(job, dict) or not isinstance(job.get("options"), dict):
            raise ApiError(400, "shard_job must be an object made by embed-corpus", code="invalid_value")
        options = job["options"]
        target = LocalTarget(
            EmbedOptions(options.get("input_type"), options.get("embedding_type", "float")), (settings, embedder)
        )
        return shard_job.run_job(job, target, storage)
    except errors.AccessDenied as error:
        raise ApiError(403, str(error), "permission_error", code="s3_access_denied") from None
    except errors.InputError as error:
        raise ApiError(422, str(error), code="bad_input") from None
    except errors.CorpusError as error:
        raise ApiError(503, str(error), "server_error", code="s3_unavailable") from None
    except (KeyError, TypeError, ValueError) as error:
        raise ApiError(400, f"a malformed shard job ({type(error).__name__}: {error})", code="invalid_value") from None


def _probe(probe: dict, storage, locations) -> dict:
    """Can this worker read INPUT and write under OUTPUT? A small object under OUTPUT proves the
    write grant (the client deletes it); a HEAD of the first input object proves the read one."""
    source = locations.Location(probe["input"])
    storage.head(source)
    target = locations.Location(probe["output"]).child(PROBE_OBJECT)
    storage.write_bytes(target, b"shard jobs can write here\n")
    return {"shard_jobs": True, "probe_object": target.uri}
