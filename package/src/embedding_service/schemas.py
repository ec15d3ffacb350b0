"""Request and response schemas, defined once for both targets.

The same pydantic models validate requests on FastAPI and on Lambda and generate the
OpenAPI document behind /docs. Limits are runtime settings, so they reach the validators
through the validation context (`{"limits": Limits}`) instead of being baked in here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from embedding_service.model_config import INPUT_TYPE_PROMPTS
from embedding_service.quantize import EMBEDDING_TYPES
from embedding_service.settings import PRECISIONS, Limits

EXAMPLE_TEXT = "hello, world!"
# `input_type` names what a text is for; the model maps it to one of its own prompts.
INPUT_TYPES = tuple(INPUT_TYPE_PROMPTS)  # ("query", "document")
InputType = Literal[INPUT_TYPES]
EmbeddingType = Literal[EMBEDDING_TYPES]
INPUT_TYPE_DOC = (
    "`query` or `document`: prefixes the model's matching prompt (query -> its `query` prompt; "
    "document -> its first non-empty `document`/`passage`/`corpus` prompt), as "
    "SentenceTransformer.encode(prompt_name=...) does. Omitted: the model's default prompt, if any. "
    "A no-op on models without prompts."
)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", dict: "object", list: "array"}.get(
        type(value), type(value).__name__
    )


def _is_token_id(value: Any) -> bool:
    """An integer; JSON (and JSON Schema) also call 7.0 an integer, so that counts too."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _check_token_array(ids: list, where: str, limits: Limits) -> list[int]:
    if not ids:
        raise ValueError(f"{where} must not be an empty token array")
    for position, token_id in enumerate(ids):
        if not _is_token_id(token_id):
            raise ValueError(
                f"{where}[{position}] must be a token id (an integer), got {_json_type(token_id)}; "
                "a token array holds integers only"
            )
    if len(ids) > limits.max_item_chars:
        raise ValueError(f"{where} has {len(ids)} token ids; at most {limits.max_item_chars}")
    return [int(token_id) for token_id in ids]


def _check_input(value: Any, info: ValidationInfo, token_arrays: bool, whole_texts: bool = False) -> Any:
    """The rules for `input`, with messages that tell the caller what to send instead.

    With `token_arrays`, OpenAI's two other shapes are accepted too: a list of token ids
    (one text) or a list of such lists; a list never mixes strings and token ids.
    """
    limits: Limits = (info.context or {}).get("limits") or Limits()
    shapes = "a string, a list of strings, a list of token ids or a list of token-id lists"
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list):
        if not value:
            raise ValueError("input must not be an empty list")
        if token_arrays and _is_token_id(value[0]):
            return _check_token_array(value, "input", limits)
        if len(value) > limits.max_items:
            raise ValueError(
                f"input has {len(value)} items; at most {limits.max_items} per request"
            )
        items = value
    else:
        expected = shapes if token_arrays else "a string or a list of strings"
        raise ValueError(f"input must be {expected}, got {_json_type(value)}")
    if token_arrays and isinstance(items[0], list):
        arrays = []
        for index, item in enumerate(items):
            if not isinstance(item, list):
                raise ValueError(
                    f"input[{index}] must be a list of token ids like input[0], got {_json_type(item)}"
                )
            arrays.append(_check_token_array(item, f"input[{index}]", limits))
        return arrays
    for index, item in enumerate(items):
        where = "input" if isinstance(value, str) else f"input[{index}]"
        if not isinstance(item, str):
            if token_arrays:
                raise ValueError(
                    f"{where} must be a string like input[0], got {_json_type(item)}; "
                    f"input must be {shapes}, never a mix"
                )
            if isinstance(item, (int, list)) and not isinstance(item, bool):
                raise ValueError(
                    f"{where}: token-id arrays are accepted on /v1/embeddings only; send text here"
                )
            raise ValueError(f"{where} must be a string, got {_json_type(item)}")
        if not item:
            raise ValueError(f"{where} must not be an empty string")
        if len(item) > limits.max_item_chars and not whole_texts:
            raise ValueError(
                f"{where} has {len(item)} characters; at most {limits.max_item_chars} "
                "(the model reads only its first few hundred tokens anyway); to embed all of a longer "
                "document, cut it with POST /v1/chunks (embed-corpus --chunk-tokens N) and embed the chunks"
            )
    return value


def check_input(value: Any, info: ValidationInfo) -> str | list[str]:
    """Text only: the seed's `POST /`."""
    return _check_input(value, info, token_arrays=False)


