"""`--io worker`: the Lambda workers do the S3 I/O; this process only plans, schedules, retries
and records.

The plan is the input's splits (splits.py), one part each, named in input order. Each split
becomes a shard job (shard_job.py) sent to the function; the worker reads the split from S3,
embeds it and writes its part itself, and answers with counts and its billed time. A part is
written whole under a name fixed by the plan, so a retried job, a worker that outlives a killed
client, or a resumed run can only ever rewrite the same part: no duplicates, no orphans. Once
every part is there, `_SUCCESS` lists them.

`--reuse OLD` reaches as far as whole splits: where OLD is a dataset written by a worker-mode
run with the same fingerprint and options, a split of an unchanged object (same name, ETag and
byte range) takes OLD's part by a server-side copy, and everything else is embedded. Finer,
per-text reuse needs the texts, so it is the client path's (`--io client`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable

from embedding_client.corpus.errors import CorpusError, InputError, PermanentError
from embedding_client.corpus.inputs import InputFile, Inputs, parquet_groups, split_rows
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.progress import Progress
from embedding_client.corpus.readers import Row
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.retry import Counters, RetryPolicy, embed_with_retries
from embedding_client.corpus.shard_job import JobOptions, job_event
from embedding_client.corpus.shards import MANIFEST_VERSION, SUCCESS, DatasetStore
from embedding_client.corpus.splits import Split, byte_splits, row_group_splits, splittable
from embedding_client.corpus.targets import Invocation

log = logging.getLogger("embed_corpus")
SAMPLE_BYTES = 16 * 1024  # read from the first object to size the byte ranges and type the ids
MIN_SPLIT_BYTES = 1024  # a range never smaller than this, however short the lines
# Lines (rows) per split at most, whatever --shard-size says: one job must end inside Lambda's 900 s
# limit with room for a cold start, and 5,000 passages of 256 tokens take ~400 s at fp32 on one vCPU
# (79.5 ms each, docs/benchmarks/bulk.md).
WORKER_MAX_ROWS = 5_000


def plan_splits(storage: Storage, inputs: Inputs, shard_size: int, split_bytes: int | None) -> list[Split]:
    """Every split of every file, in input order."""
    planned: list[Split] = []
    for number, file in enumerate(inputs.files):
        if inputs.fmt == "parquet":
            planned += row_group_splits(number, parquet_groups(storage, file), shard_size)
        elif splittable(file.name, inputs.fmt):
            planned += byte_splits(number, file.size, split_bytes or file.size or 1)
        elif file.size:
            planned.append(Split(number, 0, file.size, whole=True))
    return planned


@functools.lru_cache(maxsize=4)
def head_sample(storage: Storage, file: InputFile, size: int = SAMPLE_BYTES) -> bytes:
    """The first bytes of a file (gunzipped for `.gz`) with one ranged read (once per run)."""
    if file.location.is_s3:
        where = file.location
        data = storage._s3_call(where, "get_object", Bucket=where.bucket, Key=where.key, Range=f"bytes=0-{size - 1}")[
            "Body"
        ].read()
    else:
        with open(file.location.uri, "rb") as handle:
            data = handle.read(size)
    if file.name.lower().endswith(".gz"):
        data = zlib.decompressobj(wbits=31).decompress(data, size)
    return data


def split_bytes_for(storage: Storage, inputs: Inputs, shard_size: int) -> int | None:
    """Bytes per range so that a range holds about `shard_size` lines, from the first lines' sizes."""
    if inputs.fmt not in ("jsonl", "text"):
        return None
    sample = head_sample(storage, inputs.files[0])
    lines = sample.count(b"\n")
    per_line = len(sample) / lines if lines else len(sample) or 1
    return max(MIN_SPLIT_BYTES, int(per_line * shard_size))


def first_id_is_int(storage: Storage, inputs: Inputs, text_field: str, id_field: str) -> bool:
    """The id column's type, from the first row: every part must agree on it."""
    if inputs.fmt == "text":
        return False
    file = inputs.files[0]
    if inputs.fmt == "jsonl":
        import orjson

        first = head_sample(storage, file).split(b"\n", 1)[0]
        try:
            record = orjson.loads(first)
        except orjson.JSONDecodeError:
            return False
        return isinstance(record, dict) and isinstance(record.get(id_field), int) and not isinstance(record.get(id_field), bool)
    for item in split_rows(storage, inputs, Split(0, 0, 1, whole=inputs.fmt == "csv"), text_field, id_field):
        return isinstance(item, Row) and isinstance(item.id, int)
    return False


