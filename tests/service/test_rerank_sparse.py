"""Rerankers and sparse encoders, proven against sentence-transformers on both targets.

Tiny random-weight models are built at test time (tiny_models.build_head / build_bare), prepared
by scripts/prepare_model.py, and served by uvicorn and by the handler under the real Lambda RIE,
in fp32 and int8; CrossEncoder.predict and SparseEncoder.encode on the same folders are the
reference. Bad input answers a 4xx naming the field, on both targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

from conftest import INVOKE_PATH, MODEL_DIR, RieServer, UvicornServer
from test_lambda_rie import function_url_event
from tiny_models import build_bare, build_head, build_xlm_roberta_reranker, to_sparse_v5_layout

import prepare_heads  # noqa: E402  (scripts/ is on pytest's pythonpath)
import prepare_model  # noqa: E402

from embedding_service import contract  # noqa: E402
from embedding_service.model_config import ModelFilesError, read_model_spec  # noqa: E402
from embedding_service.pooling import keep_largest  # noqa: E402

QUERY = "what is the capital of France?"
DOCUMENTS = [
    "Paris is the capital and largest city of France.",
    "A man is eating food.",
    "The quick brown fox jumps over the lazy dog. " * 30,  # past the 64-token window with the query
    "Ünïcödé, emoji 🚀 and 中文 text",
]
TEXTS = [QUERY, *DOCUMENTS]
# int8 against sentence-transformers' fp32 scores (after the sigmoid) and sparse vectors (cosine).
INT8_SCORE_TOLERANCE = 0.01
INT8_MIN_COSINE = 0.99


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("rerank-sparse")


def prepare(source: Path, workdir: Path) -> Path:
    prepare_model.main(["--model", str(source), "--output", str(workdir / "prepared")])
    return workdir / "prepared" / source.name


class Targets(SimpleNamespace):
    """One prepared folder served by uvicorn (fp32) and by the RIE (fp32 and int8)."""

    def post(self, path: str, body: dict, target: str = "http") -> tuple[int, object]:
        if target == "http":
            response = self.http.post(path, json=body)
            return response.status_code, response.json()
        client = self.rie if target == "rie" else self.rie_int8
        result = client.post(INVOKE_PATH, json=function_url_event("POST", path, json.dumps(body).encode())).json()
        return result["statusCode"], json.loads(result["body"])

    def direct(self, event: dict, int8: bool = False):
        return (self.rie_int8 if int8 else self.rie).post(INVOKE_PATH, json=event).json()


def serve(prepared: Path, workdir: Path):
    servers = [UvicornServer(workdir / f"{prepared.name}-uvicorn.log", MODEL_DIR=str(prepared))]
    try:
        servers.append(RieServer(workdir / f"{prepared.name}-rie.log", MODEL_DIR=str(prepared)))
        servers.append(RieServer(workdir / f"{prepared.name}-rie-int8.log", MODEL_DIR=str(prepared),
                                 EMBEDDING_PRECISION="int8"))
    except Exception:
        for server in servers:
            server.stop()
        raise
    clients = [httpx.Client(base_url=server.url, timeout=120) for server in servers]
    return servers, clients


@pytest.fixture(scope="module")
def reranker(workdir):
    from sentence_transformers import CrossEncoder

    source = build_head("reranker", MODEL_DIR, workdir)
    prepared = prepare(source, workdir)
    servers, (http, rie, rie_int8) = serve(prepared, workdir)
    yield Targets(source=source, prepared=prepared, http=http, rie=rie, rie_int8=rie_int8,
                  reference=CrossEncoder(str(source), device="cpu", local_files_only=True))
    for client in (http, rie, rie_int8):
        client.close()
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def sparse(workdir):
    from sentence_transformers import SparseEncoder

    source = build_head("sparse", MODEL_DIR, workdir)
    prepared = prepare(source, workdir)
    servers, (http, rie, rie_int8) = serve(prepared, workdir)
    yield Targets(source=source, prepared=prepared, http=http, rie=rie, rie_int8=rie_int8,
                  reference=SparseEncoder(str(source), device="cpu", local_files_only=True))
    for client in (http, rie, rie_int8):
        client.close()
    for server in servers:
        server.stop()


def predict(reranker, raw: bool = False) -> np.ndarray:
    import torch

    pairs = [(QUERY, document) for document in DOCUMENTS]
    if raw:
        return reranker.reference.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_numpy=True)
    return reranker.reference.predict(pairs, convert_to_numpy=True)


def by_index(results: list[dict], key: str) -> np.ndarray:
    return np.array([item[key] for item in sorted(results, key=lambda item: item["index"])], dtype=np.float32)


def test_rerank_scores_are_cross_encoder_predict_on_both_targets(reranker):
    expected, logits = predict(reranker), predict(reranker, raw=True)
    assert len(set(np.round(expected, 7))) == len(DOCUMENTS), "the scores must differ, or the order proves nothing"
    order = np.argsort(-expected).tolist()
    for target in ("http", "rie"):
        status, tei = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS, "return_text": True}, target)
        assert status == 200
        assert [item["index"] for item in tei] == order
        assert [item["text"] for item in tei] == [DOCUMENTS[i] for i in order]
        np.testing.assert_allclose(by_index(tei, "score"), expected, rtol=1e-5)
        _, raw = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS, "raw_scores": True}, target)
        np.testing.assert_allclose(by_index(raw, "score"), logits, rtol=1e-4, atol=1e-6)
        assert "text" not in raw[0]
        status, cohere = reranker.post("/v1/rerank", {"query": QUERY, "documents": [DOCUMENTS[0], {"text": DOCUMENTS[1]},
                                                                                    *DOCUMENTS[2:]], "top_n": 2,
                                                      "return_documents": True, "model": "st-reranker"}, target)
        assert status == 200
        assert [item["index"] for item in cohere["results"]] == order[:2]
        assert [item["document"]["text"] for item in cohere["results"]] == [DOCUMENTS[i] for i in order[:2]]
        np.testing.assert_allclose([item["relevance_score"] for item in cohere["results"]], expected[order[:2]],
                                   rtol=1e-5)
        features = reranker.reference.tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS, truncation="longest_first",
                                                max_length=reranker.reference.max_length)
        assert cohere["usage"]["total_tokens"] == sum(map(len, features["input_ids"]))
    direct = reranker.direct({"query": QUERY, "documents": DOCUMENTS})  # a direct event: Cohere's body
    np.testing.assert_allclose(by_index(direct["results"], "relevance_score"), expected, rtol=1e-5)
    direct = reranker.direct({"query": QUERY, "texts": DOCUMENTS})  # TEI's body
    assert [item["index"] for item in direct] == order


def test_int8_rerank_scores_are_within_the_published_tolerance(reranker):
    expected = predict(reranker)
    _, int8 = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS}, "rie_int8")
    assert np.abs(by_index(int8, "score") - expected).max() <= INT8_SCORE_TOLERANCE
    stamp = json.loads((reranker.prepared / ".prepared.json").read_text())
    assert stamp["kind"] == "reranker"
    assert stamp["int8"]["spearman_vs_fp32"] >= prepare_heads.GATE_MIN_SPEARMAN
    assert stamp["max_relative_error_vs_sentence_transformers"] <= prepare_heads.FIDELITY_MAX_RELATIVE_ERROR


def dense(reference, texts, **kwargs) -> np.ndarray:
    return reference.encode(texts, convert_to_tensor=True, **kwargs).to_dense().numpy()


def from_pairs(items: list[list[dict]]) -> np.ndarray:
    vectors = np.zeros((len(items), 30522), dtype=np.float32)
    for row, entries in enumerate(items):
        for entry in entries:
            vectors[row, entry["index"]] = entry["value"]
    return vectors


def from_objects(data: list[dict]) -> np.ndarray:
    vectors = np.zeros((len(data), 30522), dtype=np.float32)
    for row, item in enumerate(data):
        assert item["embedding"]["indices"] == sorted(item["embedding"]["indices"])
        vectors[row, item["embedding"]["indices"]] = item["embedding"]["values"]
    return vectors


def assert_sparse_equal(ours: np.ndarray, reference: np.ndarray) -> None:
    """Indices exactly sentence-transformers', but for a weight within float32 rounding of zero
    (a logit of 7e-8 from terms of 0.1 in torch can be 0 in ONNX Runtime): below NOISE_FLOOR of
    the vector's largest weight on both sides; values within 1e-4 relative."""
    differ = (ours > 0) != (reference > 0)
    floor = prepare_heads.NOISE_FLOOR * reference.max(axis=1, keepdims=True)
    assert not (differ & ((ours > floor) | (reference > floor))).any(), "indices must be sentence-transformers'"
    assert differ.sum() <= 2, "more than a rounding accident"
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6)


