"""The servers the documentation's framework recipes run against, and how to run a recipe.

Three targets, each a real server on loopback:
- `fastapi`: uvicorn with API_KEY (what `docker run -e API_KEY=...` serves);
- `lambda-url-iam`: the handler under the real RIE behind a local Function URL with
  `AWS_IAM` auth that verifies every SigV4 signature with botocore;
- `lambda-url-key`: the handler under the RIE with API_KEY behind a Function URL with `NONE`
  auth (the deployment's API-key mode).

Recipes are the files in docs/recipes/, run unchanged: docs/frameworks.md shows the same text (and
docs/corpus.md the LanceDB one, which tests/docs/test_recipe_lancedb.py runs; tests/docs/test_recipes.py checks
that every file is shown). Python ones run in this process with `runpy` (the frameworks import once),
Node's with `node`.
"""

from __future__ import annotations

import json
import os
import runpy
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import botocore.credentials
import httpx
import numpy as np
import pytest

from conftest import INVOKE_PATH, REPO, RieServer, UvicornServer
from function_url_proxy import FunctionUrlProxy
from offline_tiktoken import prime_cache

from embedding_client.sigv4 import SigV4Auth

RECIPES = REPO / "docs" / "recipes"
NODE_MODULES = REPO / ".tools" / "node" / "node_modules"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
ALIASES = "text-embedding-ada-002,text-embedding-3-small"
KEY = "sk-test-" + secrets.token_hex(16)
REGION = "eu-west-1"
AWS_KEYS = {  # the test identity the IAM Function URL trusts (temporary credentials, with a token)
    "AWS_ACCESS_KEY_ID": "ASIALOCALTEST" + secrets.token_hex(4).upper(),
    "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    "AWS_SESSION_TOKEN": "local-session-" + secrets.token_urlsafe(24),
}


def aws_credentials(secret_suffix: str = ""):
    """The test identity as botocore credentials; a suffix makes the secret key wrong."""
    return botocore.credentials.Credentials(AWS_KEYS["AWS_ACCESS_KEY_ID"],
                                            AWS_KEYS["AWS_SECRET_ACCESS_KEY"] + secret_suffix,
                                            AWS_KEYS["AWS_SESSION_TOKEN"])


@dataclass
class Target:
    name: str
    url: str
    api_key: str | None  # None: AWS_IAM (SigV4)
    proxy: FunctionUrlProxy | None = None

    def auth(self) -> dict:
        if self.api_key is None:
            return {"auth": SigV4Auth(region=REGION, credentials=aws_credentials())}
        return {"headers": {"authorization": f"Bearer {self.api_key}"}}

    def seed_vectors(self, texts: list[str]) -> np.ndarray:
        """What POST / (the seed's API) returns for `texts` on this target: the reference."""
        with httpx.Client(timeout=120, **self.auth()) as client:
            response = client.post(f"{self.url}/", json={"input": texts})
        assert response.status_code == 200, response.text
        return np.asarray(response.json()["embedding"], dtype=np.float32)


def start_targets(tmp: Path, **server_env: str) -> tuple[dict[str, Target], list]:
    env = {"MODEL_ALIASES": ALIASES, **server_env}
    uvicorn = UvicornServer(tmp / "uvicorn.log", API_KEY=KEY, **env)
    rie_iam = RieServer(tmp / "rie-iam.log", **env)
    rie_key = RieServer(tmp / "rie-key.log", API_KEY=KEY, **env)
    iam = FunctionUrlProxy(rie_iam.url + INVOKE_PATH, aws_credentials(), REGION)
    open_url = FunctionUrlProxy(rie_key.url + INVOKE_PATH)
    targets = {
        "fastapi": Target("fastapi", uvicorn.url, KEY),
        "lambda-url-iam": Target("lambda-url-iam", iam.url, None, iam),
        "lambda-url-key": Target("lambda-url-key", open_url.url, KEY, open_url),
    }
    return targets, [iam, open_url, rie_iam, rie_key, uvicorn]


def stop_all(servers: list) -> None:
    for server in servers:
        server.stop()


def recipe_environment(monkeypatch, target: Target, tiktoken_dir: Path) -> dict[str, str]:
    """What a user's shell would hold: the URL, the key or AWS credentials, nothing of ours."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "EMBEDDING_API_KEY", "AWS_PROFILE", "AWS_REGION",
                 *AWS_KEYS):
        monkeypatch.delenv(name, raising=False)
    env = {
        "EMBEDDING_URL": target.url,
        "TIKTOKEN_CACHE_DIR": str(tiktoken_dir),  # tiktoken's files, offline (tests/offline_tiktoken.py)
        "HAYSTACK_TELEMETRY_ENABLED": "False",  # no network calls from the frameworks themselves
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "ANONYMIZED_TELEMETRY": "False",
        "AWS_CONFIG_FILE": os.devnull,  # only the environment's credentials, never this machine's
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if target.api_key is None:
        env.update(AWS_KEYS, AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION)  # a Function URL's host names it
    else:
        env["EMBEDDING_API_KEY"] = target.api_key
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def run_python_recipe(name: str) -> dict:
    """Run docs/recipes/<name> as a script; its globals (texts, vectors, ...) come back."""
    return runpy.run_path(str(RECIPES / name), run_name="__main__")


def run_node_recipe(name: str, env: dict[str, str], tmp: Path) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node recipe needs it")
    for package in ("openai", "aws4fetch"):
        if not (NODE_MODULES / package / "package.json").exists():
            pytest.fail(f"{NODE_MODULES}/{package} missing: run `make setup` (installs the npm packages)")
    # ESM resolves packages from the script's own folder upwards: give it the installed ones.
    (tmp / "node_modules").symlink_to(NODE_MODULES)
    shutil.copy(RECIPES / name, tmp / name)
    done = subprocess.run([node, str(tmp / name)], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120, cwd=tmp)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_same_vectors(got, reference: np.ndarray) -> None:
    got = np.asarray(got, dtype=np.float32)
    assert got.shape == reference.shape
    np.testing.assert_allclose(got, reference, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tiktoken_dir(tmp_path_factory) -> Path:
    return prime_cache(tmp_path_factory.mktemp("tiktoken"))
