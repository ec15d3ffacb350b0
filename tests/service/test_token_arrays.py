"""Token-id arrays: decoded like tiktoken itself, embedded exactly like the text they encode.

tiktoken (loaded offline from the same rank files, tests/offline_tiktoken.py) is the
reference for decoding; the real server and the real RIE give identical vectors for the ids
and for the text.
"""

from __future__ import annotations

import json

import numpy as np
import openai
import pytest

from conftest import MODEL_DIR
from offline_tiktoken import ENCODINGS_DIR, get_encoding
from embedding_service.settings import load_settings
from test_lambda_rie import function_url_event
from embedding_service.token_arrays import ENCODINGS, TokenArrayDecoder, UnknownTokenId

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
TEXTS = [
    "hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café, Ærøskøbing, 日本語のテキスト, emoji 👩‍👩‍👧‍👦 and 🏳️‍🌈",
    "tabs\tand\nnewlines\r\n  and   spaces",
    "code: def f(x):\n    return x ** 2  # <|endoftext|> as plain text",
    "word " * 400,  # longer than the model reads: truncated the same way as the text
]


@pytest.fixture(scope="module", params=sorted(ENCODINGS))
def encodings(request):
    return request.param, get_encoding(request.param), TokenArrayDecoder(request.param, ENCODINGS_DIR)


def test_given_any_text_then_the_decoder_gives_back_what_tiktoken_encoded(encodings):
    _, tiktoken_encoding, decoder = encodings
    for text in TEXTS:
        ids = tiktoken_encoding.encode(text, disallowed_special=())
        assert decoder.decode(ids) == tiktoken_encoding.decode(ids) == text


def test_given_special_tokens_then_decoded_as_their_text_like_tiktoken(encodings):
    name, tiktoken_encoding, decoder = encodings
    for token_id, text in ENCODINGS[name].special_tokens.items():
        assert tiktoken_encoding.decode([token_id]) == text == decoder.decode([token_id])
    ids = tiktoken_encoding.encode("a<|endoftext|>b", allowed_special="all")
    assert decoder.decode(ids) == "a<|endoftext|>b"


def test_given_an_array_cut_inside_a_character_then_replacement_characters_as_tiktoken_does(encodings):
    _, tiktoken_encoding, decoder = encodings
    ids = tiktoken_encoding.encode("日本語 👩‍👩‍👧‍👦")
    for end in range(1, len(ids)):
        assert decoder.decode(ids[:end]) == tiktoken_encoding.decode(ids[:end])
        assert decoder.decode(ids[end:]) == tiktoken_encoding.decode(ids[end:])


def test_given_every_id_then_the_decoder_and_tiktoken_agree_on_the_bytes(encodings):
    _, tiktoken_encoding, decoder = encodings
    assert len(decoder.table) == tiktoken_encoding.n_vocab  # max id + 1
    for token_id, token in enumerate(decoder.table):
        try:
            expected = tiktoken_encoding.decode_single_token_bytes(token_id)
        except KeyError:  # an unassigned id (cl100k_base has gaps among its special tokens)
            expected = None
        assert token == expected, token_id


@pytest.mark.parametrize("name,bad", [("cl100k_base", [100256, 100261, 100277, -1, 10**12]),
                                      ("o200k_base", [199998, 200000, 200019, -5])])
def test_given_an_id_outside_the_vocabulary_then_unknown_token_id(name, bad):
    decoder = TokenArrayDecoder(name, ENCODINGS_DIR)
    for token_id in bad:
        with pytest.raises(UnknownTokenId) as raised:
            decoder.decode([15339, token_id])
        assert raised.value.token_id == token_id and raised.value.position == 1


