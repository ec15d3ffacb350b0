import os

from langchain_openai import OpenAIEmbeddings

# Everything left at LangChain's defaults: model "text-embedding-ada-002", tiktoken id arrays.
# Needs MODEL_ALIASES=text-embedding-ada-002 on the server.
embeddings = OpenAIEmbeddings(
    base_url=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",
    api_key=os.environ.get("EMBEDDING_API_KEY", "unused"),
)
texts = ["hello, world!", "Sentence embeddings for retrieval."]
vectors = embeddings.embed_documents(texts)