def check_chunk_input(value: Any, info: ValidationInfo) -> str | list[str]:
    """Text only, of any length the request body holds: chunking exists to read every token of a
    long document, so MAX_INPUT_CHARS (a bound for embedding) does not apply."""
    return _check_input(value, info, token_arrays=False, whole_texts=True)


def check_openai_input(value: Any, info: ValidationInfo) -> Any:
    """Text or tiktoken token ids: OpenAI's `POST /v1/embeddings`."""
    return _check_input(value, info, token_arrays=True)


def check_input_type(value: Any) -> str | None:
    if value is None or value in INPUT_TYPES:
        return value
    raise ValueError(f"input_type must be one of {', '.join(INPUT_TYPES)}; got {value!r}")


def check_embedding_types(value: Any) -> list[str] | None:
    if value is None:
        return None
    choices = ", ".join(EMBEDDING_TYPES)
    if not isinstance(value, list) or not value:
        raise ValueError(f"embedding_types must be a non-empty list of: {choices}")
    for item in value:
        if item not in EMBEDDING_TYPES:
            raise ValueError(f"embedding_types: {item!r} is not one of {choices}")
    return list(dict.fromkeys(value))  # repeated names give one entry each


TRUNCATE_DOC = (
    "true (the default, as sentence-transformers): an input longer than the model's window is cut to "
    "it (the response's x-truncated-inputs header counts them). false: such an input is refused with "
    "a 400 naming it, its tokens and the window; split it with POST /v1/chunks. The same name as "
    "text-embeddings-inference's."
)


class SeedEmbeddingRequest(BaseModel):
    """The seed article's request: `{"input": "..."}`, or a list of strings."""

    model_config = ConfigDict(
        strict=True, json_schema_extra={"examples": [{"input": EXAMPLE_TEXT}]}
    )
    input: str | list[str] = Field(description="Text to embed, or a list of texts.")
    input_type: InputType | None = Field(default=None, description=INPUT_TYPE_DOC)
    truncate: bool = Field(default=True, description=TRUNCATE_DOC)

    _check_input = field_validator("input", mode="before")(check_input)
    _check_input_type = field_validator("input_type", mode="before")(check_input_type)


class OpenAIEmbeddingRequest(BaseModel):
    """OpenAI's `POST /v1/embeddings` request (unknown extra fields are ignored)."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "examples": [{"input": [EXAMPLE_TEXT], "model": "sentence-transformers/all-MiniLM-L6-v2"}]
        },
    )
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="Text to embed, a list of texts, or tiktoken token ids (one list per text; "
        "decoded with TOKEN_ARRAY_ENCODING, cl100k_base by default, and embedded as that text)."
    )
    model: str | None = Field(default=None, description="The served model's id (GET /v1/models).")
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="`base64` is little-endian float32, what the official openai client asks for.",
    )
    dimensions: int | None = Field(default=None, description="Must equal the model's dimension.")
    user: str | None = Field(default=None, description="Accepted and ignored.")
    input_type: InputType | None = Field(default=None, description=INPUT_TYPE_DOC)
    embedding_types: list[EmbeddingType] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Cohere's output types: any of float, int8, uint8, binary, ubinary. Given, each item carries "
            "`embeddings: {type: vector}` (base64 of the raw little-endian bytes with encoding_format=base64), "
            "and `embedding` only when float is asked for. Quantised as sentence-transformers' "
            "quantize_embeddings does."
        ),
    )

    token_counts: bool = Field(
        default=False,
        description="Ours: true adds `tokens` to each data item, the tokens the model read for that input "
        "(after truncation, prompt included), so bulk clients can record them per text.",
    )
    truncate: bool = Field(default=True, description=TRUNCATE_DOC)

    _check_input = field_validator("input", mode="before")(check_openai_input)
    _check_input_type = field_validator("input_type", mode="before")(check_input_type)
    _check_embedding_types = field_validator("embedding_types", mode="before")(check_embedding_types)


class ChunkRequest(BaseModel):
    """Ours: `POST /v1/chunks` cuts long texts into spans that each fit the window, at paragraph,
    sentence and word breaks chosen from the content (an edit moves only the chunks near it).
    Embed each span's text (`text[start:end]`) with /v1/embeddings as usual."""

    model_config = ConfigDict(
        strict=True, json_schema_extra={"examples": [{"input": [EXAMPLE_TEXT], "chunk_tokens": 128}]}
    )
    input: str | list[str] = Field(description="A text to chunk, or a list of texts.")
    chunk_tokens: int | None = Field(
        default=None,
        description="Most tokens per chunk, at least 8 and at most the window (/health `chunk_window`: "
        "the model's maximum less its special tokens and the prompt). Default: the window.",
    )
    chunk_overlap: int = Field(
        default=0,
        description="Up to this many tokens of a chunk's end repeated at the next one's start, cut at a "
        "sentence or word start; less than half of chunk_tokens.",
    )
    input_type: InputType | None = Field(
        default=None, description="The prompt the chunks will be embedded with: its tokens shrink the window."
    )
    model: str | None = Field(default=None, description="The served model's id (GET /v1/models).")

    whole_texts: ClassVar[bool] = True  # texts as long as the body allows (OpenAPI maxLength too)
    _check_input = field_validator("input", mode="before")(check_chunk_input)
    _check_input_type = field_validator("input_type", mode="before")(check_input_type)


