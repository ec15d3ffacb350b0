"""A stub Lambda endpoint for `make bench-scale`: Lambda's Invoke API on loopback, answering at any
concurrency, with nothing behind it but a clock.

- a Function URL-shaped `/health` probe gets this project's health document;
- `{"shard_probe": ...}` says the function runs shard jobs;
- `{"shard_job": ...}` sleeps as long as the split's passages would take on Lambda (bytes in the
  range / bytes per passage x billed ms per passage), times `--time-scale`, then answers the
  worker's counts with a REPORT log tail whose billed duration is the unscaled one;
  `--throttle-every N` answers every Nth job 429 TooManyRequestsException first, so the client's
  retry path runs as it would against a busy account;
- an embedding request (`/v1/embeddings` body) is answered at once with zero vectors, so a
  client-path run measures the client alone.

It runs on asyncio (uvicorn): a thousand sleeping invocations cost it nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DIMENSION = 384
HEALTH = {
    "status": "ok",
    "model": "sentence-transformers/all-MiniLM-L6-v2",
    "dimension": DIMENSION,
    "max_seq_length": 256,
    "limits": {"max_items": 2048, "max_item_chars": 100_000, "max_body_bytes": 6 * 1024 * 1024},
    "fingerprint": {"stub": "bench-scale"},
    "chunk_window": {"default": 254},
}


def build_app(args: argparse.Namespace) -> Starlette:
    counter = itertools.count(1)
    zero_vector = base64.b64encode(bytes(4 * DIMENSION)).decode()

    def report(billed_ms: float) -> str:
        tail = f"REPORT RequestId: stub\tDuration: {billed_ms:.2f} ms\tBilled Duration: {int(billed_ms) + 1} ms\tMemory Size: {args.memory_mb} MB\n"
        return base64.b64encode(tail.encode()).decode()

    async def invoke(request: Request) -> Response:
        event = orjson.loads(await request.body())
        if "shard_job" in event:
            job = event["shard_job"]
            if args.throttle_every and next(counter) % args.throttle_every == 0:
                return Response(
                    b'{"Reason":"ReservedFunctionConcurrentInvocationLimitExceeded","Type":"User","message":"Rate Exceeded."}',
                    429,
                    {"x-amzn-errortype": "TooManyRequestsException", "content-type": "application/json"},
                )
            source = job["input"]
            passages = max(1, round((source["end"] - source["start"]) / args.bytes_per_passage))
            billed_ms = passages * args.ms_per_passage
            await asyncio.sleep(billed_ms / 1000 * args.time_scale)
            body = {
                "part": job["part"],
                "rows": passages,
                "texts": passages,
                "rejected": 0,
                "tokens": passages * args.tokens_per_passage,
                "input_tokens": 0,
                "part_bytes": passages * 1600,
                "seconds": billed_ms / 1000,
            }
            return Response(orjson.dumps(body), 200, {"x-amz-log-result": report(billed_ms)})
        if "shard_probe" in event:
            output = event["shard_probe"]["output"].rstrip("/")
            return Response(orjson.dumps({"shard_jobs": True, "probe_object": f"{output}/_embed-corpus-probe"}))
        if event.get("rawPath") == "/health":
            return Response(orjson.dumps({"statusCode": 200, "body": json.dumps(HEALTH)}))
        inputs = event.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        data = [{"object": "embedding", "index": i, "embedding": zero_vector} for i in range(count)]
        body = {"object": "list", "data": data, "model": HEALTH["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0}}
        return Response(orjson.dumps(body), 200, {"x-amz-log-result": report(1.0)})

    async def configuration(request: Request) -> Response:
        return Response(b'{"Type":"User","message":"stub"}', 404, {"x-amzn-errortype": "ResourceNotFoundException"})

    async def health(request: Request) -> Response:  # an HTTP target's /health
        return Response(orjson.dumps(HEALTH), 200, {"content-type": "application/json"})

    async def embeddings(request: Request) -> Response:  # an HTTP target's /v1/embeddings
        payload = orjson.loads(await request.body())
        count = len(payload["input"]) if isinstance(payload["input"], list) else 1
        data = [{"object": "embedding", "index": i, "embedding": zero_vector, "tokens": 1} for i in range(count)]
        body = {"object": "list", "data": data, "model": HEALTH["model"], "usage": {"prompt_tokens": count, "total_tokens": count}}
        return Response(orjson.dumps(body), 200, {"content-type": "application/json", "x-truncated-inputs": "0"})

    async def models(request: Request) -> Response:  # an HTTP target's probe
        body = {"object": "list", "data": [{"id": HEALTH["model"], "object": "model", "owned_by": "stub"}]}
        return Response(orjson.dumps(body), 200, {"content-type": "application/json"})

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/2015-03-31/functions/{name}/invocations", invoke, methods=["POST"]),
            Route("/2015-03-31/functions/{name}/configuration", configuration, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ms-per-passage", type=float, required=True, help="billed ms per passage on Lambda")
    parser.add_argument("--bytes-per-passage", type=float, required=True)
    parser.add_argument("--tokens-per-passage", type=int, default=256)
    parser.add_argument("--time-scale", type=float, default=1.0, help="sleep this fraction of the real time")
    parser.add_argument("--memory-mb", type=int, default=1769)
    parser.add_argument("--throttle-every", type=int, default=0)
    args = parser.parse_args()
    uvicorn.run(build_app(args), host="127.0.0.1", port=args.port, log_level="warning", backlog=4096, loop="asyncio", http="h11")


if __name__ == "__main__":
    main()
