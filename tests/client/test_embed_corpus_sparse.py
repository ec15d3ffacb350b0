"""embed-corpus --sparse: a sparse (SPLADE) model's {indices, values} as Parquet list columns.

A tiny random-weight SparseEncoder (tiny_models.build_head) is prepared by scripts/prepare_model.py
and served by uvicorn beside the default embedder (MODELS=, so `--model` picks it) and alone by
the handler under the real Lambda RIE. Every target (local, HTTP, Lambda) must write what the
service's /v1/embeddings answers; `--reuse` must copy OLD's rows for unchanged texts and
`--chunk-tokens` must give each chunk its own sparse vector; a sparse run on a dense model, a dense
run on a sparse model and a quantised sparse run are refused in one sentence, writing nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import MODEL_DIR, RieServer, UvicornServer
from corpus_helpers import AWS_TEST_ENV, assert_clear_error, corpus_texts, run_cli, write_jsonl
from tiny_models import build_head

import prepare_model  # noqa: E402  (scripts/ is on pytest's pythonpath)

SPARSE_ID = "st-sparse"  # the served id is sentence-transformers/st-sparse; its last part names it
SHARD = "16"
EDITED = {3: " An edited sentence.", 20: " Another edit."}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The prepared sparse folder, uvicorn serving MODELS=embedder,sparse and the RIE the sparse one."""
    workdir = tmp_path_factory.mktemp("sparse-corpus")
    source = build_head("sparse", MODEL_DIR, workdir)
    prepare_model.main(["--model", str(source), "--output", str(workdir / "prepared")])
    prepared = workdir / "prepared" / source.name
    http = UvicornServer(workdir / "uvicorn.log", MODELS=f"{MODEL_DIR},{prepared}", MODEL_DIR="")
    try:
        rie = RieServer(workdir / "rie.log", MODEL_DIR=str(prepared))
    except Exception:
        http.stop()
        raise
    yield workdir, prepared, http.url, rie.url
    rie.stop()
    http.stop()


def target_flags(target: str, served) -> tuple[list[str], dict]:
    _, prepared, http_url, rie_url = served
    if target == "local":
        return [], {"MODEL_DIR": str(prepared)}
    if target == "http":
        return ["--target", http_url, "--model", SPARSE_ID], {}
    return ["--target", "lambda://function", "--endpoint-url", rie_url], AWS_TEST_ENV


def reference(http_url: str, texts: list[str]) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """What the service's /v1/embeddings answers for these texts on the sparse model."""
    response = httpx.post(f"{http_url}/v1/embeddings", timeout=120,
                          json={"input": texts, "model": SPARSE_ID, "token_counts": True})
    response.raise_for_status()
    data = response.json()["data"]
    return ([np.asarray(item["embedding"]["indices"], dtype=np.int32) for item in data],
            [np.asarray(item["embedding"]["values"], dtype=np.float32) for item in data],
            [item["tokens"] for item in data])


def assert_rows_equal(table, indices, values, rows=None) -> None:
    rows = range(table.num_rows) if rows is None else rows
    got_indices, got_values = table.column("indices").to_pylist(), table.column("values").to_pylist()
    for row, want_indices, want_values in zip(rows, indices, values):
        assert np.array_equal(np.asarray(got_indices[row], dtype=np.int32), want_indices), row
        assert np.asarray(got_values[row], dtype=np.float32).tobytes() == want_values.tobytes(), row


def run(tmp_path: Path, source: Path, name: str, *flags: str, env: dict | None = None):
    report = tmp_path / f"{name}.json"
    result = run_cli(source, "--output", tmp_path / f"{name}.parquet", "--report-json", report,
                     "--shard-size", SHARD, *flags, env=env)
    return result, json.loads(report.read_text()) if report.exists() else {}


@pytest.mark.parametrize("target", ["local", "http", "lambda"])
def test_given_a_sparse_model_then_each_target_writes_its_indices_and_values_and_reuse_copies_them(
    tmp_path, served, target
):
    flags, env = target_flags(target, served)
    texts = corpus_texts(40)
    old_source = write_jsonl(tmp_path / "old.jsonl", texts)
    result, report = run(tmp_path, old_source, "old", "--sparse", *flags, env=env)
    assert result.returncode == 0, result.stderr
    old = pq.read_table(tmp_path / "old.parquet")
    assert old.schema.names == ["id", "indices", "values", "tokens", "text_sha256"]
    assert old.schema.field("indices").type.value_type == pa.int32()
    assert old.schema.field("values").type.value_type == pa.float32()
    metadata = {k.decode(): v.decode() for k, v in old.schema.metadata.items()}
    assert json.loads(metadata["fingerprint_parts"])["embedding_type"] == "sparse"
    assert metadata["dimension"] == "30522" and report["embedding_type"] == "sparse"
    indices, values, tokens = reference(served[2], texts)
    assert_rows_equal(old, indices, values)
    assert old.column("tokens").to_pylist() == tokens
    assert all(len(row) > 0 for row in old.column("indices").to_pylist())

    # --reuse: unchanged texts keep OLD's rows, edited ones are embedded; NEW equals the service's.
    new_texts = [text + EDITED.get(index, "") for index, text in enumerate(texts)]
    source = write_jsonl(tmp_path / "new.jsonl", new_texts)
    result, report = run(tmp_path, source, "new", "--sparse", "--reuse", tmp_path / "old.parquet",
                         "--changes", tmp_path / "changes.parquet", *flags, env=env)
    assert result.returncode == 0, result.stderr
    assert report["rows_reused"] == len(texts) - len(EDITED) and report["rows_embedded"] == len(EDITED)
    new = pq.read_table(tmp_path / "new.parquet")
    assert_rows_equal(new, *reference(served[2], new_texts)[:2])
    changes = pq.read_table(tmp_path / "changes.parquet")
    assert changes.column("id").to_pylist() == [f"doc-{index}" for index in EDITED]
    assert {"indices", "values"} <= set(changes.schema.names) and "embedding" not in changes.schema.names
    assert_rows_equal(changes, *reference(served[2], [new_texts[index] for index in EDITED])[:2])