def vectors(response) -> np.ndarray:
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
def test_given_token_arrays_then_the_same_vectors_as_the_text(http, path):
    encoding = get_encoding("cl100k_base")
    ids = [encoding.encode(text, disallowed_special=()) for text in TEXTS]
    from_text = http.post(path, json={"input": TEXTS, "model": MODEL_ID})
    from_ids = http.post(path, json={"input": ids, "model": MODEL_ID})
    assert from_ids.status_code == 200, from_ids.text
    assert np.array_equal(vectors(from_ids), vectors(from_text))
    assert from_ids.json()["usage"] == from_text.json()["usage"]  # our model's tokens, not tiktoken's
    one = http.post(path, json={"input": ids[0]})  # a single flat array is one text
    assert np.array_equal(vectors(one), vectors(http.post(path, json={"input": TEXTS[0]})))


def test_given_the_openai_client_with_token_arrays_then_vectors_match_the_text(http_url):
    client = openai.OpenAI(base_url=f"{http_url}/v1", api_key="unused", max_retries=0)
    encoding = get_encoding("cl100k_base")
    texts = TEXTS[:3]
    ids = [encoding.encode(t, disallowed_special=()) for t in texts]
    by_ids = client.embeddings.create(model=MODEL_ID, input=ids)
    by_text = client.embeddings.create(model=MODEL_ID, input=texts)
    assert [d.embedding for d in by_ids.data] == [d.embedding for d in by_text.data]


def test_given_an_id_outside_the_vocabulary_then_a_400_that_says_which(http):
    response = http.post("/v1/embeddings", json={"input": [[15339], [15339, 100256]]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "input" and error["code"] == "invalid_value"
    assert error["message"].startswith("input[1]: token id 100256 (position 1) is not in cl100k_base's vocabulary")


def test_given_token_arrays_on_the_seed_route_then_a_400_pointing_at_v1(http):
    response = http.post("/", json={"input": [15339, 11]})
    assert response.status_code == 400
    assert "token-id arrays are accepted on /v1/embeddings only" in response.json()["error"]["message"]


def test_given_a_function_url_event_with_token_arrays_then_the_same_vectors_as_the_text(invoke):
    encoding = get_encoding("cl100k_base")

    def embed(payload) -> np.ndarray:
        result = invoke(function_url_event(path="/v1/embeddings", body=json.dumps(payload).encode()))
        assert result["statusCode"] == 200, result
        return np.array([d["embedding"] for d in json.loads(result["body"])["data"]], dtype=np.float32)

    ids = [encoding.encode(t, disallowed_special=()) for t in TEXTS]
    assert np.array_equal(embed({"input": ids}), embed({"input": TEXTS}))


@pytest.fixture(scope="module")
def api_for(onnx_embedder):
    from embedding_service.api import EmbeddingAPI

    def make(**env: str) -> EmbeddingAPI:
        return EmbeddingAPI(load_settings({"MODEL_DIR": str(MODEL_DIR), **env}), onnx_embedder)

    return make


def test_given_o200k_base_configured_then_o200k_ids_decode(api_for):
    api = api_for(TOKEN_ARRAY_ENCODING="o200k_base")
    ids = get_encoding("o200k_base").encode(TEXTS[2], disallowed_special=())
    by_ids = api.handle("openai_embeddings", json.dumps({"input": [ids]}).encode(), "application/json")
    by_text = api.handle("openai_embeddings", json.dumps({"input": [TEXTS[2]]}).encode(), "application/json")
    assert by_ids.status == 200 and by_ids.body == by_text.body


def test_given_token_arrays_disabled_then_a_400_that_says_how_to_send_text(api_for):
    reply = api_for(TOKEN_ARRAY_ENCODING="none").handle(
        "openai_embeddings", b'{"input": [[15339, 11]]}', "application/json"
    )
    assert reply.status == 400
    message = json.loads(reply.body)["error"]["message"]
    assert "TOKEN_ARRAY_ENCODING=none" in message and "check_embedding_ctx_length=False" in message


def test_given_a_missing_rank_file_then_start_up_fails_with_what_to_run(tmp_path):
    from embedding_service.api import EmbeddingAPI
    from embedding_service.token_arrays import EncodingFilesError

    with pytest.raises(EncodingFilesError, match="run `make setup`"):
        EmbeddingAPI(load_settings({"MODEL_DIR": str(MODEL_DIR), "ENCODINGS_DIR": str(tmp_path)}))
