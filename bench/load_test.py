"""Load test for the FastAPI target: many concurrent clients, mixed valid and invalid traffic.

A benchmark, not a timing test: it reports latency, throughput and the server's memory over
time, and exits non-zero only when the service misbehaved (any 5xx, a dropped connection,
or a wrong answer). Overload is allowed: a valid request may be shed with 429 (which must
carry Retry-After and an OpenAI-shaped error).

    make load                                            # 64 clients x 60 s, own server
    .venv/bin/python bench/load_test.py --clients 16 --duration 5 --output -
    .venv/bin/python bench/load_test.py --url http://127.0.0.1:8000 --server-pid 1234

Without --url it starts its own uvicorn (as `make serve` runs it) on a free loopback port.
Reference vectors come from the same server before the load starts, one text per request,
so a wrong answer under load means the dynamic batcher mixed requests up (or the server
changed its mind), not a backend difference.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil

from corpus import passages, sentences
from pages import TEMPLATES, Sections, document, table
from processes import REPO, child_env, start_uvicorn, stop

DIMENSION = 384
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_REPORT = REPO / "docs" / "load-test.md"

# (name, path, body bytes, content type, expected status, expected error code)
INVALID = [
    ("not-json", "/", b"this is not json", "application/json", 400, "invalid_json"),
    ("empty-body", "/v1/embeddings", b"", "application/json", 400, "missing_body"),
    ("empty-string", "/", b'{"input": ""}', "application/json", 400, "invalid_value"),
    ("empty-list", "/v1/embeddings", b'{"input": []}', "application/json", 400, "invalid_value"),
    ("input-number", "/", b'{"input": 42}', "application/json", 400, "invalid_value"),
    ("null-item", "/v1/embeddings", b'{"input": ["ok", null]}', "application/json", 400, "invalid_value"),
    # token ids are text on /v1/embeddings (decoded as cl100k_base); the seed route takes text only
    ("token-ids", "/", b'{"input": [101, 7592, 102]}', "application/json", 400, "invalid_value"),
    ("form-encoded", "/", b"input=hello", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("wrong-model", "/v1/embeddings", b'{"input": "x", "model": "text-embedding-3-small"}',
     "application/json", 404, "model_not_found"),
    ("bad-encoding", "/v1/embeddings", b'{"input": "x", "encoding_format": "hex"}',
     "application/json", 400, "invalid_value"),
    ("too-many-items", "/v1/embeddings", orjson.dumps({"input": ["x"] * 2049}), "application/json",
     400, "invalid_value"),
    ("deep-nesting", "/", b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json",
     400, "invalid_json"),
]


@dataclass
class Stats:
    started: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds (answered)
    statuses: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)  # ok, shed, rejected, 5xx, dropped, wrong
    texts_embedded: int = 0
    problems: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)

    def problem(self, outcome: str, message: str) -> None:
        self.outcomes[outcome] += 1
        if len(self.problems) < 50:
            self.problems.append(f"{outcome}: {message}")


# --------------------------------------------------------------------------- server


def start_server(log_path: Path, env_extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """Our own uvicorn, with the caller's EMBEDDING_* settings (only API keys dropped)."""
    env = child_env(("API_KEY",), **env_extra)  # no MODEL_DIR: the server's own default
    try:
        flags = ("--timeout-graceful-shutdown", "30", "--no-access-log")
        return start_uvicorn(env, open(log_path, "wb"), *flags)
    except (RuntimeError, TimeoutError) as error:
        raise SystemExit(f"{error}; see {log_path}") from None


# --------------------------------------------------------------------------- traffic


class Pool:
    """Texts with their reference vectors, taken from the server one text at a time."""

    def __init__(self, seed: int):
        self.short = sentences(48, seed=seed)
        self.long = passages(8, seed=seed)
        self.reference: dict[str, np.ndarray] = {}

    async def fetch_references(self, client: httpx.AsyncClient) -> None:
        for text in self.short + self.long:
            response = await client.post("/v1/embeddings", json={"input": text})
            response.raise_for_status()
            self.reference[text] = np.asarray(response.json()["data"][0]["embedding"], dtype=np.float32)


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    texts: list[str] | None = None  # what a valid embedding request asked for
    single: bool = False  # seed API with a string input
    base64: bool = False
    expect_status: int = 200
    expect_code: str | None = None


