import os

import chromadb
from chromadb.config import Settings
from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction

embedding_function = OpenAIEmbeddingFunction(
    api_base=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",
    api_key_env_var="EMBEDDING_API_KEY",  # ignored whenever OPENAI_API_KEY is set (see the pitfalls)
    model_name="sentence-transformers/all-MiniLM-L6-v2",
)
client = chromadb.EphemeralClient(settings=Settings(anonymized_telemetry=False))
collection = client.get_or_create_collection("documents", embedding_function=embedding_function)
texts = ["hello, world!", "Sentence embeddings for retrieval."]
collection.upsert(ids=["greeting", "topic"], documents=texts)
hits = collection.query(query_texts=["a friendly hello"], n_results=1)
vectors = collection.get(ids=["greeting", "topic"], include=["embeddings"])["embeddings"]
print(hits["ids"][0], len(vectors[0]))  # ['greeting'] 384
