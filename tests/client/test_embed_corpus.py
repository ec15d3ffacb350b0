"""embed-corpus end to end: every target against real servers, every format, S3 on moto.

The command runs as users run it (the installed `embed-corpus`, a fresh process); its Parquet
output is compared with what the service's own `POST /` returns for the same texts, bit for bit.
"""

from __future__ import annotations


import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import RieServer
from corpus_helpers import (
    AWS_TEST_ENV,
    EMBED_CORPUS,
    corpus_texts,
    embed_texts,
    read_output,
    run_cli,
    seed_vectors,
    token_counts,
    write_csv,
    write_jsonl,
    write_parquet,
    write_text,
)

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def texts():
    return corpus_texts(60)


@pytest.fixture(scope="module")
def expected(http_url, texts):
    """The service's own answers: POST / vectors, per-text token counts, texts truncated."""
    return (seed_vectors(http_url, texts), *token_counts(http_url, texts))


@pytest.fixture(scope="module")
def rie_fleet(tmp_path_factory):
    """Two real Runtime Interface Emulators, each with its own runtime API address."""
    servers = [RieServer(tmp_path_factory.mktemp("fleet") / f"rie-{i}.log") for i in range(2)]
    yield servers
    for server in servers:
        server.stop()


def test_the_command_is_installed_with_the_contracted_flags():
    assert EMBED_CORPUS.is_file()
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in (
        "--output",
        "--target",
        "--endpoint-url",
        "--region",
        "--text-field",
        "--id-field",
        "--concurrency",
        "--batch-size",
        "--resume",
        "--api-key",
        "--on-error",
        "--input-type",
        "--embedding-type",
    ):
        assert flag in result.stdout, flag


def test_given_jsonl_when_local_then_post_root_vectors_bit_for_bit_in_input_order(tmp_path, texts, expected):
    run = embed_texts(tmp_path, texts, "--shard-size 16 --batch-size 8")
    assert run.process.returncode == 0, run.process.stderr
    ids, vectors, tokens, metadata = read_output(run.output)
    assert ids == [f"doc-{i}" for i in range(len(texts))]
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 384)
    assert np.array_equal(vectors, expected[0])
    assert tokens == expected[1]
    assert metadata["model"] == MODEL_ID and metadata["dimension"] == "384"
    schema = pq.read_schema(run.output)
    assert str(schema.field("embedding").type) == "fixed_size_list<element: float>[384]"
    assert run.report["texts"] == len(texts) and run.report["tokens"] == sum(expected[1])
    assert run.report["truncated"] == expected[2] > 0
    assert f"{len(texts)} texts" in run.process.stdout and "texts/s" in run.process.stdout
    assert not (tmp_path / "out.parquet.parts").exists()  # committed shards are gone once assembled


@pytest.mark.parametrize("fmt", ["csv", "parquet", "text", "jsonl.gz"])
def test_given_any_input_format_then_the_same_vectors(tmp_path, texts, expected, fmt):
    flat = [text.replace("\n", " ").replace("\t", " ") for text in texts]
    ids = [f"row-{i}" for i in range(len(flat))]
    if fmt == "csv":
        source = write_csv(tmp_path / "corpus.csv", flat, ids)
    elif fmt == "parquet":
        source = write_parquet(tmp_path / "corpus.parquet", flat, ids)
    elif fmt == "text":
        source = write_text(tmp_path / "corpus.txt", flat)
    else:
        import gzip

        plain = write_jsonl(tmp_path / "plain.jsonl", flat, ids)
        source = tmp_path / "corpus.jsonl.gz"
        source.write_bytes(gzip.compress(plain.read_bytes()))
    output = tmp_path / "out.parquet"
    result = run_cli(source, "--output", output, "--shard-size", "25")
    assert result.returncode == 0, result.stderr
    got_ids, vectors, _, _ = read_output(output)
    assert got_ids == (list(range(1, len(flat) + 1)) if fmt == "text" else ids)
    reference = expected[0].copy()
    for index, (text, original) in enumerate(zip(flat, texts)):
        if text != original:  # the few texts whose whitespace this format can't carry
            reference[index] = read_single(tmp_path, text)
    assert np.array_equal(vectors, reference)


def read_single(tmp_path, text: str) -> np.ndarray:
    source = write_jsonl(tmp_path / "single.jsonl", [text])
    output = tmp_path / "single.parquet"
    assert run_cli(source, "--output", output, "--overwrite").returncode == 0
    return read_output(output)[1][0]


