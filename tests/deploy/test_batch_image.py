"""The AWS Batch worker image (Dockerfile.lambda --target batch), run under podman as Batch runs it.

Run by `scripts/images.sh test` (make images-test), which builds the image and sets EMBED_BATCH_IMAGE;
skipped without it. AWS's side is moto's server on loopback with Batch's `use_docker` off: embed-corpus
plans and submits for real, then every submitted job runs here in the worker container (host network,
so it reaches moto on 127.0.0.1), with the job's command after Ref:: substitution and the environment
Batch sets (AWS_BATCH_JOB_ARRAY_INDEX, AWS_BATCH_JOB_ID, AWS_BATCH_JOB_ATTEMPT) plus the client's
overrides. Every row must land exactly once, with the vectors POST / answers; a SIGTERM (Spot's
warning) reaches the worker as PID 1, which exits 143 and leaves its retry the rest.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import orjson
import pyarrow.dataset as pads
import pytest

from batch_on_moto import BatchOnMoto, as_batch_starts
from corpus_helpers import AWS_TEST_ENV, run_cli, seed_vectors
from embedding_client.workers.batch_interface import EXIT_INTERRUPTED, RUN_COMMAND

IMAGE = os.environ.get("EMBED_BATCH_IMAGE", "")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not IMAGE, reason="EMBED_BATCH_IMAGE is not set (scripts/images.sh test sets it)"),
]


class Queue(BatchOnMoto):
    """A bucket, and a Fargate Spot queue whose job definition runs the worker image."""

    def __init__(self, moto):
        tag = uuid.uuid4().hex[:12]
        self.definition = f"worker-{tag}"
        super().__init__(moto, tag, IMAGE, {self.definition: True})

    def aws_env(self) -> dict[str, str]:
        return {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": self.moto.url}

    def keys(self, prefix: str) -> set[str]:
        return {item["Key"] for item in self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])}

    def jobs(self) -> tuple[list[dict], dict]:
        """The run's array jobs and its final job (the one that depends on them), as Batch describes them."""
        ids = [summary["jobId"] for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED")
               for summary in self.batch.list_jobs(jobQueue=self.queue, jobStatus=status)["jobSummaryList"]]
        # Batch lists an array job's children (<id>:<index>) too: they run as their parent's index.
        jobs = [job for job in self.batch.describe_jobs(jobs=sorted(set(ids)))["jobs"] if ":" not in job["jobId"]]
        (final,) = [job for job in jobs if job.get("dependsOn")]
        return [job for job in jobs if job is not final], final

    def container(self, job: dict, index: int | None, attempt: int, name: str, **extra: str) -> list[str]:
        """`podman run` of one child (or the final job) exactly as Batch starts it."""
        command, env = as_batch_starts(job, index, attempt, self.aws_env())
        env.update(extra)
        flags = [f"--env={key}={value}" for key, value in sorted(env.items())]
        return ["podman", "run", "--rm", f"--name={name}", "--network=host", *flags, IMAGE, *command]

    def run(self, job: dict, index: int | None, attempt: int = 1) -> subprocess.CompletedProcess:
        name = f"batch-worker-{uuid.uuid4().hex[:8]}"
        return subprocess.run(self.container(job, index, attempt, name), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def queue(moto):
    return Queue(moto)


def test_submitted_jobs_run_in_the_worker_container_every_row_once(tmp_path, queue, http_url):
    texts = [f"Passage {i}: " + " ".join(["river", "stone", "lamp", "orbit", "cedar"][(i + k) % 5] for k in range(40))
             for i in range(60)]
    for name, part in (("a.jsonl", texts[:30]), ("b.jsonl", texts[30:])):
        queue.s3.put_object(Bucket=queue.bucket, Key=f"in/{name}",
                            Body=b"".join(orjson.dumps({"text": text}) + b"\n" for text in part))
    flags = [f"s3://{queue.bucket}/in/", "--output", f"s3://{queue.bucket}/out/", "--target", f"batch://{queue.queue}",
             "--batch-job-definition", queue.definition, "--shard-size", "10", "--batch-splits-per-child", "3"]
    detached = run_cli(*flags, "--detach", env=queue.aws_env())
    assert detached.returncode == 0, detached.stderr
    arrays, final = queue.jobs()
    children = [(job, index) for job in arrays for index in range(job["arrayProperties"]["size"])]
    assert len(children) >= 2, children

    # Spot's two-minute warning: SIGTERM reaches the worker (PID 1, no shell in between) as soon as it has
    # read its share of the plan; it starts no new part, exits 143, and its retry (attempt 2) commits them.
    # One worker process, so at most one part is in hand whatever the host's CPU count.
    (first, index), done = children[0], "out/_embed-corpus-batch/done/"
    name = f"batch-worker-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(queue.container(first, index, 1, name, EMBED_CORPUS_WORKER_PROCESSES="1"),
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    seen = []
    while not any("already committed" in line for line in seen) and (line := process.stderr.readline()):
        seen.append(line)
    subprocess.run(["podman", "kill", "--signal=TERM", name], capture_output=True, check=True)
    seen.append(process.communicate(timeout=300)[1])
    assert process.returncode == EXIT_INTERRUPTED, "".join(seen)
    assert len(queue.keys(done)) <= 1, "the child started a new part after SIGTERM"
    retried = queue.run(first, index, attempt=2)
    assert retried.returncode == 0, retried.stderr
    assert len(queue.keys(done)) == 3

    for job, index in children[1:]:
        result = queue.run(job, index)
        assert result.returncode == 0, result.stderr
    finished = queue.run(final, None)
    assert finished.returncode == 0, finished.stderr

    folder = tmp_path / "out"
    folder.mkdir()
    for key in queue.keys("out/"):
        if "/" not in key[len("out/"):]:
            (folder / key[len("out/"):]).write_bytes(queue.s3.get_object(Bucket=queue.bucket, Key=key)["Body"].read())
    assert (folder / "_SUCCESS").exists()
    table = pads.dataset(folder, format="parquet").to_table()
    assert table.num_rows == len(texts) == json.loads((folder / "_SUCCESS").read_text())["rows"]
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == len(ids), "a row landed twice"
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(vectors, seed_vectors(http_url, texts), atol=2e-6)


def test_the_image_runs_the_worker_not_the_lambda_emulator():
    """No command: embed-corpus-worker itself answers (a usage error), as an unprivileged user."""
    inspected = json.loads(subprocess.run(["podman", "image", "inspect", IMAGE], capture_output=True, text=True,
                                          check=True).stdout)[0]["Config"]
    assert not inspected.get("Entrypoint") and inspected["Cmd"] == ["embed-corpus-worker"]
    assert inspected["User"] not in ("", "0", "root", "0:0")
    bare = subprocess.run(["podman", "run", "--rm", IMAGE], capture_output=True, text=True, timeout=120)
    assert bare.returncode == 2 and "usage: embed-corpus-worker" in bare.stderr, bare.stderr
    literal = subprocess.run(["podman", "run", "--rm", IMAGE, *RUN_COMMAND], capture_output=True, text=True, timeout=120)
    assert literal.returncode != 0 and "Traceback" not in literal.stderr, literal.stderr
    assert len(literal.stderr.strip().splitlines()) == 1, literal.stderr
