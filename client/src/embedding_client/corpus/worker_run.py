"""`--io worker`: the Lambda workers do the S3 I/O; this process only plans, schedules, retries
and records.

The plan is the input's splits (worker_plan.py), one part each, named in input order. Each split
becomes a shard job (worker_jobs.py, run by the scheduler) that reads the split from S3, embeds it
and writes its part itself. A part is written whole under a name fixed by the plan, so a retried
job, a worker that outlives a killed client, or a resumed run can only ever rewrite the same
part: no duplicates, no orphans. Once every part is there, `_SUCCESS` lists them.

`--reuse OLD` reaches as far as whole splits: where OLD is a dataset written by a worker-mode
run with the same fingerprint and options, a split of an unchanged object (same name, ETag and
byte range) takes OLD's part by a server-side copy, and everything else is embedded. Finer,
per-text reuse needs the texts, so it is the client path's (`--io client`).
"""

from __future__ import annotations

import json
import logging
import time

from embedding_client.corpus.errors import CorpusError, InputError
from embedding_client.corpus.inputs import InputFile, Inputs
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.manifests import worker_manifest
from embedding_client.corpus.options import Options
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.run_context import RunContext
from embedding_client.corpus.scheduler import Scheduler
from embedding_client.corpus.shard_job import JobOptions
from embedding_client.corpus.shards import SUCCESS, DatasetStore
from embedding_client.corpus.splits import Split
from embedding_client.corpus.targets import Target
from embedding_client.corpus.worker_jobs import SplitJobs
from embedding_client.corpus.worker_plan import WORKER_MAX_ROWS, first_id_is_int, plan_splits, split_bytes_for

log = logging.getLogger("embed_corpus")


class WorkerRun:
    """One worker-mode run, after the target and the store were opened and checked."""

    def __init__(self, context: RunContext):
        self.context, self.options = context, context.options
        self.inputs, self.store, self.storage = context.inputs, context.store, context.storage

    def execute(self) -> RunStats:
        context, options = self.context, self.options
        planned, split_bytes = worker_splits(self.storage, self.inputs, options)
        job = job_options(options, self.storage, self.inputs, context.metadata)
        comparable = comparable_job(job)
        committed = self.store.start(worker_manifest(context, split_bytes, len(planned), comparable), options.resume)
        if committed:
            log.info("resuming: %d of %d parts are written already", len(committed & set(range(len(planned)))), len(planned))
        copied = self._copy_unchanged(planned, committed, comparable) if options.reuse else {}
        stats = context.stats(options.reuse)
        todo = [index for index in range(len(planned)) if index not in committed and index not in copied]
        jobs = SplitJobs(context.target, planned, todo, self.inputs, self.store, job, stats)
        Scheduler(context.concurrency, options.retries, stats, context.stream).run(jobs)
        rows = {**jobs.rows, **copied}
        stats.rows_reused = sum(copied.values())
        publish_success(self.store, self.inputs.files, planned, rows, context.metadata, comparable)
        stats.wall_s = time.perf_counter() - context.started
        return stats

    def _copy_unchanged(self, planned: list[Split], committed: set[int], comparable: dict) -> dict[int, int]:
        """OLD's parts for splits that are byte for byte the same: server-side copies."""
        old = Location(self.options.reuse if self.options.reuse.endswith("/") else self.options.reuse + "/")
        try:
            success = json.loads(self.storage.read_bytes(old.child(SUCCESS)))
        except (CorpusError, ValueError):
            log.info("--reuse: %s is not a worker-mode dataset (no readable _SUCCESS): every split is embedded", old.uri)
            return {}
        if success.get("fingerprint") != self.context.metadata["fingerprint"] or success.get("job") != comparable:
            log.warning("--reuse: %s was made with another model or other options: every split is embedded", old.uri)
            return {}
        by_split = {
            (item["name"], item["version"], item["size"], item["start"], item["end"], item["whole"]): item["part"]
            for item in success.get("splits", [])
        }
        rows_of = {part["name"]: part["rows"] for part in success.get("parts", [])}
        copied: dict[int, int] = {}
        for index, split in enumerate(planned):
            if index in committed:
                continue
            file = self.inputs.files[split.file]
            key = (file.name, file.version, file.size, split.start, split.end, split.whole)
            part = by_split.get(key)
            if part is None:
                continue
            self.storage.copy(old.child(part), self.store.folder.child(self.store.part_name(index)))
            copied[index] = int(rows_of[part])
        log.info("--reuse: %d of %d parts copied from %s (their objects are unchanged)", len(copied), len(planned), old.uri)
        return copied


