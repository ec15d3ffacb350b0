"""The transport-free service: routes, validation, embedding operations, response bodies.

Both adapters translate their transport into `(operation, body bytes, content type)` and a
`Reply` back; everything between lives here, once. An embedding request is split into
`prepare` (parse and validate, no model) and `finish` (render vectors), so the FastAPI
adapter can run the model through its dynamic batcher while Lambda calls it directly.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from urllib.parse import unquote
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from embedding_service import contract
from embedding_service.auth import ApiKeyCheck, load_api_key
from embedding_service.errors import (
    ApiError,
    bad_request,
    internal_error,
    method_not_allowed,
    not_found,
    not_ready,
    timed_out,
    too_large,
    unsupported_media_type,
)
from embedding_service.chunking import ChunkingError
from embedding_service.fingerprint import service_fingerprint
from embedding_service.model import DeadlineExceeded, Embedder, Embeddings
from embedding_service.quantize import CALIBRATED_TYPES, CALIBRATION_FILE, quantize
from embedding_service.model_config import INPUT_TYPE_PROMPTS
from embedding_service.schemas import ChunkRequest, OpenAIEmbeddingRequest, SeedEmbeddingRequest
from embedding_service.settings import Limits, Settings
from embedding_service.token_arrays import TokenArrayDecoder, decode_input

# path -> method -> operation. The single routing table both targets serve. OpenAI's routes
# also answer without /v1, for clients whose base URL leaves it out.
ROUTES: dict[str, dict[str, str]] = {
    "/": {"POST": "embed"},
    "/v1/embeddings": {"POST": "openai_embeddings"},
    "/embeddings": {"POST": "openai_embeddings"},
    "/v1/chunks": {"POST": "chunks"},
    "/chunks": {"POST": "chunks"},
    "/status": {"GET": "status"},
    "/health": {"GET": "health"},
    "/v1/models": {"GET": "models"},
    "/models": {"GET": "models"},
}
# prefix -> method -> operation, for routes whose rest of the path is a parameter (a model id,
# which may itself contain '/': sentence-transformers/all-MiniLM-L6-v2).
PREFIX_ROUTES: dict[str, dict[str, str]] = {
    "/v1/models/": {"GET": "model"},
    "/models/": {"GET": "model"},
}
TRUNCATED_HEADER = "x-truncated-inputs"
EMBEDDING_OPERATIONS = ("embed", "openai_embeddings")
JSON_HEADERS = {"content-type": "application/json"}
log = logging.getLogger("embedding.api")


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))
    items: int = 0  # texts embedded, for logs and metrics
    tokens: int = 0
    truncated: int = 0  # texts cut at the model's maximum length
    error_code: str | None = None


@dataclass
class ChunkJob:
    """A validated chunking request: tokenizer work only, run off the event loop."""

    request: ChunkRequest
    texts: list[str]
    prompt: str | None


@dataclass
class EmbedJob:
    """A validated embedding request waiting for vectors."""

    operation: str
    request: SeedEmbeddingRequest | OpenAIEmbeddingRequest
    texts: list[str]
    prompt: str | None = None  # from input_type; None: the model's default prompt


def encode_json(payload: Any) -> bytes:
    """orjson writes float32 vectors natively, in their shortest exact form."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, encode_json(payload), {**JSON_HEADERS, **(headers or {})})


def error_reply(error: ApiError) -> Reply:
    reply = json_reply(error.status, error.body(), error.headers)
    reply.error_code = error.code
    return reply


def resolve(method: str, path: str) -> str:
    """Map a method and path to an operation name, or raise 404/405."""
    normalised = path.rstrip("/") or "/"
    methods = ROUTES.get(normalised)
    if methods is None:
        prefix = next((p for p in PREFIX_ROUTES if normalised.startswith(p)), None)
        if prefix is None:
            raise not_found(path)
        methods = PREFIX_ROUTES[prefix]
    operation = methods.get(method.upper())
    if operation is None:
        raise method_not_allowed(method.upper(), normalised, sorted(methods))
    return operation


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media in ("", "application/json", "text/json") or media.endswith("+json")


