import os

from llama_index.embeddings.openai_like import OpenAILikeEmbedding

embed_model = OpenAILikeEmbedding(
    model_name="sentence-transformers/all-MiniLM-L6-v2",
    api_base=os.environ["EMBEDDING_URL"].rstrip("/") + "/v1",
    api_key=os.environ.get("EMBEDDING_API_KEY", "unused"),
)
texts = ["hello, world!", "Sentence embeddings for retrieval."]
vectors = embed_model.get_text_embedding_batch(texts)
query_vector = embed_model.get_query_embedding("hello, world!")
print(len(vectors), len(query_vector))  # 2 384
