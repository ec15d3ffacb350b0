import os

import httpx
from qdrant_client import QdrantClient, models

server = httpx.Client(
    base_url=os.environ["EMBEDDING_URL"].rstrip("/"),  # one server with MODELS= the embedder and SPLADE
    headers={"authorization": "Bearer " + os.environ.get("EMBEDDING_API_KEY", "unused")},
    timeout=60,
)


def embed(model: str, texts: list[str], input_type: str) -> list:
    """POST /v1/embeddings: a list of floats per text (dense), or {indices, values} (sparse)."""
    body = {"model": model, "input": texts, "input_type": input_type}
    response = server.post("/v1/embeddings", json=body)
    response.raise_for_status()
    return [item["embedding"] for item in response.json()["data"]]


DENSE, SPARSE = "sentence-transformers/all-MiniLM-L6-v2", "naver/splade-cocondenser-ensembledistil"
passages = [
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower was completed in 1889.",
    "Berlin is the capital of Germany.",
    "A man is eating food.",
]
store = QdrantClient(":memory:")  # local mode; QdrantClient(url=...) for a Qdrant server
store.create_collection(
    "passages",
    vectors_config={"dense": models.VectorParams(size=384, distance=models.Distance.COSINE)},
    sparse_vectors_config={"sparse": models.SparseVectorParams()},
)
dense, sparse = embed(DENSE, passages, "document"), embed(SPARSE, passages, "document")
store.upsert("passages", [
    models.PointStruct(id=i, payload={"text": text},
                       vector={"dense": dense[i], "sparse": models.SparseVector(**sparse[i])})
    for i, text in enumerate(passages)
])

query = "What is the capital of France?"
query_dense, query_sparse = embed(DENSE, [query], "query")[0], embed(SPARSE, [query], "query")[0]
hits = store.query_points(
    "passages",
    prefetch=[
        models.Prefetch(query=query_dense, using="dense", limit=10),
        models.Prefetch(query=models.SparseVector(**query_sparse), using="sparse", limit=10),
    ],
    query=models.FusionQuery(fusion=models.Fusion.RRF),  # reciprocal rank fusion of both lists
    limit=3,
).points
print([hit.payload["text"] for hit in hits])
