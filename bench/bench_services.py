"""The two deployment targets as they really start: the Lambda handler under the real RIE,
and the FastAPI app under uvicorn with and without dynamic batching. Loopback only.

Helpers for bench/bench.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
RIE = REPO / ".tools" / "aws-lambda-rie"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"

INIT_REPORT = re.compile(r"INIT REPORT\(durationMs: ([0-9.]+)\)")
RTDONE = re.compile(r"INVOKE RTDONE\(status: (\w+).*?duration: ([0-9.]+)ms\)")
REPORT = re.compile(
    r"REPORT RequestId: \S+\s+(?:Init Duration: ([0-9.]+) ms\s+)?Duration: ([0-9.]+) ms"
    r"\s+Billed Duration: ([0-9.]+) ms"
)


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, a graceful wait, then SIGKILL."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up in {timeout}s")


def wait_for_port(port: int, what: str = "RIE", timeout: float = 30.0) -> None:
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True, timeout, what)


def pin_one_cpu(index: int = 0) -> list[str]:
    """Lambda at 1,769 MB is one vCPU: run the child on one CPU (the index-th this process may
    use, wrapping) when taskset exists."""
    if shutil.which("taskset"):
        cpus = sorted(os.sched_getaffinity(0))
        return ["taskset", "-c", str(cpus[index % len(cpus)])]
    return []


def parse_rie_log(text: str) -> dict:
    """The RIE's own figures. `INIT REPORT(durationMs)` is the init phase (model load at
    import). In the RIE the first REPORT's `Duration` covers init + first invoke and its
    `Init Duration` is not meaningful; `INVOKE RTDONE(duration)` is the invoke alone."""
    inits = [float(x) for x in INIT_REPORT.findall(text)]
    invokes = [float(d) for _, d in RTDONE.findall(text)]
    reports = [
        {"init_duration_ms": float(i) if i else None, "duration_ms": float(d), "billed_ms": float(b)}
        for i, d, b in REPORT.findall(text)
    ]
    return {"init_ms": inits[0] if inits else None, "invoke_ms": invokes, "reports": reports}


def start_rie(backend: str, model_dir: str, port: int, log, cpu: int = 0,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    """The real RIE with our handler behind it, pinned to one CPU, logging into `log`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBED", "API_KEY"))}
    env.update(
        {"MODEL_DIR": model_dir, "EMBEDDING_BACKEND": backend, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    )
    env.update(extra_env or {})
    return subprocess.Popen(
        [
            *pin_one_cpu(cpu),
            str(RIE),
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{port}",
            "--runtime-api-address",
            f"127.0.0.1:{free_port()}",
            sys.executable,
            "-m",
            "awslambdaric",
            "embedding_service.lambda_function.handler",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
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
    parsed = parse_rie_log(log_path.read_text(errors="replace"))
    reports = parsed["reports"]
    n_seed = 1 + warm_calls
    if parsed["init_ms"] is None or len(reports) < n_seed + len(client["extra"]):
        raise RuntimeError(f"RIE log lacks the expected lines: {log_path}")
    warm = reports[1:n_seed]
    return {
        "init_ms": parsed["init_ms"],
        "first_report_duration_ms": reports[0]["duration_ms"],
        "first_invoke_ms": parsed["invoke_ms"][0],
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
            _stop(proc, timeout=10)
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

    async def one_client(i: int, client: httpx.AsyncClient, stop: float) -> None:
        j = i
        while time.perf_counter() < stop:
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
    ordered = sorted(latencies)
    pick = lambda q: ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000  # noqa: E731
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "texts_per_s": len(latencies) / elapsed,
        "p50_ms": pick(0.5) if ordered else None,
        "p99_ms": pick(0.99) if ordered else None,
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
        port = free_port()
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("EMBED", "API_KEY", "BATCH_", "QUEUE_"))
        }
        env.update({"MODEL_DIR": model_dir, "EMBEDDING_THREADS": "2", "PYTHONUNBUFFERED": "1", **extra})
        with tempfile.TemporaryFile() as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "embedding_service.main:app", "--host", "127.0.0.1", "--port", str(port),
                 "--loop", "asyncio", "--http", "h11"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                base = f"http://127.0.0.1:{port}"
                wait_until(lambda: httpx.get(f"{base}/health", timeout=2).status_code == 200, 90, "uvicorn")
                result = asyncio.run(_load(base + "/", texts, clients, seconds))
                result.update(_batch_histogram(httpx.get(f"{base}/metrics", timeout=10).text))
                result["env"] = extra or {"BATCH_MAX_ITEMS": "64 (default)", "BATCH_WAIT_MS": "2 (default)"}
            finally:
                _stop(proc, timeout=40)
        out[name] = result
        progress(
            f"dynamic batching: {name}: {result['texts_per_s']:.0f} texts/s, "
            f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
            f"mean model batch {result['mean_batch'] or 0:.1f}"
        )
    out["speedup"] = out["dynamic_batching"]["texts_per_s"] / out["no_batching"]["texts_per_s"]
    return out
