"""What every target shares: what it reports after a probe, what one call returns, the OpenAI wire.

A target embeds one request's texts and says what that cost; it never retries (retry.py does).
`choose_target.open_target` picks the target from `--target`: `local`, `http(s)://...` or
`lambda://NAME` (it lives apart so that the target modules, which import this one, are never
imported back from here).
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from embedding_client import contract
from embedding_client.contract import INPUT_TYPES, OUTPUT_TYPES  # noqa: F401 (the targets' vocabulary)
from embedding_client.contract import EMBEDDING, RERANKER, SPARSE
from embedding_client.corpus.errors import (
    CorpusError,
    InputError,
    PermanentError,
    SplitRequest,
    TransientError,
)
from embedding_client.corpus.plan import RequestBudget

RETRYABLE_STATUSES = (408, 425, 429, 500, 502, 503)
SPLIT_STATUSES = (413, 504)  # the request was too big for one call: halves may pass
PROBE_ATTEMPTS = 3  # a server or emulator still starting gets a few seconds
# `--sparse`'s output type: a row's vector is its nonzero vocabulary weights, `indices` and `values`.
SPARSE_OUTPUT = SPARSE


@dataclass(frozen=True)
class Limits:
    """The service's request limits (its /health says them; these are its defaults)."""

    max_items: int = contract.MAX_ITEMS
    max_item_chars: int = contract.MAX_ITEM_CHARS
    max_body_bytes: int = contract.MAX_BODY_BYTES

    @classmethod
    def from_health(cls, health: dict) -> "Limits":
        limits = health.get("limits") if isinstance(health, dict) else None
        if not isinstance(limits, dict):
            return cls()
        return cls(
            **{
                name: int(limits[name])
                for name in ("max_items", "max_item_chars", "max_body_bytes")
                if isinstance(limits.get(name), int)
            }
        )


@dataclass(frozen=True)
class EmbedOptions:
    """What the user asked for, per text: a prompt and an output type."""

    input_type: str | None = None
    embedding_type: str = "float"
    model: str | None = None  # the model name to send; None: the one the target serves


@dataclass(frozen=True)
class TargetInfo:
    kind: str  # local | http | lambda
    model_id: str
    dimension: int
    limits: Limits = Limits()
    max_seq_length: int = 512
    ours: bool = True  # this project's service: it counts tokens per text and knows input_type
    notes: tuple[str, ...] = ()
    model_fingerprint: dict | None = None  # the service's /health `fingerprint` (None: not ours, or unread)
    where: str = ""  # the target as named on the command line
    chunk_window: int | None = None  # the most tokens a chunk may hold here (None: it can't chunk)
    model_kind: str = EMBEDDING  # /health `kind`: embedding, sparse or reranker (another server: embedding)


@dataclass(frozen=True)
class Invocation:
    """One call as the target billed it: Lambda's REPORT line where AWS returned it."""

    seconds: float  # measured by the client
    billed_ms: float | None = None
    memory_mb: int | None = None


@dataclass
class Embedded:
    # (n, width) in the output type's dtype, in request order; a sparse run's is (n,) of objects,
    # each an (indices int32, values float32) pair (`sparse_rows`)
    vectors: np.ndarray
    tokens: list[int] | None  # per text, where the target says
    truncated: int | None = None  # texts cut at the model's maximum, where the target says
    invocations: list[Invocation] = field(default_factory=list)


def merge(parts: list[Embedded]) -> Embedded:
    """Halves of a split request back into one result, in order."""
    tokens = None if any(p.tokens is None for p in parts) else [t for p in parts for t in p.tokens]
    truncated = None if any(p.truncated is None for p in parts) else sum(p.truncated for p in parts)
    return Embedded(
        np.concatenate([p.vectors for p in parts]),
        tokens,
        truncated,
        [call for p in parts for call in p.invocations],
    )


@dataclass(frozen=True)
class Chunked:
    """One text's chunks, as the service's chunker cut them: (start, end, tokens) spans."""

    tokens: int  # the whole text's tokens, untruncated
    spans: list[tuple[int, int, int]]


