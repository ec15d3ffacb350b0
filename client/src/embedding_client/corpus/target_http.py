"""`--target http(s)://HOST[:PORT]`: our FastAPI service, or any OpenAI-compatible server.

Requests go to `/v1/embeddings` with base64 vectors. The probe reads the model from
`/v1/models` and, from our own service's `/health`, its limits and dimension; another server
gets the defaults, and one text embedded to learn the dimension. Auth: `--api-key` as a bearer
token; without one, a Lambda Function URL (`*.lambda-url.<region>.on.aws`) is SigV4-signed
with your AWS credentials, as its default `AWS_IAM` auth requires.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from embedding_client.contract import EMBEDDING
from embedding_client.corpus.errors import (
    CorpusError,
    InputError,
    PermanentError,
    TransientError,
)
from embedding_client.corpus.plan import RequestBudget
from embedding_client.corpus.targets import (
    Chunked,
    Embedded,
    EmbedOptions,
    Invocation,
    Limits,
    TargetInfo,
    chunk_request,
    decode_vector,
    error_message,
    model_health,
    openai_request,
    output_dtype,
    parse_chunk_response,
    parse_openai_response,
    probe_with_retries,
    status_error,
)
from embedding_client.sigv4 import SigningError, SigV4Auth, region_from_url

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # a full request of long passages on a busy CPU server
TRUNCATED_HEADER = "x-truncated-inputs"


class HttpTarget:
    default_concurrency = 4  # enough to keep a server's batcher fed without queueing at it
    default_batch_size = 256

    def __init__(
        self,
        url: str,
        options: EmbedOptions,
        api_key: str | None,
        concurrency: int | None,
        timeout: float | None = None,
    ):
        root = url.rstrip("/").removesuffix("/v1")
        self.root = root
        self._options = options
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        auth = SigV4Auth() if not api_key and region_from_url(root) else None
        connections = max(concurrency or self.default_concurrency, 1) + 2
        self._client = httpx.Client(
            base_url=root,
            headers=headers,
            auth=auth,
            timeout=httpx.Timeout(timeout or READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )
        self.info = self._probe()

    def budget(self, batch_size: int) -> RequestBudget:
        limits = self.info.limits
        return RequestBudget(
            max_items=min(batch_size, limits.max_items),
            max_request_bytes=limits.max_body_bytes,
            max_seq_length=self.info.max_seq_length,
        )

    def embed(self, texts: list[str]) -> Embedded:
        body = orjson.dumps(openai_request(texts, self.info, self._options))
        started = time.perf_counter()
        response = self._post(body)
        payload = _json(response)
        embedded = parse_openai_response(payload, len(texts), self.info, self._options)
        truncated = response.headers.get(TRUNCATED_HEADER, "")
        embedded.truncated = int(truncated) if truncated.isdigit() else None
        embedded.invocations = [Invocation(time.perf_counter() - started)]
        return embedded

    def chunk(self, texts: list[str], chunk_tokens: int, overlap: int) -> list[Chunked]:
        body = orjson.dumps(chunk_request(texts, chunk_tokens, overlap, self._options))
        return parse_chunk_response(_json(self._post(body, "/v1/chunks")), len(texts))

    def close(self) -> None:
        self._client.close()

    def _post(self, body: bytes, path: str = "/v1/embeddings") -> httpx.Response:
        try:
            response = self._client.post(path, content=body, headers={"content-type": "application/json"})
        except httpx.TimeoutException as error:
            raise TransientError(f"timed out ({type(error).__name__})") from None
        except httpx.TransportError as error:  # refused, reset, closed mid-response
            raise TransientError(f"connection failed ({type(error).__name__}: {error})") from None
        except SigningError as error:  # a Function URL, and no AWS credentials to sign with
            raise PermanentError(str(error)) from None
        if response.status_code != 200:
            raise status_error(
                response.status_code, error_message(_json(response, strict=False)), _retry_after(response)
            )
        return response

    def _probe(self) -> TargetInfo:
        """The model, its dimension and limits, before any corpus text is sent."""
        models = self._get("/v1/models")
        try:
            served = models["data"][0]["id"]
        except (KeyError, IndexError, TypeError):
            raise CorpusError(
                f"{self.root}/v1/models lists no model: is this an OpenAI-compatible server?"
            ) from None
        health = model_health(self._get("/health", optional=True) or {}, self._options.model)
        ours = isinstance(health.get("limits"), dict)
        info = TargetInfo(
            kind="http",
            model_id=self._options.model or served,
            dimension=int(health.get("dimension") or 0),
            limits=Limits.from_health(health),
            max_seq_length=int(health.get("max_seq_length") or 512),
            ours=ours,
            notes=()
            if ours
            else (f"{self.root} is not this project's service: default limits, no token counts",),
            model_fingerprint=health.get("fingerprint") if ours else None,
            where=self.root,
            chunk_window=(health.get("chunk_window") or {}).get(self._options.input_type or "default"),
            model_kind=str(health.get("kind") or EMBEDDING),
        )
        if not info.dimension:  # another server: one tiny request tells the dimension
            probe = self._probe_dimension(info)
            info = TargetInfo(**{**info.__dict__, "dimension": probe})
        return info

    def _probe_dimension(self, info: TargetInfo) -> int:
        """Another server's dimension: the length of one float vector (its own output types only)."""
        if self._options.embedding_type != "float" or self._options.input_type:
            raise InputError(
                f"--embedding-type and --input-type need this project's service; {self.root} is "
                "another server"
            )
        body = orjson.dumps(openai_request(["dimension probe"], info, self._options))
        payload = self._with_probe_retries(lambda: _json(self._post(body)))
        try:
            return len(decode_vector(payload["data"][0]["embedding"], output_dtype("float")))
        except (KeyError, IndexError, TypeError, PermanentError):
            raise CorpusError(
                f"{self.root}/v1/embeddings answered no vector: is this an embedding server?"
            ) from None

    def _get(self, path: str, optional: bool = False) -> Any:
        def fetch():
            try:
                response = self._client.get(path)
            except httpx.TransportError as error:
                raise TransientError(f"{type(error).__name__}: {error}") from None
            except SigningError as error:
                raise PermanentError(str(error)) from None
            if response.status_code == 200:
                return _json(response, strict=False)
            if optional and response.status_code in (404, 405):
                return None
            raise status_error(response.status_code, error_message(_json(response, strict=False)))

        return self._with_probe_retries(fetch, path)

    def _with_probe_retries(self, call, path: str = "/v1/embeddings"):
        url = self.root + path
        return probe_with_retries(
            call,
            unreachable=lambda reason: (
                f"cannot reach {url} ({reason}): is the server running and the URL right?"
            ),
            refused=lambda reason: _probe_refusal(url, reason),
        )


def _probe_refusal(url: str, reason: str) -> str:
    if reason.startswith(("401", "403")):
        return f"{url} refused the request ({reason}): pass the service's key with --api-key"
    if reason.startswith("404"):
        return f"{url} was not found ({reason}): point --target at the server's root URL"
    if not reason[:3].isdigit():  # nothing came back: e.g. no credentials to sign with
        return f"{url}: {reason}"
    return f"{url} refused the probe: {reason}"


def _json(response: httpx.Response, strict: bool = True) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        if strict:
            raise TransientError(f"the response to {response.request.url.path} was not JSON") from None
        return response.text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
