"""Frameworks left at their defaults, on the same real targets as tests/docs/test_recipes.py.

What a user gets with no options: LangChain's `OpenAIEmbeddings` sends tiktoken `cl100k_base`
id arrays and `text-embedding-ada-002`; LlamaIndex, chromadb and Haystack send OpenAI model
names; an OpenAI base URL may lack `/v1`. The servers run with
`MODEL_ALIASES=text-embedding-ada-002,text-embedding-3-small`, decode token arrays to text,
and route `/embeddings` and `/models` without the prefix; the Lambda handler checks `API_KEY`.
Vectors must equal those of the text itself (`POST /`), and responses report the served id.
"""

from __future__ import annotations

import httpx
import openai
import pytest

from recipe_targets import (
    KEY,
    MODEL_ID,
    assert_same_vectors,
    recipe_environment,
    run_python_recipe,
    start_targets,
    stop_all,
    tiktoken_dir,  # noqa: F401  (fixture)
)

from embedding_client import langchain_embeddings, openai_client

TEXTS = ["hello, world!", "Sentence embeddings for retrieval."]
KEY_TARGETS = ["fastapi", "lambda-url-key"]


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    targets, servers = start_targets(tmp_path_factory.mktemp("defaults"))
    yield targets
    stop_all(servers)


@pytest.mark.parametrize("target_name", KEY_TARGETS)
def test_given_langchain_with_every_default_then_token_arrays_give_the_texts_vectors(
        target_name, targets, tiktoken_dir, monkeypatch):
    target = targets[target_name]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    result = run_python_recipe("embed_langchain_defaults.py")
    assert_same_vectors(result["vectors"], target.seed_vectors(result["texts"]))


def test_given_langchain_token_arrays_through_sigv4_then_the_texts_vectors(targets, tiktoken_dir,
                                                                          monkeypatch):
    target = targets["lambda-url-iam"]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    embeddings = langchain_embeddings(target.url, model="text-embedding-ada-002",
                                      check_embedding_ctx_length=True)
    assert_same_vectors(embeddings.embed_documents(TEXTS), target.seed_vectors(TEXTS))


@pytest.mark.parametrize("target_name", KEY_TARGETS)
@pytest.mark.parametrize("alias", ["text-embedding-ada-002", "text-embedding-3-small"])
def test_given_an_alias_then_openai_gets_the_served_models_vectors_and_id(alias, target_name, targets):
    target = targets[target_name]
    result = openai.OpenAI(base_url=f"{target.url}/v1", api_key=target.api_key).embeddings.create(
        model=alias, input=TEXTS)
    assert result.model == MODEL_ID
    assert_same_vectors([item.embedding for item in result.data], target.seed_vectors(TEXTS))


@pytest.mark.parametrize("target_name", KEY_TARGETS)
def test_given_framework_default_model_names_then_llamaindex_chromadb_and_haystack_work(
        target_name, targets, tiktoken_dir, monkeypatch):
    from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction
    from haystack import Document
    from haystack.components.embedders import OpenAIDocumentEmbedder
    from haystack.utils import Secret
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    target = targets[target_name]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    base = f"{target.url}/v1"
    reference = target.seed_vectors(TEXTS)
    llama = OpenAILikeEmbedding(model_name="text-embedding-ada-002", api_base=base, api_key=target.api_key)
    assert_same_vectors(llama.get_text_embedding_batch(TEXTS), reference)
    # chromadb's default model is text-embedding-ada-002, Haystack's text-embedding-3-small.
    chroma = OpenAIEmbeddingFunction(api_base=base, api_key_env_var="EMBEDDING_API_KEY")
    assert_same_vectors(chroma(TEXTS), reference)
    haystack = OpenAIDocumentEmbedder(api_base_url=base, api_key=Secret.from_token(target.api_key),
                                      raise_on_failure=True)
    documents = haystack.run(documents=[Document(content=text) for text in TEXTS])["documents"]
    assert_same_vectors([document.embedding for document in documents], reference)


@pytest.mark.parametrize("target_name", KEY_TARGETS)
def test_given_a_base_url_without_v1_then_embeddings_and_models_still_work(target_name, targets):
    target = targets[target_name]
    client = openai.OpenAI(base_url=target.url, api_key=target.api_key)
    result = client.embeddings.create(model=MODEL_ID, input=TEXTS)
    assert_same_vectors([item.embedding for item in result.data], target.seed_vectors(TEXTS))
    assert [model.id for model in client.models.list()] == [MODEL_ID]
    with_prefix = openai.OpenAI(base_url=f"{target.url}/v1", api_key=target.api_key)
    assert with_prefix.models.retrieve(MODEL_ID).id == MODEL_ID  # an id with a slash


def test_given_a_none_function_url_with_api_key_then_a_wrong_key_gets_401_and_status_stays_open(targets):
    target = targets["lambda-url-key"]
    with pytest.raises(openai.AuthenticationError):
        wrong = openai_client(target.url, api_key=KEY + "x", max_retries=0)
        wrong.embeddings.create(model=MODEL_ID, input=TEXTS)
    with pytest.raises(openai.AuthenticationError):
        langchain_embeddings(target.url, api_key="sk-wrong", max_retries=0).embed_query("hello")
    assert httpx.get(f"{target.url}/status", timeout=30).json() == {"status": "200 OK"}
