import os

import cohere
import httpx

from embedding_client import SigV4Auth

url = os.environ["EMBEDDING_URL"].rstrip("/")  # https://<id>.lambda-url.<region>.on.aws
# Every request SigV4-signed with your AWS credentials (env, profile, SSO or role); the key is unused.
client = cohere.Client(base_url=url, api_key="unused", httpx_client=httpx.Client(auth=SigV4Auth(), timeout=60))
query = "What is the capital of France?"
documents = [
    "Paris is the capital and largest city of France.",
    "The Eiffel Tower was completed in 1889.",
    "Berlin is the capital of Germany.",
    "A man is eating food.",
]
response = client.rerank(model="cross-encoder/ms-marco-MiniLM-L6-v2", query=query, documents=documents, top_n=3)
results = [(item.index, item.relevance_score) for item in response.results]
print(results[0])