def test_sparse_vectors_are_sparse_encoder_encode_on_both_targets(sparse):
    expected = dense(sparse.reference, TEXTS)
    queries = dense(sparse.reference, TEXTS, prompt_name="query")
    assert not np.allclose(expected, queries), "the query prompt must change the vectors"
    for target in ("http", "rie"):
        status, items = sparse.post("/embed_sparse", {"inputs": TEXTS}, target)
        assert status == 200
        assert_sparse_equal(from_pairs(items), expected)
        _, openai = sparse.post("/v1/embeddings", {"input": TEXTS, "input_type": "query"}, target)
        assert_sparse_equal(from_objects(openai["data"]), queries)
        _, named = sparse.post("/embed_sparse", {"inputs": TEXTS[0], "prompt_name": "query"}, target)
        assert_sparse_equal(from_pairs(named), queries[:1])
    assert_sparse_equal(from_pairs(sparse.direct({"inputs": TEXTS})), expected)


def test_int8_sparse_vectors_point_where_sentence_transformers_does(sparse):
    expected = dense(sparse.reference, TEXTS)
    _, items = sparse.post("/embed_sparse", {"inputs": TEXTS}, "rie_int8")
    ours = from_pairs(items)
    cosines = np.sum(ours * expected, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(expected, axis=1))
    assert cosines.min() >= INT8_MIN_COSINE


