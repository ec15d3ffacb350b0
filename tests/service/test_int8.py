"""EMBEDDING_PRECISION=int8: the prepared economy file, served by both targets.

The int8 file (scripts/quantize_int8.py, written by `make setup`) is loaded by the same model
layer; its vectors stay within a measured cosine of fp32's (0.991 at worst on the 500
calibration texts, 0.992 on bench/quality.py's 2,662 texts), both targets serve it when the
variable says so and say so on /health, and the file cannot saturate the int16 pair sums of
x86 CPUs without VNNI. A folder without it stops start-up with a message that names `make setup`.
"""

from __future__ import annotations

import json
import sys

import httpx
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import corpus  # bench/corpus.py (on pytest's pythonpath)
import quantize_int8  # scripts/quantize_int8.py
from conftest import INVOKE_PATH, MODEL_DIR, RieServer, UvicornServer
from test_lambda_rie import function_url_event

from embedding_service.model import model_load  # noqa: E402
from embedding_service.model_config import ModelFilesError  # noqa: E402
from embedding_service.settings import ONNX_FILES, load_settings  # noqa: E402

# Measured lowest cosine int8 vs fp32: 0.9909 (calibration corpus), 0.9922 (2,662 texts); margin below.
COSINE_FLOOR = 0.98
TEXTS = corpus.mixed(48, seed=7)  # short sentences, paragraphs and passages beyond 256 tokens


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def int8_embedder():
    return model_load(load_settings({"MODEL_DIR": str(MODEL_DIR), "EMBEDDING_PRECISION": "int8"}))


@pytest.fixture(scope="module")
def fp32_vectors(onnx_embedder):
    return onnx_embedder.embed(TEXTS).vectors


@pytest.fixture(scope="module")
def int8_vectors(int8_embedder):
    return int8_embedder.embed(TEXTS).vectors


def test_int8_loads_the_int8_file_and_stays_close_to_fp32(int8_vectors, fp32_vectors, reference_model):
    assert (MODEL_DIR / ONNX_FILES["int8"]).is_file()
    assert cosines(int8_vectors, fp32_vectors).min() > COSINE_FLOOR
    assert cosines(int8_vectors, reference_model.encode(TEXTS)).min() > COSINE_FLOOR
    # Not the fp32 file under another name: quantisation moves every vector a little.
    assert cosines(int8_vectors, fp32_vectors).max() < 0.99999
    assert np.allclose(np.linalg.norm(int8_vectors, axis=1), 1, atol=1e-5)


def test_a_folder_without_the_int8_file_stops_start_up_naming_make_setup(tmp_path):
    folder = tmp_path / MODEL_DIR.name
    folder.mkdir()
    for path in MODEL_DIR.iterdir():
        if path.name != "onnx":
            (folder / path.name).symlink_to(path)
    (folder / "onnx").mkdir()
    (folder / ONNX_FILES["fp32"]).symlink_to(MODEL_DIR / ONNX_FILES["fp32"])
    model_load(load_settings({"MODEL_DIR": str(folder), "EMBEDDING_THREADS": "1"}))  # fp32 still loads
    with pytest.raises(ModelFilesError) as raised:
        model_load(load_settings({"MODEL_DIR": str(folder), "EMBEDDING_PRECISION": "int8"}))
    message = str(raised.value)
    assert "onnx/model_int8.onnx is missing" in message and "make setup" in message


def test_the_int8_file_cannot_saturate_int16_pair_sums():
    """u8 x s8 kernels without VNNI add two products in int16: 2 x max(u8) x max|s8| <= 32767."""
    model = onnx.load(str(MODEL_DIR / ONNX_FILES["int8"]))
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    checked = {}
    for node in model.graph.node:
        if node.op_type == "MatMulIntegerToFloat":  # per-token activations in [1, 2 * 105 + 1]
            weights, zero_point = values[node.input[1]], int(values[node.input[4]])
            largest_activation = 2 * zero_point - 1
        elif node.op_type == "QAttention":  # onnxruntime's dynamic uint8 input, 0..255
            weights, largest_activation = values[node.input[1]], 255
        else:
            continue
        assert weights.dtype == np.int8
        worst = 2 * largest_activation * int(np.abs(weights.astype(np.int32)).max())
        assert worst <= 32767, (node.name, worst)
        checked[node.op_type] = checked.get(node.op_type, 0) + 1
    assert checked == {"MatMulIntegerToFloat": 18, "QAttention": 6}


def test_the_gate_refuses_a_file_far_from_fp32(fp32_vectors, int8_vectors):
    found = quantize_int8.check(fp32_vectors, int8_vectors)
    assert found["min_cosine_vs_fp32"] > COSINE_FLOOR and 0 < found["recall_at_10_vs_fp32"] <= 1
    noise = np.random.default_rng(0).normal(size=fp32_vectors.shape).astype(np.float32)
    with pytest.raises(SystemExit, match="misses its gate"):
        quantize_int8.check(fp32_vectors, fp32_vectors + 0.1 * noise)


# ---------------------------------------------------------------------------------------------
# Both targets with EMBEDDING_PRECISION=int8
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_http(tmp_path_factory):
    server = UvicornServer(tmp_path_factory.mktemp("int8") / "uvicorn.log", EMBEDDING_PRECISION="int8")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def int8_lambda(tmp_path_factory):
    server = RieServer(tmp_path_factory.mktemp("int8") / "rie.log", EMBEDDING_PRECISION="int8")
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
    server.stop()


def assert_int8_vectors(vectors, int8_vectors, fp32_vectors) -> None:
    assert cosines(vectors, fp32_vectors).min() > COSINE_FLOOR
    assert cosines(vectors, fp32_vectors).max() < 0.99999  # the int8 file, not fp32
    # The same file and the same batch as in-process; only thread counts differ.
    assert cosines(vectors, int8_vectors).min() > 0.9995


def test_fastapi_serves_int8_and_says_so(int8_http, int8_vectors, fp32_vectors):
    health = int8_http.get("/health").json()
    assert health["precision"] == "int8" and health["backend"] == "onnx"
    body = int8_http.post("/", json={"input": TEXTS}).json()
    assert_int8_vectors(body["embedding"], int8_vectors, fp32_vectors)
    openai = int8_http.post("/v1/embeddings", json={"input": TEXTS}).json()
    assert_int8_vectors([item["embedding"] for item in openai["data"]], int8_vectors, fp32_vectors)


def test_lambda_serves_int8_and_says_so(int8_lambda, int8_vectors, fp32_vectors):
    result = int8_lambda.post(INVOKE_PATH, json=function_url_event("GET", "/health")).json()
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["precision"] == "int8"
    body = int8_lambda.post(INVOKE_PATH, json={"input": TEXTS}).json()
    assert_int8_vectors(body["embedding"], int8_vectors, fp32_vectors)


def test_the_default_lambda_says_fp32(invoke):
    result = invoke(function_url_event("GET", "/health"))
    assert result["statusCode"] == 200 and json.loads(result["body"])["precision"] == "fp32"
