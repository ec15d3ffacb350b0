"""The benchmarks' child processes: their environment, their CPU, their answer, their end.

Every figure comes from a fresh process (so that one measurement's imports, caches and memory
never leak into the next), which makes these the few things every benchmark does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def child_env(drop: tuple[str, ...], **extra: str) -> dict[str, str]:
    """This process's environment without the variables that start with `drop` (the service's own
    settings, which would change what is measured), unbuffered, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def pin_one_cpu(index: int = 0) -> list[str]:
    """Lambda at 1,769 MB is one vCPU: a command prefix that runs the child on one CPU (the index-th
    this process may use, wrapping), or none where taskset is missing."""
    if shutil.which("taskset"):
        cpus = sorted(os.sched_getaffinity(0))
        return ["taskset", "-c", str(cpus[index % len(cpus)])]
    return []


def run_json(argv: list[str], **options):
    """A child's answer, its last line of output read as JSON; its stderr's tail when it fails."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **options)
    if done.returncode:
        command = " ".join(map(str, argv[:4]))
        raise RuntimeError(f"{command} ... exited {done.returncode}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def call_fresh(function, *args, env: dict[str, str] | None = None, pin: bool = False):
    """`function(*args)` (a function of a bench/ module, JSON in and out) in a fresh Python process,
    pinned to one CPU when `pin`; its result."""
    code = (
        "import importlib, json, sys; f = getattr(importlib.import_module(sys.argv[1]), sys.argv[2]);"
        "print(json.dumps(f(*json.loads(sys.argv[3]))))"
    )
    module = function.__module__
    if module == "__main__":  # a function of the script that runs: its module is its file
        module = Path(sys.modules["__main__"].__file__).stem
    argv = [sys.executable, "-c", code, module, function.__name__, json.dumps(args)]
    return run_json([*(pin_one_cpu() if pin else []), *argv], cwd=BENCH, env=env)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll `check` until it is true (its errors mean "not yet"); a TimeoutError after `timeout`, a
    RuntimeError as soon as `process` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited early ({process.returncode})")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not come up in {timeout}s")


def wait_for_port(port: int, what: str = "RIE", timeout: float = 30.0) -> None:
    connects = lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close() or True  # noqa: E731
    wait_until(connects, timeout, what)


def stop(process: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, a graceful wait, then SIGKILL; the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def start_uvicorn(env: dict[str, str], log, *flags: str, timeout: float = 120.0):
    """The FastAPI app under uvicorn (as `make serve` runs it) on a free loopback port, logging into
    `log`, once /health answers: the process and its URL."""
    import httpx

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "embedding_service.main:app", "--host", "127.0.0.1",
         "--port", str(port), "--loop", "asyncio", "--http", "h11", *flags],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        healthy = lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200  # noqa: E731
        wait_until(healthy, timeout, "uvicorn", process)
    except (RuntimeError, TimeoutError):
        stop(process)
        raise
    return process, url


def start_moto(log, timeout: float = 60.0):
    """moto's AWS emulator (`moto_server`) on a free loopback port, logging into `log`, once it
    answers: the process and its URL. Benchmarks that need AWS's side real but local use it."""
    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{url}/moto-api/", timeout=2).status_code == 200, timeout, "moto_server", process)
    except (RuntimeError, TimeoutError):
        stop(process)
        raise
    return process, url
