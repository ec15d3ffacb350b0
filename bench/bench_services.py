"""The two deployment targets as they really start: the Lambda handler under the real RIE,
and the FastAPI app under uvicorn with and without dynamic batching. Loopback only.

Helpers for bench/bench.py.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import lambda_log
from bench_worker import percentile
from processes import REPO, child_env, free_port, pin_one_cpu, start_uvicorn, stop, wait_for_port

RIE = REPO / ".tools" / "aws-lambda-rie"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def start_rie(backend: str, model_dir: str, port: int, log, cpu: int = 0,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """The real RIE with our handler behind it, pinned to one CPU, logging into `log`."""
    env = child_env(("EMBED", "API_KEY"), MODEL_DIR=model_dir, EMBEDDING_BACKEND=backend, HF_HUB_OFFLINE="1",
                    **(extra_env or {}))
    return subprocess.Popen(
        [*pin_one_cpu(cpu), str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{port}",
         "--runtime-api-address", f"127.0.0.1:{free_port()}",
         sys.executable, "-m", "awslambdaric", "embedding_service.lambda_function.handler"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )


def _invoke(url: str, warm_calls: int, texts: dict) -> dict:
    """The seed's request once cold and then warm, then the bigger requests a user might send:
    32 short texts, 1 and 32 passages. Client-side times in ms."""
    with httpx.Client(timeout=300) as client:
        started = time.perf_counter()
        first = client.post(url, json={"input": "hello, world!"})
        first_client_ms = (time.perf_counter() - started) * 1000
        first.raise_for_status()
        assert len(first.json()["embedding"]) == 384, first.text[:200]
        warm_client = []
        for _ in range(warm_calls):
            started = time.perf_counter()
            client.post(url, json={"input": "hello, world!"}).raise_for_status()
            warm_client.append((time.perf_counter() - started) * 1000)
        extra = []
        for length, n in (("short", 32), ("long", 1), ("long", 32)):
            payload = texts[length][:n]
            client.post(url, json={"input": payload}).raise_for_status()
            extra.append(f"{length}_x{len(payload)}")
    return {"first_client_ms": first_client_ms, "warm_client": warm_client, "extra": extra}


def _rie_figures(log_path: Path, warm_calls: int, client: dict, rss: float) -> dict:
    parsed = lambda_log.parse(log_path.read_text(errors="replace"))
    reports = parsed["reports"]
    n_seed = 1 + warm_calls
    if not parsed["inits"] or not parsed["rtdone"] or len(reports) < n_seed + len(client["extra"]):
        raise RuntimeError(f"RIE log lacks the expected lines: {log_path}")
    warm = reports[1:n_seed]
    return {
        "init_ms": parsed["inits"][0],
        "first_report_duration_ms": reports[0]["duration_ms"],
        "first_invoke_ms": parsed["rtdone"][0],
        "warm_invoke_ms": statistics.median(r["duration_ms"] for r in warm),
        "warm_invoke_ms_all": [r["duration_ms"] for r in warm],
        "warm_billed_ms": statistics.median(r["billed_ms"] for r in warm),
        "batch_invoke_ms": {name: r["duration_ms"] for name, r in zip(client["extra"], reports[n_seed:])},
        "first_client_ms": client["first_client_ms"],
        "warm_client_ms": statistics.median(client["warm_client"]) if client["warm_client"] else None,
        "runtime_rss_mb": rss / 1e6,
    }


def rie_run(backend: str, model_dir: str, log_dir: Path, warm_calls: int, texts: dict) -> dict:
    """Start the RIE + handler on one CPU, invoke once (cold), then warm; parse the log."""
    import psutil

    port = free_port()
    log_path = log_dir / f"rie-{backend}-{port}.log"
    with open(log_path, "wb") as log:
        proc = start_rie(backend, model_dir, port, log)
        try:
            wait_for_port(port)
            client = _invoke(f"http://127.0.0.1:{port}{INVOKE_PATH}", warm_calls, texts)
            rss = sum(
                p.memory_info().rss
                for p in psutil.Process(proc.pid).children(recursive=True)
                if "python" in p.name().lower()
            )
        finally:
            stop(proc)
    return _rie_figures(log_path, warm_calls, client, rss)


def rie(backend: str, model_dir: str, runs: int, warm_calls: int, texts: dict, progress) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-rie-") as tmp:
        samples = []
        for i in range(runs):
            samples.append(rie_run(backend, model_dir, Path(tmp), warm_calls, texts))
            s = samples[-1]
            progress(
                f"lambda RIE {backend} run {i + 1}/{runs}: init {s['init_ms']:.0f} ms, "
                f"first invoke {s['first_invoke_ms']:.1f} ms, warm {s['warm_invoke_ms']:.1f} ms"
            )
    median = lambda key: statistics.median(s[key] for s in samples)  # noqa: E731
    return {
        "backend": backend,
        "runs": runs,
        "pinned_cpus": 1 if pin_one_cpu() else None,
        "init_ms": median("init_ms"),
        "init_ms_all": [s["init_ms"] for s in samples],
        "first_report_duration_ms": median("first_report_duration_ms"),
        "first_invoke_ms": median("first_invoke_ms"),
        "warm_invoke_ms": median("warm_invoke_ms"),
        "warm_billed_ms": median("warm_billed_ms"),
        "batch_invoke_ms": {
            k: statistics.median(s["batch_invoke_ms"][k] for s in samples)
            for k in samples[0]["batch_invoke_ms"]
        },
        "first_client_ms": median("first_client_ms"),
        "runtime_rss_mb": max(s["runtime_rss_mb"] for s in samples),
    }


async def _load(url: str, texts: list[str], clients: int, seconds: float) -> dict:
    """`clients` concurrent clients, each with its own keep-alive connection, each sending one
    text per request back to back for `seconds` (after every client's warm-up request)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}

    async def one_client(i: int, client: httpx.AsyncClient, until: float) -> None:
        j = i
        while time.perf_counter() < until:
            started = time.perf_counter()
            try:
                r = await client.post(url, json={"input": texts[j % len(texts)]})
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as error:
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
            j += clients

    pool = [httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1)) for _ in range(clients)]
    try:
        await asyncio.gather(
            *(c.post(url, json={"input": texts[i % len(texts)]}) for i, c in enumerate(pool))
        )
        began = time.perf_counter()
        await asyncio.gather(*(one_client(i, c, began + seconds) for i, c in enumerate(pool)))
        elapsed = time.perf_counter() - began
    finally:
        for c in pool:
            await c.aclose()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "texts_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "errors": errors,
    }


