"""What the service and its clients must agree on, defined once.

A client with the service installed (`embedding-client[local]`, the workers) imports these; a
client installed alone learns them from `GET /health` (`contract`, below), and the client's own
defaults (`embedding_client.contract`) are checked against this module by a test, so a change
here that a client does not follow fails the build, not a user's run.

Three things are called a fingerprint, and each has its own name:
- the *model fingerprint*: what makes this service's vectors what they are (`fingerprint.py`,
  `/health` `fingerprint`, keys `MODEL_FINGERPRINT_KEYS`);
- the *run fingerprint*: the model fingerprint plus a run's own choices (prompt, output type),
  stored in embed-corpus's Parquet metadata;
- the *input version*: which bytes of the corpus a run read (name, size, ETag), so `--resume`
  and `--reuse` can tell an input that changed.
"""

from __future__ import annotations

# Lambda's synchronous invocation payload limit, request and response each.
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
# A handler's result must leave room for the envelope the runtime wraps around it.
LAMBDA_RESPONSE_LIMIT_BYTES = LAMBDA_PAYLOAD_BYTES - 16 * 1024

# Request limits (settings.Limits' defaults; /health `limits` says a server's actual ones).
MAX_ITEMS = 2048  # OpenAI's own cap on inputs per request
MAX_ITEM_CHARS = 100_000  # guards the tokenizer; the model reads a few hundred tokens anyway
MAX_BODY_BYTES = LAMBDA_PAYLOAD_BYTES

# Output types (Cohere's names, as `embedding_types` takes them): numpy dtype and values per byte.
OUTPUT_TYPES: dict[str, tuple[str, int]] = {
    "float": ("<f4", 1),
    "int8": ("i1", 1),
    "uint8": ("u1", 1),
    "binary": ("i1", 8),
    "ubinary": ("u1", 8),
}
EMBEDDING_TYPES = tuple(OUTPUT_TYPES)
CALIBRATED_TYPES = ("int8", "uint8")  # values that depend on the calibration ranges
INPUT_TYPES = ("query", "document")

# Chunk bounds: a chunk of fewer tokens than this is refused (chunk_tokens, --chunk-tokens).
MIN_CHUNK_TOKENS = 8
# The chunker cuts a text into pieces about this many characters long at content-defined line
# starts (chunk_pieces.py) and chunks each on its own, so a client can send a document of any
# length as pieces and get the same chunks as the whole at once.
CHUNK_PIECE_CHARS = 1 << 18

# What a served model is, read from its own files (model_config.py), and the routes each kind
# answers: a client picks its calls from /health `kind`, and a route asked of another kind
# answers 400 naming both (`ErrorCode.WRONG_MODEL_KIND`).
EMBEDDING, RERANKER, SPARSE = "embedding", "reranker", "sparse"
MODEL_KINDS = (EMBEDDING, RERANKER, SPARSE)
KIND_ROUTES: dict[str, tuple[str, ...]] = {
    EMBEDDING: ("/", "/v1/embeddings", "/v1/chunks", "/tokenize"),
    RERANKER: ("/rerank", "/v1/rerank", "/tokenize"),
    SPARSE: ("/embed_sparse", "/v1/embeddings", "/v1/chunks", "/tokenize"),
}
# Documents per rerank request: Cohere's own cap (its API refuses more than 1,000).
MAX_RERANK_DOCUMENTS = 1000
# A rerank query's characters: it shares the window with every document, and 8,192 characters
# are already several times any cross-encoder's 512-token window.
MAX_QUERY_CHARS = 8192


class ErrorCode:
    """`error.code` values a client acts on (the rest are for people to read)."""

    INVALID_VALUE = "invalid_value"
    INPUT_TOO_LONG = "input_too_long"
    MODEL_NOT_FOUND = "model_not_found"
    SHARD_JOBS_UNSUPPORTED = "shard_jobs_unsupported"  # the query image: no shard worker
    S3_ACCESS_DENIED = "s3_access_denied"  # a worker lacks an S3 grant (403)
    S3_UNAVAILABLE = "s3_unavailable"  # S3 or the model failing for now (503, retried)
    BAD_INPUT = "bad_input"  # a shard's rows are unusable (422, not retried)
    WRONG_MODEL_KIND = "wrong_model_kind"  # e.g. /rerank asked of an embedding model (400)


class EventKey:
    """Top-level keys of direct Lambda events that are not request bodies."""

    SHARD_JOB = "shard_job"  # embed-corpus worker mode: read a split from S3, write its part
    SHARD_PROBE = "shard_probe"  # can this worker read INPUT and write under OUTPUT?


SHARD_EVENT_KEYS = (EventKey.SHARD_JOB, EventKey.SHARD_PROBE)

# The model fingerprint's keys (fingerprint.model_fingerprint), in the order it lists them.
MODEL_FINGERPRINT_KEYS = (
    "version",
    "model_sha256",
    "backend",
    "graph",
    "graph_sha256",
    "device",
    "precision",
    "max_seq_length",
    "do_lower_case",
    "pooling",
    "normalize",
    "include_prompt",
    "dimension",
    "calibration_sha256",
    "prompts",
)


def published() -> dict:
    """The part of the contract a remote client needs, as `/health` `contract` says it."""
    return {
        "lambda_payload_bytes": LAMBDA_PAYLOAD_BYTES,
        "output_types": {name: list(spec) for name, spec in OUTPUT_TYPES.items()},
        "calibrated_types": list(CALIBRATED_TYPES),
        "input_types": list(INPUT_TYPES),
        "min_chunk_tokens": MIN_CHUNK_TOKENS,
        "model_kinds": {kind: list(routes) for kind, routes in KIND_ROUTES.items()},
        "max_rerank_documents": MAX_RERANK_DOCUMENTS,
        "max_query_chars": MAX_QUERY_CHARS,
        "chunk_piece_chars": CHUNK_PIECE_CHARS,
        "error_codes": {name.lower(): value for name, value in vars(ErrorCode).items() if name.isupper()},
        "event_keys": list(SHARD_EVENT_KEYS),
        "model_fingerprint_keys": list(MODEL_FINGERPRINT_KEYS),
    }
