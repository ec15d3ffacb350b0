import asyncio
import os

from embedding_client import llamaindex_embeddings

# OpenAILikeEmbedding with SigV4-signing httpx clients (sync and async) and the served model.
embed_model = llamaindex_embeddings(os.environ["EMBEDDING_URL"])  # https://<id>.lambda-url.<region>.on.aws/
texts = ["hello, world!", "Sentence embeddings for retrieval."]
vectors = embed_model.get_text_embedding_batch(texts)
async_vectors = asyncio.run(embed_model.aget_text_embedding_batch(texts))
print(len(vectors), len(async_vectors[0]))  # 2 384
