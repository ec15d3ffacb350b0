"""The client's copy of the contract (embedding_client.contract) agrees with the service's
(embedding_service.contract) and with what a running server publishes in /health."""

from __future__ import annotations

from embedding_service import contract as service
from embedding_service.fingerprint import model_fingerprint
from embedding_service.settings import Limits, load_settings

from conftest import MODEL_DIR
from embedding_client import contract as client
from embedding_client.corpus.targets import Limits as ClientLimits

SHARED = ("LAMBDA_PAYLOAD_BYTES", "MAX_ITEMS", "MAX_ITEM_CHARS", "MAX_BODY_BYTES", "OUTPUT_TYPES",
          "CALIBRATED_TYPES", "INPUT_TYPES", "MIN_CHUNK_TOKENS", "CHUNK_PIECE_CHARS", "SHARD_EVENT_KEYS",
          "EMBEDDING", "RERANKER", "SPARSE", "MODEL_KINDS")


def constants(cls) -> dict:
    return {name: value for name, value in vars(cls).items() if name.isupper()}


def test_the_clients_values_equal_the_services():
    for name in SHARED:
        assert getattr(client, name) == getattr(service, name), name
    assert constants(client.ErrorCode) == constants(service.ErrorCode)
    assert constants(client.EventKey) == constants(service.EventKey)


def test_both_sides_default_limits_come_from_the_contract():
    assert (Limits().max_items, Limits().max_item_chars, Limits().max_body_bytes) == (
        service.MAX_ITEMS, service.MAX_ITEM_CHARS, service.MAX_BODY_BYTES)
    assert ClientLimits() == ClientLimits(client.MAX_ITEMS, client.MAX_ITEM_CHARS, client.MAX_BODY_BYTES)


def test_health_publishes_the_contract_the_client_knows(http):
    published = http.get("/health").json()["contract"]
    assert published == service.published()
    assert published["lambda_payload_bytes"] == client.LAMBDA_PAYLOAD_BYTES
    assert {name: tuple(spec) for name, spec in published["output_types"].items()} == client.OUTPUT_TYPES
    assert published["min_chunk_tokens"] == client.MIN_CHUNK_TOKENS
    assert published["chunk_piece_chars"] == client.CHUNK_PIECE_CHARS
    assert published["event_keys"] == list(client.SHARD_EVENT_KEYS)
    assert set(published["error_codes"].values()) == set(constants(client.ErrorCode).values())


def test_the_model_fingerprint_has_exactly_the_contracts_keys(onnx_embedder):
    settings = load_settings({"MODEL_DIR": str(MODEL_DIR)})
    assert tuple(model_fingerprint(settings, onnx_embedder)) == service.MODEL_FINGERPRINT_KEYS
