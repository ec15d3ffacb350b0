"""The service's operations: what each route of the table (routes.py) does, by name.

An operation takes the API, the body already validated against its route's request schema
(None for routes without one) and the path, and returns a complete `Reply` or a job for the
model (`EmbedJob`, `ChunkJob`), which `api.EmbeddingAPI` runs on either transport. It raises
`ApiError` for anything the client must fix or retry. `@operation(name)` registers one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Union

from embedding_service import contract
from embedding_service.chunking import ChunkingError
from embedding_service.errors import ApiError, bad_request, not_ready
from embedding_service.fingerprint import model_fingerprint
from embedding_service.model_config import INPUT_TYPE_PROMPTS
from embedding_service.quantize import CALIBRATED_TYPES, CALIBRATION_FILE
from embedding_service.replies import Reply, json_reply
from embedding_service.schemas import (
    ChunkRequest,
    EmbedSparseRequest,
    OpenAIEmbeddingRequest,
    RerankRequest,
    SeedEmbeddingRequest,
    TeiRerankRequest,
    TokenizeRequest,
)
from embedding_service.token_arrays import decode_input

if TYPE_CHECKING:
    from embedding_service.api import EmbeddingAPI


@dataclass
class ChunkJob:
    """A validated chunking request: tokenizer work only, run off the event loop."""

    request: ChunkRequest
    texts: list[str]
    prompt: str | None


@dataclass
class TokenizeJob:
    """A validated /tokenize request: tokenizer work only, run off the event loop."""

    request: TokenizeRequest
    texts: list[str]


@dataclass
class EmbedJob:
    """A validated request waiting for the model: texts for vectors, or (query, document) pairs
    for a reranker's logits."""

    operation: str
    request: SeedEmbeddingRequest | OpenAIEmbeddingRequest | EmbedSparseRequest | TeiRerankRequest | RerankRequest
    texts: list  # str, or (query, document) pairs
    prompt: str | None = None  # from input_type; None: the model's default prompt
    documents: list[str] | None = None  # a rerank's documents, for return_text/return_documents


Prepared = Union[EmbedJob, ChunkJob, TokenizeJob, Reply]
Operation = Callable[["EmbeddingAPI", Any, str], Prepared]
OPERATIONS: dict[str, Operation] = {}  # the service's own, by the route table's `operation`


def operation(name: str) -> Callable[[Operation], Operation]:
    """Register `run` as the service's operation `name`."""

    def register(run: Operation) -> Operation:
        OPERATIONS[name] = run
        return run

    return register


@operation("status")
def status(api: EmbeddingAPI, request: None, path: str) -> Reply:
    return json_reply(200, {"status": "200 OK"})


@operation("models")
def models(api: EmbeddingAPI, request: None, path: str) -> Reply:
    return json_reply(200, {"object": "list", "data": [model_card(api)]})


@operation("model")
def model(api: EmbeddingAPI, request: None, path: str) -> Reply:
    model_id = api.routes.parameter(path)
    if model_id == "":  # /v1/models/ is the list, as on Lambda
        return models(api, request, path)
    check_model(api, model_id)
    return json_reply(200, model_card(api))


@operation("health")
def health(api: EmbeddingAPI, request: None, path: str) -> Reply:
    if not api.ready:
        raise not_ready()
    embedder, settings = api.embedder, api.settings
    return json_reply(
        200,
        {
            "status": "ok",
            "model": settings.model_id,
            "kind": embedder.spec.kind,
            "backend": embedder.backend.name,
            "precision": settings.precision,
            "dimension": embedder.spec.dimension,
            "max_seq_length": embedder.spec.max_seq_length,
            **embedder.spec.prompt_info(),
            "limits": asdict(settings.limits),
            "chunk_window": _chunk_windows(api),
            "fingerprint": model_fingerprint(settings, embedder),
            "contract": contract.published(),
        },
    )


@operation("embed")
def embed(api: EmbeddingAPI, request: SeedEmbeddingRequest, path: str) -> EmbedJob:
    texts = _texts(api, request)
    # Everything above needs no model, so a bad request is a 4xx even while it loads.
    if not api.ready:
        raise not_ready()
    require_kind(api, "POST /", contract.EMBEDDING)
    return _embed_job(api, "embed", request, texts)


@operation("openai_embeddings")
def openai_embeddings(api: EmbeddingAPI, request: OpenAIEmbeddingRequest, path: str) -> EmbedJob:
    check_model(api, request.model, "model")
    texts = _texts(api, request)
    if not api.ready:
        raise not_ready()
    require_kind(api, "POST /v1/embeddings", contract.EMBEDDING, contract.SPARSE)
    if api.embedder.spec.kind == contract.SPARSE:
        _check_sparse_request(request)
    _check_dimensions(api, request)  # these depend on the model's folder
    _check_calibrated(api, request)
    return _embed_job(api, "openai_embeddings", request, texts)