def _batch_histogram(metrics_text: str) -> dict:
    values = {}
    for line in metrics_text.splitlines():
        for key in ("embedding_model_batch_size_sum", "embedding_model_batch_size_count"):
            if line.startswith(key + " "):
                values[key] = float(line.split()[1])
    count = values.get("embedding_model_batch_size_count", 0)
    return {
        "model_calls": int(count),
        "mean_batch": values.get("embedding_model_batch_size_sum", 0) / count if count else None,
    }


def dynamic_batching(model_dir: str, texts: list[str], clients: int, seconds: float, progress) -> dict:
    """uvicorn with EMBEDDING_THREADS=2, BATCH_MAX_ITEMS=1 (no coalescing) vs the default."""
    out = {
        "clients": clients,
        "seconds": seconds,
        "threads": 2,
        "note": "load generator runs on the same machine and takes CPU from the server",
    }
    for name, extra in (("no_batching", {"BATCH_MAX_ITEMS": "1"}), ("dynamic_batching", {})):
        drop = ("EMBED", "API_KEY", "BATCH_", "QUEUE_")
        env = child_env(drop, MODEL_DIR=model_dir, EMBEDDING_THREADS="2", **extra)
        with tempfile.TemporaryFile() as log:
            proc, base = start_uvicorn(env, log)
            try:
                result = asyncio.run(_load(base + "/", texts, clients, seconds))
                result.update(_batch_histogram(httpx.get(f"{base}/metrics", timeout=10).text))
                result["env"] = extra or {"BATCH_MAX_ITEMS": "64 (default)", "BATCH_WAIT_MS": "2 (default)"}
            finally:
                stop(proc, timeout=40)
        out[name] = result
        progress(
            f"dynamic batching: {name}: {result['texts_per_s']:.0f} texts/s, "
            f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
            f"mean model batch {result['mean_batch'] or 0:.1f}"
        )
    out["speedup"] = out["dynamic_batching"]["texts_per_s"] / out["no_batching"]["texts_per_s"]
    return out
