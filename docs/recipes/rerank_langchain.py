import os

from langchain_cohere import CohereRerank
from langchain_core.documents import Document

reranker = CohereRerank(
    base_url=os.environ["EMBEDDING_URL"].rstrip("/"),  # server root or Function URL, without /v1
    cohere_api_key=os.environ.get("EMBEDDING_API_KEY", "unused"),
    model="cross-encoder/ms-marco-MiniLM-L6-v2",
    top_n=3,
)
query = "What is the capital of France?"
documents = [
    Document(page_content="Paris is the capital and largest city of France."),
    Document(page_content="The Eiffel Tower was completed in 1889."),
    Document(page_content="Berlin is the capital of Germany."),
    Document(page_content="A man is eating food."),
]
reranked = reranker.compress_documents(documents, query)  # best first, relevance_score in metadata
results = [(doc.page_content, doc.metadata["relevance_score"]) for doc in reranked]
print(results[0][0])
