"""`--target batch://`: AWS Batch's side is moto's server with Batch's `use_docker` off, so every
submission is real and no container starts; each submitted job then runs as Batch would run it
(the job's command after Ref:: substitution, Batch's environment plus the client's overrides, per
array index) as a subprocess of the console script's module, against moto's S3.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.dataset as pads
import pytest

from batch_on_moto import BatchOnMoto, as_batch_starts
from conftest import service_env
from corpus_helpers import AWS_TEST_ENV, assert_clear_error, run_cli, seed_vectors
from embedding_client.workers.batch_interface import EXIT_BAD_INPUT, EXIT_INTERRUPTED

WORKER = [sys.executable, "-m", "embedding_client.workers.batch_worker"]  # the console script's module


def passages(count: int, start: int = 0) -> list[str]:
    words = "river stone lamp orbit cedar velvet quartz meadow signal harbor prism ember".split()
    return [f"Passage {i}: " + " ".join(words[(i * 5 + k * 3) % len(words)] for k in range(30)) + "."
            for i in range(start, start + count)]


def jsonl(texts: list[str]) -> bytes:
    return b"".join(orjson.dumps({"text": text}) + b"\n" for text in texts)


class Aws(BatchOnMoto):
    """One bucket, a queue on a Fargate Spot environment, job definitions with and without grants."""

    def __init__(self, moto):
        tag = str(time.monotonic_ns())
        self.job_definition, self.bare_definition = f"worker-{tag}", f"bare-{tag}"
        super().__init__(moto, tag, "embedding-worker", {self.job_definition: True, self.bare_definition: False})

    def env(self) -> dict[str, str]:
        return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": self.moto.url}

    def flags(self, prefix: str, *extra: str) -> list[str]:
        return [f"s3://{self.bucket}/{prefix}/in/", "--output", f"s3://{self.bucket}/{prefix}/out/",
                "--target", f"batch://{self.queue}", "--batch-job-definition", self.job_definition, *extra]

    def put(self, prefix: str, texts: list[str], bad_in_second: bool = False) -> list[str]:
        """Two JSONL objects and a gzipped one; returns the texts in output order."""
        thirds = [texts[: len(texts) // 3], texts[len(texts) // 3 : 2 * len(texts) // 3], texts[2 * len(texts) // 3 :]]
        second = jsonl(thirds[1]) + (b'{"title": "no text here"}\n' if bad_in_second else b"")
        self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/in/a.jsonl", Body=jsonl(thirds[0]))
        self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/in/b.jsonl", Body=second)
        self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}/in/c.jsonl.gz", Body=gzip.compress(jsonl(thirds[2])))
        return texts

    def objects(self, prefix: str) -> dict[str, tuple]:
        listing = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return {item["Key"]: (item["ETag"], item["LastModified"]) for item in listing}

    def submitted(self, prefix: str, submission: int = 1) -> tuple[list[dict], dict]:
        """The array jobs and the final job of a submission, as Batch describes them."""
        record = json.loads(self.s3.get_object(Bucket=self.bucket, Key=f"{prefix}/out/_embed-corpus-batch/jobs.json")["Body"].read())
        chosen = record["submissions"][submission - 1]
        jobs = {job["jobId"]: job for job in self.batch.describe_jobs(jobs=[*chosen["arrays"], chosen["final"]])["jobs"]}
        return [jobs[job_id] for job_id in chosen["arrays"]], jobs[chosen["final"]]

    def start(self, job: dict, index: int | None, attempt: int = 1) -> subprocess.Popen:
        """One child (or the final job) exactly as Batch starts it."""
        command, env = as_batch_starts(job, index, attempt, self.env())
        assert command[0] == "embed-corpus-worker", command
        return subprocess.Popen([*WORKER, *command[1:]], env=service_env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def run(self, job: dict, index: int | None, attempt: int = 1) -> subprocess.CompletedProcess:
        process = self.start(job, index, attempt)
        out, err = process.communicate(timeout=300)
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def indexes(array_job: dict) -> list[int | None]:
    size = (array_job.get("arrayProperties") or {}).get("size")
    return list(range(size)) if size else [None]


def read_dataset(aws: Aws, prefix: str, folder: Path) -> tuple[pa.Table, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    for key in aws.objects(f"{prefix}/out/"):
        name = key[len(f"{prefix}/out/") :]
        if "/" not in name:
            (folder / name).write_bytes(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())
    return pads.dataset(folder, format="parquet").to_table(), json.loads((folder / "_SUCCESS").read_text())


@pytest.fixture(scope="module")
def aws(moto):
    return Aws(moto)


def test_detach_children_as_batch_runs_them_then_resume_reports(tmp_path, aws, http_url, monkeypatch):
    texts = aws.put("main", passages(120))
    detached = run_cli(*aws.flags("main", "--shard-size", "10", "--batch-splits-per-child", "3", "--detach"), env=aws.env())
    assert detached.returncode == 0, detached.stderr
    assert "array jobs" in detached.stdout and "--resume" in detached.stdout and "final job" in detached.stdout
    (array,), final = aws.submitted("main")
    children = indexes(array)
    assert len(children) >= 4 and array["parameters"]["plan"].endswith("plan-0001.json")
    assert all(f"s3://{aws.bucket}/main/out/part-" not in key for key in aws.objects("main/out/"))  # nothing ran yet

    # child 0 killed with kill -9 while a part is in hand, then run again as attempt 2
    done = f"main/out/_embed-corpus-batch/done/"
    doomed = aws.start(array, children[0])
    deadline = time.monotonic() + 120
    while not any(key.startswith(done) for key in aws.objects(done)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert doomed.poll() is None, doomed.communicate()[1]
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    after_kill = {key for key in aws.objects("main/out/") if "/out/part-" in key}
    assert 1 <= len(after_kill) < 3, after_kill  # it was killed mid-part
    retried = aws.run(array, children[0], attempt=2)
    assert retried.returncode == 0, retried.stderr
    assert "1 already committed" in retried.stderr or "2 already committed" in retried.stderr

    # child 1 gets Spot's two-minute warning (SIGTERM) after its first part: it finishes what it holds, exits 143
    warned = aws.start(array, children[1])
    first = len([key for key in aws.objects(done)])
    while len(aws.objects(done)) == first and warned.poll() is None:
        time.sleep(0.02)
    warned.send_signal(signal.SIGTERM)
    assert warned.wait(timeout=120) == EXIT_INTERRUPTED, warned.communicate()[1]
    assert aws.run(array, children[1], attempt=2).returncode == 0

    for index in children[2:-1]:
        result = aws.run(array, index)
        assert result.returncode == 0, result.stderr

    # the final job refuses _SUCCESS while the last child's parts are missing, naming the split
    refused = aws.run(final, None)
    assert refused.returncode == 1, refused.stderr
    assert "_SUCCESS is not written" in refused.stderr and "split " in refused.stderr and "part-0000" in refused.stderr
    assert not any(key.endswith("/_SUCCESS") for key in aws.objects("main/out/"))

    last = aws.run(array, children[-1])
    assert last.returncode == 0, last.stderr
    before = aws.objects("main/out/")
    again = aws.run(array, children[-1], attempt=3)  # a child run twice after its commit writes nothing
    assert again.returncode == 0 and aws.objects("main/out/") == before, again.stderr
    finished = aws.run(final, None)
    assert finished.returncode == 0, finished.stderr

    report = run_cli(*aws.flags("main", "--shard-size", "10", "--resume", "--report-json", tmp_path / "r.json"), env=aws.env())
    assert report.returncode == 0, report.stderr
    assert "120 texts" in report.stdout and "FARGATE_SPOT" in report.stdout, report.stdout
    figures = json.loads((tmp_path / "r.json").read_text())
    assert figures["texts"] == 120 and figures["batch"]["engine"] == "FARGATE_SPOT" and figures["batch"]["usd"] > 0

    table, success = read_dataset(aws, "main", tmp_path / "out")
    assert table.num_rows == 120 == success["rows"] and success["engine"] == "batch"
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == len(ids)  # every row exactly once
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(vectors, seed_vectors(http_url, texts))

    # the client that stays follows the same run through the one scheduler: every part, then _SUCCESS
    for name, value in aws.env().items():
        monkeypatch.setenv(name, value)
    stats, progress = follow(aws, "main")
    assert stats.texts == 120 and stats.requests == len(json.loads((tmp_path / "out" / "_SUCCESS").read_text())["parts"])
    assert "parts (100%)" in progress and "succeeded" in progress and "120 rows" in progress and "FARGATE_SPOT" in progress


def follow(aws: Aws, prefix: str) -> tuple:
    """What `embed-corpus` without --detach runs once the jobs are submitted, on the first submission."""
    import io

    from embedding_client.corpus.batch_follow import BatchWaits, RunWatch
    from embedding_client.corpus.batch_plan import BatchPlan, BatchRecords
    from embedding_client.corpus.locations import Location, Storage
    from embedding_client.corpus.report import RunStats
    from embedding_client.corpus.scheduler import Scheduler
    from embedding_client.corpus.shards import DatasetStore
    from embedding_client.corpus.target_batch import BatchQueue

    store = DatasetStore(Location(f"s3://{aws.bucket}/{prefix}/out/"), Storage())
    records = BatchRecords(store)
    submission = records.jobs()[0]
    plan = BatchPlan.from_json(store.storage.read_bytes(Location(submission["plan"])), submission["plan"])
    queue = BatchQueue(aws.queue, aws.job_definition, "us-east-1")
    stats, stream = RunStats(f"batch://{aws.queue}", "?", 0, "float", store.folder.uri), io.StringIO()
    waits = BatchWaits(plan, [i for child in plan.children for i in child], store, RunWatch(queue, records, submission, 0.1),
                       stats, queue.shape.vcpus, queue.shape.memory_mb, queue.shape.engine)
    Scheduler(4, 2, stats, stream).run(waits)
    return stats, stream.getvalue()


def test_following_names_a_lost_part_and_resume_resubmits_only_the_missing(tmp_path, aws):
    aws.put("lost", passages(30))
    flags = aws.flags("lost", "--shard-size", "10", "--batch-splits-per-child", "1")
    # moto marks every job SUCCEEDED at once, without running it: the parts never land
    followed = run_cli(*flags, env=aws.env())
    assert_clear_error(followed, 1, "part part-00000", "(split ", "ended SUCCEEDED without it", "--resume")
    (array,), _ = aws.submitted("lost")
    assert aws.run(array, 0).returncode == 0  # one split lands
    resumed = run_cli(*flags, "--resume", "--detach", env=aws.env())
    assert resumed.returncode == 0, resumed.stderr
    plan = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key="lost/out/_embed-corpus-batch/plan-0002.json")["Body"].read())
    resubmitted = sorted(index for child in plan["children"] for index in child)
    assert resubmitted == list(range(1, len(plan["splits"])))
    (array,), _ = aws.submitted("lost", submission=2)
    assert all(aws.run(array, index).returncode == 0 for index in indexes(array))
    # every part is there, the final job never ran (moto): --resume runs its check here and reports
    finished = run_cli(*flags, "--resume", env=aws.env())
    assert finished.returncode == 0 and "30 texts" in finished.stdout, finished.stderr
    assert any(key.endswith("lost/out/_SUCCESS") for key in aws.objects("lost/out/"))


def test_bad_rows_fail_their_child_and_resume_names_the_split(aws):
    aws.put("bad", passages(30), bad_in_second=True)
    flags = aws.flags("bad", "--shard-size", "100", "--batch-splits-per-child", "1")
    assert run_cli(*flags, "--detach", env=aws.env()).returncode == 0
    (array,), _ = aws.submitted("bad")
    statuses = [aws.run(array, index).returncode for index in indexes(array)]
    assert statuses.count(EXIT_BAD_INPUT) == 1 and statuses.count(0) == len(statuses) - 1, statuses
    keys = aws.objects("bad/out/")
    assert not any(key.endswith("part-000001.parquet") for key in keys)  # nothing half-committed
    resumed = run_cli(*flags, "--resume", env=aws.env())
    assert_clear_error(resumed, 1, "split 1 (b.jsonl", "line 11", "--on-error skip")
    record = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key="bad/out/_embed-corpus-batch/jobs.json")["Body"].read())
    assert len(record["submissions"]) == 1  # nothing re-submitted


class Refusing(BaseHTTPRequestHandler):
    """Batch's API answering every call as AWS does without a grant."""

    def do_POST(self):
        body = json.dumps({"__type": "AccessDeniedException", "message": "not authorized to perform batch:DescribeJobQueues"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-ErrorType", "AccessDeniedException")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_bad_input_is_one_sentence_before_anything_is_submitted(aws):
    aws.put("refuse", passages(6))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = aws.flags("refuse")
    cases = [
        ([base[0], base[1], base[2], "--target", "batch://no-such-queue", *base[5:]], {}, "no such job queue"),
        ([*base, "--batch-job-definition", "no-such-definition"], {}, "no active job definition"),
        ([*base, "--batch-job-definition", aws.bare_definition], {}, "lacks the S3 grants to read INPUT"),
        ([*base], {"AWS_ENDPOINT_URL_BATCH": f"http://127.0.0.1:{server.server_address[1]}"}, "no Batch permission"),
        (["/tmp/corpus.jsonl", *base[1:]], {}, "is not an s3:// location"),
        ([base[0], "--output", "/tmp/out/", *base[3:]], {}, "--output must be s3://bucket/prefix/"),
    ]
    try:
        for args, extra, fragment in cases:
            assert_clear_error(run_cli(*args, env={**aws.env(), **extra}), 2, fragment)
    finally:
        server.shutdown()
    assert not aws.objects("refuse/out/")
    assert not aws.batch.list_jobs(jobQueue=aws.queue, filters=[{"name": "JOB_NAME", "values": ["*"]}])["jobSummaryList"] or all(
        "refuse" not in job["jobName"] for job in aws.batch.list_jobs(jobQueue=aws.queue)["jobSummaryList"])


def test_dry_run_prices_every_engine_and_writes_nothing(aws):
    aws.put("dry", passages(30))
    before = len(aws.batch.list_jobs(jobQueue=aws.queue, jobStatus="SUCCEEDED")["jobSummaryList"])
    result = run_cli(*aws.flags("dry", "--dry-run", "--embedding-type", "int8"), env=aws.env())
    assert result.returncode == 0, result.stderr
    for engine in ("Lambda x86_64", "Fargate x86_64", "Fargate Spot x86_64", "GPU g4dn.xlarge", "cheapest:", "43.6 ms"):
        assert engine in result.stdout, result.stdout
    assert not aws.objects("dry/out/")
    assert len(aws.batch.list_jobs(jobQueue=aws.queue, jobStatus="SUCCEEDED")["jobSummaryList"]) == before


def test_policy_evaluation_where_the_simulator_is_unavailable():
    """The fallback the grant check uses on moto (no iam:SimulatePrincipalPolicy): Deny wins, wildcards match."""
    from embedding_client.corpus.iam_grants import evaluate

    read = {"Statement": [{"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/corpus/*"}]}
    deny = {"Statement": {"Effect": "Deny", "NotAction": "s3:PutObject", "Resource": "*"}}
    assert evaluate([read], "s3:GetObject", "arn:aws:s3:::b/corpus/a.jsonl")
    assert not evaluate([read], "s3:GetObject", "arn:aws:s3:::b/other/a.jsonl")
    assert not evaluate([read], "s3:PutObject", "arn:aws:s3:::b/corpus/a.jsonl")
    assert not evaluate([read, deny], "s3:GetObject", "arn:aws:s3:::b/corpus/a.jsonl")