class ChunkSpan(BaseModel):
    start: int = Field(description="Offset of the chunk's first character (Python string index).")
    end: int = Field(description="Offset just past its last character: the chunk is text[start:end].")
    tokens: int = Field(description="Tokens of text[start:end] on its own, without special tokens.")


class TextChunks(BaseModel):
    object: Literal["chunks"] = "chunks"
    index: int
    tokens: int = Field(description="Tokens of the whole text, untruncated.")
    chunks: list[ChunkSpan]


class ChunkResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    chunk_tokens: int
    chunk_overlap: int
    window: int = Field(description="The most chunk_tokens may be under this input_type.")
    data: list[TextChunks]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class SeedEmbeddingResponse(BaseModel):
    fragment: SeedEmbeddingRequest
    embedding: list[float] | list[list[float]] = Field(
        description="One vector for a string input, a list of vectors for a list input."
    )
    model: str
    usage: Usage


class EmbeddingItem(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str | None = Field(
        default=None, description="The float vector; absent when embedding_types leaves out float."
    )
    embeddings: dict[EmbeddingType, list[float] | str] | None = Field(
        default=None, description="One entry per requested embedding type (only with embedding_types)."
    )
    tokens: int | None = Field(default=None, description="Tokens read for this input (only with token_counts).")


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingItem]
    model: str
    usage: Usage


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class StatusResponse(BaseModel):
    status: str = "200 OK"


class LimitsInfo(BaseModel):
    max_items: int = Field(description="Most inputs per request (MAX_INPUT_ITEMS).")
    max_item_chars: int = Field(description="Most characters per input (MAX_INPUT_CHARS).")
    max_body_bytes: int = Field(description="Largest request body (MAX_BODY_BYTES).")


class Fingerprint(BaseModel):
    """Every part that decides this service's vectors (fingerprint.py); equal parts, equal vectors."""

    version: int
    model_sha256: str = Field(description="sha256 of the weights (model.safetensors).")
    backend: str
    graph: str = Field(description="The ONNX file the backend runs, or `weights` for torch.")
    graph_sha256: str
    device: Literal["cpu", "cuda"]
    precision: str
    max_seq_length: int
    do_lower_case: bool
    pooling: str
    normalize: bool
    include_prompt: bool
    dimension: int
    calibration_sha256: str = Field(description="sha256 of the int8/uint8 ranges; empty without them.")
    prompts: dict[str, str] = Field(description="The prompt text applied with no input_type (`default`) and "
                                    "with each input_type.")


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model: str
    backend: str
    precision: Literal[PRECISIONS] = Field(
        description="EMBEDDING_PRECISION in use: fp32 (vectors equal sentence-transformers), int8 (the "
        "ONNX economy file), or fp16/bf16 (torch on a GPU)."
    )
    dimension: int
    max_seq_length: int
    prompts: dict[str, str] = Field(description="The model's non-empty prompts, by name.")
    default_prompt_name: str | None = None
    input_types: dict[InputType, str | None] = Field(description="The prompt name each input_type applies.")
    limits: LimitsInfo = Field(description="Request limits, so bulk clients can check inputs before sending.")
    chunk_window: dict[str, int] = Field(
        description="The most tokens a chunk may hold (POST /v1/chunks), with no input_type (`default`) "
        "and with each input_type: the model's maximum less its special tokens and the prompt."
    )
    fingerprint: Fingerprint = Field(
        description="What decides the vectors: embed-corpus --reuse trusts an earlier vector only under equal parts."
    )
    contract: dict[str, Any] = Field(
        description="What clients must agree on with this server (embedding_service.contract): the Lambda payload "
        "limit, output types, chunk bounds, error codes, event keys and the fingerprint's keys."
    )


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "sentence-transformers"
    prompts: dict[str, str] | None = None
    default_prompt_name: str | None = None
    input_types: dict[InputType, str | None] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
