"""The transport-free service: both adapters run the route table's operations through it.

Each adapter translates its transport into `(operation, body bytes, content type, path)` and
renders the `Reply` back; everything between lives here, once. `prepare` looks the operation up
in the route table (routes.py), validates the body against that route's request schema and runs
the operation of that name (operations.py): a complete reply, or a job for the model. Embedding
is split into `prepare` (no model) and `finish` (render vectors), so the FastAPI adapter can run
the model through its dynamic batcher while Lambda calls it directly.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from typing import Any, Awaitable, Callable, Mapping

import numpy as np

from embedding_service.auth import ApiKeyCheck, load_api_key
from embedding_service.errors import ApiError, internal_error, timed_out
from embedding_service.model_choice import Served
from embedding_service.model import DeadlineExceeded, Embedder, Embeddings
from embedding_service.contract import SPARSE
from embedding_service.operations import OPERATIONS, ChunkJob, EmbedJob, Operation, TokenizeJob
from embedding_service.quantize import quantize
from embedding_service.scores import activate, ranked
from embedding_service.replies import Reply, decode_json, error_reply, json_reply, validate
from embedding_service.routes import SERVICE_ROUTES, RouteTable
from embedding_service.settings import Settings
from embedding_service.token_arrays import TokenArrayDecoder

__all__ = ["ChunkJob", "EmbedJob", "EmbeddingAPI", "Reply", "TokenizeJob", "decode_json"]  # what callers import from here

TRUNCATED_HEADER = "x-truncated-inputs"
log = logging.getLogger("embedding.api")


class EmbeddingAPI:
    """The service over one route table; the embedder is attached once the model is loaded.

    `routes` and `operations` default to the service's own: a table extended with a route and
    its operation serves it on both transports (tests/service/test_route_table.py)."""

    def __init__(
        self, settings: Settings, embedder: Embedder | None = None, routes: RouteTable = SERVICE_ROUTES,
        operations: Mapping[str, Operation] = OPERATIONS,
    ):
        self.settings = settings
        self.embedder = embedder  # the first (or only) served model: the default of routes without `model`
        self._models: dict[str, Embedder] = {}
        self.routes = routes
        self.operations = dict(operations)
        self.auth = ApiKeyCheck(load_api_key(settings))  # read once, here (auth.py)
        self.token_decoder = (
            None if settings.token_array_encoding == "none"
            else TokenArrayDecoder(settings.token_array_encoding, settings.encodings_dir)
        )

    def authorize(self, operation: str, authorization: str | None) -> None:
        """401 unless the operation's route is open or the header carries the API key (HTTP only:
        direct Lambda invocations are authorised by IAM and never come here)."""
        route = self.routes.route_of(operation)
        if route is None or route.needs_key:
            self.auth.check(authorization)

    @property
    def ready(self) -> bool:
        return self.embedder is not None

    @property
    def models(self) -> dict[str, Embedder]:
        """Every loaded model by its id (MODELS), the first being `embedder`."""
        if self._models:
            return self._models
        return {self.settings.model_id: self.embedder} if self.embedder is not None else {}

    def attach(self, models: Mapping[str, Embedder] | None) -> None:
        """Serve these loaded models (by id, the first one the default); None: none, /health answers 503."""
        self._models = dict(models or {})
        self.embedder = next(iter(self._models.values()), None)

    def _served(self, job) -> Served:
        return job.model or Served(self.settings.model_id, self.embedder)

    def prepare(
        self, operation: str, body: bytes, content_type: str | None, path: str = ""
    ) -> EmbedJob | ChunkJob | TokenizeJob | Reply:
        """Everything before the model: validated job, or a complete reply. `path` is read only
        by operations with a path parameter (the model id after /v1/models/)."""
        route, run = self.routes.route_of(operation), self.operations.get(operation)
        if route is None or run is None:
            raise internal_error()
        request = None
        if route.request is not None:
            limits = self.settings.limits
            request = validate(route.request, decode_json(body, content_type, limits), limits)
        return run(self, request, path)

    def chunk_reply(self, job: ChunkJob) -> Reply:
        """The spans of each text (tokenizer work: seconds for megabytes, so FastAPI runs it in a thread)."""
        request, served = job.request, self._served(job)
        window, results = served.embedder.chunk(job.texts, request.chunk_tokens, request.chunk_overlap, job.prompt)
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
                "model": served.model_id,
                "chunk_tokens": window,
                "chunk_overlap": request.chunk_overlap,
                "window": served.embedder.chunk_window(job.prompt),
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )
        reply.items, reply.tokens = len(job.texts), tokens
        return reply

    def tokenize_reply(self, job: TokenizeJob) -> Reply:
        """TEI's /tokenize: each text's tokens with their character offsets, untruncated."""
        tokenizer = self._served(job).embedder.untruncated
        encodings = tokenizer.encode_batch(job.texts, add_special_tokens=job.request.add_special_tokens)
        body = [
            [
                {"id": token_id, "text": token, "special": bool(special),
                 "start": None if special else start, "stop": None if special else stop}
                for token_id, token, special, (start, stop) in zip(
                    e.ids, e.tokens, e.special_tokens_mask, e.offsets
                )
            ]
            for e in encodings
        ]
        reply = json_reply(200, body)
        reply.items, reply.tokens = len(job.texts), sum(len(e.ids) for e in encodings)
        return reply

    def tokenizer_reply(self, job: ChunkJob | TokenizeJob) -> Reply:
        return self.chunk_reply(job) if isinstance(job, ChunkJob) else self.tokenize_reply(job)

    def finish(self, job: EmbedJob, result: Embeddings) -> Reply:
        """Vectors -> the response body of the operation that asked for them."""
        reply = json_reply(200, self._body(job, result), {TRUNCATED_HEADER: str(result.truncated_count)})
        reply.items, reply.tokens = len(job.texts), result.total_tokens
        reply.truncated = result.truncated_count
        if reply.truncated:
            log.warning(
                "inputs truncated",
                extra={"truncated_inputs": reply.truncated, "inputs": reply.items,
                       "max_seq_length": self._served(job).embedder.spec.max_seq_length},
            )
        return reply

    def _body(self, job: EmbedJob, result: Embeddings) -> Any:
        usage = {"prompt_tokens": result.total_tokens, "total_tokens": result.total_tokens}
        vectors = result.vectors
        served = self._served(job)
        if job.operation in ("rerank", "cohere_rerank"):
            return self._rerank_body(job, result, served)
        if job.operation == "embed_sparse":
            return [
                [{"index": int(i), "value": float(row[i])} for i in np.flatnonzero(row)] for row in vectors
            ]
        if job.operation == "openai_embeddings" and served.embedder.spec.kind == SPARSE:
            data = []
            for index, row in enumerate(vectors):
                nonzero = np.flatnonzero(row)
                data.append({"object": "embedding", "index": index,
                             "embedding": {"indices": nonzero.tolist(), "values": row[nonzero].tolist()}})
            if job.request.token_counts:
                for item, tokens in zip(data, result.token_counts):
                    item["tokens"] = tokens
            return {"object": "list", "data": data, "model": served.model_id, "usage": usage}
        if job.operation == "embed":
            single = isinstance(job.request.input, str)
            return {
                "fragment": {"input": job.request.input},
                "embedding": vectors[0] if single else vectors,
                "model": served.model_id,
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
            typed = {t: quantize(vectors, t, served.embedder.calibration_ranges) for t in types}
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
        return {"object": "list", "data": data, "model": served.model_id, "usage": usage}

    def _rerank_body(self, job: EmbedJob, result: Embeddings, served: Served) -> Any:
        """TEI's list of {index, score[, text]} or Cohere's {results, usage}, best first."""
        request, logits, activation = job.request, result.vectors[:, 0], served.embedder.spec.activation
        if job.operation == "rerank":
            scores = logits if request.raw_scores else activate(logits, activation)
            return [
                {"index": i, "score": float(scores[i]),
                 **({"text": job.documents[i]} if request.return_text else {})}
                for i in ranked(scores)
            ]
        scores = activate(logits, activation)
        results = [
            {"index": i, "relevance_score": float(scores[i]),
             **({"document": {"text": job.documents[i]}} if request.return_documents else {})}
            for i in ranked(scores, request.top_n)
        ]
        return {
            "id": str(uuid.uuid4()),
            "model": served.model_id,
            "results": results,
            "usage": {"total_tokens": result.total_tokens},
            "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}},
        }

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
            if isinstance(prepared, (ChunkJob, TokenizeJob)):
                return self.tokenizer_reply(prepared)
            deadline = None if budget_s is None else time.monotonic() + budget_s
            try:
                embedder = self._served(prepared).embedder
                result = embedder.embed(prepared.texts, deadline=deadline, prompt=prepared.prompt)
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
        embed_for: Mapping[str, Callable[..., Awaitable[Embeddings]]] | None = None,
    ) -> Reply:
        """The same, with the model reached through an awaitable (the FastAPI batcher): `embed` for
        the first model, `embed_for[id]` for each served model when several are (MODELS)."""
        try:
            prepared = self.prepare(operation, body, content_type, path)
            if isinstance(prepared, Reply):
                return prepared
            if isinstance(prepared, (ChunkJob, TokenizeJob)):
                return await asyncio.to_thread(self.tokenizer_reply, prepared)
            run = (embed_for or {}).get(self._served(prepared).model_id, embed)
            return self.finish(prepared, await run(prepared.texts, prompt=prepared.prompt))
        except ApiError as error:
            return error_reply(error)
        except Exception:
            log.exception("embedding request failed", extra={"operation": operation})
            return error_reply(internal_error())


def _as_is(vector: np.ndarray) -> np.ndarray:
    return vector


def _base64_little_endian(vector: np.ndarray) -> str:
    """The raw bytes, little-endian: float32 as OpenAI sends and its Python client decodes;
    int8/uint8 (and the packed binary forms) one byte per value."""
    return base64.b64encode(vector.astype(vector.dtype.newbyteorder("<"), copy=False).tobytes()).decode("ascii")
