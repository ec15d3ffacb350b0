"""embed-corpus under faults: kill -9 and Ctrl-C then --resume, throttling, 5xx, vanishing servers.

Faults come from a real proxy on loopback (fault_proxy.py) in front of the real uvicorn server
or the real RIE; the run's output must hold every row exactly once, in order, with the
service's own vectors.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import RieServer, service_env
from corpus_helpers import (
    AWS_TEST_ENV,
    EMBED_CORPUS,
    assert_clear_error,
    corpus_texts,
    embed_texts,
    read_output,
    run_cli,
    seed_vectors,
    write_jsonl,
)
from fault_proxy import FaultProxy

from embedding_client.corpus.shards import MANIFEST_VERSION

KILL_TEXTS = 240
KILL_SHARD = 30


@pytest.fixture(scope="module")
def texts():
    return corpus_texts(60)


@pytest.fixture(scope="module")
def expected(http_url, texts):
    return seed_vectors(http_url, texts)


@pytest.fixture(scope="module")
def rie(tmp_path_factory):
    server = RieServer(tmp_path_factory.mktemp("rie-faults") / "rie.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same corpus and options, run once without interruption."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    source = write_jsonl(folder / "corpus.jsonl", corpus_texts(KILL_TEXTS))
    output = folder / "out.parquet"
    result = run_cli(source, "--output", output, "--shard-size", KILL_SHARD, "--batch-size", "15")
    assert result.returncode == 0, result.stderr
    return source, output.read_bytes()


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_given_an_interrupted_run_then_resume_redoes_only_missing_shards_and_the_file_is_identical(
    tmp_path, uninterrupted, how
):
    source, reference = uninterrupted
    output = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    args = [
        str(EMBED_CORPUS),
        str(source),
        "--output",
        str(output),
        "--shard-size",
        str(KILL_SHARD),
        "--batch-size",
        "15",
    ]
    process = subprocess.Popen(
        args, env=service_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while len(list(parts.glob("shard-*.parquet"))) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard was committed in 120 s"
        time.sleep(0.05)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == (-signal.SIGKILL if how == signal.SIGKILL else 130), stderr
    if how == signal.SIGINT:
        assert "--resume" in stderr and "Traceback" not in stderr
    committed = len(list(parts.glob("shard-*.parquet")))
    assert 2 <= committed < KILL_TEXTS // KILL_SHARD and not output.exists()

    again = run_cli(source, "--output", output, "--shard-size", KILL_SHARD, "--batch-size", "15")
    assert_clear_error(again, 2, "--resume")  # an unfinished run is never silently restarted

    resumed = run_cli(
        source,
        "--output",
        output,
        "--shard-size",
        KILL_SHARD,
        "--batch-size",
        "15",
        "--resume",
        "--report-json",
        tmp_path / "report.json",
    )
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["skipped_texts"] >= committed * KILL_SHARD
    assert report["texts"] + report["skipped_texts"] == KILL_TEXTS
    assert output.read_bytes() == reference  # byte for byte, vectors included
    assert not parts.exists()


def test_given_a_changed_input_then_resume_refuses(tmp_path, texts):
    source = write_jsonl(tmp_path / "corpus.jsonl", texts[:10])
    output = tmp_path / "out.parquet"
    (tmp_path / "out.parquet.parts").mkdir()
    manifest = {"version": MANIFEST_VERSION, "input": str(source), "input_version": {"size": 1, "mtime_ns": 1}}
    (tmp_path / "out.parquet.parts" / "manifest.json").write_text(json.dumps(manifest))
    assert_clear_error(run_cli(source, "--output", output, "--resume"), 2, "input_version", "differs")
    manifest["version"] = MANIFEST_VERSION - 1  # an unfinished run of an older embed-corpus
    (tmp_path / "out.parquet.parts" / "manifest.json").write_text(json.dumps(manifest))
    assert_clear_error(run_cli(source, "--output", output, "--resume"), 2, "another version of embed-corpus")


def http_proxy(http_url: str, faults: list[str]) -> FaultProxy:
    return FaultProxy(
        http_url, faults, matches=lambda method, path, body: path.endswith("/v1/embeddings"), stall_s=8.0
    )


def test_given_throttling_5xx_drops_and_stalls_over_http_then_every_row_exactly_once(
    tmp_path, http_url, texts, expected
):
    faults = ["429", "500", "drop", "drop-after-work", "503", "stall", "413", "502"]
    proxy = http_proxy(http_url, faults)
    try:
        run = embed_texts(
            tmp_path, texts, f"--target {proxy.url} --batch-size 10 --concurrency 2 --request-timeout 4"
        )
        assert run.process.returncode == 0, run.process.stderr
        assert sum(proxy.injected.values()) == len(faults)
    finally:
        proxy.stop()
    ids, vectors, _, _ = read_output(run.output)
    assert ids == [f"doc-{i}" for i in range(len(texts))]
    assert np.array_equal(vectors, expected)
    assert run.report["splits"] == 1  # the 413
    assert run.report["retries"] >= len(faults) - 1  # each other fault cost one retry
    assert run.report["texts"] == len(texts)


def test_given_throttling_and_drops_from_lambda_then_every_row_exactly_once(tmp_path, rie, texts, expected):
    faults = ["429", "500", "drop", "429", "drop-after-work"]
    proxy = FaultProxy(
        rie.url, faults, flavour="lambda", matches=lambda method, path, body: b'"encoding_format"' in body
    )
    try:
        flags = f"--target lambda://function --endpoint-url {proxy.url} --batch-size 12"
        run = embed_texts(tmp_path, texts, flags, env=AWS_TEST_ENV)
        assert run.process.returncode == 0, run.process.stderr
        assert sum(proxy.injected.values()) == len(faults)
    finally:
        proxy.stop()
    ids, vectors, _, _ = read_output(run.output)
    assert ids == [f"doc-{i}" for i in range(len(texts))] and np.array_equal(vectors, expected)
    assert run.report["retries"] == len(faults)
    assert (
        run.report["lambda"]["invocations"] == len(texts) // 12
    )  # only answered invocations are billed here


def test_given_a_request_that_fails_for_good_then_its_rows_are_named_and_resume_finishes(
    tmp_path, http_url, texts, expected
):
    proxy = http_proxy(http_url, ["500"] * 3)
    flags = "--batch-size 10 --shard-size 20 --concurrency 1"
    try:
        failed = embed_texts(tmp_path, texts, f"--target {proxy.url} {flags} --retries 3")
    finally:
        proxy.stop()
    assert_clear_error(
        failed.process, 1, "lines 1-10", "'doc-0' to 'doc-9'", "500", "gave up after 3 attempts", "--resume"
    )
    assert not failed.output.exists()
    resumed = embed_texts(tmp_path, texts, f"--target {http_url} {flags} --resume")
    assert resumed.process.returncode == 0, resumed.process.stderr
    ids, vectors, _, _ = read_output(resumed.output)
    assert ids == [f"doc-{i}" for i in range(len(texts))] and np.array_equal(vectors, expected)
