"""`--target batch://JOB_QUEUE`: plan worker mode's splits, write the plan under OUTPUT, submit
one array job per 10,000 children and a final job after them; then follow (by default), leave
(`--detach`), or come back (`--resume`: report, and re-submit only the splits whose parts are missing).

Everything a child needs is in the plan on S3, so nothing needs this process once the jobs are
submitted. Every check that can refuse the run (S3 on both sides, the queue, the job definition,
Batch permissions, the job role's grants, a finished or foreign OUTPUT) runs before anything is
written or submitted.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TextIO

from embedding_client.corpus import batch_cost
from embedding_client.corpus.batch_follow import BatchWaits, RunWatch
from embedding_client.corpus.batch_plan import BatchPlan, BatchRecords, assign
from embedding_client.corpus.errors import CorpusError, InputError, PermanentError, TransientError
from embedding_client.corpus.inputs import Inputs
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.options import Options
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.scheduler import Scheduler
from embedding_client.corpus.shards import DATASET_MANIFEST, MANIFEST_VERSION, SUCCESS, DatasetStore
from embedding_client.corpus.splits import Split
from embedding_client.corpus.target_batch import ACTIVE, BatchQueue
from embedding_client.corpus.worker_plan import WORKER_MAX_ROWS, head_sample
from embedding_client.corpus.worker_run import comparable_job, job_options, worker_splits

log = logging.getLogger("embed_corpus")
CHILD_SECONDS = 600  # a child holds as many splits as run about ten minutes at the measured rate: a Fargate
# task's start (image pull, model load) is then a small share of what it bills, and a Spot reclaim
# costs at most the part in hand (parts commit one by one)
FOLLOW_THREADS = 16  # calls waiting for parts: they sleep on one shared snapshot
RECORD_THREADS = 32
ASSUMED_PRECISION = "int8"  # the bulk image's recommended precision; prices and child sizes assume it


def check_locations(options: Options) -> None:
    """Batch children read INPUT and write OUTPUT on S3 themselves: both must be there."""
    if not options.input.startswith("s3://"):
        raise InputError(f"--target batch:// reads INPUT on S3: {options.input} is not an s3:// location")
    if not (options.output.startswith("s3://") and options.output.endswith("/")):
        raise InputError(f"--target batch:// writes a dataset on S3: --output must be s3://bucket/prefix/ (got {options.output})")
    for flag, value in (("--reuse", options.reuse), ("--changes", options.changes), ("--endpoint-url", options.endpoint_urls)):
        if value:
            raise InputError(f"{flag} does not apply to --target batch:// (use lambda:// worker mode or the client path)")
    if options.io == "client":
        raise InputError("--io client does not apply to --target batch://: the children read and write S3 themselves")


class BatchRun:
    def __init__(self, options: Options, storage: Storage, inputs: Inputs, store: DatasetStore, input_version: dict,
                 started: float, stream: TextIO | None, command: list[str] | None):
        self.options, self.storage, self.inputs, self.store = options, storage, inputs, store
        self.input_version, self.started, self.stream = input_version, started, stream
        self.command = command
        self.records = BatchRecords(store)
        self.queue = BatchQueue(options.target[len("batch://") :], options.batch_job_definition, options.region)

    # --- the run --------------------------------------------------------------------------------

    def execute(self) -> RunStats | None:
        options, queue = self.options, self.queue
        if self.store.finished():
            if options.resume and self.records.jobs():
                return self.report()
            if options.resume:
                log.info("%s is complete already: nothing to resume", self.store.folder.uri)
                return None
            if not options.overwrite:
                raise InputError(f"{self.store.folder.uri} exists: pass --overwrite to replace it")
        planned, split_bytes = worker_splits(self.storage, self.inputs, options)
        queue.check_grants(self.inputs.files[0].location, self.store.folder)
        job = job_options(options, self.storage, self.inputs, {})
        comparable = comparable_job(job)
        if options.dry_run:
            self._dry_run(planned, split_bytes)
            return None
        if self.store.finished() or (options.overwrite and not options.resume):
            self.store.clear()
            self.records.clear()
        fresh = self.store.manifest() is None
        committed = self.store.start(self._manifest(split_bytes, planned, comparable), options.resume)
        if fresh:
            self.records.clear()  # an earlier run's records under a prefix it left unfinished
        submissions = self.records.jobs()
        submission = submissions[-1] if submissions else None
        if submission is None or not self._active(submission):
            submission = self._submit_missing(planned, committed, comparable, len(submissions) + 1)
            if submission is None:  # every part was there: the final check ran here
                return self.report()
        else:
            log.info("the run submitted as %s is still under way: following it", ", ".join(submission["arrays"]))
        if options.detach:
            self._print_detached(submission)
            return None
        return self._follow(submission)

    def _manifest(self, split_bytes: int | None, planned: list[Split], comparable: dict) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "io": "batch",
            "input": self.options.input,
            "input_version": self.input_version,
            "split_bytes": split_bytes,
            "shard_size": self.options.shard_size,
            "splits": len(planned),
            "job": comparable,
        }

    def _active(self, submission: dict) -> bool:
        try:
            jobs = self.queue.describe([*submission["arrays"], submission["final"]])
        except (PermanentError, TransientError) as error:
            raise CorpusError(f"AWS Batch can't describe the run's jobs: {error.reason}") from None
        return any(job.get("status") in ACTIVE for job in jobs.values())

    def _submit_missing(self, planned: list[Split], committed: set[int], comparable: dict, number: int) -> dict | None:
        failed = sorted(self.records.indexes("failed") - committed)
        plan = self._plan(planned, [], comparable, number)
        if failed:
            reason = (self.records.read_json(self.records.failed(failed[0])) or {}).get("reason", "refused")
            raise CorpusError(
                f"{plan.describe_split(failed[0])} can't be embedded: {reason}"
                + (f" (and {len(failed) - 1} more splits)" if len(failed) > 1 else "")
                + f"; {len(committed)} of {len(planned)} parts are written: fix the input and run again with --overwrite"
                " (or pass --on-error skip)"
            )
        todo = [index for index in range(len(planned)) if index not in committed]
        if not todo:
            return self._finish_here(plan)
        plan.children = assign(todo, self._per_child())
        location = self.records.plan_location(number)
        self.storage.write_bytes(location, plan.to_json())
        name = f"embed-corpus-{int(time.time())}-{number}"
        submission = self.queue.submit(name, location.uri, len(plan.children))
        self.records.add_submission(submission)
        log.info(
            "submitted %d splits (%d already written) as %d children to batch://%s: array jobs %s, final job %s",
            len(todo), len(committed), len(plan.children), self.queue.queue, ", ".join(submission["arrays"]), submission["final"],
        )
        return submission

    def _finish_here(self, plan: BatchPlan) -> None:
        """Every part is there but `_SUCCESS` is not (the final job failed or never ran): check and
        write it here, with the final job's own code."""
        from embedding_client.workers.batch_worker import finish

        location = self.records.plan_location(plan.submission)
        plan.children = []
        self.storage.write_bytes(location, plan.to_json())
        if finish(location.uri, self.storage) != 0:
            refused = self.records.read_json(self.records.finish()) or {}
            raise CorpusError(refused.get("reason", "the final check refused _SUCCESS"))

    def _plan(self, planned: list[Split], children: list[list[int]], comparable: dict, number: int) -> BatchPlan:
        options = self.options
        return BatchPlan(
            output=self.store.folder.uri,
            job=comparable,
            run={"source": options.input, "input_type": options.input_type, "embedding_type": options.embedding_type,
                 "chunk_tokens": options.chunk_tokens, "chunk_overlap": options.chunk_overlap},
            files=self.inputs.files,
            splits=planned,
            children=children,
            submission=number,
        )

    def _per_child(self) -> int:
        if self.options.batch_splits_per_child:
            return self.options.batch_splits_per_child
        rows = min(self.options.shard_size, WORKER_MAX_ROWS)
        split_s = rows * batch_cost.CPU_MS_PER_PASSAGE[ASSUMED_PRECISION] / 1000 / self.queue.shape.vcpus
        return max(1, int(CHILD_SECONDS // split_s))

    # --- leaving, following, reporting ---------------------------------------------------------

    def _print_detached(self, submission: dict) -> None:
        follow = self._follow_command()
        print(
            f"embed-corpus: submitted to batch://{self.queue.queue} ({self.queue.region}); nothing needs this process now\n"
            f"  array jobs  {' '.join(submission['arrays'])} ({submission['children']:,} children)\n"
            f"  final job   {submission['final']} (writes _SUCCESS once every child succeeded)\n"
            f"  plan        {submission['plan']}\n"
            f"  written     {len(self.records.indexes('done')):,} parts so far\n"
            f"  follow      {follow}\n"
            f"  status      {follow} --detach",
            file=self.stream_out(),
        )

    def stream_out(self):
        return sys.stdout

    def _follow_command(self) -> str:
        words = [word for word in (self.command or []) if word not in ("--detach", "--overwrite", "--resume")]
        return shlex.join(["embed-corpus", *words, "--resume"])

    def _follow(self, submission: dict) -> RunStats:
        plan = BatchPlan.from_json(self.storage.read_bytes(Location(submission["plan"])), submission["plan"])
        done = self.records.indexes("done")
        todo = [index for child in plan.children for index in child if index not in done]
        stats = RunStats(self.options.target, "(the job's image)", 0, self.options.embedding_type, self.store.folder.uri)
        shape = self.queue.shape
        waits = BatchWaits(plan, todo, self.store, RunWatch(self.queue, self.records, submission), stats,
                           shape.vcpus, shape.memory_mb, shape.engine)
        Scheduler(FOLLOW_THREADS, self.options.retries, stats, self.stream).run(waits)
        return self.report()

    def report(self) -> RunStats:
        """The finished run, from `_SUCCESS` and every part's counts: what ran, priced on its engine."""
        success = self.records.read_json(self.store.folder.child(SUCCESS)) or {}
        manifest = self.store.folder.child(DATASET_MANIFEST)
        if self.storage.exists(manifest):  # left by a final job whose role may not delete
            self.storage.delete(manifest)
        metadata = success.get("metadata") or {}
        stats = RunStats(self.options.target, metadata.get("model", "?"), int(metadata.get("dimension") or 0),
                         self.options.embedding_type, self.store.folder.uri, chunk_tokens=self.options.chunk_tokens)
        names = [part["name"] for part in success.get("parts", [])]
        with ThreadPoolExecutor(RECORD_THREADS) as pool:
            counts = list(pool.map(lambda name: self.records.read_json(self.records.folder.child(f"done/{name[:-8]}.json")) or {}, names))
        seconds = 0.0
        for result in counts:
            rows = int(result.get("rows") or 0)
            stats.texts += int(result.get("texts") or rows)
            stats.rejected += int(result.get("rejected") or 0)
            stats.tokens = None if stats.tokens is None else stats.tokens + int(result.get("tokens") or 0)
            if self.options.chunk_tokens is not None:
                stats.documents += int(result.get("texts") or 0)
                stats.chunks += rows
            seconds += float(result.get("seconds") or 0.0)
            stats.requests += 1
        shape = self.queue.shape
        vcpu_s, gb_s = seconds * shape.vcpus, seconds * shape.memory_mb / 1024
        stats.batch = {
            "queue": self.queue.queue,
            "job_definition": self.queue.job_definition,
            "engine": shape.engine,
            "vcpus": shape.vcpus,
            "memory_mb": shape.memory_mb,
            "submissions": len(self.records.jobs()),
            "part_seconds": seconds,
            "vcpu_seconds": vcpu_s,
            "usd": batch_cost.engine_usd(shape.engine, vcpu_s, gb_s),
            "basis": "ESTIMATE: the parts' own embedding seconds x the job's vCPUs and memory (model loading, image "
                     "pulls and Fargate's one-minute minimum per task excluded)",
        }
        stats.wall_s = self._wall_s()
        return stats

    def _wall_s(self) -> float:
        """From the first submission to `_SUCCESS`: the run's own wall time, whoever watched it."""
        submissions = self.records.jobs()
        try:
            finished = self.storage.head(self.store.folder.child(SUCCESS))["LastModified"].timestamp()
        except (CorpusError, KeyError, AttributeError):
            return time.perf_counter() - self.started
        return max(0.0, finished - float(submissions[0].get("submitted_at", finished))) if submissions else 0.0

    def _dry_run(self, planned: list[Split], split_bytes: int | None) -> None:
        passages, basis = estimate_passages(self.storage, self.inputs, planned, split_bytes)
        shape = self.queue.shape
        per_child = self._per_child()
        children = -(-len(planned) // per_child)
        vcpus = int(self.queue.max_vcpus or 1000)
        print(
            f"embed-corpus: dry run: nothing was written or submitted\n"
            f"  plan        {len(planned):,} splits of up to {min(self.options.shard_size, WORKER_MAX_ROWS):,} rows, ~{passages:,.0f} "
            f"passages ({basis}); {children:,} children of {per_child} splits on batch://{self.queue.queue}\n"
            f"  child       {shape.vcpus:g} vCPUs, {shape.memory_mb:,} MB ({self.queue.job_definition}); first compute "
            f"environment {shape.engine}, at most {vcpus:,} vCPUs\n"
            f"  CPU time    {batch_cost.CPU_MS_PER_PASSAGE[ASSUMED_PRECISION]} ms per passage per vCPU ({ASSUMED_PRECISION}; "
            f"{batch_cost.CPU_SOURCE})\n"
            + batch_cost.render_quotes(batch_cost.quotes(passages, ASSUMED_PRECISION, vcpus, shape.vcpus, shape.memory_mb))
        )


def estimate_passages(storage: Storage, inputs: Inputs, planned: list[Split], split_bytes: int | None) -> tuple[float, str]:
    """About how many rows the splits hold, without reading them: Parquet row groups are counted
    exactly; line formats from the first object's bytes per line (gzip objects at 3x their size)."""
    if inputs.fmt == "parquet":
        from embedding_client.corpus.inputs import parquet_groups

        return float(sum(sum(parquet_groups(storage, file)) for file in inputs.files)), "Parquet row counts"
    sample = head_sample(storage, inputs.files[0])
    per_line = len(sample) / max(1, sample.count(b"\n"))
    size = sum(file.size * (3 if file.name.lower().endswith(".gz") else 1) for file in inputs.files)
    return size / per_line, f"{per_line:,.0f} bytes per line in the first object; gzip counted at 3x"
