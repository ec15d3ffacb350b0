"""Any sentence-transformers model, proven: tiny built folders through prepare and both targets.

Each configuration in tiny_models.CONFIGS (pooling modes, with and without Normalize,
prompts with a default and with prompt tokens excluded from pooling, MPNet without token
types, other max lengths, both file formats) is built at test time, prepared by
scripts/prepare_model.py from the local folder, served by uvicorn and by the handler under
the real Lambda RIE, and compared with sentence-transformers on the same folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from conftest import INVOKE_PATH, MODEL_DIR, RieServer, UvicornServer
from test_lambda_rie import function_url_event
from tiny_models import CONFIGS, TinyConfig, build

import prepare_model  # noqa: E402  (scripts/ is on pytest's pythonpath)
import quantize_int8  # noqa: E402

from embedding_service.api import EmbeddingAPI  # noqa: E402
from embedding_service.model import model_load  # noqa: E402
from embedding_service.quantize import CalibrationError  # noqa: E402
from embedding_service.settings import load_settings  # noqa: E402

DTYPES = {"float": "<f4", "int8": "i1", "uint8": "u1", "binary": "i1", "ubinary": "u1"}
TEXTS = [
    "hello, world!",
    "What is the capital of France?",
    "Paris is the capital and largest city of France. " * 20,  # beyond every max length here
    "Ünïcödé, emoji 🚀 and 中文 text",
]


def expected_prompt_name(config: TinyConfig, input_type: str) -> str | None:
    """The documented mapping, written out independently of model_config.py."""
    candidates = ("query",) if input_type == "query" else ("document", "passage", "corpus")
    return next((name for name in candidates if config.prompts.get(name)), None)


def reference_vectors(model, texts, config: TinyConfig, input_type: str | None = None) -> np.ndarray:
    if input_type is None:
        return model.encode(texts, convert_to_numpy=True)
    name = expected_prompt_name(config, input_type)
    if name is None:
        return model.encode(texts, prompt="", convert_to_numpy=True)
    return model.encode(texts, prompt_name=name, convert_to_numpy=True)


def assert_same(ours, reference) -> None:
    ours, reference = np.asarray(ours, dtype=np.float32), np.asarray(reference, dtype=np.float32)
    assert ours.shape == reference.shape
    cosines = np.sum(ours * reference, axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosines.min() > 0.9999, cosines
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("any-model")


@pytest.fixture(scope="module", params=CONFIGS, ids=[c.name for c in CONFIGS])
def served(request, workdir):
    """One configuration built, prepared through scripts/prepare_model.py, and served twice."""
    from sentence_transformers import SentenceTransformer

    config: TinyConfig = request.param
    source = build(config, MODEL_DIR, workdir)
    prepare_model.main(["--model", str(source), "--output", str(workdir / "prepared")])
    prepared = workdir / "prepared" / config.name
    uvicorn = UvicornServer(workdir / f"{config.name}-uvicorn.log", MODEL_DIR=str(prepared))
    try:
        rie = RieServer(workdir / f"{config.name}-rie.log", MODEL_DIR=str(prepared))
    except Exception:
        uvicorn.stop()
        raise
    http = httpx.Client(base_url=uvicorn.url, timeout=60)
    lam = httpx.Client(base_url=rie.url, timeout=120)
    reference = SentenceTransformer(str(source), device="cpu", local_files_only=True)
    yield SimpleNamespace(config=config, source=source, prepared=prepared, http=http, lam=lam,
                          reference=reference)
    http.close()
    lam.close()
    rie.stop()
    uvicorn.stop()


def invoke_rie(served, event: dict) -> dict:
    response = served.lam.post(INVOKE_PATH, json=event)
    assert response.status_code == 200, response.text
    return response.json()


def lambda_http(served, path: str, body: dict | None = None, method: str = "POST") -> tuple[int, dict]:
    result = invoke_rie(served, function_url_event(method, path, json.dumps(body).encode() if body else None))
    return result["statusCode"], json.loads(result["body"])


def decode(value, embedding_type: str) -> np.ndarray:
    if isinstance(value, str):
        return np.frombuffer(base64.b64decode(value), dtype=DTYPES[embedding_type])
    return np.asarray(value, dtype=DTYPES[embedding_type])


def test_prepared_from_the_local_folder_with_its_own_sha_and_the_gate(served):
    stamp = json.loads((served.prepared / ".prepared.json").read_text())
    weights = (served.source / "model.safetensors").read_bytes()
    assert stamp["model.safetensors.sha256"] == hashlib.sha256(weights).hexdigest()
    assert stamp["model.safetensors.sha256_source"].startswith("local folder")
    assert stamp["min_cosine_vs_sentence_transformers"] > 0.99999
    token_types = "token_type_ids" in stamp["onnx_inputs"]
    assert token_types == (served.config.architecture == "bert")
    ranges = np.load(served.prepared / "quantization_calibration.npy")
    assert ranges.shape == (2, 32) and (ranges[0] <= ranges[1]).all()
    # The int8 file, gated: BERT's fused Attention keeps Q/K/V in QAttention (3 MatMuls per layer
    # go per-token); MPNet's unfused attention has 6 MatMuls with weights per layer (2 layers).
    int8 = stamp["int8"]
    assert (served.prepared / "onnx" / "model_int8.onnx").stat().st_size == int8["size"]
    assert int8["min_cosine_vs_fp32"] >= quantize_int8.GATE_MIN_COSINE
    assert int8["per_token_matmuls"] == (6 if served.config.architecture == "bert" else 12)


def test_both_targets_return_sentence_transformers_vectors(served):
    expected = reference_vectors(served.reference, TEXTS, served.config)
    seed = served.http.post("/", json={"input": TEXTS}).json()
    assert_same(seed["embedding"], expected)
    openai = served.http.post("/v1/embeddings", json={"input": TEXTS}).json()
    assert_same([item["embedding"] for item in openai["data"]], expected)
    assert_same(invoke_rie(served, {"input": TEXTS})["embedding"], expected)
    # the long text is truncated at the model's own max_seq_length, prompt tokens included
    features = served.reference.tokenize(
        [(served.reference.prompts.get(served.config.default_prompt_name or "", "")) + t for t in TEXTS]
    )
    assert seed["usage"]["prompt_tokens"] == int(features["attention_mask"].sum())
    assert int(features["attention_mask"].sum(dim=1).max()) == served.config.max_seq_length


def test_the_torch_backend_pools_the_same_way(served):
    embedder = model_load(load_settings({"MODEL_DIR": str(served.prepared), "EMBEDDING_BACKEND": "torch"}))
    assert embedder.backend.name == "torch"
    for input_type in (None, "query", "document"):
        ours = embedder.embed(TEXTS, prompt=embedder.spec.prompt_for(input_type)).vectors
        assert_same(ours, reference_vectors(served.reference, TEXTS, served.config, input_type))


@pytest.mark.parametrize("input_type", ["query", "document"])
def test_input_type_applies_the_models_prompt_on_both_targets(served, input_type):
    expected = reference_vectors(served.reference, TEXTS, served.config, input_type)
    body = {"input": TEXTS, "input_type": input_type}
    assert_same(served.http.post("/", json=body).json()["embedding"], expected)
    openai = served.http.post("/v1/embeddings", json=body).json()
    assert_same([item["embedding"] for item in openai["data"]], expected)
    assert_same(invoke_rie(served, body)["embedding"], expected)
    status, payload = lambda_http(served, "/v1/embeddings", body)
    assert status == 200
    assert_same([item["embedding"] for item in payload["data"]], expected)


def test_concurrent_requests_with_different_input_types_keep_their_own_prompt(served):
    """The FastAPI batcher coalesces concurrent requests; one model call serves one prompt."""
    from concurrent.futures import ThreadPoolExecutor

    kinds = [None, "query", "document"] * 4
    expected = {kind: reference_vectors(served.reference, TEXTS[:2], served.config, kind) for kind in set(kinds)}

    def ask(kind):
        body = {"input": TEXTS[:2], **({"input_type": kind} if kind else {})}
        return kind, served.http.post("/v1/embeddings", json=body).json()

    with ThreadPoolExecutor(len(kinds)) as pool:
        for kind, payload in pool.map(ask, kinds):
            assert_same([item["embedding"] for item in payload["data"]], expected[kind])


def test_health_and_models_list_the_prompts(served):
    config = served.config
    prompts = {name: text for name, text in config.prompts.items() if text}
    input_types = {kind: expected_prompt_name(config, kind) for kind in ("query", "document")}
    health = served.http.get("/health").json()
    assert (health["prompts"], health["default_prompt_name"], health["input_types"]) == (
        prompts, config.default_prompt_name, input_types
    )
    assert health["max_seq_length"] == config.max_seq_length
    card = served.http.get("/v1/models").json()["data"][0]
    assert (card["prompts"], card["input_types"]) == (prompts, input_types)
    status, lambda_health = lambda_http(served, "/health", method="GET")
    assert status == 200 and lambda_health["prompts"] == prompts


def test_input_type_with_binary_output_equals_sentence_transformers_functions(served):
    from sentence_transformers.util.quantization import quantize_embeddings

    expected = quantize_embeddings(
        reference_vectors(served.reference, TEXTS, served.config, "query"), precision="binary"
    )
    body = {"input": TEXTS, "input_type": "query", "embedding_types": ["binary"], "encoding_format": "base64"}
    for payload in (served.http.post("/v1/embeddings", json=body).json(),
                    lambda_http(served, "/v1/embeddings", body)[1]):
        items = payload["data"]
        assert all("embedding" not in item and list(item["embeddings"]) == ["binary"] for item in items)
        ours = np.stack([decode(item["embeddings"]["binary"], "binary") for item in items])
        np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_every_output_type_is_quantised_as_sentence_transformers_does(served, encoding_format):
    from sentence_transformers.util.quantization import quantize_embeddings

    types = ["float", "int8", "uint8", "binary", "ubinary"]
    body = {"input": TEXTS, "embedding_types": types, "encoding_format": encoding_format}
    items = served.http.post("/v1/embeddings", json=body).json()["data"]
    ours = {t: np.stack([decode(item["embeddings"][t], t) for item in items]) for t in types}
    np.testing.assert_array_equal(ours["float"], np.stack([decode(i["embedding"], "float") for i in items]))
    reference = reference_vectors(served.reference, TEXTS, served.config)
    assert_same(ours["float"], reference)
    ranges = np.load(served.prepared / "quantization_calibration.npy")
    for kind in ("int8", "uint8"):
        # exactly quantize_embeddings on our floats; within one bucket of it on theirs
        np.testing.assert_array_equal(ours[kind], quantize_embeddings(ours["float"], kind, ranges=ranges))
        theirs = quantize_embeddings(reference, kind, ranges=ranges).astype(int)
        assert np.abs(ours[kind].astype(int) - theirs).max() <= 1
    for kind in ("binary", "ubinary"):
        np.testing.assert_array_equal(ours[kind], quantize_embeddings(reference, kind))
        assert ours[kind].shape == (len(TEXTS), 32 // 8)


@pytest.fixture(scope="module")
def plain_folder(workdir):
    return build(CONFIGS[0], MODEL_DIR, workdir / "plain")


def _edited(plain_folder: Path, workdir: Path, name: str, file: str, edit) -> Path:
    folder = workdir / "refused" / name
    shutil.copytree(plain_folder, folder)
    path = folder / file
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    return folder


REFUSALS = [
    ("dense-module", "modules.json",
     lambda m: [*m, {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}],
     "Dense.*not supported"),
    ("remote-code", "config.json", lambda c: {**c, "auto_map": {"AutoModel": "modeling.Custom"}},
     "trust_remote_code"),
    ("unknown-architecture", "config.json", lambda c: {**c, "model_type": "distilbert"},
     "architecture 'distilbert' is not supported"),
    ("weighted-mean", "1_Pooling/config.json", lambda p: {**p, "pooling_mode": "weightedmean"},
     "pooling mode 'weightedmean' is not supported"),
    ("two-pooling-modes", "1_Pooling/config.json", lambda p: {**p, "pooling_mode": ["mean", "max"]},
     "is not supported"),
]


@pytest.mark.parametrize("name, file, edit, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_unservable_models_are_refused_with_the_reason(plain_folder, workdir, capsys, name, file, edit, message):
    folder = _edited(plain_folder, workdir, name, file, edit)
    with pytest.raises(SystemExit, match=message) as refused:
        prepare_model.main(["--model", str(folder), "--output", str(workdir / "refused-out")])
    assert "cannot be served faithfully" in str(refused.value)
    assert not (workdir / "refused-out" / name).exists()


def test_int8_without_calibration_is_a_clear_400_and_a_bad_file_stops_start_up(tmp_path):
    folder = tmp_path / "uncalibrated"  # the shared model's files, less any calibration file
    folder.mkdir()
    for path in MODEL_DIR.iterdir():
        if path.name != "quantization_calibration.npy":
            (folder / path.name).symlink_to(path)
    settings = load_settings({"MODEL_DIR": str(folder)})
    api = EmbeddingAPI(settings, model_load(settings))
    reply = api.handle("openai_embeddings", json.dumps({"input": "hi", "embedding_types": ["int8"]}).encode(), None)
    assert reply.status == 400 and b"calibration" in reply.body
    ok = api.handle("openai_embeddings", json.dumps({"input": "hi", "embedding_types": ["ubinary"]}).encode(), None)
    assert ok.status == 200
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 7), dtype=np.float32))
    for configured, message in ((str(bad), "want"), ("absent.npy", "does not exist")):
        with pytest.raises(CalibrationError, match=message):
            model_load(load_settings({"MODEL_DIR": str(folder), "EMBEDDING_CALIBRATION_FILE": configured}))


@pytest.mark.parametrize("body, param", [
    ({"input": "x", "input_type": "search"}, "input_type"),
    ({"input": "x", "embedding_types": []}, "embedding_types"),
    ({"input": "x", "embedding_types": ["int4"]}, "embedding_types"),
    ({"input": "x", "embedding_types": "binary"}, "embedding_types"),
])
def test_bad_input_type_or_embedding_types_is_a_400_naming_the_field(http, invoke, body, param):
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    result = invoke(function_url_event("POST", "/v1/embeddings", json.dumps(body).encode()))
    assert result["statusCode"] == 400 and json.loads(result["body"])["error"]["param"] == param
    if "input_type" in body:
        assert invoke(body)["error"]["param"] == "input_type"  # the seed's direct event too