@operation("embed_sparse")
def embed_sparse(api: EmbeddingAPI, request: EmbedSparseRequest, path: str) -> EmbedJob:
    check_model(api, request.model, "model")
    texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
    if request.prompt_name is not None and request.input_type is not None:
        raise bad_request("send prompt_name or input_type, not both", param="prompt_name")
    if not api.ready:
        raise not_ready()
    require_kind(api, "POST /embed_sparse", contract.SPARSE)
    prompt = _named_prompt(api, request.prompt_name)
    if prompt is None:
        prompt = api.embedder.spec.prompt_for(request.input_type)
    if not request.truncate:
        _check_fits(api, texts, prompt, isinstance(request.inputs, str), "inputs")
    return EmbedJob("embed_sparse", request, texts, prompt)


@operation("rerank")
def rerank(api: EmbeddingAPI, request: TeiRerankRequest, path: str) -> EmbedJob:
    check_model(api, request.model, "model")
    return _rerank_job(api, "rerank", request, request.texts, "texts", "POST /rerank")


@operation("cohere_rerank")
def cohere_rerank(api: EmbeddingAPI, request: RerankRequest, path: str) -> EmbedJob:
    check_model(api, request.model, "model")
    return _rerank_job(api, "cohere_rerank", request, request.documents, "documents", "POST /v1/rerank")


@operation("tokenize")
def tokenize(api: EmbeddingAPI, request: TokenizeRequest, path: str) -> TokenizeJob:
    check_model(api, request.model, "model")
    if not api.ready:
        raise not_ready()
    texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
    prompt = _named_prompt(api, request.prompt_name) or ""
    return TokenizeJob(request, [prompt + text for text in texts])


@operation("chunks")
def chunks(api: EmbeddingAPI, request: ChunkRequest, path: str) -> ChunkJob:
    check_model(api, request.model, "model")
    if not api.ready:
        raise not_ready()
    require_kind(api, "POST /v1/chunks", contract.EMBEDDING, contract.SPARSE)
    embedder = api.embedder
    texts = [request.input] if isinstance(request.input, str) else request.input
    prompt = embedder.spec.prompt_for(request.input_type)
    window = embedder.chunk_window(prompt)
    try:
        embedder.chunker.check(window if request.chunk_tokens is None else request.chunk_tokens,
                               request.chunk_overlap, embedder.resolved_prompt(prompt))
    except ChunkingError as error:
        param = "chunk_overlap" if str(error).startswith("chunk_overlap") else "chunk_tokens"
        raise bad_request(str(error), param=param) from None
    return ChunkJob(request, texts, prompt)


def model_card(api: EmbeddingAPI) -> dict:
    model_id = api.settings.model_id
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": model_id.split("/")[0],
        **({"kind": api.embedder.spec.kind, **api.embedder.spec.prompt_info()} if api.ready else {}),
    }


def require_kind(api: EmbeddingAPI, route: str, *kinds: str) -> None:
    """400 unless the served model is of a kind that answers `route`; the message names both."""
    kind = api.embedder.spec.kind
    if kind not in kinds:
        answers = ", ".join(contract.KIND_ROUTES[kind])
        raise bad_request(
            f"{route} needs {' or '.join(_a(k) + ' model' for k in kinds)}; {api.settings.model_id!r} is "
            f"{_a(kind)} model, which answers {answers} (GET /v1/models lists each model's kind)",
            param="model", code=contract.ErrorCode.WRONG_MODEL_KIND,
        )


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _named_prompt(api: EmbeddingAPI, name: str | None) -> str | None:
    """TEI's prompt_name: one of the model's prompts, or None when not given."""
    if name is None:
        return None
    prompts = api.embedder.spec.prompts
    if name not in prompts:
        raise bad_request(
            f"prompt_name {name!r} is not one of this model's prompts: {sorted(prompts) or 'it has none'}",
            param="prompt_name",
        )
    return prompts[name]


def _rerank_job(api: EmbeddingAPI, name: str, request, documents: list[str], field: str, route: str) -> EmbedJob:
    if not api.ready:
        raise not_ready()
    require_kind(api, route, contract.RERANKER)
    if not request.truncate:
        overlong = api.embedder.overlong_pairs(request.query, documents)
        if overlong:
            index, tokens = overlong[0]
            more = f" ({len(overlong) - 1} more documents are too long too)" if len(overlong) > 1 else ""
            raise bad_request(
                f"{field}[{index}] with the query has {tokens} tokens and the model reads at most "
                f"{api.embedder.spec.max_seq_length} (special tokens included){more}; with truncate=false it is "
                "refused instead of cut: shorten it (POST /tokenize counts), or send truncate=true",
                param=field, code=contract.ErrorCode.INPUT_TOO_LONG,
            )
    return EmbedJob(name, request, [(request.query, document) for document in documents], documents=documents)