def pick_request(rng: random.Random, pool: Pool) -> Request:
    roll = rng.random()
    if roll < 0.10:
        _, path, body, content_type, status, code = rng.choice(INVALID)
        return Request("invalid", "POST", path, body, content_type, expect_status=status, expect_code=code)
    if roll < 0.15:
        return Request("get", "GET", rng.choice(["/status", "/health", "/v1/models"]))
    if roll < 0.20:  # a few long texts (truncated to 256 tokens: the expensive case)
        texts = rng.sample(pool.long, rng.randint(1, 2))
        return _embedding(rng, "long", texts)
    if roll < 0.55:
        return _embedding(rng, "single", [rng.choice(pool.short)])
    texts = [rng.choice(pool.short) for _ in range(rng.randint(2, 8))]
    return _embedding(rng, "batch", texts)


def _embedding(rng: random.Random, kind: str, texts: list[str]) -> Request:
    if rng.random() < 0.5:  # the seed's API
        single = len(texts) == 1 and rng.random() < 0.7
        payload = {"input": texts[0] if single else texts}
        return Request(kind, "POST", "/", orjson.dumps(payload), texts=texts, single=single)
    use_base64 = rng.random() < 0.5
    payload = {"input": texts, "model": MODEL_ID, "encoding_format": "base64" if use_base64 else "float"}
    return Request(kind, "POST", "/v1/embeddings", orjson.dumps(payload), texts=texts, base64=use_base64)


def check_answer(request: Request, status: int, headers: httpx.Headers, body: bytes, pool: Pool) -> str | None:
    """None when the answer is right; else what is wrong."""
    if status == 429:
        if request.texts is None:
            return f"429 on a request that never reaches the queue ({request.path})"
        if not headers.get("retry-after", "").isdigit():
            return "429 without a numeric Retry-After"
        return _check_error(body, "overloaded")
    if request.texts is None and request.kind != "get":  # an invalid request
        if status != request.expect_status:
            return f"expected {request.expect_status}, got {status}: {body[:200]!r}"
        return _check_error(body, request.expect_code)
    if status != 200:
        return f"expected 200, got {status}: {body[:200]!r}"
    payload = orjson.loads(body)
    if request.kind == "get":
        return None if isinstance(payload, dict) and payload else "empty GET body"
    if request.path == "/":
        vectors = [payload["embedding"]] if request.single else payload["embedding"]
    else:
        data = payload["data"]
        if [item["index"] for item in data] != list(range(len(data))):
            return "indexes out of order"
        vectors = [
            np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") if request.base64 else item["embedding"]
            for item in data
        ]
    if len(vectors) != len(request.texts):
        return f"{len(vectors)} vectors for {len(request.texts)} texts"
    if not payload["usage"]["prompt_tokens"] > 0:
        return "usage.prompt_tokens is not positive"
    for text, vector in zip(request.texts, vectors):
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (DIMENSION,):
            return f"vector shape {vector.shape}"
        if float(vector @ pool.reference[text]) < 0.999:  # both unit vectors
            return f"vector for {text[:40]!r} differs from its reference"
    return None


def _check_error(body: bytes, code: str | None) -> str | None:
    try:
        error = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"not an OpenAI-shaped error: {body[:200]!r}"
    if set(error) != {"message", "type", "param", "code"}:
        return f"error fields {sorted(error)}"
    if code is not None and error["code"] != code:
        return f"error code {error['code']!r}, expected {code!r}"
    return None