def test_tokenize_gives_the_models_own_tokens_and_offsets(reranker, sparse):
    text = "Paris, the capital of France: ünïcödé 🚀"
    ids = reranker.reference.tokenizer(text)["input_ids"]
    for served in (reranker, sparse):
        for target in ("http", "rie"):
            status, (tokens,) = served.post("/tokenize", {"inputs": [text]}, target)
            assert status == 200
            assert [token["id"] for token in tokens] == ids
            assert tokens[0]["special"] and tokens[0]["start"] is None
            words = [text[token["start"]:token["stop"]].lower() for token in tokens if not token["special"]]
            assert words[:3] == ["paris", ",", "the"]
    _, (bare,) = sparse.post("/tokenize", {"inputs": text, "add_special_tokens": False})
    assert [token["id"] for token in bare] == ids[1:-1]


def test_models_and_health_name_the_kind(reranker, sparse):
    for served, kind in ((reranker, "reranker"), (sparse, "sparse")):
        assert served.http.get("/v1/models").json()["data"][0]["kind"] == kind
        health = served.http.get("/health").json()
        assert health["kind"] == kind
        assert health["contract"]["model_kinds"] == {k: list(v) for k, v in contract.KIND_ROUTES.items()}
        assert health["contract"]["max_rerank_documents"] == contract.MAX_RERANK_DOCUMENTS


