import os

from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.postprocessor.cohere_rerank import CohereRerank

reranker = CohereRerank(
    model="cross-encoder/ms-marco-MiniLM-L6-v2",
    api_key=os.environ.get("EMBEDDING_API_KEY", "unused"),
    base_url=os.environ["EMBEDDING_URL"].rstrip("/"),  # server root or Function URL, without /v1
    top_n=3,
)
query = "What is the capital of France?"
nodes = [
    NodeWithScore(node=TextNode(text=text), score=0.0)  # e.g. a retriever's hits
    for text in [
        "Paris is the capital and largest city of France.",
        "The Eiffel Tower was completed in 1889.",
        "Berlin is the capital of Germany.",
        "A man is eating food.",
    ]
]
reranked = reranker.postprocess_nodes(nodes, query_str=query)  # best first
results = [(hit.node.get_content(), hit.score) for hit in reranked]
print(results[0][0])
