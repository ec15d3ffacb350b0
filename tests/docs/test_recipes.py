"""Every framework recipe the documentation shows (docs/frameworks.md), run unchanged against real
servers; and the client package end to end against a Function URL that verifies SigV4 signatures.

Targets (tests/recipe_targets.py): FastAPI under uvicorn with an API key; the Lambda handler
under the real RIE behind a local Function URL, with `AWS_IAM` auth (signatures verified
with botocore) and with `NONE` auth plus the service's API key. Vectors from every framework
must equal what the seed's `POST /` returns on the same target.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sys

import httpx
import openai
import pytest

from conftest import REPO
from function_url_proxy import sigv4_rejection
from recipe_targets import (
    MODEL_ID,
    RECIPES,
    REGION,
    assert_same_vectors,
    aws_credentials,
    recipe_environment,
    run_node_recipe,
    run_python_recipe,
    start_targets,
    stop_all,
    tiktoken_dir,  # noqa: F401  (fixture)
)

from embedding_client import langchain_embeddings, openai_client
from embedding_client.sigv4 import SigV4Auth

# Recipes that authenticate with an API key (or none) work on FastAPI and on a NONE Function URL;
# the *_iam recipes use the client package's SigV4 helpers for an AWS_IAM Function URL.
KEY_RECIPES = ["embed_openai.py", "embed_langchain.py", "embed_llamaindex.py", "embed_haystack.py",
               "embed_litellm.py", "embed_chromadb.py"]
IAM_RECIPES = ["embed_openai_iam.py", "embed_langchain_iam.py", "embed_llamaindex_iam.py", "embed_haystack_iam.py",
               "embed_litellm_iam.py"]


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    targets, servers = start_targets(tmp_path_factory.mktemp("recipes"))
    yield targets
    stop_all(servers)


@pytest.fixture(autouse=True)
def fresh_chromadb():
    """chromadb's in-memory clients share one store per process: each recipe run starts empty."""
    yield
    if "chromadb" in sys.modules:
        from chromadb.api.shared_system_client import SharedSystemClient

        SharedSystemClient.clear_system_cache()


def check_recipe(globals_: dict, target) -> None:
    reference = target.seed_vectors(globals_["texts"])
    assert_same_vectors(globals_["vectors"], reference)
    if "async_vectors" in globals_:
        assert_same_vectors(globals_["async_vectors"], reference)
    if "query_vector" in globals_:  # the recipes' query is their first text
        assert_same_vectors([globals_["query_vector"]], reference[:1])
    if "hits" in globals_:  # chromadb: "a friendly hello" is nearest to "hello, world!"
        assert globals_["hits"]["ids"] == [["greeting"]]


@pytest.mark.parametrize("target_name", ["fastapi", "lambda-url-key"])
@pytest.mark.parametrize("recipe", KEY_RECIPES)
def test_given_a_key_recipe_then_it_runs_unchanged_and_matches_post_root(
        recipe, target_name, targets, tiktoken_dir, monkeypatch, capsys):
    target = targets[target_name]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    check_recipe(run_python_recipe(recipe), target)
    assert "384" in capsys.readouterr().out


@pytest.mark.parametrize("recipe", IAM_RECIPES)
def test_given_an_aws_iam_function_url_then_the_sigv4_recipe_matches_post_root(
        recipe, targets, tiktoken_dir, monkeypatch):
    target = targets["lambda-url-iam"]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    rejected_before = len(target.proxy.rejections)
    check_recipe(run_python_recipe(recipe), target)
    assert target.proxy.rejections[rejected_before:] == []


@pytest.mark.parametrize("target_name,recipe", [
    ("fastapi", "embed_openai_node.mjs"),
    ("lambda-url-key", "embed_openai_node.mjs"),
    ("lambda-url-iam", "embed_openai_node_iam.mjs"),
])
def test_given_node_openai_then_the_recipe_matches_post_root(target_name, recipe, targets, tiktoken_dir,
                                                             monkeypatch, tmp_path):
    target = targets[target_name]
    env = recipe_environment(monkeypatch, target, tiktoken_dir)
    rejected_before = len(target.proxy.rejections) if target.proxy else 0
    result = run_node_recipe(recipe, env, tmp_path)
    assert_same_vectors(result["vectors"], target.seed_vectors(result["texts"]))
    assert not target.proxy or target.proxy.rejections[rejected_before:] == []


def test_given_haystack_and_one_empty_document_then_the_whole_batch_comes_back_unembedded(
        targets, tiktoken_dir, monkeypatch):
    """The pitfall the Haystack recipe guards against, shown for real."""
    from haystack import Document
    from haystack.components.embedders import OpenAIDocumentEmbedder
    from haystack.utils import Secret

    target = targets["fastapi"]
    recipe_environment(monkeypatch, target, tiktoken_dir)
    embedder = OpenAIDocumentEmbedder(api_base_url=f"{target.url}/v1", model=MODEL_ID,
                                      api_key=Secret.from_token(target.api_key))
    documents = embedder.run(documents=[Document(content="hello"), Document(content="")])["documents"]
    assert [document.embedding for document in documents] == [None, None]


DOCS = REPO / "docs"
RECIPES_AT_LEAST = 15  # the recipes when they moved from the README into docs/: never fewer


