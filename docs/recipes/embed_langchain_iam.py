import asyncio
import os

from embedding_client import langchain_embeddings

# OpenAIEmbeddings with SigV4-signing httpx clients (sync and async) and the served model.
embeddings = langchain_embeddings(os.environ["EMBEDDING_URL"])  # https://<id>.lambda-url.<region>.on.aws/
texts = ["hello, world!", "Sentence embeddings for retrieval."]
vectors = embeddings.embed_documents(texts)
async_vectors = asyncio.run(embeddings.aembed_documents(texts))
print(len(vectors), len(async_vectors[0]))  # 2 384
