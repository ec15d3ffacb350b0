"""The reranking and hybrid-search recipes (docs/frameworks.md), run unchanged against real servers.

One MODELS= deployment serves the embedder, a tiny random-weight CrossEncoder under the id
cross-encoder/ms-marco-MiniLM-L6-v2 and a tiny SparseEncoder under naver/splade-cocondenser-ensembledistil
(tests/tiny_models.py, prepared by scripts/prepare_model.py): uvicorn with an API key, and the Lambda
handler under the real RIE behind a local Function URL with `NONE` auth and the key, or `AWS_IAM` auth
verified with botocore. The official cohere client (Client and ClientV2), LangChain's and
LlamaIndex's Cohere rerank integrations must return what POST /v1/rerank returns on the same
target; the Qdrant recipe (local mode) must store exactly the server's dense and sparse vectors and
rank by reciprocal rank fusion of the two lists.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from conftest import MODEL_DIR
from recipe_targets import recipe_environment, run_python_recipe, start_targets, stop_all, tiktoken_dir  # noqa: F401
from tiny_models import build_head

import prepare_model  # noqa: E402  (scripts/ is on pytest's pythonpath)

RERANKER = "cross-encoder/ms-marco-MiniLM-L6-v2"
SPARSE = "naver/splade-cocondenser-ensembledistil"
DENSE = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rerank-recipes")
    prepared = {}
    for kind in ("reranker", "sparse"):
        source = build_head(kind, MODEL_DIR, workdir)
        prepare_model.main(["--model", str(source), "--output", str(workdir / "prepared")])
        prepared[kind] = workdir / "prepared" / source.name
    models = f"{MODEL_DIR},{RERANKER}={prepared['reranker']},{SPARSE}={prepared['sparse']}"
    targets, servers = start_targets(workdir, MODELS=models, MODEL_DIR="")
    yield targets
    stop_all(servers)


def post(target, path: str, body: dict) -> dict:
    with httpx.Client(timeout=60, **target.auth()) as client:
        response = client.post(f"{target.url}{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def reference(target, query: str, documents: list[str], top_n: int = 3) -> list[tuple[int, float]]:
    """What POST /v1/rerank answers on this target: (index, relevance_score), best first."""
    body = {"model": RERANKER, "query": query, "documents": documents, "top_n": top_n}
    return [(item["index"], item["relevance_score"]) for item in post(target, "/v1/rerank", body)["results"]]


def assert_same_ranking(got: list[tuple], want: list[tuple[int, float]], documents: list[str] | None = None):
    """Same order and scores; `documents` maps the recipe's texts back to indices."""
    indices = [documents.index(text) if documents else text for text, _ in got]
    assert indices == [index for index, _ in want]
    np.testing.assert_allclose([score for _, score in got], [score for _, score in want], rtol=1e-6)


@pytest.mark.parametrize("target_name", ["fastapi", "lambda-url-key"])
@pytest.mark.parametrize("recipe", ["rerank_cohere.py", "rerank_langchain.py", "rerank_llamaindex.py"])
def test_given_a_rerank_recipe_then_it_runs_unchanged_and_matches_v1_rerank(
        recipe, target_name, targets, tiktoken_dir, monkeypatch):
    target = targets[target_name]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    globals_ = run_python_recipe(recipe)
    if recipe == "rerank_cohere.py":
        documents = globals_["documents"]
        want = reference(target, globals_["query"], documents)
        assert_same_ranking(globals_["results"], want)
        assert_same_ranking(globals_["results_v2"], want)
        assert globals_["response"].results[0].document.text == documents[want[0][0]]
        return
    texts = ([doc.page_content for doc in globals_["documents"]] if recipe == "rerank_langchain.py"
             else [hit.node.get_content() for hit in globals_["nodes"]])
    assert_same_ranking(globals_["results"], reference(target, globals_["query"], texts), texts)


def test_given_an_aws_iam_function_url_then_the_cohere_client_signs_and_matches(targets, tiktoken_dir, monkeypatch):
    target = targets["lambda-url-iam"]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    before = len(target.proxy.rejections)
    globals_ = run_python_recipe("rerank_cohere_iam.py")
    assert_same_ranking(globals_["results"], reference(target, globals_["query"], globals_["documents"]))
    assert target.proxy.rejections[before:] == []


@pytest.mark.parametrize("target_name", ["fastapi", "lambda-url-key"])
def test_given_qdrant_local_mode_then_dense_and_sparse_vectors_are_stored_and_fused(
        target_name, targets, tiktoken_dir, monkeypatch):
    target = targets[target_name]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    globals_ = run_python_recipe("hybrid_qdrant.py")
    passages, query = globals_["passages"], globals_["query"]
    dense = [item["embedding"] for item in post(target, "/v1/embeddings", {
        "model": DENSE, "input": [query, *passages], "input_type": "document"})["data"]]
    sparse = [item["embedding"] for item in post(target, "/v1/embeddings", {
        "model": SPARSE, "input": passages, "input_type": "document"})["data"]]
    stored = {point.id: point.vector for point in globals_["store"].retrieve(
        "passages", ids=list(range(len(passages))), with_vectors=True)}
    for index in range(len(passages)):  # the server's vectors, as sent (Qdrant normalises cosine ones)
        np.testing.assert_allclose(stored[index]["dense"], dense[index + 1], atol=1e-6)
        assert stored[index]["sparse"].indices == sparse[index]["indices"]
        np.testing.assert_allclose(stored[index]["sparse"].values, sparse[index]["values"], rtol=1e-6)

    # Reciprocal rank fusion of the dense and the sparse ranking, computed here from the server's vectors.
    query_dense = np.asarray(globals_["query_dense"])
    by_dense = np.argsort([-np.dot(query_dense, np.asarray(v)) / np.linalg.norm(v) for v in dense[1:]],
                          kind="stable")
    query_sparse = dict(zip(globals_["query_sparse"]["indices"], globals_["query_sparse"]["values"]))
    sparse_scores = [sum(query_sparse.get(i, 0.0) * v for i, v in zip(s["indices"], s["values"])) for s in sparse]
    by_sparse = [i for i in np.argsort([-score for score in sparse_scores], kind="stable") if sparse_scores[i] > 0]
    fused = {i: 0.0 for i in range(len(passages))}
    for ranking in (by_dense, by_sparse):
        for rank, index in enumerate(ranking):
            fused[int(index)] += 1 / (rank + 2)  # Qdrant's RRF: 1 / (k + rank), k = 2, rank from 0
    hits = globals_["hits"]
    np.testing.assert_allclose([hit.score for hit in hits], sorted(fused.values(), reverse=True)[:3])
    np.testing.assert_allclose([hit.score for hit in hits], [fused[hit.id] for hit in hits])
    assert hits[0].payload["text"] == passages[0] and int(by_dense[0]) == 0  # the real embedder finds Paris
