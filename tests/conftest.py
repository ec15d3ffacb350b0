"""Shared fixtures: real servers on loopback, the real RIE, the real model.

`EMBED_HTTP_URL` / `EMBED_LAMBDA_URL` point the HTTP and Lambda tests at an already
running target (scripts/images.sh sets them for the containers); without them the
fixtures start uvicorn and the RIE here, from this checkout.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = Path(os.environ.get("MODEL_DIR") or REPO / "models" / "all-MiniLM-L6-v2")
RIE = REPO / ".tools" / "aws-lambda-rie"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float = 60.0, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as error:  # not up yet
            last = error
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not come up in {timeout}s (last error: {last})")


def service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBED_", "API_KEY", "AWS_"))}
    env.update({"MODEL_DIR": str(MODEL_DIR), "PYTHONUNBUFFERED": "1", "EMBEDDING_THREADS": "1"})
    env.update(extra)
    return env


def terminate(process: subprocess.Popen, timeout: float) -> int:
    """SIGTERM, wait up to `timeout` for a graceful exit, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class _LoggedProcess:
    log_path: Path
    _log: object

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")


class UvicornServer(_LoggedProcess):
    """uvicorn in a child process, as `make serve` runs it.

    `--loop asyncio --http h11` is what the image runs (it installs neither uvloop nor
    httptools); the dev venv has both (chromadb needs uvicorn[standard]), and uvicorn would
    otherwise pick them.
    """

    def __init__(self, log_path: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = env
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "embedding_service.main:app", "--host", "127.0.0.1",
             "--port", str(self.port), "--timeout-graceful-shutdown", "30",
             "--loop", "asyncio", "--http", "h11"],
            cwd=REPO, env=service_env(**env), stdout=self._log, stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self.healthy, what=f"uvicorn (log: {log_path})")
        except TimeoutError:
            self.stop()
            raise

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {self.log_path.read_text()[-2000:]}")
        # /health needs the key when API_KEY is set (only /status is open).
        key = self.env.get("API_KEY")
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.get(f"{self.url}/health", headers=headers, timeout=2).status_code == 200

    def stop(self) -> int | None:
        code = terminate(self.process, timeout=40)
        self._log.close()
        return code


SERVICE_HANDLER = "embedding_service.lambda_function.handler"  # the query image's
BULK_HANDLER = "embedding_client.workers.lambda_bulk.handler"  # the bulk image's: shard jobs too


class RieServer(_LoggedProcess):
    """The handler under the real AWS Lambda Runtime Interface Emulator."""

    def __init__(self, log_path: Path, handler: str = SERVICE_HANDLER, **env: str):
        if not RIE.exists():
            pytest.fail(f"{RIE} missing: run `make setup` (scripts/fetch_rie.sh)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [str(RIE), "--runtime-interface-emulator-address", f"127.0.0.1:{self.port}",
             "--runtime-api-address", f"127.0.0.1:{free_port()}",
             sys.executable, "-m", "awslambdaric", handler],
            cwd=REPO, env=service_env(**env), stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_until(self._listening, what=f"RIE (log: {log_path})")

    def _listening(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def stop(self) -> None:
        terminate(self.process, timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def http_url(tmp_path_factory):
    if os.environ.get("EMBED_HTTP_URL"):
        yield os.environ["EMBED_HTTP_URL"].rstrip("/")
        return
    server = UvicornServer(tmp_path_factory.mktemp("uvicorn") / "server.log")
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def http(http_url):
    with httpx.Client(base_url=http_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def lambda_url(tmp_path_factory):
    if os.environ.get("EMBED_LAMBDA_URL"):
        yield os.environ["EMBED_LAMBDA_URL"].rstrip("/") + INVOKE_PATH
        return
    server = RieServer(tmp_path_factory.mktemp("rie") / "rie.log")
    yield server.url + INVOKE_PATH
    server.stop()


@pytest.fixture(scope="session")
def invoke(lambda_url):
    """POST an event to the RIE; returns (raw response bytes, parsed JSON or None)."""
    client = httpx.Client(timeout=120)

    def _invoke(event=None, raw: bytes | None = None):
        import json

        data = raw if raw is not None else json.dumps(event).encode()
        response = client.post(lambda_url, content=data)
        assert response.status_code == 200, response.text
        try:
            return response.json()
        except ValueError:
            return None

    yield _invoke
    client.close()


@pytest.fixture(scope="session")
def reference_model():
    """sentence-transformers itself: the reference every backend is compared with."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MODEL_DIR), device="cpu")


@pytest.fixture(scope="session")
def onnx_embedder():
    from embedding_service.model import model_load
    from embedding_service.settings import load_settings

    return model_load(load_settings({"MODEL_DIR": str(MODEL_DIR)}))


class MotoServer(_LoggedProcess):
    """moto's AWS API emulator on loopback (`moto_server`), for the AWS paths: never real AWS."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true", "MOTO_LAMBDA_STUB_ECR": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_until(lambda: httpx.get(f"{self.url}/moto-api/", timeout=2).status_code == 200,
                   what=f"moto_server (log: {log_path})")

    def aws_env(self, region: str = "us-east-1") -> dict[str, str]:
        """Environment that points boto3 (and terraform, through its own settings) at moto."""
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing", "AWS_REGION": region, "AWS_DEFAULT_REGION": region}

    def client(self, service: str, region: str = "us-east-1"):
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=region, aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def stop(self) -> None:
        terminate(self.process, timeout=10)
        self._log.close()


@pytest.fixture(scope="session")
def moto(tmp_path_factory):
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()