class WorkerRun:
    """One worker-mode run, after the target and the store were opened and checked."""

    def __init__(self, run, target, inputs: Inputs, store: DatasetStore, parts: dict, schema_metadata: dict):
        self.run, self.options, self.target = run, run.options, target
        self.inputs, self.store, self.storage = inputs, store, run.storage
        self.parts, self.metadata = parts, schema_metadata
        self.counters = Counters()

    def execute(self, started: float, input_version: dict, old_version: dict | None) -> RunStats:
        options, info = self.options, self.target.info
        rows_per_split = min(options.shard_size, WORKER_MAX_ROWS)
        split_bytes = split_bytes_for(self.storage, self.inputs, rows_per_split)
        planned = plan_splits(self.storage, self.inputs, rows_per_split, split_bytes)
        if not planned:
            raise InputError(f"{options.input} holds no text to embed (every object is empty)")
        job_options = JobOptions(
            fmt=self.inputs.fmt,
            dataset=self.inputs.dataset,
            text_field=options.text_field,
            id_field=options.id_field,
            on_error=options.on_error,
            ids_are_ints=first_id_is_int(self.storage, self.inputs, options.text_field, options.id_field),
            embedding_type=options.embedding_type,
            input_type=options.input_type,
            chunk_tokens=options.chunk_tokens,
            chunk_overlap=options.chunk_overlap,
            with_text=options.with_text,
            batch_size=options.batch_size or 256,
            metadata=self.metadata,
        )
        comparable = {key: value for key, value in job_options.__dict__.items() if key != "metadata"}
        manifest = {
            "version": MANIFEST_VERSION,
            "io": "worker",
            "input": options.input,
            "input_version": input_version,
            "split_bytes": split_bytes,
            "shard_size": options.shard_size,
            "splits": len(planned),
            "job": comparable,
            "model": info.model_id,
            "dimension": info.dimension,
            "fingerprint": self.metadata["fingerprint"],
            "reuse": options.reuse,
            "reuse_version": old_version,
        }
        committed = self.store.start(manifest, options.resume)
        if committed:
            log.info("resuming: %d of %d parts are written already", len(committed & set(range(len(planned)))), len(planned))
        copied = self._copy_unchanged(planned, committed, comparable) if options.reuse else {}
        stats = RunStats(
            options.target,
            info.model_id,
            info.dimension,
            options.embedding_type,
            options.output,
            lambda_memory_mb=getattr(self.target, "memory_mb", None),
            lambda_architecture=getattr(self.target, "architecture", None),
            reuse=options.reuse,
            chunk_tokens=options.chunk_tokens,
        )
        todo = [index for index in range(len(planned)) if index not in committed and index not in copied]
        rows = self.schedule(planned, todo, job_options, stats)
        rows.update(copied)
        stats.rows_reused = sum(copied.values())
        parts = []
        for index in range(len(planned)):
            name = self.store.part_name(index)
            count = rows.get(index)
            if count is None:  # written by an earlier run: its footer says
                count = _part_rows(self.storage, self.store.folder.child(name))
            parts.append({"name": name, "rows": count})
        splits = [
            {**self.inputs.files[split.file].describe(), **split.describe(), "part": self.store.part_name(index)}
            for index, split in enumerate(planned)
        ]
        self.store.publish(parts, self.metadata, io="worker", job=comparable, splits=splits)
        stats.wall_s = time.perf_counter() - started
        return stats

    def schedule(self, planned: list[Split], todo: list[int], job_options: JobOptions, stats: RunStats) -> dict[int, int]:
        """Send the jobs, `concurrency` at a time; rows per part written. A job that fails for
        good stops new work; the run then ends with one sentence (the parts written stay)."""
        concurrency = self.options.concurrency or self.target.default_concurrency
        policy = RetryPolicy(attempts=self.options.retries)
        progress = Progress(len(todo), self.run.stream, retries=lambda: self.counters.retries, unit="parts")
        rows: dict[int, int] = {}
        failures: list[str] = []
        in_flight: dict[Future, int] = {}
        embedding, cpu = time.perf_counter(), time.process_time()
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="shard-job")
        interrupted = True
        try:
            for index in todo:
                if failures:
                    break
                while len(in_flight) >= concurrency:
                    self._collect(in_flight, rows, failures, stats, progress)
                event = self._event(planned[index], index, job_options)
                future = pool.submit(embed_with_retries, self.target.shard_job, [event], policy, self.counters)
                in_flight[future] = index
            while in_flight:
                self._collect(in_flight, rows, failures, stats, progress)
            interrupted = False
        finally:
            progress.close()
            pool.shutdown(wait=not interrupted, cancel_futures=True)
        stats.embed_s = time.perf_counter() - embedding
        stats.embed_cpu_s = time.process_time() - cpu
        stats.retries, stats.splits = self.counters.retries, self.counters.splits
        if failures:
            raise CorpusError(
                f"{failures[0]}" + (f" (and {len(failures) - 1} more parts)" if len(failures) > 1 else "")
                + f"; {len(self.store.committed())} of {len(planned)} parts are written in {self.store.folder.uri}: "
                "fix the cause and run the same command with --resume to embed only the rest"
            )
        return rows

    def _event(self, split: Split, index: int, job_options: JobOptions) -> dict:
        folder = self.store.folder
        rejects = folder.child(f"_rejects/{self.store.part_name(index)[:-8]}.jsonl") if job_options.on_error == "skip" else None
        return job_event(job_options, self.inputs.files[split.file], split, folder.child(self.store.part_name(index)), rejects)

    def _collect(self, in_flight: dict, rows: dict, failures: list, stats: RunStats, progress: Progress) -> None:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            index = in_flight.pop(future)
            try:
                result, call = future.result()
            except PermanentError as error:
                split = self._describe(index)
                failures.append(f"{split} failed for good: {error.reason}")
                log.error("%s failed for good: %s", split, error.reason)
                continue
            rows[index] = int(result["rows"])
            stats.texts += int(result["texts"])
            stats.rejected += int(result.get("rejected", 0))
            stats.tokens = None if stats.tokens is None else stats.tokens + int(result.get("tokens", 0))
            if self.options.chunk_tokens is not None:
                stats.documents += int(result["texts"])
                stats.chunks += int(result["rows"])
                stats.input_tokens += int(result.get("input_tokens", 0))
            stats.requests += 1
            stats.invocations.append(call)
            progress.advance(1)

    def _describe(self, index: int) -> str:
        return f"part {self.store.part_name(index)}"

    def _copy_unchanged(self, planned: list[Split], committed: set[int], comparable: dict) -> dict[int, int]:
        """OLD's parts for splits that are byte for byte the same: server-side copies."""
        old = Location(self.options.reuse if self.options.reuse.endswith("/") else self.options.reuse + "/")
        try:
            success = json.loads(self.storage.read_bytes(old.child(SUCCESS)))
        except (CorpusError, ValueError):
            log.info("--reuse: %s is not a worker-mode dataset (no readable _SUCCESS): every split is embedded", old.uri)
            return {}
        if success.get("fingerprint") != self.metadata["fingerprint"] or success.get("job") != comparable:
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


def _part_rows(storage: Storage, location: Location) -> int:
    import pyarrow.parquet as pq

    with storage.open_read(location) as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def choose_io(run, target, inputs: Inputs, output: Location) -> tuple[str, str]:
    """("worker" | "client", why): worker mode needs S3 on both sides, a Lambda target that can
    run shard jobs, and its grants; `--io` forces the choice (worker: or one sentence why not)."""
    forced = run.options.io
    if forced == "client":
        return "client", "--io client"
    reasons = []
    if target.info.kind != "lambda":
        reasons.append("the target is not lambda://")
    if not all(file.location.is_s3 for file in inputs.files):
        reasons.append("INPUT is not on S3")
    if not (output.is_s3 and output.uri.endswith("/")):
        reasons.append("--output is not an s3://bucket/prefix/ dataset")
    if run.options.changes:
        reasons.append("--changes needs the texts (the client path)")
    if not reasons:
        refused = target.probe_shard_jobs(inputs.files[0].location, output, run.storage)
        if refused is None:
            return "worker", "the function reads and writes S3 itself"
        reasons.append(refused)
    if forced == "worker":
        raise InputError(f"--io worker: {'; '.join(reasons)}")
    return "client", "; ".join(reasons)