async def client_loop(url: str, stop_at: float, rng: random.Random, pool: Pool, stats: Stats, timeout: float) -> None:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        while time.monotonic() < stop_at:
            request = pick_request(rng, pool)
            headers = {"content-type": request.content_type} if request.body is not None else {}
            started = time.monotonic()
            try:
                response = await client.request(request.method, request.path, content=request.body, headers=headers)
            except httpx.TransportError as error:  # refused, reset, timed out: all count as dropped
                stats.problem("dropped", f"{request.kind} {request.path}: {type(error).__name__}: {error}")
                continue
            elapsed = time.monotonic() - started
            stats.statuses[response.status_code] += 1
            if response.status_code >= 500:
                stats.problem("5xx", f"{request.kind} {request.path}: {response.status_code} {response.content[:200]!r}")
                continue
            try:
                wrong = check_answer(request, response.status_code, response.headers, response.content, pool)
            except Exception as error:  # a body we could not even read is a wrong answer
                wrong = f"unreadable answer: {type(error).__name__}: {error}"
            if wrong:
                stats.problem("wrong", f"{request.kind} {request.path}: {wrong}")
                continue
            if response.status_code == 429:
                stats.outcomes["shed"] += 1
            elif request.texts is None and request.kind != "get":
                stats.outcomes["rejected (expected 4xx)"] += 1
            else:
                stats.outcomes["ok"] += 1
                stats.texts_embedded += len(request.texts or [])
            stats.latencies.setdefault(request.kind, []).append(elapsed)


async def sample_rss(pid: int | None, stats: Stats, stop: asyncio.Event, every: float = 0.5) -> None:
    if pid is None:
        return
    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
        except psutil.Error:
            return
        stats.rss.append((time.monotonic() - stats.started, rss))
        try:
            await asyncio.wait_for(stop.wait(), every)
        except asyncio.TimeoutError:
            pass


async def run_load(url: str, pid: int | None, clients: int, duration: float, seed: int, timeout: float) -> Stats:
    pool = Pool(seed)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        await pool.fetch_references(client)
    stats = Stats(started=time.monotonic())
    stop_at = stats.started + duration
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(pid, stats, stop))
    master = random.Random(seed)
    await asyncio.gather(*(
        client_loop(url, stop_at, random.Random(master.random()), pool, stats, timeout) for _ in range(clients)
    ))
    stats.duration = time.monotonic() - stats.started  # type: ignore[attr-defined]
    stop.set()
    await sampler
    return stats


# --------------------------------------------------------------------------- report


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def rss_windows(stats: Stats, window: float) -> tuple[float, float, float, float]:
    """Median RSS (MiB) in the first and last `window` seconds, at half time, and the peak.

    The first window includes the runtime's warm-up (ONNX Runtime's arena grows to the
    largest batch shape it has seen), so a leak shows best as growth over the second half.
    """
    if not stats.rss:
        return (float("nan"),) * 4
    end = stats.rss[-1][0]
    first = [r for t, r in stats.rss if t <= window] or [stats.rss[0][1]]
    last = [r for t, r in stats.rss if t >= end - window] or [stats.rss[-1][1]]
    middle = min(stats.rss, key=lambda sample: abs(sample[0] - end / 2))[1]
    mib = 1024 * 1024
    return (statistics.median(first) / mib, statistics.median(last) / mib, middle / mib,
            max(r for _, r in stats.rss) / mib)


def failed(stats: Stats) -> bool:
    return any(stats.outcomes[k] for k in ("5xx", "dropped", "wrong"))