def test_given_integer_ids_then_an_int64_id_column(tmp_path, texts, expected):
    source = write_jsonl(tmp_path / "corpus.jsonl", texts[:10], ids=list(range(100, 110)))
    output = tmp_path / "out.parquet"
    assert run_cli(source, "--output", output).returncode == 0
    assert str(pq.read_schema(output).field("id").type) == "int64"
    assert read_output(output)[0] == list(range(100, 110))


def test_given_the_http_target_then_the_same_vectors_and_tokens(tmp_path, http_url, texts, expected):
    run = embed_texts(tmp_path, texts, f"--target {http_url} --batch-size 7 --concurrency 3")
    assert run.process.returncode == 0, run.process.stderr
    ids, vectors, tokens, metadata = read_output(run.output)
    assert np.array_equal(vectors, expected[0]) and tokens == expected[1]
    assert metadata["model"] == MODEL_ID
    assert run.report["requests"] == 9 and run.report["retries"] == 0  # 60 texts, 7 per request
    assert run.report["truncated"] == expected[2]


def test_given_a_fleet_of_two_ries_then_both_work_and_the_vectors_match(tmp_path, rie_fleet, texts, expected):
    urls = ",".join(server.url for server in rie_fleet)
    flags = f"--target lambda://function --endpoint-url {urls} --batch-size 10"
    run = embed_texts(tmp_path, texts, flags, env=AWS_TEST_ENV)
    assert run.process.returncode == 0, run.process.stderr
    ids, vectors, tokens, _ = read_output(run.output)
    assert np.array_equal(vectors, expected[0]) and tokens == expected[1]
    for server in rie_fleet:  # each emulator served some of the six requests, one at a time
        assert server.logs().count('"operation":"openai_embeddings"') >= 1, server.logs()[-2000:]
    bill = run.report["lambda"]
    assert bill["invocations"] == 6 and bill["gb_seconds"] > 0
    assert not bill["measured"] and bill["basis"].startswith("ESTIMATE")  # an emulator sends no REPORT lines
    assert bill["usd_per_million_texts"]["x86_64"] > bill["usd_per_million_texts"]["arm64"] > 0
    assert "ESTIMATE" in run.process.stdout and "per 1M texts" in run.process.stdout
    assert "standard" in run.process.stdout and "batch" in run.process.stdout


def test_given_s3_input_and_output_then_the_same_file_as_local(tmp_path, moto, texts, expected):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="corpus")
    source = write_jsonl(tmp_path / "corpus.jsonl", texts)
    s3.upload_file(str(source), "corpus", "in/corpus.jsonl")
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL_S3": moto.url}
    result = run_cli(
        "s3://corpus/in/corpus.jsonl",
        "--output",
        "s3://corpus/out/vectors.parquet",
        "--shard-size",
        "20",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    keys = {item["Key"] for item in s3.list_objects_v2(Bucket="corpus")["Contents"]}
    assert keys == {"in/corpus.jsonl", "out/vectors.parquet"}  # the committed shards are cleaned up
    s3.download_file("corpus", "out/vectors.parquet", str(tmp_path / "from-s3.parquet"))
    local = tmp_path / "local.parquet"
    assert run_cli(source, "--output", local, "--shard-size", "20").returncode == 0
    from_s3, from_local = read_output(tmp_path / "from-s3.parquet"), read_output(local)
    assert from_s3[0] == from_local[0] and from_s3[2] == from_local[2]
    assert np.array_equal(from_s3[1], expected[0]) and np.array_equal(from_local[1], expected[0])
    assert from_s3[3]["source"] == "s3://corpus/in/corpus.jsonl"


def test_given_embedding_type_and_input_type_then_what_the_service_returns_for_them(
    tmp_path, http, http_url, texts
):
    import base64

    source = write_jsonl(tmp_path / "corpus.jsonl", texts[:20])
    for target in ("local", http_url):
        output = tmp_path / f"binary-{'local' if target == 'local' else 'http'}.parquet"
        result = run_cli(
            source,
            "--output",
            output,
            "--target",
            target,
            "--embedding-type",
            "binary",
            "--input-type",
            "query",
        )
        assert result.returncode == 0, result.stderr
        schema = pq.read_schema(output)
        assert str(schema.field("embedding").type) == "fixed_size_list<element: int8>[48]"
        body = {
            "input": texts[:20],
            "input_type": "query",
            "embedding_types": ["binary"],
            "encoding_format": "base64",
        }
        data = http.post("/v1/embeddings", json=body).json()["data"]
        service = np.stack(
            [np.frombuffer(base64.b64decode(item["embeddings"]["binary"]), dtype=np.int8) for item in data]
        )
        assert np.array_equal(read_output(output)[1], service)
        assert read_output(output)[3]["embedding_type"] == "binary"
