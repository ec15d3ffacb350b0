import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",  # server root or Function URL, plus /v1
    api_key=os.environ.get("EMBEDDING_API_KEY", "unused"),  # the service's API_KEY, if it has one
)
texts = ["hello, world!", "Sentence embeddings for retrieval."]
result = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=texts)
vectors = [item.embedding for item in result.data]
print(len(vectors), len(vectors[0]))  # 2 384
