import os

import litellm

texts = ["hello, world!", "Sentence embeddings for retrieval."]
response = litellm.embedding(
    model="openai/sentence-transformers/all-MiniLM-L6-v2",  # "openai/" = any OpenAI-compatible server
    input=texts,
    api_base=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",
    api_key=os.environ.get("EMBEDDING_API_KEY", "unused"),
)
vectors = [item["embedding"] for item in response.data]
print(len(vectors), len(vectors[0]))  # 2 384
