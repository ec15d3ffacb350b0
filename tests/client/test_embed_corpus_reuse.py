"""embed-corpus --reuse and --changes: a re-run costs the change, and says what a store must do.

A corpus is embedded once (OLD), then edited (texts changed, ids deleted, passages added, one
passage moved to a new id) and embedded again with `--reuse OLD --changes CHANGES` on every
target: the local model, uvicorn over HTTP and the Lambda handler under the real RIE. Reused rows
must hold OLD's bytes, embedded rows `POST /`'s vectors, NEW must equal a full run, and the change
set must be exact. Then: what must stop reuse (another precision, prompt or model), OLD on moto's
S3, kill -9 and --resume, and every bad OLD or duplicate id as one sentence.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import MODEL_DIR, REPO, service_env
from corpus_helpers import (
    AWS_TEST_ENV,
    EMBED_CORPUS,
    assert_clear_error,
    cli_target,
    corpus_texts,
    read_output,
    run_cli,
    seed_vectors,
    write_jsonl,
)

SHARD = "16"
CHANGED = {7: " It was edited last week.", 30: " A new closing sentence."}
DELETED = (12, 40)
MOVED = 25  # its text moves to the id "moved-25"
ADDED = ["A passage added in this week's export.", "Another new passage, about vector stores."]


def edited(texts: list[str]) -> tuple[list[str], list[str]]:
    """The week's edits as (ids, texts) of the new corpus, in its order."""
    ids, new = [], []
    for index, text in enumerate(texts):
        if index in DELETED or index == MOVED:
            continue
        ids.append(f"doc-{index}")
        new.append(text + CHANGED.get(index, ""))
    ids += ["added-0", "added-1", f"moved-{MOVED}"]
    new += [*ADDED, texts[MOVED]]
    return ids, new


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """OLD (a full local run), the edited corpus, and NEW's reference: a full run of it."""
    folder = tmp_path_factory.mktemp("reuse")
    texts = corpus_texts(60)
    old_source = write_jsonl(folder / "old.jsonl", texts)
    old = folder / "old.parquet"
    result = run_cli(old_source, "--output", old, "--shard-size", SHARD)
    assert result.returncode == 0, result.stderr
    ids, new_texts = edited(texts)
    source = write_jsonl(folder / "new.jsonl", new_texts, ids)
    full = folder / "full.parquet"
    result = run_cli(source, "--output", full, "--shard-size", SHARD)
    assert result.returncode == 0, result.stderr
    return folder, texts, old, source, ids, new_texts, full


