import os

import cohere

base_url = os.environ["EMBEDDING_URL"].rstrip("/")  # server root or Function URL, without /v1
api_key = os.environ.get("EMBEDDING_API_KEY", "unused")  # the service's API_KEY, if it has one
query = "What is the capital of France?"
documents = [
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower was completed in 1889.",
    "Berlin is the capital of Germany.",
    "A man is eating food.",
]

client = cohere.Client(base_url=base_url, api_key=api_key)  # POST /v1/rerank
response = client.rerank(model="cross-encoder/ms-marco-MiniLM-L6-v2", query=query, documents=documents, top_n=3,
                         return_documents=True)
results = [(item.index, item.relevance_score) for item in response.results]  # best first

client_v2 = cohere.ClientV2(base_url=base_url, api_key=api_key)  # POST /v2/rerank
response_v2 = client_v2.rerank(model="cross-encoder/ms-marco-MiniLM-L6-v2", query=query, documents=documents,
                               top_n=3)
results_v2 = [(item.index, item.relevance_score) for item in response_v2.results]
print(response.results[0].document.text)  # the most relevant passage