BAD_RERANKS = [
    ("/v1/rerank", {"query": QUERY, "documents": []}, "documents"),
    ("/v1/rerank", {"query": QUERY, "documents": ["x"] * (contract.MAX_RERANK_DOCUMENTS + 1)}, "documents"),
    ("/v1/rerank", {"query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n"),
    ("/v1/rerank", {"query": QUERY, "documents": DOCUMENTS, "top_n": len(DOCUMENTS) + 1}, "top_n"),
    ("/v1/rerank", {"query": "q" * 100_000, "documents": DOCUMENTS}, "query"),
    ("/v1/rerank", {"query": QUERY, "documents": ["fine", 7]}, "documents"),
    ("/v1/rerank", {"query": QUERY, "documents": [{"title": "no text"}]}, "documents"),
    ("/rerank", {"query": QUERY, "texts": ["fine", None]}, "texts"),
    ("/rerank", {"query": QUERY, "texts": DOCUMENTS, "truncate": False}, "texts"),
    ("/rerank", {"texts": DOCUMENTS}, "query"),
]


@pytest.mark.parametrize("target", ["http", "rie"])
def test_bad_rerank_requests_get_a_400_naming_the_field(reranker, target):
    for path, body, field in BAD_RERANKS:
        status, error = reranker.post(path, body, target)
        assert status == 400, (path, body.keys(), error)
        assert error["error"]["param"] == field, error
    _, error = reranker.post("/rerank", {"query": QUERY, "texts": DOCUMENTS, "truncate": False}, target)
    assert error["error"]["message"].startswith("texts[2] with the query has ")
    assert error["error"]["code"] == contract.ErrorCode.INPUT_TOO_LONG


def test_a_route_of_another_kind_is_refused_naming_both(reranker, sparse, http):
    def default_server(path: str, body: dict, target: str) -> tuple[int, dict]:
        response = http.post(path, json=body)  # conftest's uvicorn on the default embedding model
        return response.status_code, response.json()

    embedder = SimpleNamespace(post=default_server)
    cases = [
        (reranker, "/embed_sparse", {"inputs": "x"}, "reranker"),
        (reranker, "/v1/embeddings", {"input": "x"}, "reranker"),
        (sparse, "/rerank", {"query": "q", "texts": ["x"]}, "sparse"),
        (embedder, "/rerank", {"query": "q", "texts": ["x"]}, "embedding"),
        (embedder, "/embed_sparse", {"inputs": "x"}, "embedding"),
    ]
    for served, path, body, kind in cases:
        for target in ("http", "rie") if isinstance(served, Targets) else ("http",):
            status, error = served.post(path, body, target)
            assert status == 400 and error["error"]["code"] == contract.ErrorCode.WRONG_MODEL_KIND, error
            assert f"is {'an' if kind[0] in 'aeiou' else 'a'} {kind} model" in error["error"]["message"]


def test_bare_checkpoints_and_the_5x_sparse_layout_prepare_equal_to_sentence_transformers(workdir):
    """prepare_model's own gate compares with sentence-transformers loading the same folder; the
    stamp records what it measured."""
    bare = prepare(build_bare("reranker", MODEL_DIR, workdir), workdir)
    xlm_roberta = prepare(build_xlm_roberta_reranker(MODEL_DIR, workdir), workdir)
    legacy = build_head("sparse", MODEL_DIR, workdir / "v5")
    legacy = legacy.rename(legacy.with_name("sparse-v5-layout"))
    to_sparse_v5_layout(legacy)
    for folder, kind in ((bare, "reranker"), (xlm_roberta, "reranker"), (prepare(legacy, workdir), "sparse")):
        stamp = json.loads((folder / ".prepared.json").read_text())
        assert stamp["kind"] == kind and stamp["indices_equal"]
        assert stamp["max_relative_error_vs_sentence_transformers"] <= prepare_heads.FIDELITY_MAX_RELATIVE_ERROR
    assert read_model_spec(xlm_roberta).architecture == "xlm-roberta"
    spec = read_model_spec(workdir / "prepared" / "sparse-v5-layout")
    assert (spec.max_seq_length, spec.splade_activation) == (48, "log1p_relu")
    assert read_model_spec(build_bare("sparse", MODEL_DIR, workdir)).kind == "sparse"


def test_what_cannot_be_served_faithfully_is_refused(workdir):
    folder = build_bare("reranker", MODEL_DIR, workdir / "refused")
    config = json.loads((folder / "config.json").read_text())
    cases = [
        ({**config, "id2label": {"0": "no", "1": "yes"}, "label2id": {"no": 0, "yes": 1}}, "2 labels"),
        ({**config, "sentence_transformers": {"activation_fn": "torch.nn.modules.activation.Softmax"}}, "Softmax"),
    ]
    for edited, words in cases:
        (folder / "config.json").write_text(json.dumps(edited))
        with pytest.raises(ModelFilesError, match=words):
            read_model_spec(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.sentence_transformer.modules.Pooling"},
        {"idx": 2, "name": "2", "path": "2_SparseAutoEncoder",
         "type": "sentence_transformers.sparse_encoder.modules.SparseAutoEncoder"},
    ]))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"model_type": "SparseEncoder"}))
    with pytest.raises(ModelFilesError, match="SparseAutoEncoder"):
        read_model_spec(folder)


