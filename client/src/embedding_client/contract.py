"""The service's contract, as a client installed without the service knows it.

The values are defined by `embedding_service.contract`; a client installed alone (no torch, no
onnxruntime) cannot import that, yet needs some of them before it reaches a server: `--help`'s
choices, the request sizes it plans, the error codes and event keys it acts on. They are
repeated here, and only here, for that reason; `tests/client/test_contract.py` fails when one
differs from the service's module or from what a running server's `/health` says
(`contract`). At run time the client takes a server's own limits and chunk bounds from its
`/health`, so these are only the starting point.
"""

from __future__ import annotations

LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024  # a synchronous invocation's request and response, each
# The client's own choice, not the service's: what its requests leave free of that limit.
PAYLOAD_MARGIN_BYTES = 256 * 1024
MAX_ITEMS = 2048
MAX_ITEM_CHARS = 100_000
MAX_BODY_BYTES = LAMBDA_PAYLOAD_BYTES

OUTPUT_TYPES: dict[str, tuple[str, int]] = {  # numpy dtype, values per byte
    "float": ("<f4", 1),
    "int8": ("i1", 1),
    "uint8": ("u1", 1),
    "binary": ("i1", 8),
    "ubinary": ("u1", 8),
}
CALIBRATED_TYPES = ("int8", "uint8")
INPUT_TYPES = ("query", "document")
MIN_CHUNK_TOKENS = 8
CHUNK_PIECE_CHARS = 1 << 18  # the chunker's pieces (embedding_client.corpus.pieces)
# What a served model is (/health `kind`): embed-corpus embeds with the first and third only.
EMBEDDING, RERANKER, SPARSE = "embedding", "reranker", "sparse"
MODEL_KINDS = (EMBEDDING, RERANKER, SPARSE)


class ErrorCode:
    INVALID_VALUE = "invalid_value"
    INPUT_TOO_LONG = "input_too_long"
    MODEL_NOT_FOUND = "model_not_found"
    SHARD_JOBS_UNSUPPORTED = "shard_jobs_unsupported"
    S3_ACCESS_DENIED = "s3_access_denied"
    S3_UNAVAILABLE = "s3_unavailable"
    BAD_INPUT = "bad_input"
    WRONG_MODEL_KIND = "wrong_model_kind"


class EventKey:
    SHARD_JOB = "shard_job"
    SHARD_PROBE = "shard_probe"


SHARD_EVENT_KEYS = (EventKey.SHARD_JOB, EventKey.SHARD_PROBE)