def test_given_chunk_tokens_then_every_chunk_gets_the_sparse_vector_of_its_text(tmp_path, served):
    texts = ["A long document about the history of sparse retrieval. " * 12, "A short one."]
    source = write_jsonl(tmp_path / "docs.jsonl", texts)
    flags, env = target_flags("http", served)
    result, _ = run(tmp_path, source, "chunks", "--sparse", "--chunk-tokens", "24", "--with-text", *flags, env=env)
    assert result.returncode == 0, result.stderr
    table = pq.read_table(tmp_path / "chunks.parquet")
    assert table.num_rows > len(texts) and "embedding" not in table.schema.names
    assert set(table.column("id").to_pylist()) == {"doc-0", "doc-1"}
    assert_rows_equal(table, *reference(served[2], table.column("text").to_pylist())[:2])


def test_given_a_kind_mismatch_then_one_sentence_and_nothing_written(tmp_path, served):
    source = write_jsonl(tmp_path / "corpus.jsonl", ["hello", "world"])
    output = tmp_path / "out.parquet"
    http_flags, _ = target_flags("http", served)
    cases = [
        (["--sparse"], {}, "--sparse needs a sparse (SPLADE) model"),  # the local embedder
        (["--target", served[2], "--model", "all-MiniLM-L6-v2", "--sparse"], {}, "is an embedding model"),
        (http_flags, {}, "is a sparse model"),  # a dense run on the sparse model
        (["--sparse", "--embedding-type", "int8", *http_flags], {}, "--embedding-type int8 quantises dense"),
    ]
    for flags, env, fragment in cases:
        result = run_cli(source, "--output", output, *flags, env=env)
        assert_clear_error(result, 2, fragment)
        assert not output.exists() and not list(tmp_path.glob("out.parquet*"))
    dense = tmp_path / "dense.parquet"
    assert run_cli(source, "--output", dense).returncode == 0
    result = run_cli(source, "--output", output, "--sparse", "--reuse", dense, *http_flags)
    assert_clear_error(result, 2, "holds 384-dimensional vectors")
    assert not output.exists()


def test_given_a_reranker_then_embed_corpus_refuses_it_with_or_without_sparse():
    """A reranker scores pairs: neither a dense nor a sparse run can use it (checked before any corpus work)."""
    from embedding_client.corpus.errors import InputError
    from embedding_client.corpus.targets import TargetInfo, check_model_kind

    info = TargetInfo(kind="http", model_id="cross-encoder/ms-marco-MiniLM-L6-v2", dimension=1, model_kind="reranker")
    for output in ("float", "sparse"):
        with pytest.raises(InputError, match="is a reranker: it scores"):
            check_model_kind(info, output)
    check_model_kind(TargetInfo(kind="http", model_id="m", dimension=3, model_kind="sparse"), "sparse")


def test_given_worker_mode_then_the_lambda_workers_write_the_same_sparse_rows(tmp_path, served, moto):
    """--io worker: the bulk handler (under the real RIE, S3 on moto) reads, embeds and writes each part."""
    from conftest import BULK_HANDLER

    s3 = moto.client("s3")
    bucket = f"sparse-{tmp_path.name.lower().replace('_', '-')[:40]}"
    s3.create_bucket(Bucket=bucket)
    texts = corpus_texts(30)
    s3.put_object(Bucket=bucket, Key="corpus/a.jsonl",
                  Body="".join(json.dumps({"id": f"doc-{i}", "text": t}) + "\n" for i, t in enumerate(texts)).encode())
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL_S3": moto.url}
    worker = RieServer(tmp_path / "bulk-rie.log", BULK_HANDLER, MODEL_DIR=str(served[1]), **env)
    try:
        result = run_cli(f"s3://{bucket}/corpus/", "--output", f"s3://{bucket}/sparse/", "--sparse", "--io", "worker",
                         "--target", "lambda://function", "--endpoint-url", worker.url, "--shard-size", "10", env=env)
    finally:
        worker.stop()
    assert result.returncode == 0, result.stderr
    assert "--io worker" in result.stderr
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="sparse/part-")["Contents"])
    table = pa.concat_tables([pq.read_table(pa.BufferReader(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
                              for key in keys])
    assert table.column("id").to_pylist() == [f"doc-{i}" for i in range(len(texts))]
    assert "embedding" not in table.schema.names
    assert_rows_equal(table, *reference(served[2], texts)[:2])