@pytest.fixture(scope="module")
def several(reranker, sparse, workdir):
    """One server, three kinds: MODELS= the default embedder, the tiny reranker and sparse encoder."""
    models = f"{MODEL_DIR},my/reranker={reranker.prepared},{sparse.prepared}"
    servers = [UvicornServer(workdir / "several-uvicorn.log", MODELS=models, MODEL_DIR="")]
    try:
        servers.append(RieServer(workdir / "several-rie.log", MODELS=models, MODEL_DIR=""))
    except Exception:
        servers[0].stop()
        raise
    http, rie = (httpx.Client(base_url=server.url, timeout=120) for server in servers)
    yield Targets(http=http, rie=rie, rie_int8=None)
    http.close()
    rie.close()
    for server in servers:
        server.stop()


def test_one_server_serves_an_embedder_a_reranker_and_a_sparse_encoder(several, reranker, sparse):
    listed = several.http.get("/v1/models").json()["data"]
    assert [(card["id"], card["kind"]) for card in listed] == [
        ("sentence-transformers/all-MiniLM-L6-v2", "embedding"), ("my/reranker", "reranker"),
        ("sentence-transformers/st-sparse", "sparse")]
    assert [m["kind"] for m in several.http.get("/health").json()["models"]] == ["embedding", "reranker", "sparse"]
    for target in ("http", "rie"):
        # a route one kind answers goes to the only model of that kind
        _, ranked = several.post("/rerank", {"query": QUERY, "texts": DOCUMENTS}, target)
        np.testing.assert_allclose(by_index(ranked, "score"), predict(reranker), rtol=1e-5)
        _, items = several.post("/embed_sparse", {"inputs": TEXTS}, target)
        assert_sparse_equal(from_pairs(items), dense(sparse.reference, TEXTS))
        status, seed = several.post("/", {"input": "hello"}, target)
        assert status == 200 and len(seed["embedding"]) == 384
        # /v1/embeddings: two models answer it, so the request names one
        status, error = several.post("/v1/embeddings", {"input": "hello"}, target)
        assert status == 400 and error["error"]["param"] == "model" and "name one" in error["error"]["message"]
        _, named = several.post("/v1/embeddings", {"input": TEXTS, "model": "st-sparse"}, target)
        assert named["model"] == "sentence-transformers/st-sparse"
        assert_sparse_equal(from_objects(named["data"]), dense(sparse.reference, TEXTS))
        # a named model of another kind is refused naming both; an unknown name is a 404
        status, error = several.post("/rerank", {"query": "q", "texts": ["x"], "model": "all-MiniLM-L6-v2"}, target)
        assert status == 400 and error["error"]["code"] == contract.ErrorCode.WRONG_MODEL_KIND
        assert "is an embedding model" in error["error"]["message"]
        status, error = several.post("/v1/rerank", {"query": "q", "documents": ["x"], "model": "nope"}, target)
        assert status == 404 and "'my/reranker'" in error["error"]["message"]


def test_max_active_dims_keeps_what_sentence_transformers_keeps(workdir):
    from sentence_transformers.util import select_max_active_dims

    vectors = np.random.default_rng(26).normal(size=(6, 300)).astype(np.float32)
    for k in (1, 7, 64):
        np.testing.assert_array_equal(keep_largest(vectors, k), select_max_active_dims(vectors, k).numpy())
    folder = build_bare("sparse", MODEL_DIR, workdir / "top-k")
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"max_active_dims": 64}))
    spec = read_model_spec(folder)
    assert (spec.kind, spec.max_active_dims, spec.pooling) == ("sparse", 64, "splade_max_relu_top64")