def _check_sparse_request(request: OpenAIEmbeddingRequest) -> None:
    """A sparse vector is {indices, values}: no base64 and no quantised output types."""
    if request.encoding_format != "float":
        raise bad_request("encoding_format base64 is for dense vectors; a sparse model answers "
                          "{indices, values} objects: send encoding_format float", param="encoding_format")
    if request.embedding_types is not None:
        raise bad_request("embedding_types quantise dense vectors; a sparse model answers {indices, values} "
                          "objects: leave embedding_types out", param="embedding_types")


def check_model(api: EmbeddingAPI, name: str | None, param: str | None = None) -> None:
    """404 unless `name` is the served model's id, its last part, or an alias (any case)."""
    if name is None:
        return
    model_id = api.settings.model_id.lower()
    names = {model_id, model_id.split("/")[-1]} | {alias.lower() for alias in api.settings.model_aliases}
    if name.lower() not in names:
        raise ApiError(
            404,
            f"model {name!r} is not served here; this server serves {api.settings.model_id!r} (GET /v1/models)",
            "invalid_request_error",
            param,
            "model_not_found",
        )


def _texts(api: EmbeddingAPI, request: SeedEmbeddingRequest | OpenAIEmbeddingRequest) -> list[str]:
    texts = [request.input] if isinstance(request.input, str) else request.input
    if texts and not isinstance(texts[0], str):  # token ids: validation allows no mix
        texts = _decode_token_arrays(api, texts)
    return texts


def _decode_token_arrays(api: EmbeddingAPI, arrays: list) -> list[str]:
    """tiktoken ids -> the text they encode; the model then embeds that text."""
    if api.token_decoder is None:
        raise bad_request(
            "token-id arrays are disabled on this server (TOKEN_ARRAY_ENCODING=none); send text "
            "(LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))",
            param="input", code="token_arrays_disabled",
        )
    return decode_input(api.token_decoder, arrays, api.settings.limits.max_item_chars)


def _embed_job(api: EmbeddingAPI, name: str, request, texts: list[str]) -> EmbedJob:
    prompt = api.embedder.spec.prompt_for(request.input_type)
    if not request.truncate:
        _check_fits(api, texts, prompt, isinstance(request.input, str))
    return EmbedJob(name, request, texts, prompt)


def _check_fits(
    api: EmbeddingAPI, texts: list[str], prompt: str | None, single: bool, field: str = "input"
) -> None:
    """truncate=false: an input the model would cut is refused, named, with its tokens."""
    overlong = api.embedder.overlong(texts, prompt)
    if overlong:
        index, tokens = overlong[0]
        where = field if single else f"{field}[{index}]"
        more = f" ({len(overlong) - 1} more inputs are too long too)" if len(overlong) > 1 else ""
        raise bad_request(
            f"{where} has {tokens} tokens and the model reads at most {api.embedder.spec.max_seq_length} "
            f"(special tokens and prompt included){more}; with truncate=false it is refused instead of "
            "cut: split it with POST /v1/chunks (embed-corpus --chunk-tokens), or send truncate=true",
            param=field,
            code="input_too_long",
        )


def _check_dimensions(api: EmbeddingAPI, request: OpenAIEmbeddingRequest) -> None:
    dimension = api.embedder.dimension
    if request.dimensions is not None and request.dimensions != dimension:
        raise bad_request(
            f"dimensions={request.dimensions} is not supported; "
            f"{api.settings.model_id} produces {dimension}-dimensional vectors",
            param="dimensions",
        )


def _check_calibrated(api: EmbeddingAPI, request: OpenAIEmbeddingRequest) -> None:
    wanted = [t for t in request.embedding_types or () if t in CALIBRATED_TYPES]
    if wanted and api.embedder.calibration_ranges is None:
        raise bad_request(
            f"embedding_types {wanted[0]} needs int8/uint8 calibration ranges and this model folder has "
            f"none ({CALIBRATION_FILE}); ask for float, binary or ubinary, prepare the model again with "
            "scripts/prepare_model.py, or set EMBEDDING_CALIBRATION_FILE",
            param="embedding_types",
        )


def _chunk_windows(api: EmbeddingAPI) -> dict[str, int]:
    embedder = api.embedder
    windows = {"default": embedder.chunk_window(None)}
    windows.update({kind: embedder.chunk_window(embedder.spec.prompt_for(kind)) for kind in INPUT_TYPE_PROMPTS})
    return windows
