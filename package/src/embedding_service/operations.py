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
from embedding_service.errors import bad_request, not_ready
from embedding_service.fingerprint import model_fingerprint
from embedding_service.model_choice import Served, model_card, named_model, serving
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
    model: Served | None = None  # None: the API's first model


@dataclass
class TokenizeJob:
    """A validated /tokenize request: tokenizer work only, run off the event loop."""

    request: TokenizeRequest
    texts: list[str]
    model: Served | None = None


@dataclass
class EmbedJob:
    """A validated request waiting for the model: texts for vectors, or (query, document) pairs
    for a reranker's logits."""

    operation: str
    request: SeedEmbeddingRequest | OpenAIEmbeddingRequest | EmbedSparseRequest | TeiRerankRequest | RerankRequest
    texts: list  # str, or (query, document) pairs
    prompt: str | None = None  # from input_type; None: the model's default prompt
    documents: list[str] | None = None  # a rerank's documents, for return_text/return_documents
    model: Served | None = None  # the served model that answers it; None: the API's first model


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
    cards = [model_card(api, entry.model_id) for entry in api.settings.served_models]
    return json_reply(200, {"object": "list", "data": cards})


@operation("model")
def model(api: EmbeddingAPI, request: None, path: str) -> Reply:
    model_id = api.routes.parameter(path)
    if model_id == "":  # /v1/models/ is the list, as on Lambda
        return models(api, request, path)
    return json_reply(200, model_card(api, named_model(api, model_id, None)))


@operation("health")
def health(api: EmbeddingAPI, request: None, path: str) -> Reply:
    """The first model's facts at the top level (what a one-model client reads), every model's in `models`."""
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
            "chunk_window": _chunk_windows(embedder),
            "fingerprint": model_fingerprint(settings, embedder),
            "models": [_health_of(api, model_id, each) for model_id, each in api.models.items()],
            "contract": contract.published(),
        },
    )


def _health_of(api: EmbeddingAPI, model_id: str, embedder) -> dict:
    """One served model's facts, its chunk windows and fingerprint included: what embed-corpus
    reads for the model a run names (`--model`) on a server with several."""
    spec = embedder.spec
    entry = next((each for each in api.settings.served_models if each.model_id == model_id), None)
    settings = api.settings.for_model(entry) if entry is not None else api.settings
    return {"id": model_id, "kind": spec.kind, "dimension": spec.dimension, "max_seq_length": spec.max_seq_length,
            **spec.prompt_info(), "chunk_window": _chunk_windows(embedder),
            "fingerprint": model_fingerprint(settings, embedder)}


@operation("embed")
def embed(api: EmbeddingAPI, request: SeedEmbeddingRequest, path: str) -> EmbedJob:
    texts = _texts(api, request)
    # Everything above needs no model, so a bad request is a 4xx even while it loads.
    served = serving(api, None, "POST /", contract.EMBEDDING)
    return _embed_job(served, "embed", request, texts)


@operation("openai_embeddings")
def openai_embeddings(api: EmbeddingAPI, request: OpenAIEmbeddingRequest, path: str) -> EmbedJob:
    model_id = named_model(api, request.model)
    texts = _texts(api, request)
    served = serving(api, model_id, "POST /v1/embeddings", contract.EMBEDDING, contract.SPARSE)
    if served.embedder.spec.kind == contract.SPARSE:
        _check_sparse_request(request)
    _check_dimensions(served, request)  # these depend on the model's folder
    _check_calibrated(served, request)
    return _embed_job(served, "openai_embeddings", request, texts)


@operation("embed_sparse")
def embed_sparse(api: EmbeddingAPI, request: EmbedSparseRequest, path: str) -> EmbedJob:
    model_id = named_model(api, request.model)
    texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
    if request.prompt_name is not None and request.input_type is not None:
        raise bad_request("send prompt_name or input_type, not both", param="prompt_name")
    served = serving(api, model_id, "POST /embed_sparse", contract.SPARSE)
    prompt = _named_prompt(served, request.prompt_name)
    if prompt is None:
        prompt = served.embedder.spec.prompt_for(request.input_type)
    if not request.truncate:
        _check_fits(served, texts, prompt, isinstance(request.inputs, str), "inputs")
    return EmbedJob("embed_sparse", request, texts, prompt, model=served)


@operation("rerank")
def rerank(api: EmbeddingAPI, request: TeiRerankRequest, path: str) -> EmbedJob:
    served = serving(api, named_model(api, request.model), "POST /rerank", contract.RERANKER)
    return _rerank_job(served, "rerank", request, request.texts, "texts")


@operation("cohere_rerank")
def cohere_rerank(api: EmbeddingAPI, request: RerankRequest, path: str) -> EmbedJob:
    served = serving(api, named_model(api, request.model), "POST /v1/rerank", contract.RERANKER)
    return _rerank_job(served, "cohere_rerank", request, request.documents, "documents")


@operation("tokenize")
def tokenize(api: EmbeddingAPI, request: TokenizeRequest, path: str) -> TokenizeJob:
    served = serving(api, named_model(api, request.model), "POST /tokenize", *contract.MODEL_KINDS)
    texts = [request.inputs] if isinstance(request.inputs, str) else request.inputs
    prompt = _named_prompt(served, request.prompt_name) or ""
    return TokenizeJob(request, [prompt + text for text in texts], model=served)


