import os

from haystack import Document
from haystack.components.embedders import OpenAIDocumentEmbedder
from haystack.utils import Secret

embedder = OpenAIDocumentEmbedder(
    api_base_url=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",
    api_key=Secret.from_env_var("EMBEDDING_API_KEY"),  # any non-empty value if the server has no key
    model="sentence-transformers/all-MiniLM-L6-v2",
)
texts = ["hello, world!", "", "Sentence embeddings for retrieval."]
# One empty document makes the server refuse the batch, and Haystack then drops every document
# in it (a logged error, no exception): leave empty documents out.
documents = [Document(content=text) for text in texts if text.strip()]
embedded = embedder.run(documents=documents)["documents"]
texts = [document.content for document in embedded]
vectors = [document.embedding for document in embedded]
print(len(vectors), len(vectors[0]))  # 2 384
