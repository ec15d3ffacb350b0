"""Request and response schemas, defined once for both targets.

The same pydantic models validate requests on FastAPI and on Lambda and generate the
OpenAPI document behind /docs. Limits are runtime settings, so they reach the validators
through the validation context (`{"limits": Limits}`) instead of being baked in here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationInfo, field_validator

from embedding_service.contract import MAX_QUERY_CHARS, MAX_RERANK_DOCUMENTS, MODEL_KINDS
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


class ServedModelInfo(BaseModel):
    id: str
    kind: Literal[MODEL_KINDS]
    dimension: int
    max_seq_length: int
    prompts: dict[str, str]
    default_prompt_name: str | None = None
    input_types: dict[InputType, str | None]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model: str
    kind: Literal[MODEL_KINDS] = Field(
        description="embedding, reranker or sparse: read from the model's own files; contract.model_kinds "
        "lists the routes each kind answers."
    )
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
    models: list[ServedModelInfo] = Field(
        description="Every served model (MODELS): the fields above are the first one's."
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
    kind: Literal[MODEL_KINDS] | None = Field(
        default=None,
        description="embedding, reranker or sparse: which routes it answers (/health contract.model_kinds).",
    )
    prompts: dict[str, str] | None = None
    default_prompt_name: str | None = None
    input_types: dict[InputType, str | None] | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---- Rerank (TEI's and Cohere's shapes), sparse vectors and tokenize (TEI's) ----------------

def _check_query(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str):
        raise ValueError(f"query must be a string, got {_json_type(value)}")
    if not value:
        raise ValueError("query must not be an empty string")
    if len(value) > MAX_QUERY_CHARS:
        raise ValueError(
            f"query has {len(value)} characters; at most {MAX_QUERY_CHARS}: the query is read beside every "
            "document in the model's window, so a longer one leaves no room for the documents"
        )
    return value


def _check_documents(value: Any, info: ValidationInfo, field: str, objects: bool) -> list[str]:
    """A non-empty list of at most MAX_RERANK_DOCUMENTS strings (or, Cohere's shape, {"text": ...})."""
    limits: Limits = (info.context or {}).get("limits") or Limits()
    shape = 'strings or objects {"text": "..."}' if objects else "strings"
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a list of {shape}, got {_json_type(value)}")
    if not value:
        raise ValueError(f"{field} must not be an empty list: send at least one document to rank")
    if len(value) > MAX_RERANK_DOCUMENTS:
        raise ValueError(f"{field} has {len(value)} documents; at most {MAX_RERANK_DOCUMENTS} per request")
    texts = []
    for index, item in enumerate(value):
        if objects and isinstance(item, dict):
            item = item.get("text")
            if not isinstance(item, str):
                raise ValueError(f"{field}[{index}] is an object without a string 'text'; send {shape}")
        if not isinstance(item, str):
            raise ValueError(f"{field}[{index}] must be one of the {shape}, got {_json_type(item)}")
        if len(item) > limits.max_item_chars:
            raise ValueError(f"{field}[{index}] has {len(item)} characters; at most {limits.max_item_chars}")
        texts.append(item)
    return texts


RERANK_TRUNCATE_DOC = (
    "true (the default, as sentence-transformers' CrossEncoder): a (query, document) pair longer than the "
    "model's window is cut, longest part first, as CrossEncoder.predict cuts it. false: such a pair is refused "
    "with a 400 naming the document and its tokens. (TEI's own default is false.)"
)


class TeiRerankRequest(BaseModel):
    """text-embeddings-inference's `POST /rerank`: scores of (query, text) pairs, best first."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "examples": [{"query": "What is Deep Learning?", "texts": ["Deep Learning is ...", "cheese"]}]
        },
    )
    query: str = Field(description="The query every text is scored against.")
    texts: list[str] = Field(description=f"The texts to rank, 1 to {MAX_RERANK_DOCUMENTS}.")
    raw_scores: bool = Field(
        default=False,
        description="true: the model's logits; false: its activation applied (sigmoid for a one-label CrossEncoder, "
        "or the activation_fn its folder stores), as CrossEncoder.predict returns.",
    )
    return_text: bool = Field(default=False, description="true: each result carries its text.")
    truncate: bool = Field(default=True, description=RERANK_TRUNCATE_DOC)
    model: str | None = Field(default=None, description="Ours: the served model's id (GET /v1/models).")

    _check_query = field_validator("query", mode="before")(_check_query)

    @field_validator("texts", mode="before")
    @classmethod
    def _check_texts(cls, value: Any, info: ValidationInfo) -> list[str]:
        return _check_documents(value, info, "texts", objects=False)


class TeiRank(BaseModel):
    index: int = Field(description="Position of the text in the request's texts.")
    score: float
    text: str | None = Field(default=None, description="Only with return_text.")


class TeiRerankResponse(RootModel[list[TeiRank]]):
    """Every text's score, highest first."""


class RerankRequest(BaseModel):
    """Cohere's (and Jina's) `POST /v1/rerank`."""

    model_config = ConfigDict(
        strict=True,
        json_schema_extra={"examples": [{"query": "What is Deep Learning?",
                                         "documents": ["Deep Learning is ...", {"text": "cheese"}], "top_n": 1}]},
    )
    model: str | None = Field(default=None, description="The served model's id (GET /v1/models).")
    query: str = Field(description="The query every document is scored against.")
    documents: list[str | dict[str, Any]] = Field(
        description=f"The documents to rank, 1 to {MAX_RERANK_DOCUMENTS}: strings, or objects with a `text`."
    )
    top_n: int | None = Field(
        default=None, description="Return only the best top_n (1 to the number of documents)."
    )
    return_documents: bool = Field(default=False, description="true: each result carries `document: {text}`.")
    truncate: bool = Field(default=True, description=RERANK_TRUNCATE_DOC)

    _check_query = field_validator("query", mode="before")(_check_query)

    @field_validator("documents", mode="before")
    @classmethod
    def _check_documents(cls, value: Any, info: ValidationInfo) -> list[str]:
        return _check_documents(value, info, "documents", objects=True)

    @field_validator("top_n", mode="after")
    @classmethod
    def _check_top_n(cls, value: int | None, info: ValidationInfo) -> int | None:
        documents = info.data.get("documents")
        if value is not None and (value < 1 or (documents is not None and value > len(documents))):
            count = len(documents) if documents is not None else "the number of"
            raise ValueError(f"top_n must be between 1 and {count} documents; got {value}")
        return value


class RerankDocument(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int = Field(description="Position of the document in the request's documents.")
    relevance_score: float
    document: RerankDocument | None = Field(default=None, description="Only with return_documents.")


class RerankUsage(BaseModel):
    total_tokens: int = Field(description="Tokens the model read, all pairs together (after truncation).")


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult] = Field(description="Best first; top_n of them when asked.")
    usage: RerankUsage
    meta: dict[str, Any] = Field(description="Cohere's `meta`: billed_units.search_units (1 per request).")


class EmbedSparseRequest(BaseModel):
    """text-embeddings-inference's `POST /embed_sparse`."""

    model_config = ConfigDict(strict=True, json_schema_extra={"examples": [{"inputs": EXAMPLE_TEXT}]})
    inputs: str | list[str] = Field(description="A text, or a list of texts.")
    truncate: bool = Field(default=True, description=TRUNCATE_DOC)
    prompt_name: str | None = Field(default=None, description="One of the model's prompts by name (GET /health).")
    input_type: InputType | None = Field(default=None, description=INPUT_TYPE_DOC)
    model: str | None = Field(default=None, description="Ours: the served model's id (GET /v1/models).")

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_inputs(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_input(value, info, token_arrays=False)

    _check_input_type = field_validator("input_type", mode="before")(check_input_type)


class SparseValue(BaseModel):
    index: int = Field(description="Vocabulary id.")
    value: float


class EmbedSparseResponse(RootModel[list[list[SparseValue]]]):
    """Per input, its non-zero entries by vocabulary id."""


class TokenizeRequest(BaseModel):
    """text-embeddings-inference's `POST /tokenize`: the server's own tokenizer, untruncated."""

    model_config = ConfigDict(strict=True, json_schema_extra={"examples": [{"inputs": EXAMPLE_TEXT}]})
    inputs: str | list[str] = Field(description="A text, or a list of texts.")
    add_special_tokens: bool = Field(
        default=True, description="Include the model's special tokens ([CLS], [SEP])."
    )
    prompt_name: str | None = Field(default=None, description="Prefix one of the model's prompts, by name.")
    model: str | None = Field(default=None, description="Ours: the served model's id (GET /v1/models).")

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_inputs(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_input(value, info, token_arrays=False)


class Token(BaseModel):
    id: int
    text: str = Field(description="The token as the vocabulary spells it.")
    special: bool
    start: int | None = Field(description="Offset of its first character in the input (Python string index; "
                              "into the prompt-prefixed text when prompt_name is given); null for special tokens.")
    stop: int | None = Field(description="Offset just past its last character.")


class TokenizeResponse(RootModel[list[list[Token]]]):
    """Per input, its tokens in order."""