def run_reuse(tmp_path: Path, corpus, *flags: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, dict]:
    folder, texts, old, source, *_ = corpus
    report = tmp_path / "report.json"
    result = run_cli(
        source,
        "--output",
        tmp_path / "new.parquet",
        "--reuse",
        old,
        "--changes",
        tmp_path / "changes.parquet",
        "--report-json",
        report,
        "--shard-size",
        SHARD,
        *flags,
        env=env,
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def hashes(path: Path) -> list[bytes]:
    return pq.read_table(path, columns=["text_sha256"]).column("text_sha256").to_pylist()


@pytest.mark.parametrize("target", ["local", "http", "lambda"])
def test_given_an_edited_corpus_then_only_the_change_is_embedded_and_the_change_set_is_exact(
    tmp_path, corpus, http_url, target, tmp_path_factory
):
    folder, texts, old, source, ids, new_texts, full = corpus
    with cli_target(target, http_url, tmp_path_factory.mktemp("reuse-target")) as (flags, env):
        result, report = run_reuse(tmp_path, corpus, *flags, env=env)
    assert result.returncode == 0, result.stderr
    embedded_texts = [text for text in new_texts if text not in texts]
    assert len(embedded_texts) == len(CHANGED) + len(ADDED)
    assert report["rows_embedded"] == report["texts"] == len(embedded_texts)
    assert report["rows_reused"] == len(new_texts) - len(embedded_texts)
    assert report["model_seconds_saved"] > 0
    assert "reused from" in result.stdout and "saved" in result.stdout
    if target == "lambda":
        assert report["usd_saved"]["x86_64"] > 0 and "at this run's price per text" in result.stdout

    new_ids, vectors, tokens, metadata = read_output(tmp_path / "new.parquet")
    old_ids, old_vectors, old_tokens, old_metadata = read_output(old)
    assert new_ids == ids and metadata["fingerprint"] == old_metadata["fingerprint"]
    old_row = {text: row for row, text in enumerate(texts)}
    expected = seed_vectors(http_url, embedded_texts)
    for row, text in enumerate(new_texts):
        if text in old_row:  # reused: OLD's bytes, its token count
            assert vectors[row].tobytes() == old_vectors[old_row[text]].tobytes(), row
            assert tokens[row] == old_tokens[old_row[text]]
        else:  # embedded: what POST / returns
            assert np.array_equal(vectors[row], expected[embedded_texts.index(text)]), row
    # NEW is what a full run writes: rows, vectors, token counts, text hashes.
    full_ids, full_vectors, full_tokens, _ = read_output(full)
    assert (full_ids, full_tokens) == (new_ids, tokens) and np.array_equal(full_vectors, vectors)
    assert hashes(tmp_path / "new.parquet") == hashes(full)

    changes = pq.read_table(tmp_path / "changes.parquet").to_pylist()
    upserts = [row for row in changes if row["op"] == "upsert"]
    deletes = [row for row in changes if row["op"] == "delete"]
    assert [row["id"] for row in changes] == [row["id"] for row in upserts + deletes]  # upserts first
    assert [row["id"] for row in upserts] == ["doc-7", "doc-30", "added-0", "added-1", f"moved-{MOVED}"]
    assert [row["id"] for row in deletes] == ["doc-12", f"doc-{MOVED}", "doc-40"]
    for row in upserts:
        at = new_ids.index(row["id"])
        assert np.asarray(row["embedding"], dtype=np.float32).tobytes() == vectors[at].tobytes()
        assert row["tokens"] == tokens[at]
    assert all(row["embedding"] is None and row["tokens"] is None for row in deletes)
    assert report["changes"] == {"file": str(tmp_path / "changes.parquet"), "upserts": 5, "deletes": 3}


def test_given_another_precision_then_nothing_is_reused_the_reason_is_printed_and_all_are_upserts(
    tmp_path, corpus
):
    result, report = run_reuse(tmp_path, corpus, env={"EMBEDDING_PRECISION": "int8"})
    assert result.returncode == 0, result.stderr
    assert "nothing is reused" in result.stderr and "precision fp32 (OLD) != int8 (now)" in result.stderr
    assert "graph onnx/model.onnx (OLD) != onnx/model_int8.onnx (now)" in result.stderr
    assert report["rows_reused"] == 0 and report["rows_embedded"] == len(corpus[4])
    ops = pq.read_table(tmp_path / "changes.parquet").column("op").to_pylist()
    assert ops.count("upsert") == len(corpus[4]) and ops.count("delete") == 3


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Two tiny random-weight models of one dimension, one with query/passage prompts, prepared."""
    import prepare_model
    from tiny_models import CONFIGS, build

    folder = tmp_path_factory.mktemp("reuse-models")
    prepared = {}
    for name in ("bert-cls-e5-prompts", "mpnet-mean"):
        config = next(c for c in CONFIGS if c.name == name)
        prepare_model.main(["--model", str(build(config, MODEL_DIR, folder)), "--output", str(folder / "prepared")])
        prepared[name] = folder / "prepared" / name
    return prepared


def test_given_another_prompt_or_model_then_nothing_is_reused_and_the_reason_is_printed(tmp_path, tiny_models):
    e5, other = str(tiny_models["bert-cls-e5-prompts"]), str(tiny_models["mpnet-mean"])
    source = write_jsonl(tmp_path / "corpus.jsonl", corpus_texts(12))
    old = tmp_path / "old.parquet"
    made = run_cli(source, "--output", old, "--input-type", "query", env={"MODEL_DIR": e5})
    assert made.returncode == 0, made.stderr

    same = run_cli(source, "--output", tmp_path / "same.parquet", "--input-type", "query", "--reuse", old,
                   "--report-json", tmp_path / "same.json", env={"MODEL_DIR": e5})
    assert same.returncode == 0 and json.loads((tmp_path / "same.json").read_text())["rows_reused"] == 12

    prompt = run_cli(source, "--output", tmp_path / "doc.parquet", "--input-type", "document", "--reuse", old,
                     "--report-json", tmp_path / "doc.json", env={"MODEL_DIR": e5})
    assert prompt.returncode == 0, prompt.stderr
    assert "prompt 'query: ' (OLD) != 'passage: ' (now)" in prompt.stderr
    assert json.loads((tmp_path / "doc.json").read_text())["rows_reused"] == 0

    model = run_cli(source, "--output", tmp_path / "other.parquet", "--input-type", "query", "--reuse", old,
                    "--report-json", tmp_path / "other.json", env={"MODEL_DIR": other})
    assert model.returncode == 0, model.stderr
    assert "model_sha256" in model.stderr and "nothing is reused" in model.stderr
    assert json.loads((tmp_path / "other.json").read_text())["rows_reused"] == 0


def test_given_old_on_s3_then_it_is_reused_from_there(tmp_path, corpus, moto):
    folder, texts, old, source, ids, new_texts, full = corpus
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="reuse")
    s3.upload_file(str(old), "reuse", "week-1/vectors.parquet")
    env = {**AWS_TEST_ENV, "AWS_ENDPOINT_URL_S3": moto.url}
    report = tmp_path / "report.json"
    result = run_cli(source, "--output", "s3://reuse/week-2/vectors.parquet", "--reuse",
                     "s3://reuse/week-1/vectors.parquet", "--changes", "s3://reuse/week-2/changes.parquet",
                     "--shard-size", SHARD, "--report-json", report, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["rows_reused"] == len(new_texts) - 4
    s3.download_file("reuse", "week-2/vectors.parquet", str(tmp_path / "new.parquet"))
    s3.download_file("reuse", "week-2/changes.parquet", str(tmp_path / "changes.parquet"))
    assert np.array_equal(read_output(tmp_path / "new.parquet")[1], read_output(full)[1])
    assert pq.read_table(tmp_path / "changes.parquet").num_rows == 8


def test_given_a_reuse_run_killed_then_resume_finishes_it_with_the_same_file(tmp_path, corpus):
    """Every row embedded (a prompt-free model ignores --input-type, so OLD stays reusable):
    a long corpus of mostly new texts, killed after two shards."""
    folder, texts, old, *_ = corpus
    new_texts = corpus_texts(200)[60:] + texts[:20]
    source = write_jsonl(tmp_path / "corpus.jsonl", new_texts)
    output, parts = tmp_path / "out.parquet", tmp_path / "out.parquet.parts"
    flags = ["--reuse", str(old), "--changes", str(tmp_path / "changes.parquet"), "--shard-size", "20",
             "--batch-size", "10"]
    reference = tmp_path / "reference.parquet"
    assert run_cli(source, "--output", reference, *flags[:1], *flags[1:2], "--shard-size", "20").returncode == 0
    process = subprocess.Popen([str(EMBED_CORPUS), str(source), "--output", str(output), *flags],
                               env=service_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(parts.glob("shard-*.parquet"))) < 2:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no shard was committed in 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert not output.exists() and not (tmp_path / "changes.parquet").exists()
    resumed = run_cli(source, "--output", output, *flags, "--resume", "--report-json", tmp_path / "r.json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["skipped_texts"] >= 40 and report["rows_reused"] + report["texts"] + report["skipped_texts"] == 160
    assert output.read_bytes() == reference.read_bytes()
    unchanged = sum(1 for row, text in enumerate(new_texts) if row < len(texts) and texts[row] == text)
    ops = pq.read_table(tmp_path / "changes.parquet").column("op").to_pylist()
    assert ops.count("upsert") == 160 - unchanged  # an id whose text is OLD's is no change
    changed = run_cli(source, "--output", output, *flags[2:], "--reuse", str(output), "--resume")
    assert_clear_error(changed, 2, "--reuse must name an earlier output")


def test_given_a_bad_old_then_one_sentence_and_nothing_written(tmp_path, corpus, tiny_models):
    folder, texts, old, source, *_ = corpus
    not_parquet = tmp_path / "old.jsonl"
    not_parquet.write_text('{"id": 1, "text": "x"}\n')
    no_hashes = tmp_path / "no-hashes.parquet"
    table = pq.read_table(old)
    pq.write_table(table.drop_columns(["text_sha256"]).replace_schema_metadata({"model": "m", "dimension": "384"}),
                   no_hashes)
    other_dimension = tmp_path / "tiny.parquet"
    made = run_cli(source, "--output", other_dimension, env={"MODEL_DIR": str(tiny_models["mpnet-mean"])})
    assert made.returncode == 0, made.stderr
    cases = [
        (tmp_path / "missing.parquet", "does not exist"),
        (not_parquet, "is not a readable Parquet file"),
        (no_hashes, "written before outputs carried text hashes"),
        (other_dimension, "holds 32-dimensional vectors"),
    ]
    for bad, message in cases:
        result = run_cli(source, "--output", tmp_path / "new.parquet", "--reuse", bad,
                         "--changes", tmp_path / "changes.parquet")
        error = assert_clear_error(result, 2, message)
        if bad == no_hashes:
            assert "run once without --reuse" in error
        assert not list(tmp_path.glob("new.parquet*")) and not list(tmp_path.glob("*changes*"))
    alone = run_cli(source, "--output", tmp_path / "new.parquet", "--changes", tmp_path / "changes.parquet")
    assert_clear_error(alone, 2, "--reuse OLD")


def test_given_duplicate_ids_with_changes_then_both_lines_are_named_before_any_model_work(tmp_path, corpus):
    folder, texts, old, *_ = corpus
    source = write_jsonl(tmp_path / "dup.jsonl", texts[:6], ["a", "b", "c", "b", "e", "f"])
    result = run_cli(source, "--output", tmp_path / "new.parquet", "--reuse", old,
                     "--changes", tmp_path / "changes.parquet")
    assert_clear_error(result, 2, "repeats an id on lines 2 and 4")
    assert not list(tmp_path.glob("new.parquet*")) and not list(tmp_path.glob("*changes*"))
    # Without --changes duplicates are fine: reuse matches texts, not ids.
    fine = run_cli(source, "--output", tmp_path / "new.parquet", "--reuse", old)
    assert fine.returncode == 0, fine.stderr

    table = pq.read_table(old)
    ids = table.column("id").to_pylist()
    ids[9] = ids[3]
    duplicated = tmp_path / "dup-old.parquet"
    pq.write_table(table.set_column(0, "id", pa.array(ids)), duplicated)
    result = run_cli(write_jsonl(tmp_path / "ok.jsonl", texts[:3]), "--output", tmp_path / "new2.parquet",
                     "--reuse", duplicated, "--changes", tmp_path / "changes.parquet")
    assert_clear_error(result, 2, "has id 'doc-3' on rows 4 and 10")
    assert not list(tmp_path.glob("new2.parquet*")) and not list(tmp_path.glob("*changes*"))