def summary(stats: Stats, args: argparse.Namespace, command: str, url: str) -> str:
    duration = getattr(stats, "duration", args.duration)
    answered = sum(stats.statuses.values())
    everything = [x for values in stats.latencies.values() for x in values]
    window = min(10.0, duration / 5)
    rss_first, rss_last, rss_middle, rss_peak = rss_windows(stats, window)
    outcome = lambda key: stats.outcomes[key]  # noqa: E731
    ms = lambda values, q: f"{percentile(values, q) * 1000:.0f}"  # noqa: E731
    metrics = [
        ["requests answered", answered],
        ["throughput", f"{answered / duration:.1f} req/s, {stats.texts_embedded / duration:.1f} texts/s"],
        ["correct 200s", outcome("ok")],
        ["expected 4xx (invalid bodies)", outcome("rejected (expected 4xx)")],
        ["shed with 429", outcome("shed")],
        ["5xx", outcome("5xx")],
        ["dropped connections", outcome("dropped")],
        ["wrong answers", outcome("wrong")],
        ["latency p50 / p90 / p99 (all answered)",
         " / ".join(ms(everything, q) for q in (50, 90, 99)) + " ms"],
        [f"server RSS, median of first / last {window:.0f} s",
         f"{rss_first:.0f} / {rss_last:.0f} MiB ({rss_last - rss_first:+.0f} MiB)"],
        ["server RSS growth over the second half",
         f"{rss_last - rss_middle:+.0f} MiB ({rss_middle:.0f} at {duration / 2:.0f} s)"],
        ["server RSS peak", f"{rss_peak:.0f} MiB"],
    ]
    kinds = [[kind, len(v), ms(v, 50), ms(v, 99)] for kind in ("single", "batch", "long", "get", "invalid")
             for v in [stats.latencies.get(kind, [])]]
    defaults = "the defaults (EMBEDDING_THREADS=0: one per CPU, QUEUE_MAX_ITEMS=4096, BATCH_MAX_ITEMS=64, " \
               "REQUEST_TIMEOUT_S=30)"
    s = Sections(TEMPLATES / "load-test.md")
    parts = [s(
        "document", command=command, url=url,
        server="own uvicorn server" if not args.url else "external server",
        clients=args.clients, duration=f"{duration:.0f}", seed=args.seed, machine=platform.machine(),
        cpus=os.cpu_count(), python=platform.python_version(),
        settings=(", ".join(args.env) or defaults)
        + (" (external server: its own settings)" if args.url else ""),
        result="FAIL" if failed(stats) else "PASS", metrics=table(["metric", "value"], "ll", metrics),
        kinds=table(["request kind", "count", "p50 ms", "p99 ms"], "llll", kinds),
        statuses=", ".join(f"{k}: {v}" for k, v in sorted(stats.statuses.items())),
    )]
    if stats.rss:
        step = max(1, len(stats.rss) // 12)
        parts.append(s("rss", samples=", ".join(f"{t:.0f}s {r / 2**20:.0f}" for t, r in stats.rss[::step])))
    if stats.problems:
        parts.append(s("problems", problems="\n".join(f"- {p}" for p in stats.problems)))
    return document(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an already running server (default: start one here)")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's pid, for RSS sampling")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="client timeout per request (s)")
    parser.add_argument("--output", default=str(DEFAULT_REPORT), help="markdown report path, or - for none")
    parser.add_argument("--server-log", default=None, help="own server's log file (default: a temp file)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the own server (repeatable)")
    args = parser.parse_args(argv)
    command = " ".join([".venv/bin/python", "bench/load_test.py", *(argv if argv is not None else sys.argv[1:])])

    process = None
    url, pid = args.url, args.server_pid
    if url is None:
        import tempfile

        log_path = Path(args.server_log or tempfile.mkstemp(prefix="load-server-", suffix=".log")[1])
        env_extra = dict(item.split("=", 1) for item in args.env)
        process, url = start_server(log_path, env_extra)
        pid = process.pid
        print(f"server {url} (pid {pid}, log {log_path})", flush=True)
    try:
        stats = asyncio.run(run_load(url.rstrip("/"), pid, args.clients, args.duration, args.seed, args.timeout))
    finally:
        if process is not None:
            code = stop(process, timeout=40)
            if code not in (0, -signal.SIGTERM):  # uvicorn re-raises SIGTERM after its graceful drain
                print(f"warning: server exited with {code}", file=sys.stderr)
    report = summary(stats, args, command, url)
    print(report)
    if args.output != "-":
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(report)
        print(f"wrote {args.output}")
    return 1 if failed(stats) else 0


if __name__ == "__main__":
    sys.exit(main())
