"""The route table: every endpoint declared once, and both transports built from it.

`main.create_app` adds one FastAPI route per entry, with its OpenAPI documentation; the Lambda
handler resolves Function URL / API Gateway paths with `RouteTable.resolve` and picks the route
of a direct event with `RouteTable.direct_operation`; `api.EmbeddingAPI` validates the body
against the entry's request schema and runs the operation of that name. Adding an endpoint is
one `Route` here plus its operation (`@operation` in operations.py, or passed to the API).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Iterable, Mapping
from urllib.parse import unquote

from pydantic import BaseModel

from embedding_service.errors import bad_request, method_not_allowed, not_found
from embedding_service.schemas import (
    ChunkRequest,
    ChunkResponse,
    EmbedSparseRequest,
    EmbedSparseResponse,
    RerankRequest,
    RerankResponse,
    TeiRerankRequest,
    TeiRerankResponse,
    TokenizeRequest,
    TokenizeResponse,
    HealthResponse,
    ModelCard,
    ModelList,
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    SeedEmbeddingRequest,
    SeedEmbeddingResponse,
    StatusResponse,
)


@dataclass(frozen=True)
class Text:
    """A response that is not JSON (Prometheus' text format), described for the OpenAPI document."""

    description: str
    media_type: str = "text/plain"


@dataclass(frozen=True)
class Route:
    """One endpoint. Routes sharing an operation (the aliases without /v1) share its schema and auth."""

    method: str  # "GET" or "POST"
    path: str  # Starlette syntax; a last segment "{name:path}" takes the rest of the path (model ids hold '/')
    operation: str  # what runs it (api.EmbeddingAPI's operation of that name); the label in logs and metrics
    request: type[BaseModel] | None  # the JSON body; None: the body is not read
    response: type[BaseModel] | Text  # documented for 200 (JSON errors are documented for every JSON route)
    summary: str
    # The ids FastAPI generated before this table existed, kept so generated clients keep their method names.
    operation_id: str
    needs_key: bool = True  # False: open even when API_KEY is set (a liveness check carries no data)
    on_lambda: bool = True  # False: FastAPI only (/metrics counts one process's requests)

    @property
    def prefix(self) -> str | None:
        """'/v1/models/' for '/v1/models/{model_id:path}': the rest of the path is the parameter."""
        return self.path[: self.path.index("{")] if "{" in self.path else None

    @property
    def parameter(self) -> str | None:
        """The path parameter's name ('model_id'), documented in the OpenAPI document."""
        found = re.search(r"\{(\w+)", self.path)
        return found.group(1) if found else None


def with_bare_aliases(*routes: Route) -> tuple[Route, ...]:
    """OpenAI's routes at /v1/... and again without /v1, for clients whose base URL leaves it out;
    the document lists the /v1 forms first."""
    bare = (
        replace(route, path=route.path.removeprefix("/v1"), summary=f"{route.summary}, without /v1",
                operation_id=route.operation_id.removesuffix("_v1"))
        for route in routes
    )
    return (*routes, *bare)


ROUTES: tuple[Route, ...] = (
    Route("POST", "/", "embed", SeedEmbeddingRequest, SeedEmbeddingResponse,
          "Embed text (the seed's API)", "create_embedding__post"),
    *with_bare_aliases(
        Route("POST", "/v1/embeddings", "openai_embeddings", OpenAIEmbeddingRequest, OpenAIEmbeddingResponse,
              "Embed text (OpenAI-compatible)", "create_embeddings_v1"),
        Route("POST", "/v1/chunks", "chunks", ChunkRequest, ChunkResponse,
              "Cut long texts into chunks that fit the window (ours)", "create_chunks_v1"),
        Route("GET", "/v1/models", "models", None, ModelList, "The served model", "list_models_v1"),
        Route("GET", "/v1/models/{model_id:path}", "model", None, ModelCard,
              "The served model by id or alias (ids contain '/')", "retrieve_model_v1"),
    ),
    # Reranking, sparse vectors and tokenising, in the shapes TEI and Cohere clients send. Cohere's
    # route has no bare alias (/rerank is TEI's); /v2/rerank is what cohere.ClientV2 calls.
    Route("POST", "/rerank", "rerank", TeiRerankRequest, TeiRerankResponse,
          "Rerank texts against a query (text-embeddings-inference's shape)", "rerank"),
    Route("POST", "/v1/rerank", "cohere_rerank", RerankRequest, RerankResponse,
          "Rerank documents against a query (Cohere/Jina-compatible)", "create_rerank_v1"),
    Route("POST", "/v2/rerank", "cohere_rerank", RerankRequest, RerankResponse,
          "Rerank documents against a query (Cohere v2 client)", "create_rerank_v2"),
    Route("POST", "/embed_sparse", "embed_sparse", EmbedSparseRequest, EmbedSparseResponse,
          "Sparse (SPLADE) vectors (text-embeddings-inference's shape)", "embed_sparse"),
    Route("POST", "/tokenize", "tokenize", TokenizeRequest, TokenizeResponse,
          "The model's own tokens, with offsets (text-embeddings-inference's shape)", "tokenize"),
    Route("GET", "/status", "status", None, StatusResponse, "Liveness (the seed's check)", "status_status_get",
          needs_key=False),
    Route("GET", "/health", "health", None, HealthResponse, "Readiness: 200 once the model is loaded",
          "health_health_get"),
    Route("GET", "/metrics", "metrics", None, Text("Prometheus text format"), "Prometheus metrics",
          "prometheus_metrics_metrics_get", on_lambda=False),
)


class RouteTable:
    """Lookups over a table: operation -> its route, (method, path) -> operation, and the
    operation of a direct Lambda event."""

    def __init__(self, routes: Iterable[Route]):
        self.routes = tuple(routes)
        self._by_operation: dict[str, Route] = {}
        self._exact: dict[str, dict[str, str]] = {}  # path -> method -> operation (Lambda's)
        self._prefixed: dict[str, dict[str, str]] = {}  # prefix -> method -> operation
        for route in self.routes:
            first = self._by_operation.setdefault(route.operation, route)
            if (first.request, first.needs_key) != (route.request, route.needs_key):
                raise ValueError(f"{route.path}: operation {route.operation!r} is declared with another schema or auth")
            if route.on_lambda:
                table, key = (self._prefixed, route.prefix) if route.prefix else (self._exact, route.path)
                if route.method in table.setdefault(key, {}):
                    raise ValueError(f"{route.method} {route.path} is declared twice")
                table[key][route.method] = route.operation
        self._direct = self._direct_choices()

    def route_of(self, operation: str) -> Route | None:
        return self._by_operation.get(operation)

    def resolve(self, method: str, path: str) -> str:
        """Map a method and path to an operation name, or raise 404/405."""
        normalised = path.rstrip("/") or "/"
        methods = self._exact.get(normalised)
        if methods is None:
            prefix = next((p for p in self._prefixed if normalised.startswith(p)), None)
            if prefix is None:
                raise not_found(path)
            methods = self._prefixed[prefix]
        operation = methods.get(method.upper())
        if operation is None:
            raise method_not_allowed(method.upper(), normalised, sorted(methods))
        return operation

    def parameter(self, path: str) -> str:
        """The path parameter of a prefix route ('' when there is none); clients may send '/' as %2F."""
        normalised = path.rstrip("/")
        prefix = next((r.prefix for r in self.routes if r.prefix and normalised.startswith(r.prefix)), normalised)
        return unquote(normalised[len(prefix):])

    def _direct_choices(self) -> list[tuple[str, frozenset[str]]]:
        """(operation, its own fields), the last declared first: each JSON-body route on Lambda
        owns the fields that no route declared before it has."""
        seen: set[str] = set()
        choices: list[tuple[str, frozenset[str]]] = []
        for route in self._by_operation.values():
            if route.request is not None and route.on_lambda and route.method == "POST":
                fields = frozenset(route.request.model_fields)
                choices.append((route.operation, fields - seen))
                seen |= fields
        return choices[::-1]

    @property
    def direct_default(self) -> str | None:
        """The operation of a direct event that names no route's own field (the seed's POST /)."""
        return self._direct[-1][0] if self._direct else None

    def direct_operation(self, event: Mapping) -> str:
        """A direct event is the body of the last-declared route whose own fields it names (so bulk
        clients ask for /v1/embeddings' base64, or /v1/chunks, with the request they already send),
        else of the first JSON-body route: POST /, the seed's event."""
        for operation, own in self._direct[:-1]:
            if own.intersection(event):
                return operation
        if self.direct_default is None:
            raise bad_request("this function takes no direct events; send a Function URL request")
        return self.direct_default


SERVICE_ROUTES = RouteTable(ROUTES)
resolve = SERVICE_ROUTES.resolve
