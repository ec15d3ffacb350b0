import os

from langchain_openai import OpenAIEmbeddings

embeddings = OpenAIEmbeddings(
    base_url=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",
    api_key=os.environ.get("EMBEDDING_API_KEY", "unused"),
    model="sentence-transformers/all-MiniLM-L6-v2",
    check_embedding_ctx_length=False,  # send text, not tiktoken ids (see the pitfalls)
)
texts = ["hello, world!", "Sentence embeddings for retrieval."]
vectors = embeddings.embed_documents(texts)
query_vector = embeddings.embed_query("hello, world!")
print(len(vectors), len(query_vector))  # 2 384