def worker_splits(storage: Storage, inputs: Inputs, options: Options) -> tuple[list[Split], int | None]:
    """Worker mode's splits (and the bytes per range): what Lambda workers and Batch children run."""
    rows_per_split = min(options.shard_size, WORKER_MAX_ROWS)
    split_bytes = split_bytes_for(storage, inputs, rows_per_split)
    planned = plan_splits(storage, inputs, rows_per_split, split_bytes)
    if not planned:
        raise InputError(f"{options.input} holds no text to embed (every object is empty)")
    return planned, split_bytes


def job_options(options: Options, storage: Storage, inputs: Inputs, metadata: dict) -> JobOptions:
    """What every job of the run is told (besides its split and part)."""
    return JobOptions(
        fmt=inputs.fmt,
        dataset=inputs.dataset,
        text_field=options.text_field,
        id_field=options.id_field,
        on_error=options.on_error,
        ids_are_ints=first_id_is_int(storage, inputs, options.text_field, options.id_field),
        embedding_type=options.embedding_type,
        input_type=options.input_type,
        chunk_tokens=options.chunk_tokens,
        chunk_overlap=options.chunk_overlap,
        with_text=options.with_text,
        batch_size=options.batch_size or 256,
        metadata=metadata,
    )


def comparable_job(job: JobOptions) -> dict:
    """The job's options as `_SUCCESS` and a resumed run compare them (the metadata aside)."""
    return {key: value for key, value in job.__dict__.items() if key != "metadata"}


def publish_success(
    store: DatasetStore,
    files: list[InputFile],
    planned: list[Split],
    rows: dict[int, int],
    metadata: dict,
    comparable: dict,
    **extra,
) -> None:
    """`_SUCCESS`: every part with its rows, and which split of which object made it; a part this
    process did not see written is counted from its footer."""
    parts = []
    for index in range(len(planned)):
        name = store.part_name(index)
        count = rows.get(index)
        if count is None:  # written by an earlier run (or another process): its footer says
            count = part_rows(store.storage, store.folder.child(name))
        parts.append({"name": name, "rows": count})
    splits = [
        {**files[split.file].describe(), **split.describe(), "part": store.part_name(index)}
        for index, split in enumerate(planned)
    ]
    store.publish(parts, metadata, io="worker", job=comparable, splits=splits, **extra)


def part_rows(storage: Storage, location: Location) -> int:
    import pyarrow.parquet as pq

    with storage.open_read(location) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def choose_io(options: Options, target: Target, inputs: Inputs, output: Location, storage: Storage) -> tuple[str, str]:
    """("worker" | "client", why): worker mode needs S3 on both sides, a Lambda target that can
    run shard jobs, and its grants; `--io` forces the choice (worker: or one sentence why not)."""
    forced = options.io
    if forced == "client":
        return "client", "--io client"
    reasons = []
    if target.info.kind != "lambda":
        reasons.append("the target is not lambda://")
    if not all(file.location.is_s3 for file in inputs.files):
        reasons.append("INPUT is not on S3")
    if not (output.is_s3 and output.uri.endswith("/")):
        reasons.append("--output is not an s3://bucket/prefix/ dataset")
    if options.changes:
        reasons.append("--changes needs the texts (the client path)")
    if not reasons:
        refused = target.probe_shard_jobs(inputs.files[0].location, output, storage)
        if refused is None:
            return "worker", "the function reads and writes S3 itself"
        reasons.append(refused)
    if forced == "worker":
        raise InputError(f"--io worker: {'; '.join(reasons)}")
    return "client", "; ".join(reasons)