def parse_chunk_response(payload: Any, count: int) -> list[Chunked]:
    """A /v1/chunks body -> one Chunked per text, in order; anything else is refused."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != count:
        raise PermanentError(f"the target answered {len(data) if isinstance(data, list) else 'no'} chunk lists "
                             f"for {count} texts")
    out: list[Chunked | None] = [None] * count
    try:
        for item in data:
            spans = [(int(c["start"]), int(c["end"]), int(c["tokens"])) for c in item["chunks"]]
            out[int(item["index"])] = Chunked(int(item["tokens"]), spans)
    except (KeyError, TypeError, ValueError, IndexError):
        raise PermanentError("the target's chunk response is not shaped like POST /v1/chunks'") from None
    if any(item is None for item in out):
        raise PermanentError("the target's chunk response misses a text")
    return out  # type: ignore[return-value]


def merge_chunked(parts: list[list[Chunked]]) -> list[Chunked]:
    return [item for part in parts for item in part]


def chunk_request(texts: list[str], chunk_tokens: int, overlap: int, options: EmbedOptions) -> dict:
    body: dict[str, Any] = {"input": texts, "chunk_tokens": chunk_tokens, "chunk_overlap": overlap}
    if options.model:  # a server with several models (MODELS=) chunks with the one named
        body["model"] = options.model
    if options.input_type:
        body["input_type"] = options.input_type
    return body


class Target(Protocol):
    info: TargetInfo
    default_batch_size: int
    default_concurrency: int

    def budget(self, batch_size: int) -> RequestBudget: ...

    def embed(self, texts: list[str]) -> Embedded: ...

    def chunk(self, texts: list[str], chunk_tokens: int, overlap: int) -> list[Chunked]: ...

    def close(self) -> None: ...


def output_width(embedding_type: str, dimension: int) -> int:
    """Values per vector: the dimension packed by the output type (a sparse run's: the vocabulary)."""
    if embedding_type == SPARSE_OUTPUT:
        return dimension
    return math.ceil(dimension / OUTPUT_TYPES[embedding_type][1])


def output_dtype(embedding_type: str) -> np.dtype:
    return np.dtype(object) if embedding_type == SPARSE_OUTPUT else np.dtype(OUTPUT_TYPES[embedding_type][0])


def empty_vectors(count: int, embedding_type: str, width: int) -> np.ndarray:
    """Room for `count` vectors: rows of `width` values, or one (indices, values) object each."""
    if embedding_type == SPARSE_OUTPUT:
        return np.empty(count, dtype=object)
    return np.empty((count, width), dtype=output_dtype(embedding_type))


def sparse_rows(pairs) -> np.ndarray:
    """(indices, values) pairs -> the (n,) object array a sparse run's vectors travel in."""
    pairs = list(pairs)
    rows = np.empty(len(pairs), dtype=object)
    for position, (indices, values) in enumerate(pairs):
        rows[position] = (np.asarray(indices, dtype=np.int32), np.asarray(values, dtype=np.float32))
    return rows


def sparse_from_weights(weights: np.ndarray) -> np.ndarray:
    """The model layer's (n, vocabulary) SPLADE weights -> their nonzero entries, as the services
    answer them (`/v1/embeddings` on a sparse model), so every target writes the same rows."""
    return sparse_rows((np.flatnonzero(row), row[np.flatnonzero(row)]) for row in weights)


def check_model_kind(info: TargetInfo, embedding_type: str) -> None:
    """A dense run needs an embedding model, `--sparse` a sparse one; a reranker embeds nothing."""
    name = info.model_id
    if info.model_kind == RERANKER:
        raise InputError(
            f"{name} is a reranker: it scores (query, document) pairs (POST /rerank), and embed-corpus embeds "
            "texts: point --target (or --model) at an embedding or sparse model"
        )
    if info.model_kind == SPARSE and embedding_type != SPARSE_OUTPUT:
        raise InputError(
            f"{name} is a sparse model: its vectors are {{indices, values}}: pass --sparse to write them as "
            "indices and values columns (--embedding-type applies to dense models only)"
        )
    if info.model_kind != SPARSE and embedding_type == SPARSE_OUTPUT:
        raise InputError(
            f"--sparse needs a sparse (SPLADE) model, and {name} is an {info.model_kind} model: leave --sparse "
            "out to write its dense vectors"
        )


def model_health(health: dict, model: str | None) -> dict:
    """/health's facts for the model a run names: a server with several models (MODELS=) lists
    each one's kind, dimension, window, chunk windows and fingerprint in `models`, and says its
    first model's at the top level."""
    entries = health.get("models") if isinstance(health, dict) else None
    if not model or not isinstance(entries, list):
        return health
    wanted = model.lower()
    for entry in entries:
        if isinstance(entry, dict) and wanted in (str(entry.get("id", "")).lower(),
                                                  str(entry.get("id", "")).split("/")[-1].lower()):
            return {**health, **{key: value for key, value in entry.items() if key != "id"}}
    return health


def openai_request(texts: list[str], info: TargetInfo, options: EmbedOptions) -> dict:
    """A /v1/embeddings body: base64 vectors (a sparse model's answer {indices, values} in JSON);
    our extensions only where the server is ours."""
    body: dict[str, Any] = {
        "input": texts,
        "model": options.model or info.model_id,
        "encoding_format": "float" if options.embedding_type == SPARSE_OUTPUT else "base64",
    }
    if info.ours:
        body["token_counts"] = True
    if options.input_type:
        body["input_type"] = options.input_type
    if options.embedding_type not in ("float", SPARSE_OUTPUT):
        body["embedding_types"] = [options.embedding_type]
    return body


def parse_openai_response(payload: Any, count: int, info: TargetInfo, options: EmbedOptions) -> Embedded:
    """Vectors (base64 or JSON numbers) in index order; a response that doesn't fit is refused."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list) or len(data) != count:
        got = len(data) if isinstance(data, list) else "no"
        raise PermanentError(f"the target answered {got} vectors for {count} texts")
    if options.embedding_type == SPARSE_OUTPUT:
        return parse_sparse_data(data, count, info)
    kind, dtype = options.embedding_type, output_dtype(options.embedding_type)
    width = output_width(kind, info.dimension)
    fast = _in_order_base64(data, kind, dtype, width)
    if fast is not None:
        vectors, tokens = fast
        known = info.ours and all(isinstance(t, int) for t in tokens)
        return Embedded(vectors, tokens if known else None)
    vectors = np.empty((count, width), dtype=dtype)
    tokens: list[Any] = [None] * count
    seen = set()
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or index in seen:
            raise PermanentError(f"the target's response has a bad or repeated index: {index!r}")
        seen.add(index)
        value = item.get("embedding") if kind == "float" else (item.get("embeddings") or {}).get(kind)
        vector = decode_vector(value, dtype)
        if vector.shape != (width,):
            raise PermanentError(f"the target answered a vector of {vector.size} values; expected {width}")
        vectors[index] = vector
        tokens[index] = item.get("tokens")
    known = info.ours and all(isinstance(t, int) for t in tokens)
    return Embedded(vectors, tokens if known else None)


def parse_sparse_data(data: list, count: int, info: TargetInfo) -> Embedded:
    """A sparse model's `{indices, values}` objects, in index order; indices within the vocabulary."""
    pairs: list[Any] = [None] * count
    tokens: list[Any] = [None] * count
    for item in data:
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or pairs[index] is not None:
            raise PermanentError(f"the target's response has a bad or repeated index: {index!r}")
        vector = item.get("embedding")
        if not (isinstance(vector, dict) and isinstance(vector.get("indices"), list)
                and isinstance(vector.get("values"), list) and len(vector["indices"]) == len(vector["values"])):
            raise PermanentError("the target answered no {indices, values} sparse vector: is the model sparse?")
        indices = np.asarray(vector["indices"], dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= info.dimension):
            raise PermanentError(f"the target's sparse vector has an index outside the vocabulary of {info.dimension}")
        pairs[index] = (indices, vector["values"])
        tokens[index] = item.get("tokens")
    known = info.ours and all(isinstance(t, int) for t in tokens)
    return Embedded(sparse_rows(pairs), tokens if known else None)


def _in_order_base64(data: list, kind: str, dtype, width: int) -> tuple[np.ndarray, list] | None:
    """The common answer (items in index order, base64 without padding) decoded in one call, not
    one per vector; None for anything else, which the item-by-item path checks and explains."""
    size = width * np.dtype(dtype).itemsize
    if size % 3:
        return None  # padded base64 can't be joined
    chars = size // 3 * 4
    values, tokens = [], []
    for position, item in enumerate(data):
        if not isinstance(item, dict) or item.get("index") != position:
            return None
        value = item.get("embedding") if kind == "float" else (item.get("embeddings") or {}).get(kind)
        if not isinstance(value, str) or len(value) != chars:
            return None
        values.append(value)
        tokens.append(item.get("tokens"))
    try:
        raw = base64.b64decode("".join(values), validate=True)
    except (binascii.Error, ValueError):
        return None
    return np.frombuffer(raw, dtype=dtype).reshape(len(data), width).copy(), tokens


def decode_vector(value: Any, dtype: np.dtype) -> np.ndarray:
    """A base64 string of little-endian values, or a JSON list of numbers."""
    if isinstance(value, str):
        try:
            return np.frombuffer(base64.b64decode(value, validate=True), dtype=dtype)
        except (binascii.Error, ValueError):
            raise PermanentError("the target's response holds a vector that is not valid base64") from None
    if isinstance(value, list):
        return np.asarray(value, dtype=dtype)
    raise PermanentError("the target's response has no vector where one was expected")


def status_error(status: int, message: str, retry_after: float | None = None) -> Exception:
    """An HTTP-equivalent status -> what the retry layer should do with it."""
    if status in SPLIT_STATUSES:
        return SplitRequest(f"{status}: {message}")
    if status in RETRYABLE_STATUSES or status >= 500:
        return TransientError(f"{status}: {message}", retry_after)
    return PermanentError(f"{status}: {message}")


def error_message(payload: Any) -> str:
    """The message of an OpenAI-shaped error body, or a short rendering of whatever came back."""
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message", payload["error"]))
    return str(payload)[:300]


def probe_with_retries(
    call: Callable[[], Any], unreachable: Callable[[str], str], refused: Callable[[str], str]
) -> Any:
    """A probe's call, retried while the target may still be starting; what stays unreachable,
    or refuses, ends the run as one sentence (a CorpusError), before any corpus text is sent."""
    for attempt in range(PROBE_ATTEMPTS):
        try:
            return call()
        except TransientError as error:
            if attempt == PROBE_ATTEMPTS - 1:
                raise CorpusError(unreachable(error.reason)) from None
            time.sleep(1.0 * (attempt + 1))
        except (PermanentError, SplitRequest) as error:
            raise CorpusError(refused(error.reason)) from None
    raise AssertionError("unreachable")
