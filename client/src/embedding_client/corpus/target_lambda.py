"""`--target lambda://FUNCTION_NAME`: the deployed function, invoked directly with boto3.

A direct event that carries OpenAI's fields is served as `/v1/embeddings` by the handler, so
each request asks for base64 vectors (twice as many fit in Lambda's 6 MB response) and token
counts. `LogType=Tail` returns the invocation's REPORT line where AWS provides it, which is
what the run's bill is summed from. `--endpoint-url` points boto3 elsewhere, e.g. at local
Runtime Interface Emulators: an emulator serves one invocation at a time (a second one at
once crashes it), so each URL gets `concurrency / URLs` requests at a time, one by default.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import queue
import re
import time
from typing import Any

import orjson

from embedding_client.contract import EMBEDDING, LAMBDA_PAYLOAD_BYTES, PAYLOAD_MARGIN_BYTES, ErrorCode
from embedding_client.corpus.errors import (
    CorpusError,
    InputError,
    PermanentError,
    SplitRequest,
    TransientError,
)
from embedding_client.corpus.locations import Location
from embedding_client.corpus.plan import RequestBudget
from embedding_client.corpus.shard_job import probe_event
from embedding_client.corpus.targets import (
    SPARSE_OUTPUT,
    Chunked,
    Embedded,
    EmbedOptions,
    Invocation,
    Limits,
    TargetInfo,
    chunk_request,
    error_message,
    model_health,
    openai_request,
    output_width,
    parse_chunk_response,
    parse_openai_response,
    probe_with_retries,
    status_error,
)

# ~128 passages of 256 tokens: ~10 s of fp32 work on one vCPU (79.5 ms a passage, docs/benchmarks/bulk.md),
# within the Terraform's default 30 s timeout even at 1,024 MB; a call that still times out is split
# in halves by the retry layer. Half as many invocations as 64 would make, so half the client's
# per-call signing and parsing.
REQUEST_TOKENS = 32_768
# A sparse answer's size is planned at this many `index, value` pairs a text (a SPLADE passage
# has a few hundred) of this many JSON bytes each; a larger answer is split by the retry layer.
SPARSE_PLANNED_VALUES = 1024
SPARSE_PAIR_BYTES = 32
DEFAULT_CONCURRENCY = 10  # the Terraform's default reserved concurrency
READ_TIMEOUT_S = 905  # Lambda's longest timeout is 900 s
_REPORT = re.compile(
    r"REPORT RequestId:.*?Billed Duration: (?P<billed>\d+) ms\s+Memory Size: (?P<memory>\d+) MB"
)
_TRANSIENT_CODES = {
    "TooManyRequestsException",
    "ThrottlingException",
    "EC2ThrottledException",
    "ServiceException",
    "ResourceNotReadyException",
    "ResourceConflictException",
    "EFSMountConnectivityException",
}
_CREDENTIAL_CODES = {
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
}


class LambdaTarget:
    default_batch_size = 256

    def __init__(
        self,
        function_name: str,
        options: EmbedOptions,
        endpoint_urls: list[str],
        region: str | None,
        api_key: str | None,
        concurrency: int | None,
        timeout: float | None = None,
    ):
        import boto3
        from botocore.config import Config

        if not function_name or "/" in function_name:
            raise InputError("--target lambda://FUNCTION_NAME needs a function name (or ARN) after lambda://")
        self.name = function_name
        self._options = options
        self._api_key = api_key
        session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
        if session.region_name is None:
            raise InputError("no AWS region for the Lambda function: pass --region or set AWS_REGION")
        self.region = session.region_name
        urls = endpoint_urls or [None]
        if endpoint_urls:
            self.default_concurrency, why = len(endpoint_urls), "one per --endpoint-url"
        else:
            self.default_concurrency, why = available_concurrency(session.client("lambda"), function_name)
        self.concurrency_note = f"concurrency {concurrency or self.default_concurrency:,} (" + (
            "--concurrency)" if concurrency else f"{why})"
        )
        per_endpoint = max(1, math.ceil((concurrency or self.default_concurrency) / len(urls)))
        config = Config(
            retries={"total_max_attempts": 1},
            connect_timeout=10,
            read_timeout=timeout or READ_TIMEOUT_S,
            max_pool_connections=per_endpoint + 1,
            tcp_keepalive=True,
        )
        clients = [session.client("lambda", endpoint_url=url, config=config) for url in urls]
        self._free: queue.Queue = queue.Queue()
        for client in clients:
            for _ in range(per_endpoint):
                self._free.put(client)
        self.where = (
            f"{function_name} ({self.region}{', ' + ', '.join(endpoint_urls) if endpoint_urls else ''})"
        )
        self.memory_mb, self.architecture = self._configuration(clients[0])
        info = self._probe()
        self.info = dataclasses.replace(info, notes=tuple(info.notes) + (self.concurrency_note,))

    def budget(self, batch_size: int) -> RequestBudget:
        limits = self.info.limits
        itemsize = 4 if self._options.embedding_type == "float" else 1
        if self._options.embedding_type == SPARSE_OUTPUT:  # JSON pairs; an answer too big is halved
            vector_bytes = SPARSE_PAIR_BYTES * min(self.info.dimension, SPARSE_PLANNED_VALUES)
        else:
            vector_bytes = 4 * math.ceil(output_width(self._options.embedding_type, self.info.dimension) * itemsize / 3)
        return RequestBudget(
            max_items=min(batch_size, limits.max_items),
            max_tokens=REQUEST_TOKENS,
            max_request_bytes=min(limits.max_body_bytes, LAMBDA_PAYLOAD_BYTES) - PAYLOAD_MARGIN_BYTES,
            max_response_bytes=LAMBDA_PAYLOAD_BYTES - PAYLOAD_MARGIN_BYTES,
            bytes_per_vector=vector_bytes,
            max_seq_length=self.info.max_seq_length,
        )

    def embed(self, texts: list[str]) -> Embedded:
        payload, call = self._invoke(orjson.dumps(openai_request(texts, self.info, self._options)))
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise status_error(int(payload["error"].get("status") or 500), error_message(payload))
        embedded = parse_openai_response(payload, len(texts), self.info, self._options)
        embedded.invocations = [call]
        return embedded

    def chunk(self, texts: list[str], chunk_tokens: int, overlap: int) -> list[Chunked]:
        """A direct event naming chunk_tokens is served as POST /v1/chunks."""
        payload, _ = self._invoke(orjson.dumps(chunk_request(texts, chunk_tokens, overlap, self._options)))
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise status_error(int(payload["error"].get("status") or 500), error_message(payload))
        return parse_chunk_response(payload, len(texts))

    def shard_job(self, events: list[dict]) -> tuple[dict, Invocation]:
        """One shard job (worker mode): the worker's counts, and the invocation as billed."""
        payload, call = self._invoke(orjson.dumps(events[0]))
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            raise status_error(int(payload["error"].get("status") or 500), error_message(payload))
        if not isinstance(payload, dict) or "rows" not in payload:
            raise TransientError(f"the function answered a shard job with {str(payload)[:200]}")
        return payload, call

    def probe_shard_jobs(self, first_input: Location, output: Location, storage) -> str | None:
        """None when the function runs shard jobs and may read INPUT and write under OUTPUT;
        otherwise why not, in a few words."""
        payload = self._probe_call(orjson.dumps(probe_event(first_input, output)))
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            error = payload["error"]
            if error.get("code") == ErrorCode.S3_ACCESS_DENIED:
                return f"{self.name} lacks the S3 grants ({error.get('message')})"
            return f"{self.name} can't run shard jobs ({error.get('message')})"
        if not (isinstance(payload, dict) and payload.get("shard_jobs") is True):
            return f"{self.name} can't run shard jobs (it answered {str(payload)[:120]})"
        storage.delete(Location(payload["probe_object"]))
        return None

    def close(self) -> None:
        pass

    def _invoke(self, payload: bytes) -> tuple[Any, Invocation]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        client = self._free.get()
        started = time.perf_counter()
        try:
            response = client.invoke(FunctionName=self.name, Payload=payload, LogType="Tail")
            body = response["Payload"].read()
        except ClientError as error:
            raise self._client_error(error) from None
        except NoCredentialsError:
            raise PermanentError(
                "no AWS credentials found: set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                "AWS_SECRET_ACCESS_KEY, or run where a role is available"
            ) from None
        except BotoCoreError as error:  # connection refused, reset, closed, timed out
            raise TransientError(f"{type(error).__name__}: {error}") from None
        finally:
            self._free.put(client)
        call = _invocation(time.perf_counter() - started, response.get("LogResult"))
        try:
            result = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TransientError(f"the function returned {len(body)} bytes that are not JSON") from None
        if response.get("FunctionError"):
            raise _function_error(result)
        return result, call

    def _client_error(self, error) -> Exception:
        detail = error.response.get("Error", {})
        code = str(detail.get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = detail.get("Message") or code
        if code == "RequestTooLargeException" or status == 413:
            return SplitRequest(f"{code or status}: {message}")
        if code == "ResourceNotFoundException" or status == 404:
            return PermanentError(f"Lambda function {self.where} not found ({code or status})")
        if code in _CREDENTIAL_CODES or status == 403:
            return PermanentError(
                f"AWS refused the credentials or permissions for invoking {self.name} ({code}: {message})"
            )
        if code in _TRANSIENT_CODES or status == 429 or status >= 500:
            retry_after = error.response.get("retryAfterSeconds")
            return TransientError(f"{code or status}: {message}", float(retry_after) if retry_after else None)
        return PermanentError(f"{code or status}: {message}")

    def _configuration(self, client) -> tuple[int | None, str | None]:
        """Memory and architecture price the run; an emulator has no configuration to read."""
        try:
            configuration = client.get_function_configuration(FunctionName=self.name)
        except Exception:
            return None, None
        return configuration.get("MemorySize"), (configuration.get("Architectures") or ["x86_64"])[0]

    def _probe(self) -> TargetInfo:
        """The function's /health through a Function URL-shaped event; with an API key it can't
        pass, one direct embedding tells the model and dimension instead."""
        event = {
            "version": "2.0",
            "rawPath": "/health",
            "headers": {},
            "isBase64Encoded": False,
            "requestContext": {"http": {"method": "GET", "path": "/health"}, "stage": "$default"},
        }
        if self._api_key:
            event["headers"]["authorization"] = f"Bearer {self._api_key}"
        result = self._probe_call(orjson.dumps(event))
        if isinstance(result, dict) and result.get("statusCode") == 200:
            try:
                health = model_health(orjson.loads(result.get("body") or "{}"), self._options.model)
                return TargetInfo(
                    kind="lambda",
                    model_id=self._options.model or health["model"],
                    dimension=int(health["dimension"]),
                    limits=Limits.from_health(health),
                    max_seq_length=int(health.get("max_seq_length") or 512),
                    model_fingerprint=health.get("fingerprint"),
                    where=f"lambda://{self.name}",
                    chunk_window=(health.get("chunk_window") or {}).get(self._options.input_type or "default"),
                    model_kind=str(health.get("kind") or EMBEDDING),
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                pass  # another function's answer: the embedding probe says whether it embeds
        return self._probe_by_embedding()

    def _probe_by_embedding(self) -> TargetInfo:
        guess = TargetInfo(kind="lambda", model_id=self._options.model or "", dimension=0)
        body = openai_request(["dimension probe"], guess, EmbedOptions(model=self._options.model))
        if not self._options.model:
            body.pop("model")
        result = self._probe_call(orjson.dumps(body))
        try:
            vector = base64.b64decode(result["data"][0]["embedding"])
            model_id = result["model"]
        except (KeyError, IndexError, TypeError, ValueError):
            raise CorpusError(
                f"{self.where} did not answer like this project's embedding service: {error_message(result)}"
            ) from None
        return TargetInfo(
            kind="lambda",
            model_id=model_id,
            dimension=len(vector) // 4,
            where=f"lambda://{self.name}",
            notes=("the function's /health needs its API key (--api-key): default limits",),
        )

    def _probe_call(self, payload: bytes) -> Any:
        return probe_with_retries(
            lambda: self._invoke(payload)[0],
            unreachable=lambda reason: f"cannot invoke {self.where}: {reason}",
            refused=lambda reason: reason,
        )


def available_concurrency(client, function_name: str) -> tuple[int, str]:
    """What the function may actually use: its reserved concurrency, else the account's unreserved
    pool, as Lambda's API says; the old default where the API won't say."""
    try:
        reserved = client.get_function_concurrency(FunctionName=function_name).get("ReservedConcurrentExecutions")
        if reserved:
            return int(reserved), "the function's reserved concurrency"
        limit = client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
        return max(1, int(limit)), "the account's unreserved concurrency"
    except Exception as error:  # no permission to read it, an emulator: say so and stay modest
        return DEFAULT_CONCURRENCY, f"Lambda's API did not say ({type(error).__name__}); the default"


def _invocation(seconds: float, log_result: str | None) -> Invocation:
    """The REPORT line's billed duration and memory, when AWS sent the log tail."""
    if log_result:
        tail = base64.b64decode(log_result).decode("utf-8", errors="replace")
        match = _REPORT.search(tail)
        if match:
            return Invocation(seconds, float(match["billed"]), int(match["memory"]))
    return Invocation(seconds)


def _function_error(result: Any) -> Exception:
    """The runtime's own failure: a timeout or an oversized response is worth halving, others a retry."""
    kind = str(result.get("errorType", "")) if isinstance(result, dict) else ""
    message = str(result.get("errorMessage", result)) if isinstance(result, dict) else str(result)
    if "timed out" in message or "ResponseSizeTooLarge" in kind or "payload size exceeded" in message:
        return SplitRequest(f"function error {kind}: {message[:200]}")
    return TransientError(f"function error {kind or 'Unhandled'}: {message[:200]}")
