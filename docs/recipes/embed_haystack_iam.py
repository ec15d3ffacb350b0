import os

from haystack import Document
from haystack.components.embedders import OpenAIDocumentEmbedder
from haystack.utils import Secret

from embedding_client import SigV4Auth

embedder = OpenAIDocumentEmbedder(
    api_base_url=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",  # https://<id>.lambda-url.<region>.on.aws
    api_key=Secret.from_token("unused"),  # replaced by the SigV4 signature
    model="sentence-transformers/all-MiniLM-L6-v2",
    http_client_kwargs={"auth": SigV4Auth()},  # your AWS credentials; region from the URL or AWS_REGION
)
texts = ["hello, world!", "Sentence embeddings for retrieval."]
embedded = embedder.run(documents=[Document(content=text) for text in texts])["documents"]
vectors = [document.embedding for document in embedded]
print(len(vectors), len(vectors[0]))  # 2 384