def test_given_every_recipe_then_a_docs_page_shows_its_exact_code():
    """A recipe that is shown is a recipe that is tested: every file in docs/recipes/ appears, character
    for character, in a page of the site (the frameworks in docs/frameworks.md, the vector-store recipe in
    docs/corpus.md), and those pages show no Python or JavaScript block that is not a tested file."""
    pages = {page.relative_to(DOCS).as_posix(): page.read_text() for page in DOCS.rglob("*.md")}
    recipes = {path.name: path.read_text().strip() for path in RECIPES.iterdir() if path.is_file()}
    assert len(recipes) >= RECIPES_AT_LEAST
    shown_in = {name: sorted(page for page, text in pages.items() if code in text)
                for name, code in recipes.items()}
    expected = {name: ["corpus.md" if name == "apply_changes_lancedb.py" else "frameworks.md"]
                for name in recipes}
    assert shown_in == expected
    for page in ("frameworks.md", "corpus.md"):
        blocks = re.findall(r"```(?:python|javascript)\n(.*?)```", pages[page], flags=re.S)
        assert blocks and [block for block in blocks if block.strip() not in recipes.values()] == [], page


# --- the client package end to end: SigV4 through a verifying Function URL, and API keys ----

def test_given_a_wrong_secret_key_then_openai_and_langchain_get_403(targets):
    target = targets["lambda-url-iam"]
    client = openai_client(target.url, region=REGION, credentials=aws_credentials("x"), max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model=MODEL_ID, input=["hello"])
    assert target.proxy.rejections[-1].startswith("The request signature we calculated does not match")
    embeddings = langchain_embeddings(target.url, region=REGION, credentials=aws_credentials("x"),
                                      max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        embeddings.embed_documents(["hello"])


def test_given_no_signature_or_an_api_key_then_the_iam_function_url_refuses_with_403(targets):
    target = targets["lambda-url-iam"]
    for api_key in ("unused", target.api_key or "sk-anything"):
        client = openai.OpenAI(base_url=f"{target.url}/v1", api_key=api_key, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):
            client.embeddings.create(model=MODEL_ID, input=["hello"])
        assert target.proxy.rejections[-1] == "Missing Authentication Token"


def test_given_a_stale_signature_then_403_signature_expired(targets):
    target = targets["lambda-url-iam"]
    stale = SigV4Auth(region=REGION, credentials=aws_credentials(),
                      clock=lambda: dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=6))
    response = httpx.post(f"{target.url}/", json={"input": "hello"}, auth=stale, timeout=60)
    assert response.status_code == 403
    assert response.json() == {"Message": "Signature expired."}


def test_given_sigv4_then_openai_sync_and_async_and_langchain_reach_the_handler(targets):
    target = targets["lambda-url-iam"]
    reference = target.seed_vectors(["hello, world!"])
    client = openai_client(target.url, region=REGION, credentials=aws_credentials())
    assert_same_vectors([client.embeddings.create(model=MODEL_ID, input=["hello, world!"]).data[0].embedding],
                        reference)
    assert [model.id for model in client.models.list()] == [MODEL_ID]

    async def async_call():
        from embedding_client import async_openai_client

        async_client = async_openai_client(target.url, region=REGION, credentials=aws_credentials())
        result = await async_client.embeddings.create(model=MODEL_ID, input=["hello, world!"])
        return result.data[0].embedding

    assert_same_vectors([asyncio.run(async_call())], reference)
    embeddings = langchain_embeddings(target.url, region=REGION, credentials=aws_credentials())
    assert_same_vectors([embeddings.embed_query("hello, world!")], reference)


def test_given_an_api_key_then_openai_and_langchain_reach_the_none_function_url(targets):
    target = targets["lambda-url-key"]
    reference = target.seed_vectors(["hello, world!"])
    client = openai_client(target.url, api_key=target.api_key)
    assert_same_vectors([client.embeddings.create(model=MODEL_ID, input=["hello, world!"]).data[0].embedding],
                        reference)
    embeddings = langchain_embeddings(target.url, api_key=target.api_key)
    assert_same_vectors([embeddings.embed_query("hello, world!")], reference)


def test_given_a_tampered_body_or_header_then_the_verifier_rejects_it():
    """The emulator's check itself can fail: it is what makes the 403 tests meaningful."""
    credentials = aws_credentials()
    now = dt.datetime.now(dt.timezone.utc)
    request = SigV4Auth(region=REGION, credentials=credentials, clock=lambda: now).sign(
        httpx.Request("POST", "http://127.0.0.1:9/v1/embeddings?x=1", json={"input": "hello"}))
    headers = list(request.headers.items())
    target, body = "/v1/embeddings?x=1", request.content

    def verdict(method="POST", target=target, headers=headers, body=body, region=REGION):
        return sigv4_rejection(method, target, headers, body, credentials, region, now)

    assert verdict() is None
    assert "x-amz-content-sha256" in verdict(body=body + b" ")
    mismatch = "The request signature we calculated does not match"
    assert verdict(method="PUT").startswith(mismatch)
    assert verdict(target="/v1/embeddings?x=2").startswith(mismatch)
    retyped = [(k, "text/plain" if k == "content-type" else v) for k, v in headers]
    assert verdict(headers=retyped).startswith(mismatch)
    tokenless = [(k, v) for k, v in headers if k != "x-amz-security-token"]
    assert verdict(headers=tokenless).startswith("The security token")
    assert verdict(region="us-east-1").startswith("Credential should")


def test_given_llamaindex_openai_embedding_then_our_model_name_is_refused_so_the_recipe_uses_openai_like():
    """The LlamaIndex pitfall the README names: `OpenAIEmbedding` accepts only OpenAI's model names."""
    from llama_index.embeddings.openai import OpenAIEmbedding

    with pytest.raises(ValueError, match="not a valid OpenAIEmbeddingModelType"):
        OpenAIEmbedding(model=MODEL_ID, api_base="http://127.0.0.1:9/v1", api_key="unused")
