"""Datasets in and out, and worker mode: the Lambda workers read and write S3 themselves.

Real components throughout: moto's S3 server on loopback, at least two real RIEs running the real
handler with AWS_ENDPOINT_URL_S3 pointing at moto, the real model, the installed CLI, and a real
byte-counting proxy between the client and everything it talks to.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import numpy as np
import orjson
import polars
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BULK_HANDLER, RieServer, service_env
from corpus_helpers import AWS_TEST_ENV, EMBED_CORPUS, assert_clear_error, run_cli, seed_vectors
from embedding_client.corpus.splits import byte_splits, lines_in_range, seek_offset
from fault_proxy import FaultProxy

WORDS = "river stone light paper engine garden signal harbor winter letter market orbit cedar lantern".split()


def passages(count: int, start: int = 0, words: int = 40) -> list[str]:
    return [
        f"Passage {i}: " + " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(words)) + "."
        for i in range(start, start + count)
    ]


def jsonl(texts: list[str], ids: list | None = None) -> bytes:
    if ids is None:
        return b"".join(orjson.dumps({"text": text}) + b"\n" for text in texts)
    return b"".join(orjson.dumps({"id": i, "text": text}) + b"\n" for i, text in zip(ids, texts))


# --- splits, by property ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=0, max_value=40), min_size=0, max_size=60),
    split_bytes=st.integers(min_value=1, max_value=200),
    final_newline=st.booleans(),
)
def test_byte_ranges_hold_every_line_exactly_once(lengths, split_bytes, final_newline):
    lines = [bytes([97 + i % 26]) * length + b"\n" for i, length in enumerate(lengths)]
    if lines and not final_newline:
        lines[-1] = lines[-1][:-1]
    data = b"".join(lines)
    expected, at = [], 0
    for line in lines:
        expected.append((at, line))
        at += len(line)
    expected = [item for item in expected if item[1]]
    got = []
    for split in byte_splits(0, len(data), split_bytes):
        stream = io.BufferedReader(io.BytesIO(data), buffer_size=7)
        stream.seek(seek_offset(split.start))
        got += list(lines_in_range(stream, split.start, split.end))
    assert got == expected


# --- local folder in, local dataset out -------------------------------------------------------


def test_local_folder_to_local_dataset_on_the_local_target(tmp_path, http_url):
    source = tmp_path / "corpus"
    (source / "more").mkdir(parents=True)
    texts = passages(45)
    (source / "a.jsonl").write_bytes(jsonl(texts[:20]))
    (source / "more" / "b.jsonl.gz").write_bytes(gzip.compress(jsonl(texts[20:35])))
    (source / "c.jsonl").write_bytes(jsonl(texts[35:]))
    (source / "_SUCCESS").write_text("")  # a marker from another tool: skipped
    output = tmp_path / "vectors"
    result = run_cli(f"{source}/", "--output", f"{output}/", "--shard-size", "16")
    assert result.returncode == 0, result.stderr
    order = texts[:20] + texts[35:] + texts[20:35]  # name order: a.jsonl, c.jsonl, more/b.jsonl.gz
    names = sorted(os.listdir(output))
    assert names == ["_SUCCESS", "part-000000.parquet", "part-000001.parquet", "part-000002.parquet"]
    success = json.loads((output / "_SUCCESS").read_text())
    assert success["rows"] == 45 and [part["rows"] for part in success["parts"]] == [16, 16, 13]
    table = pads.dataset(output, format="parquet").to_table()  # skips _SUCCESS by itself
    assert table.num_rows == 45
    ids = table.column("id").to_pylist()
    assert ids[0] == "a.jsonl:0" and ids[20] == "c.jsonl:0" and ids[-15].startswith("more/b.jsonl.gz:0")
    assert len(set(ids)) == 45
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors, seed_vectors(http_url, order))
    assert table.schema.metadata[b"fingerprint"].decode() == success["fingerprint"]
    rows = duckdb.sql(f"select count(*), count(distinct id) from read_parquet('{output}/*.parquet')").fetchall()
    assert rows == [(45, 45)]
    assert polars.scan_parquet(f"{output}/*.parquet").select("id").collect()["id"].to_list() == ids
    # the same command again is refused; --resume says it is complete; --overwrite replaces it
    again = run_cli(f"{source}/", "--output", f"{output}/", "--shard-size", "16")
    assert_clear_error(again, 2, "exists", "--overwrite")
    resumed = run_cli(f"{source}/", "--output", f"{output}/", "--shard-size", "16", "--resume")
    assert resumed.returncode == 0 and "complete already" in resumed.stderr


def test_dataset_bad_input_is_one_sentence_before_any_model_work(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clear_error(run_cli(f"{empty}/", "--output", f"{tmp_path}/out/"), 2, "holds no files")
    assert_clear_error(run_cli(f"{tmp_path}/nothing-*.jsonl", "--output", f"{tmp_path}/out/"), 2, "matches no files")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.jsonl").write_bytes(jsonl(["one"]))
    (mixed / "b.csv").write_text("text\ntwo\n")
    assert_clear_error(run_cli(f"{mixed}/", "--output", f"{tmp_path}/out/"), 2, "mixes formats", "a.jsonl is jsonl", "b.csv is csv")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00not gzip at all")
    assert_clear_error(run_cli(f"{broken}/", "--output", f"{tmp_path}/out/"), 2, "a.jsonl.gz", "can't be read")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "part-000000.parquet").write_bytes(b"another run's part")
    assert_clear_error(run_cli(f"{mixed}/a.jsonl", "--output", f"{taken}/"), 2, "already holds another run's parts", "--overwrite")


# --- S3, worker mode ----------------------------------------------------------------------------


@pytest.fixture()
def bucket(moto):
    s3 = moto.client("s3")
    name = f"corpus-{time.monotonic_ns()}"
    s3.create_bucket(Bucket=name)
    return s3, name


def s3_env(moto, s3_url: str | None = None, lambda_url: str | None = None) -> dict[str, str]:
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL_S3": s3_url or moto.url}
    if lambda_url:
        env["AWS_ENDPOINT_URL_LAMBDA"] = lambda_url
    return env


@pytest.fixture(scope="module")
def workers(moto, tmp_path_factory):
    """Two real RIEs running the bulk image's handler; their S3 is moto's."""
    folder = tmp_path_factory.mktemp("workers")
    servers = [RieServer(folder / f"rie-{n}.log", BULK_HANDLER, **s3_env(moto)) for n in range(2)]
    yield servers
    for server in servers:
        server.stop()


def put_corpus(s3, bucket: str, prefix: str, texts: list[str]) -> list[str]:
    """Three JSONL objects (one gzipped), rows in name order: returns the texts in that order."""
    thirds = [texts[: len(texts) // 3], texts[len(texts) // 3 : 2 * len(texts) // 3], texts[2 * len(texts) // 3 :]]
    s3.put_object(Bucket=bucket, Key=f"{prefix}a.jsonl", Body=jsonl(thirds[0]))
    s3.put_object(Bucket=bucket, Key=f"{prefix}b.jsonl.gz", Body=gzip.compress(jsonl(thirds[1])))
    s3.put_object(Bucket=bucket, Key=f"{prefix}c.jsonl", Body=jsonl(thirds[2]))
    return texts


def read_s3_dataset(s3, bucket: str, prefix: str, folder: Path) -> tuple[pa.Table, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]
    for item in listing:
        name = item["Key"][len(prefix) :]
        if "/" not in name:
            (folder / name).write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
    return pads.dataset(folder, format="parquet").to_table(), json.loads((folder / "_SUCCESS").read_text())


def worker_flags(urls: list[str]) -> list[str]:
    return ["--target", "lambda://function", "--endpoint-url", ",".join(urls)]


def test_worker_mode_every_row_once_with_the_service_vectors(tmp_path, moto, bucket, workers, http_url):
    s3, name = bucket
    texts = put_corpus(s3, name, "corpus/", passages(120))
    result = run_cli(
        f"s3://{name}/corpus/", "--output", f"s3://{name}/vectors/", *worker_flags([w.url for w in workers]),
        "--shard-size", "25", "--report-json", tmp_path / "report.json", env=s3_env(moto),
    )
    assert result.returncode == 0, result.stderr
    assert "--io worker" in result.stderr
    table, success = read_s3_dataset(s3, name, "vectors/", tmp_path / "out")
    order = texts[:40] + texts[40:80] + texts[80:]
    assert table.num_rows == 120 == success["rows"]
    assert sorted(table.column("id").to_pylist()) == sorted(set(table.column("id").to_pylist()))
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), seed_vectors(http_url, order))
    assert [p["name"] for p in success["parts"]] == [f"part-{i:06d}.parquet" for i in range(len(success["parts"]))]
    assert duckdb.sql(f"select count(distinct id) from read_parquet('{tmp_path}/out/*.parquet')").fetchall() == [(120,)]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["texts"] == 120 and report["requests"] == len(success["parts"])


def test_worker_mode_reads_a_parquet_dataset_by_row_group(tmp_path, moto, bucket, workers, http_url):
    s3, name = bucket
    texts = passages(60, words=12)
    for n, part in enumerate((texts[:30], texts[30:])):
        sink = io.BytesIO()
        pq.write_table(pa.table({"id": list(range(n * 30, n * 30 + 30)), "text": part}), sink, row_group_size=10)
        s3.put_object(Bucket=name, Key=f"pq/part-{n}.parquet", Body=sink.getvalue())
    result = run_cli(
        f"s3://{name}/pq/", "--output", f"s3://{name}/pqout/", *worker_flags([w.url for w in workers]),
        "--shard-size", "20", env=s3_env(moto),
    )
    assert result.returncode == 0, result.stderr
    table, success = read_s3_dataset(s3, name, "pqout/", tmp_path / "out")
    assert table.column("id").to_pylist() == list(range(60))
    assert len(success["parts"]) == 4  # 20 rows (two row groups) per part, files never mixed
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), seed_vectors(http_url, texts))


def test_the_client_moves_under_five_percent_of_the_bytes(tmp_path, moto, bucket, workers):
    """Every byte between the client and S3 or the workers crosses a counting proxy."""
    s3, name = bucket
    texts = put_corpus(s3, name, "big/", passages(900, words=60))
    corpus_bytes = sum(item["Size"] for item in s3.list_objects_v2(Bucket=name, Prefix="big/")["Contents"])
    s3_proxy = FaultProxy(moto.url, matches=lambda *_: False)
    lambda_proxies = [FaultProxy(worker.url, flavour="lambda", matches=lambda *_: False) for worker in workers]
    try:
        result = run_cli(
            f"s3://{name}/big/", "--output", f"s3://{name}/bigout/", *worker_flags([p.url for p in lambda_proxies]),
            "--shard-size", "100", env=s3_env(moto, s3_url=s3_proxy.url),
        )
        assert result.returncode == 0, result.stderr
        client_bytes = s3_proxy.bytes + sum(proxy.bytes for proxy in lambda_proxies)
    finally:
        for proxy in [s3_proxy, *lambda_proxies]:
            proxy.stop()
    vector_bytes = sum(item["Size"] for item in s3.list_objects_v2(Bucket=name, Prefix="bigout/part-")["Contents"])
    assert len(texts) == 900
    assert client_bytes < 0.05 * (corpus_bytes + vector_bytes), (client_bytes, corpus_bytes, vector_bytes)


def test_kill_minus_9_then_resume_and_a_throttled_worker(tmp_path, moto, bucket, workers):
    s3, name = bucket
    texts = put_corpus(s3, name, "kill/", passages(600))
    flags = ["--output", f"s3://{name}/killout/", "--shard-size", "10"]
    process = subprocess.Popen(
        [str(EMBED_CORPUS), f"s3://{name}/kill/", *flags, *worker_flags([w.url for w in workers])],
        env=service_env(**s3_env(moto)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )

    def parts() -> set[str]:
        listing = s3.list_objects_v2(Bucket=name, Prefix="killout/part-").get("Contents", [])
        return {item["Key"] for item in listing}

    deadline = time.monotonic() + 300
    while len(parts()) < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before it could be killed: give it more work"
    process.send_signal(signal.SIGKILL)
    process.wait()
    stable, last = 0, None
    while stable < 6:  # the invocations in flight finish and write their parts
        now = parts()
        stable = stable + 1 if now == last else 0
        last = now
        time.sleep(0.5)
    # a worker throttled, then cut off after doing its work, then failing: retried, rows once
    proxy = FaultProxy(workers[0].url, faults=["429", "drop-after-work", "500"], flavour="lambda")
    try:
        result = run_cli(
            f"s3://{name}/kill/", *flags, "--resume", *worker_flags([proxy.url, workers[1].url]),
            env=s3_env(moto),
        )
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and "retrying" in result.stderr
    table, success = read_s3_dataset(s3, name, "killout/", tmp_path / "out")
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 600
    assert sorted(parts()) == sorted(f"killout/{p['name']}" for p in success["parts"])  # no orphans


def test_without_grants_the_run_falls_back_and_a_forced_worker_is_refused(tmp_path, moto, bucket):
    s3, name = bucket
    texts = put_corpus(s3, name, "nogrant/", passages(12, words=8))
    denied = FaultProxy(moto.url, deny_all=True, flavour="s3")
    worker = RieServer(tmp_path / "rie.log", BULK_HANDLER, **s3_env(moto, s3_url=denied.url))
    try:
        flags = ["--output", f"s3://{name}/nogrant-out/", *worker_flags([worker.url])]
        forced = run_cli(f"s3://{name}/nogrant/", *flags, "--io", "worker", env=s3_env(moto))
        assert_clear_error(forced, 2, "--io worker", "lacks the S3 grants")
        fallback = run_cli(f"s3://{name}/nogrant/", *flags, env=s3_env(moto))
    finally:
        worker.stop()
        denied.stop()
    assert fallback.returncode == 0, fallback.stderr
    notes = [line for line in fallback.stderr.splitlines() if "--io client" in line]
    assert len(notes) == 1 and "lacks the S3 grants" in notes[0]
    table, success = read_s3_dataset(s3, name, "nogrant-out/", tmp_path / "out")
    assert table.num_rows == 12 == success["rows"]


def test_s3_bad_input(tmp_path, moto, bucket):
    s3, name = bucket
    env = s3_env(moto)
    out = ["--output", f"s3://{name}/o/"]
    assert_clear_error(run_cli(f"s3://{name}/nothing-here/", *out, env=env), 2, "holds no files")
    s3.put_object(Bucket=name, Key="mixed/a.jsonl", Body=jsonl(["one"]))
    s3.put_object(Bucket=name, Key="mixed/b.parquet", Body=b"PAR1")
    assert_clear_error(run_cli(f"s3://{name}/mixed/", *out, env=env), 2, "mixes formats")
    s3.put_object(Bucket=name, Key="bad/a.jsonl.gz", Body=b"\x1f\x8b\x08\x00not gzip")
    assert_clear_error(run_cli(f"s3://{name}/bad/", *out, env=env), 2, "a.jsonl.gz", "can't be read")
    s3.put_object(Bucket=name, Key="o/part-000000.parquet", Body=b"another run's")
    assert_clear_error(run_cli(f"s3://{name}/mixed/a.jsonl", *out, env=env), 2, "already holds another run's parts")


def test_resume_reuse_and_chunks_keep_working_in_dataset_mode_on_the_client_path(tmp_path):
    source = tmp_path / "corpus"
    source.mkdir()
    texts = passages(30)
    (source / "a.jsonl").write_bytes(jsonl(texts[:15], ids=list(range(15))))
    (source / "b.jsonl").write_bytes(jsonl(texts[15:], ids=list(range(15, 30))))
    first = run_cli(f"{source}/", "--output", f"{tmp_path}/v1/", "--shard-size", "8")
    assert first.returncode == 0, first.stderr
    edited = texts[:]
    edited[20] = "An edited passage about nothing in particular."
    (source / "b.jsonl").write_bytes(jsonl(edited[15:], ids=list(range(15, 30))))
    report = tmp_path / "report.json"
    second = run_cli(
        f"{source}/", "--output", f"{tmp_path}/v2/", "--reuse", f"{tmp_path}/v1/", "--shard-size", "8",
        "--report-json", report,
    )
    assert second.returncode == 0, second.stderr
    figures = json.loads(report.read_text())
    assert (figures["rows_reused"], figures["rows_embedded"]) == (29, 1)
    old = pads.dataset(tmp_path / "v1", format="parquet").to_table()
    new = pads.dataset(tmp_path / "v2", format="parquet").to_table()
    assert new.column("id").to_pylist() == list(range(30))
    same = [i for i in range(30) if i != 20]
    assert new.take(same).column("embedding").equals(old.take(same).column("embedding"))
    chunked = run_cli(f"{source}/", "--output", f"{tmp_path}/chunks/", "--chunk-tokens", "12", "--with-text")
    assert chunked.returncode == 0, chunked.stderr
    chunks = pads.dataset(tmp_path / "chunks", format="parquet").to_table()
    assert set(chunks.column("id").to_pylist()) == set(range(30)) and chunks.num_rows > 30
    assert {"chunk", "start", "end", "text"} <= set(chunks.schema.names)


def test_worker_mode_chunks_like_the_client_path_and_reuses_unchanged_objects(tmp_path, moto, bucket, workers):
    s3, name = bucket
    texts = put_corpus(s3, name, "src/", passages(45))
    env = s3_env(moto)
    common = [*worker_flags([w.url for w in workers]), "--shard-size", "10", "--chunk-tokens", "16"]
    by_worker = run_cli(f"s3://{name}/src/", "--output", f"s3://{name}/w/", *common, env=env)
    by_client = run_cli(f"s3://{name}/src/", "--output", f"s3://{name}/c/", *common, "--io", "client", env=env)
    assert by_worker.returncode == 0 and by_client.returncode == 0, (by_worker.stderr, by_client.stderr)
    assert "--io worker" in by_worker.stderr and "--io worker" not in by_client.stderr
    worker_table, _ = read_s3_dataset(s3, name, "w/", tmp_path / "w")
    client_table, _ = read_s3_dataset(s3, name, "c/", tmp_path / "c")
    columns = ["id", "chunk", "start", "end", "embedding", "tokens", "text_sha256"]
    assert worker_table.select(columns).equals(client_table.select(columns))  # same rows, either path
    # c.jsonl changes; a.jsonl and b.jsonl.gz don't: their parts are copied, not embedded
    s3.put_object(Bucket=name, Key="src/c.jsonl", Body=jsonl(texts[30:] + ["One more passage at the end."]))
    report = tmp_path / "report.json"
    again = run_cli(
        f"s3://{name}/src/", "--output", f"s3://{name}/w2/", *common, "--reuse", f"s3://{name}/w/",
        "--report-json", report, env=env,
    )
    assert again.returncode == 0, again.stderr
    assert "parts copied" in again.stderr
    figures = json.loads(report.read_text())
    unchanged = [t for t in texts[:30]]
    new_table, success = read_s3_dataset(s3, name, "w2/", tmp_path / "w2")
    reused_rows = sum(1 for text in worker_table.column("id").to_pylist() if not str(text).startswith("c.jsonl"))
    assert figures["rows_reused"] == reused_rows and len(unchanged) == 30
    assert figures["texts"] == 16  # c.jsonl's 15 passages and the new one
    assert new_table.num_rows == success["rows"] and new_table.slice(0, reused_rows).equals(worker_table.slice(0, reused_rows))
