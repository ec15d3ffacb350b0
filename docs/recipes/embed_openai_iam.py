import asyncio
import os

from embedding_client import async_openai_client, openai_client

url = os.environ["EMBEDDING_URL"]  # https://<id>.lambda-url.<region>.on.aws/
client = openai_client(url)  # SigV4-signed with your AWS credentials (env, profile, SSO or role)
texts = ["hello, world!", "Sentence embeddings for retrieval."]
result = client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=texts)
vectors = [item.embedding for item in result.data]


async def embed_async() -> list[list[float]]:
    async_client = async_openai_client(url)
    result = await async_client.embeddings.create(model="sentence-transformers/all-MiniLM-L6-v2", input=texts)
    return [item.embedding for item in result.data]


async_vectors = asyncio.run(embed_async())
print(len(vectors), len(async_vectors[0]))  # 2 384