@operation("chunks")
def chunks(api: EmbeddingAPI, request: ChunkRequest, path: str) -> ChunkJob:
    served = serving(api, named_model(api, request.model), "POST /v1/chunks", contract.EMBEDDING, contract.SPARSE)
    embedder = served.embedder
    texts = [request.input] if isinstance(request.input, str) else request.input
    prompt = embedder.spec.prompt_for(request.input_type)
    window = embedder.chunk_window(prompt)
    try:
        embedder.chunker.check(window if request.chunk_tokens is None else request.chunk_tokens,
                               request.chunk_overlap, embedder.resolved_prompt(prompt))
    except ChunkingError as error:
        param = "chunk_overlap" if str(error).startswith("chunk_overlap") else "chunk_tokens"
        raise bad_request(str(error), param=param) from None
    return ChunkJob(request, texts, prompt, model=served)


def _named_prompt(served: Served, name: str | None) -> str | None:
    """TEI's prompt_name: one of the model's prompts, or None when not given."""
    if name is None:
        return None
    prompts = served.embedder.spec.prompts
    if name not in prompts:
        raise bad_request(
            f"prompt_name {name!r} is not one of this model's prompts: {sorted(prompts) or 'it has none'}",
            param="prompt_name",
        )
    return prompts[name]


def _rerank_job(served: Served, name: str, request, documents: list[str], field: str) -> EmbedJob:
    if not request.truncate:
        overlong = served.embedder.overlong_pairs(request.query, documents)
        if overlong:
            index, tokens = overlong[0]
            more = f" ({len(overlong) - 1} more documents are too long too)" if len(overlong) > 1 else ""
            raise bad_request(
                f"{field}[{index}] with the query has {tokens} tokens and the model reads at most "
                f"{served.embedder.spec.max_seq_length} (special tokens included){more}; with truncate=false "
                "it is refused instead of cut: shorten it (POST /tokenize counts), or send truncate=true",
                param=field, code=contract.ErrorCode.INPUT_TOO_LONG,
            )
    pairs = [(request.query, document) for document in documents]
    return EmbedJob(name, request, pairs, documents=documents, model=served)


def _check_sparse_request(request: OpenAIEmbeddingRequest) -> None:
    """A sparse vector is {indices, values}: no base64 and no quantised output types."""
    if request.encoding_format != "float":
        raise bad_request("encoding_format base64 is for dense vectors; a sparse model answers "
                          "{indices, values} objects: send encoding_format float", param="encoding_format")
    if request.embedding_types is not None:
        raise bad_request("embedding_types quantise dense vectors; a sparse model answers {indices, values} "
                          "objects: leave embedding_types out", param="embedding_types")


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


def _embed_job(served: Served, name: str, request, texts: list[str]) -> EmbedJob:
    prompt = served.embedder.spec.prompt_for(request.input_type)
    if not request.truncate:
        _check_fits(served, texts, prompt, isinstance(request.input, str))
    return EmbedJob(name, request, texts, prompt, model=served)


def _check_fits(served: Served, texts: list[str], prompt: str | None, single: bool, field: str = "input") -> None:
    """truncate=false: an input the model would cut is refused, named, with its tokens."""
    overlong = served.embedder.overlong(texts, prompt)
    if overlong:
        index, tokens = overlong[0]
        where = field if single else f"{field}[{index}]"
        more = f" ({len(overlong) - 1} more inputs are too long too)" if len(overlong) > 1 else ""
        raise bad_request(
            f"{where} has {tokens} tokens and the model reads at most {served.embedder.spec.max_seq_length} "
            f"(special tokens and prompt included){more}; with truncate=false it is refused instead of "
            "cut: split it with POST /v1/chunks (embed-corpus --chunk-tokens), or send truncate=true",
            param=field,
            code="input_too_long",
        )


def _check_dimensions(served: Served, request: OpenAIEmbeddingRequest) -> None:
    dimension = served.embedder.spec.dimension
    if request.dimensions is not None and request.dimensions != dimension:
        raise bad_request(
            f"dimensions={request.dimensions} is not supported; "
            f"{served.model_id} produces {dimension}-dimensional vectors",
            param="dimensions",
        )


def _check_calibrated(served: Served, request: OpenAIEmbeddingRequest) -> None:
    wanted = [t for t in request.embedding_types or () if t in CALIBRATED_TYPES]
    if wanted and served.embedder.calibration_ranges is None:
        raise bad_request(
            f"embedding_types {wanted[0]} needs int8/uint8 calibration ranges and this model folder has "
            f"none ({CALIBRATION_FILE}); ask for float, binary or ubinary, prepare the model again with "
            "scripts/prepare_model.py, or set EMBEDDING_CALIBRATION_FILE",
            param="embedding_types",
        )


def _chunk_windows(embedder) -> dict[str, int]:
    windows = {"default": embedder.chunk_window(None)}
    windows.update({kind: embedder.chunk_window(embedder.spec.prompt_for(kind)) for kind in INPUT_TYPE_PROMPTS})
    return windows
