import os

import litellm

from embedding_client import openai_client

texts = ["hello, world!", "Sentence embeddings for retrieval."]
response = litellm.embedding(
    model="openai/sentence-transformers/all-MiniLM-L6-v2",
    input=texts,
    client=openai_client(os.environ["EMBEDDING_URL"]),  # SigV4-signed openai.OpenAI for the Function URL
)
vectors = [item["embedding"] for item in response.data]
print(len(vectors), len(vectors[0]))  # 2 384