def decode_json(body: bytes, content_type: str | None, limits: Limits) -> Any:
    """Body bytes -> JSON value, with a clear 4xx for every way that can go wrong.

    The content type is not required (curl without -H sends form encoding): a body that
    parses as JSON is accepted, and one that doesn't is blamed on a declared non-JSON type.
    """
    if len(body) > limits.max_body_bytes:
        raise too_large(f"request body is {len(body)} bytes; at most {limits.max_body_bytes}")
    if not body.strip():
        raise bad_request(
            'request body is empty; send JSON like {"input": "hello, world!"}', code="missing_body"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        if content_type and not _is_json_type(content_type):
            raise unsupported_media_type(content_type) from None
        raise bad_request(f"request body is not valid JSON: {error}", code="invalid_json") from None


def validate(model: type[BaseModel], payload: Any, limits: Limits) -> Any:
    if not isinstance(payload, dict):
        raise bad_request('request body must be a JSON object like {"input": "hello, world!"}')
    try:
        return model.model_validate(payload, context={"limits": limits})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = f"'{param}' is required"
        elif first["type"] != "value_error" and param:
            message = f"{param}: {message}"
        raise bad_request(message, param=(param or "").split(".")[0] or None) from None


class EmbeddingAPI:
    """Operations of the service; the embedder is attached once the model is loaded."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None):
        self.settings = settings
        self.embedder = embedder
        self.auth = ApiKeyCheck(load_api_key(settings))  # read once, here (auth.py)
        self.token_decoder = (
            None if settings.token_array_encoding == "none"
            else TokenArrayDecoder(settings.token_array_encoding, settings.encodings_dir)
        )

    def authorize(self, operation: str, authorization: str | None) -> None:
        """401 unless the operation is open or the header carries the API key (HTTP only:
        direct Lambda invocations are authorised by IAM and never come here)."""
        self.auth.authorize(operation, authorization)

    @property
    def ready(self) -> bool:
        return self.embedder is not None

    def _model_names(self) -> set[str]:
        model_id = self.settings.model_id.lower()
        aliases = {alias.lower() for alias in self.settings.model_aliases}
        return {model_id, model_id.split("/")[-1]} | aliases

    def prepare(
        self, operation: str, body: bytes, content_type: str | None, path: str = ""
    ) -> EmbedJob | ChunkJob | Reply:
        """Everything before the model: validated job, or a complete reply. `path` is only
        read by the `model` operation (the id after /v1/models/)."""
        if operation == "status":
            return json_reply(200, {"status": "200 OK"})
        model_id = _model_id_in(path) if operation == "model" else None
        if operation == "models" or model_id == "":  # /v1/models/ is the list, as on Lambda
            return json_reply(200, {"object": "list", "data": [self._model_card()]})
        if operation == "model":
            self._check_model(model_id)
            return json_reply(200, self._model_card())
        if operation == "health":
            if not self.ready:
                raise not_ready()
            spec = self.embedder.spec
            return json_reply(
                200,
                {
                    "status": "ok",
                    "model": self.settings.model_id,
                    "backend": self.embedder.backend.name,
                    "precision": self.settings.precision,
                    "dimension": spec.dimension,
                    "max_seq_length": spec.max_seq_length,
                    **spec.prompt_info(),
                    "limits": asdict(self.settings.limits),
                    "chunk_window": self._chunk_windows(),
                    "fingerprint": service_fingerprint(self.settings, self.embedder),
                    "contract": contract.published(),
                },
            )
        if operation == "chunks":
            return self._prepare_chunks(body, content_type)
        if operation not in EMBEDDING_OPERATIONS:
            raise internal_error()
        limits = self.settings.limits
        payload = decode_json(body, content_type, limits)
        if operation == "embed":
            request = validate(SeedEmbeddingRequest, payload, limits)
        else:
            request = validate(OpenAIEmbeddingRequest, payload, limits)
            self._check_model(request.model, "model")
        texts = [request.input] if isinstance(request.input, str) else request.input
        if texts and not isinstance(texts[0], str):  # token ids: validation allows no mix
            texts = self._decode_token_arrays(texts)
        # Everything above needs no model, so a bad request is a 4xx even while it loads;
        # what follows depends on the model's folder.
        if not self.ready:
            raise not_ready()
        if operation == "openai_embeddings":
            self._check_dimensions(request)
            self._check_calibrated(request)
        prompt = self.embedder.spec.prompt_for(request.input_type)
        if not request.truncate:
            self._check_fits(texts, prompt, isinstance(request.input, str))
        return EmbedJob(operation, request, texts, prompt)

    def _check_fits(self, texts: list[str], prompt: str | None, single: bool) -> None:
        """truncate=false: an input the model would cut is refused, named, with its tokens."""
        overlong = self.embedder.overlong(texts, prompt)
        if overlong:
            index, tokens = overlong[0]
            where = "input" if single else f"input[{index}]"
            more = f" ({len(overlong) - 1} more inputs are too long too)" if len(overlong) > 1 else ""
            raise bad_request(
                f"{where} has {tokens} tokens and the model reads at most {self.embedder.spec.max_seq_length} "
                f"(special tokens and prompt included){more}; with truncate=false it is refused instead of "
                "cut: split it with POST /v1/chunks (embed-corpus --chunk-tokens), or send truncate=true",
                param="input",
                code="input_too_long",
            )

    def _prepare_chunks(self, body: bytes, content_type: str | None) -> ChunkJob:
        limits = self.settings.limits
        request = validate(ChunkRequest, decode_json(body, content_type, limits), limits)
        self._check_model(request.model, "model")
        if not self.ready:
            raise not_ready()
        texts = [request.input] if isinstance(request.input, str) else request.input
        prompt = self.embedder.spec.prompt_for(request.input_type)
        window = self.embedder.chunk_window(prompt)
        try:
            self.embedder.chunker.check(window if request.chunk_tokens is None else request.chunk_tokens,
                                        request.chunk_overlap,
                                        self.embedder.resolved_prompt(prompt))
        except ChunkingError as error:
            param = "chunk_overlap" if str(error).startswith("chunk_overlap") else "chunk_tokens"
            raise bad_request(str(error), param=param) from None
        return ChunkJob(request, texts, prompt)

    def chunk_reply(self, job: ChunkJob) -> Reply:
        """The spans of each text (tokenizer work: seconds for megabytes, so FastAPI runs it in a thread)."""
        request = job.request
        window, results = self.embedder.chunk(job.texts, request.chunk_tokens, request.chunk_overlap, job.prompt)
        data = [
            {
                "object": "chunks",
                "index": index,
                "tokens": total,
                "chunks": [{"start": c.start, "end": c.end, "tokens": c.tokens} for c in chunks],
            }
            for index, (chunks, total) in enumerate(results)
        ]
        tokens = sum(total for _, total in results)
        reply = json_reply(
            200,
            {
                "object": "list",
                "model": self.settings.model_id,
                "chunk_tokens": window,
                "chunk_overlap": request.chunk_overlap,
                "window": self.embedder.chunk_window(job.prompt),
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )
        reply.items, reply.tokens = len(job.texts), tokens
        return reply

    def _chunk_windows(self) -> dict[str, int]:
        windows = {"default": self.embedder.chunk_window(None)}
        windows.update(
            {kind: self.embedder.chunk_window(self.embedder.spec.prompt_for(kind)) for kind in INPUT_TYPE_PROMPTS}
        )
        return windows

    def _check_calibrated(self, request: OpenAIEmbeddingRequest) -> None:
        wanted = [t for t in request.embedding_types or () if t in CALIBRATED_TYPES]
        if wanted and self.embedder.calibration_ranges is None:
            raise bad_request(
                f"embedding_types {wanted[0]} needs int8/uint8 calibration ranges and this model folder has "
                f"none ({CALIBRATION_FILE}); ask for float, binary or ubinary, prepare the model again with "
                "scripts/prepare_model.py, or set EMBEDDING_CALIBRATION_FILE",
                param="embedding_types",
            )

    def _decode_token_arrays(self, arrays: list) -> list[str]:
        """tiktoken ids -> the text they encode; the model then embeds that text."""
        if self.token_decoder is None:
            raise bad_request(
                "token-id arrays are disabled on this server (TOKEN_ARRAY_ENCODING=none); send text "
                "(LangChain: OpenAIEmbeddings(check_embedding_ctx_length=False))",
                param="input", code="token_arrays_disabled",
            )
        return decode_input(self.token_decoder, arrays, self.settings.limits.max_item_chars)

    def _check_model(self, name: str | None, param: str | None = None) -> None:
        if name is not None and name.lower() not in self._model_names():
            raise ApiError(
                404,
                f"model {name!r} is not served here; this server serves "
                f"{self.settings.model_id!r} (GET /v1/models)",
                "invalid_request_error",
                param,
                "model_not_found",
            )

    def _check_dimensions(self, request: OpenAIEmbeddingRequest) -> None:
        dimension = self.embedder.dimension
        if request.dimensions is not None and request.dimensions != dimension:
            raise bad_request(
                f"dimensions={request.dimensions} is not supported; "
                f"{self.settings.model_id} produces {dimension}-dimensional vectors",
                param="dimensions",
            )

    def _model_card(self) -> dict:
        return {
            "id": self.settings.model_id,
            "object": "model",
            "created": 0,
            "owned_by": self.settings.model_id.split("/")[0],
            **(self.embedder.spec.prompt_info() if self.ready else {}),
        }

    def finish(self, job: EmbedJob, result: Embeddings) -> Reply:
        """Vectors -> the response body of the operation that asked for them."""
        reply = json_reply(200, self._body(job, result), {TRUNCATED_HEADER: str(result.truncated_count)})
        reply.items, reply.tokens = len(job.texts), result.total_tokens
        reply.truncated = result.truncated_count
        if reply.truncated:
            log.warning(
                "inputs truncated",
                extra={"truncated_inputs": reply.truncated, "inputs": reply.items,
                       "max_seq_length": self.embedder.spec.max_seq_length if self.embedder else None},
            )
        return reply

    def _body(self, job: EmbedJob, result: Embeddings) -> dict:
        usage = {"prompt_tokens": result.total_tokens, "total_tokens": result.total_tokens}
        vectors = result.vectors
        if job.operation == "embed":
            single = isinstance(job.request.input, str)
            return {
                "fragment": {"input": job.request.input},
                "embedding": vectors[0] if single else vectors,
                "model": self.settings.model_id,
                "usage": usage,
            }
        encode: Callable[[np.ndarray], Any] = (
            _base64_little_endian if job.request.encoding_format == "base64" else _as_is
        )
        types = job.request.embedding_types
        if types is None:
            data = [
                {"object": "embedding", "index": index, "embedding": encode(vectors[index])}
                for index in range(len(vectors))
            ]
        else:  # each type quantised once for the whole batch, then cut per item
            typed = {t: quantize(vectors, t, self.embedder.calibration_ranges) for t in types}
            data = []
            for index in range(len(vectors)):
                item = {"object": "embedding", "index": index}
                if "float" in typed:
                    item["embedding"] = encode(vectors[index])
                item["embeddings"] = {t: encode(array[index]) for t, array in typed.items()}
                data.append(item)
        if job.request.token_counts:
            for item, tokens in zip(data, result.token_counts):
                item["tokens"] = tokens
        return {"object": "list", "data": data, "model": self.settings.model_id, "usage": usage}

    def handle(
        self, operation: str, body: bytes, content_type: str | None, budget_s: float | None = None,
        path: str = "",
    ) -> Reply:
        """Synchronous end to end (the Lambda path): never raises, always a Reply.

        `budget_s` bounds the model's work (Lambda passes its remaining time less a margin):
        an over-long request gets a 504 instead of the runtime killing the sandbox.
        """
        try:
            prepared = self.prepare(operation, body, content_type, path)
            if isinstance(prepared, Reply):
                return prepared
            if isinstance(prepared, ChunkJob):
                return self.chunk_reply(prepared)
            deadline = None if budget_s is None else time.monotonic() + budget_s
            try:
                result = self.embedder.embed(prepared.texts, deadline=deadline, prompt=prepared.prompt)
            except DeadlineExceeded:
                raise timed_out(budget_s) from None
            return self.finish(prepared, result)
        except ApiError as error:
            return error_reply(error)
        except Exception:  # a bug or a runtime failure: log it, never echo it
            log.exception("embedding request failed", extra={"operation": operation})
            return error_reply(internal_error())

    async def handle_async(
        self,
        operation: str,
        body: bytes,
        content_type: str | None,
        embed: Callable[..., Awaitable[Embeddings]],
        path: str = "",
    ) -> Reply:
        """The same, with the model reached through an awaitable (the FastAPI batcher)."""
        try:
            prepared = self.prepare(operation, body, content_type, path)
            if isinstance(prepared, Reply):
                return prepared
            if isinstance(prepared, ChunkJob):
                return await asyncio.to_thread(self.chunk_reply, prepared)
            return self.finish(prepared, await embed(prepared.texts, prompt=prepared.prompt))
        except ApiError as error:
            return error_reply(error)
        except Exception:
            log.exception("embedding request failed", extra={"operation": operation})
            return error_reply(internal_error())


def _model_id_in(path: str) -> str:
    """The model id after /v1/models/ or /models/; clients may send its '/' as %2F."""
    normalised = path.rstrip("/")
    prefix = next((p for p in PREFIX_ROUTES if normalised.startswith(p)), normalised)
    return unquote(normalised[len(prefix):])


def _as_is(vector: np.ndarray) -> np.ndarray:
    return vector


def _base64_little_endian(vector: np.ndarray) -> str:
    """The raw bytes, little-endian: float32 as OpenAI sends and its Python client decodes;
    int8/uint8 (and the packed binary forms) one byte per value."""
    return base64.b64encode(vector.astype(vector.dtype.newbyteorder("<"), copy=False).tobytes()).decode("ascii")
