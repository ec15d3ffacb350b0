"""embed-corpus --chunk-tokens end to end, and the API's chunking extension and `truncate`.

Long documents (Python docstrings, 2,000+ tokens each) are chunked and embedded on every target:
the local model, uvicorn over HTTP and the Lambda handler under the real RIE. Each chunk's vector
must equal `POST /` of its span's text; an edit of one sentence re-run with --reuse embeds only
the touched chunks and --changes says exactly which (id, chunk) keys to upsert and delete.
"""

from __future__ import annotations

import json
import random
import sys

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import REPO
from corpus_helpers import assert_clear_error, cli_target, run_cli, seed_vectors, write_jsonl

from corpus import _docstrings  # noqa: E402

SIZE = "120"


def long_documents(count: int, seed: int = 7) -> list[str]:
    """Docstrings joined into documents of 2,000+ tokens, paragraphs kept."""
    docs = _docstrings()
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        start = rng.randrange(len(docs) - 40)
        text, at = "", start
        while len(text) < 9000:
            text += ("\n\n" if text else "") + docs[at]
            at += 1
        out.append(text)
    return out


@pytest.fixture(scope="module")
def documents():
    return long_documents(3)


def read_chunks(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("target", ["local", "http", "lambda"])
def test_every_chunk_equals_post_root_of_its_span_on_every_target(tmp_path, documents, http_url, target,
                                                                  tmp_path_factory):
    source = write_jsonl(tmp_path / "docs.jsonl", documents)
    with cli_target(target, http_url, tmp_path_factory.mktemp("chunk-target")) as (flags, env):
        result = run_cli(source, "--output", tmp_path / "out.parquet", "--chunk-tokens", SIZE, "--chunk-overlap",
                         "12", "--with-text", "--report-json", tmp_path / "r.json", *flags, env=env)
    assert result.returncode == 0, result.stderr
    rows = read_chunks(tmp_path / "out.parquet")
    ids = [row["id"] for row in rows]
    assert ids == sorted(ids, key=lambda i: int(i.split("-")[1]))  # input order, then chunk order
    for doc, text in enumerate(documents):
        mine = [row for row in rows if row["id"] == f"doc-{doc}"]
        assert [row["chunk"] for row in mine] == list(range(len(mine))) and len(mine) > 10
        for row in mine:
            assert row["text"] == text[row["start"] : row["end"]]
            assert row["tokens"] <= int(SIZE) + 2  # the window, and [CLS] [SEP]
    vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
    assert np.array_equal(vectors, seed_vectors(http_url, [row["text"] for row in rows]))
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["documents"] == 3 and report["documents_split"] == 3 and report["chunks"] == len(rows)
    assert report["input_tokens"] >= 3 * 2000 and report["chunk_tokens_total"] >= report["input_tokens"]
    assert report["truncated"] == (None if target == "lambda" else 0)  # a direct invocation has no header
    assert "100.0% embedded, none truncated" in result.stdout


def test_an_edited_sentence_reembeds_only_the_touched_chunks_and_changes_are_exact(tmp_path, documents):
    source = write_jsonl(tmp_path / "docs.jsonl", documents)
    old = tmp_path / "old.parquet"
    assert run_cli(source, "--output", old, "--chunk-tokens", SIZE).returncode == 0
    edited = list(documents)
    text = edited[1]
    at = text.find(". ", len(text) // 2) + 2
    end = text.find(". ", at)
    edited[1] = text[:at] + "One sentence rewritten by an editor this week" + text[end:]
    edited = edited[:2] + ["A short new document."]  # doc-2 is gone, doc-2 is now a new short text
    source = write_jsonl(tmp_path / "new.jsonl", edited)
    new, changes = tmp_path / "new.parquet", tmp_path / "changes.parquet"
    result = run_cli(source, "--output", new, "--chunk-tokens", SIZE, "--reuse", old, "--changes", changes,
                     "--report-json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    old_rows, new_rows = read_chunks(old), read_chunks(new)
    old_texts = {row["text_sha256"] for row in old_rows}
    touched = [row for row in new_rows if row["text_sha256"] not in old_texts]
    assert report["rows_embedded"] == len(touched) and 2 <= len(touched) <= 4  # doc-2's text + <= 3 in doc-1
    assert report["rows_reused"] == len(new_rows) - len(touched)
    by_key = {(row["id"], row["chunk"]): row["text_sha256"] for row in old_rows}
    expected_upserts = [(row["id"], row["chunk"]) for row in new_rows
                        if by_key.get((row["id"], row["chunk"])) != row["text_sha256"]]
    new_keys = {(row["id"], row["chunk"]) for row in new_rows}
    expected_deletes = [key for key in by_key if key not in new_keys]
    got = pq.read_table(changes).to_pylist()
    assert [(r["id"], r["chunk"]) for r in got if r["op"] == "upsert"] == expected_upserts
    assert [(r["id"], r["chunk"]) for r in got if r["op"] == "delete"] == expected_deletes
    old_doc2 = [key for key in by_key if key[0] == "doc-2"]
    assert len(old_doc2) > 5 and set(old_doc2[1:]) <= set(expected_deletes)  # the long doc-2 became one chunk
    assert ("doc-2", 0) in expected_upserts
    assert all(key[0] != "doc-0" for key in expected_upserts)  # an untouched document: nothing to do


def test_chunking_flags_out_of_range_or_without_a_tokenizer_are_one_sentence(tmp_path, documents, http_url):
    source = write_jsonl(tmp_path / "docs.jsonl", documents[:1])
    output = tmp_path / "out.parquet"
    assert_clear_error(run_cli(source, "--output", output, "--chunk-tokens", "7"), 2, "between 8 and 254")
    assert_clear_error(run_cli(source, "--output", output, "--chunk-tokens", "255"), 2, "between 8 and 254")
    assert_clear_error(run_cli(source, "--output", output, "--chunk-tokens", "100", "--chunk-overlap", "50"), 2,
                       "less than half")
    assert not list(tmp_path.glob("out.parquet*"))


def test_truncate_false_is_a_400_naming_the_input_on_both_routes_and_both_targets(http_url, invoke, documents):
    long, short = documents[0], "hello, world!"
    for body in ({"input": [short, long], "truncate": False},
                 {"input": [short, long], "truncate": False, "model": "sentence-transformers/all-MiniLM-L6-v2"}):
        for path in ("/", "/v1/embeddings"):
            response = httpx.post(f"{http_url}{path}", json=body, timeout=60)
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "input_too_long" and error["param"] == "input"
            assert "input[1] has" in error["message"] and "at most 256" in error["message"]
            assert "/v1/chunks" in error["message"]
    ok = httpx.post(f"{http_url}/", json={"input": short, "truncate": False}, timeout=60)
    assert ok.status_code == 200 and ok.json()["embedding"]
    cut = httpx.post(f"{http_url}/", json={"input": long}, timeout=60)  # the default still truncates
    assert cut.status_code == 200 and cut.headers["x-truncated-inputs"] == "1"
    direct = invoke({"input": [long], "truncate": False})
    assert direct["error"]["status"] == 400 and direct["error"]["code"] == "input_too_long"
    direct = invoke({"input": [long], "truncate": False, "encoding_format": "base64"})
    assert direct["error"]["status"] == 400 and "input[0] has" in direct["error"]["message"]
    assert "embedding" in invoke({"input": short, "truncate": False})


def test_the_chunk_route_on_both_targets_agrees_with_the_chunker(http_url, invoke, documents):
    body = {"input": documents[:2], "chunk_tokens": 100, "chunk_overlap": 10}
    served = httpx.post(f"{http_url}/v1/chunks", json=body, timeout=60).json()
    direct = invoke(body)
    assert served["data"] == direct["data"] and served["window"] == 254 and served["chunk_tokens"] == 100
    for item, text in zip(served["data"], documents):
        assert item["chunks"][0]["start"] == 0 and item["chunks"][-1]["end"] == len(text.rstrip())
        assert all(chunk["tokens"] <= 100 for chunk in item["chunks"])
    health = httpx.get(f"{http_url}/health", timeout=30).json()
    assert health["chunk_window"] == {"default": 254, "query": 254, "document": 254}
    bad = httpx.post(f"{http_url}/v1/chunks", json={"input": "x", "chunk_tokens": 300}, timeout=30)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "chunk_tokens"
    bad = invoke({"input": "x", "chunk_tokens": 50, "chunk_overlap": 25})
    assert bad["error"]["status"] == 400 and bad["error"]["param"] == "chunk_overlap"


def test_another_openai_server_chunks_only_with_a_local_tokenizer(tmp_path, documents, http_url):
    """Our server behind a proxy that hides /health and /v1/chunks looks like any other server."""
    from fault_proxy import FaultProxy

    proxy = FaultProxy(http_url, [], matches=lambda method, path, body: False, hidden=("/health", "/v1/chunks"))
    try:
        source = write_jsonl(tmp_path / "docs.jsonl", documents[:1])
        output = tmp_path / "out.parquet"
        refused = run_cli(source, "--output", output, "--target", proxy.url, "--chunk-tokens", SIZE)
        assert_clear_error(refused, 2, "cannot chunk", "--tokenizer")
        from conftest import MODEL_DIR

        result = run_cli(source, "--output", output, "--target", proxy.url, "--chunk-tokens", SIZE,
                         "--tokenizer", MODEL_DIR, "--with-text")
        assert result.returncode == 0, result.stderr
    finally:
        proxy.stop()
    rows = read_chunks(output)
    local = tmp_path / "local.parquet"
    assert run_cli(source, "--output", local, "--chunk-tokens", SIZE, "--with-text").returncode == 0
    assert [(r["start"], r["end"]) for r in rows] == [(r["start"], r["end"]) for r in read_chunks(local)]


@pytest.fixture(scope="module")
def manual():
    """One document past MAX_INPUT_CHARS (100,000): a long manual, as users have them."""
    docs, text, at = _docstrings(), "", 0
    while len(text) < 130_000:
        text += ("\n\n" if text else "") + docs[at]
        at += 1
    return text


@pytest.mark.parametrize("target", ["local", "http", "lambda"])
def test_a_document_past_the_embedding_limit_is_chunked_whole_on_every_target(tmp_path, manual, http_url, target,
                                                                              tmp_path_factory):
    source = write_jsonl(tmp_path / "manual.jsonl", [manual])
    with cli_target(target, http_url, tmp_path_factory.mktemp("long-target")) as (flags, env):
        refused = run_cli(source, "--output", tmp_path / "refused.parquet", *flags, env=env)
        result = run_cli(source, "--output", tmp_path / "out.parquet", "--chunk-tokens", "128", "--with-text",
                         *flags, env=env)
    assert_clear_error(refused, 2, "MAX_INPUT_CHARS", "--chunk-tokens")
    assert result.returncode == 0, result.stderr
    rows = read_chunks(tmp_path / "out.parquet")
    assert len(rows) > 200 and [row["chunk"] for row in rows] == list(range(len(rows)))
    assert all(row["text"] == manual[row["start"]:row["end"]] for row in rows)
    assert rows[-1]["end"] == len(manual.rstrip())  # read to the end, nothing dropped
    whole = httpx.post(f"{http_url}/v1/chunks", json={"input": manual, "chunk_tokens": 128}, timeout=120)
    assert whole.status_code == 200, whole.text
    assert [(c["start"], c["end"]) for c in whole.json()["data"][0]["chunks"]] == [(r["start"], r["end"]) for r in rows]
    sample = rows[:: max(1, len(rows) // 20)]
    vectors = np.asarray([row["embedding"] for row in sample], dtype=np.float32)
    assert np.array_equal(vectors, seed_vectors(http_url, [row["text"] for row in sample]))
