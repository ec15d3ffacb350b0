"""`embed-corpus-worker`: an AWS Batch child (`run PLAN`) or the run's final job (`finish PLAN`).

A child finds its splits in the plan by its array index (plus the client's offset for plans of
more than 10,000 children) and runs each through `corpus.shard_job.run_job`, the code the Lambda
workers run, on the service's model loaded here (MODEL_DIR, as in the bulk image): the same rows,
byte for byte. Each part is committed whole under the name the plan fixed, then its counts under
`_embed-corpus-batch/done/`; a part already there is skipped, so a retry or a Spot reclaim never
writes a row twice. Splits run in parallel, one single-threaded process per vCPU (measured faster
than one split on every thread: docs/benchmarks/scale.md). SIGTERM (Spot's two-minute warning) lets the parts in hand finish,
then the child exits 143 and the retry strategy runs the rest. Bad rows record the split and the
reason under `failed/`, the other splits still run, and the child exits 3 (EXIT_BAD_INPUT), which the job
definition does not retry.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait

from embedding_client.corpus import errors
from embedding_client.corpus.batch_plan import BatchPlan, BatchRecords
from embedding_client.corpus.locations import Location, Storage
from embedding_client.corpus.options import Options
from embedding_client.corpus.run_context import output_metadata
from embedding_client.corpus.run_fingerprint import run_parts
from embedding_client.corpus.shard_job import JobOptions, job_event, run_job
from embedding_client.corpus.shards import DatasetStore
from embedding_client.corpus.worker_run import publish_success
from embedding_client.workers.batch_interface import (
    ARRAY_INDEX_ENV,
    ATTEMPT_ENV,
    CHILD_OFFSET_ENV,
    EXIT_BAD_INPUT,
    EXIT_DONE,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    JOB_ID_ENV,
)

log = logging.getLogger("embed_corpus_worker")
FOOTER_THREADS = 32  # the final job reads every part's footer: S3 round trips, not CPU
PROCESSES_ENV = "EMBED_CORPUS_WORKER_PROCESSES"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Stop:
    """Set by SIGTERM: no new part starts."""

    requested = False

    @classmethod
    def install(cls) -> None:
        def handler(signum, frame):
            cls.requested = True
            log.warning("SIGTERM: finishing the part in hand, then exiting %d so the retry runs the rest", EXIT_INTERRUPTED)

        signal.signal(signal.SIGTERM, handler)


def load_plan(uri: str, storage: Storage) -> BatchPlan:
    if not uri.startswith("s3://"):
        raise errors.InputError(f"the plan must be an s3:// URI (got {uri!r})")
    return BatchPlan.from_json(storage.read_bytes(Location(uri)), uri)


def child_number(plan: BatchPlan) -> int:
    """This child's entry in the plan: the array index (0 for a job that is not an array) + offset."""
    try:
        number = int(os.environ.get(ARRAY_INDEX_ENV, "0")) + int(os.environ.get(CHILD_OFFSET_ENV, "0"))
    except ValueError:
        raise errors.InputError(f"{ARRAY_INDEX_ENV} and {CHILD_OFFSET_ENV} must be whole numbers") from None
    if not 0 <= number < len(plan.children):
        raise errors.InputError(f"child {number} is not in the plan (it has {len(plan.children)} children)")
    return number


def model_target(plan: BatchPlan):
    """The service's model in this process, and the metadata every part carries (its fingerprint
    is the model's, as on the Lambda workers and --target local)."""
    from embedding_client.corpus.target_local import LocalTarget
    from embedding_client.corpus.targets import EmbedOptions

    run = plan.run
    target = LocalTarget(EmbedOptions(run["input_type"], run["embedding_type"]))
    info = target.info
    options = Options(
        input=run["source"],
        output=plan.output,
        input_type=run["input_type"],
        embedding_type=run["embedding_type"],
        chunk_tokens=run["chunk_tokens"],
        chunk_overlap=run["chunk_overlap"],
    )
    parts = run_parts(info.model_fingerprint, info.where, info.model_id, info.dimension, run["input_type"], run["embedding_type"])
    return target, output_metadata(options, info, parts)


class SplitRunner:
    """One process's model and the run's options: embeds one split at a time, part by part."""

    def __init__(self, plan_uri: str, who: str):
        self.storage = Storage()
        self.plan = load_plan(plan_uri, self.storage)
        self.store = DatasetStore(Location(self.plan.output), self.storage)
        self.records = BatchRecords(self.store)
        self.who = who
        self.target, metadata = model_target(self.plan)
        self.options = JobOptions(**self.plan.job, metadata=metadata)

    def embed(self, index: int) -> bool:
        """Split `index` into its part and its counts; False when its rows were refused (recorded)."""
        plan, store, records = self.plan, self.store, self.records
        name = store.part_name(index)
        split = plan.splits[index]
        rejects = store.folder.child(f"_rejects/{name[:-8]}.jsonl") if self.options.on_error == "skip" else None
        event = job_event(self.options, plan.files[split.file], split, store.folder.child(name), rejects)
        try:
            result = run_job(next(iter(event.values())), self.target, self.storage)
        except errors.InputError as error:  # bad rows: a retry would fail alike
            reason = str(error)
            log.error("%s: %s: %s", self.who, plan.describe_split(index), reason)
            records.write_json(records.failed(index), {"split": index, "part": name, "what": plan.describe_split(index), "reason": reason})
            return False
        records.write_json(records.done(index), result)
        log.info("%s: %s written: %d rows in %.1f s", self.who, name, result["rows"], result["seconds"])
        return True


def processes_for(todo: int) -> int:
    """Splits in parallel: one single-threaded process per vCPU the container may use (measured faster
    than one split on every thread: docs/benchmarks/scale.md); one on a GPU, which a single process
    keeps busy; EMBED_CORPUS_WORKER_PROCESSES to choose."""
    configured = os.environ.get(PROCESSES_ENV)
    try:
        wanted = int(configured) if configured else (1 if os.environ.get("EMBEDDING_DEVICE", "cpu") != "cpu" else vcpus())
    except ValueError:
        raise errors.InputError(f"{PROCESSES_ENV} must be a whole number (got {configured!r})") from None
    return max(1, min(wanted, todo))


def vcpus() -> int:
    """The CPUs this container may use: its affinity, bounded by a cgroup v2 CPU quota (a container on
    a larger EC2 host sees every CPU of the host in its affinity)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def run_child(plan_uri: str) -> int:
    storage = Storage()
    plan = load_plan(plan_uri, storage)
    number = child_number(plan)
    records = BatchRecords(DatasetStore(Location(plan.output), storage))
    todo = [index for index in plan.children[number] if not _committed(records, plan, index)]
    who = f"child {number} (job {os.environ.get(JOB_ID_ENV, '?')}, attempt {os.environ.get(ATTEMPT_ENV, '1')})"
    log.info("%s: %d splits, %d already committed", who, len(plan.children[number]), len(plan.children[number]) - len(todo))
    if not todo:
        return EXIT_DONE
    processes = processes_for(len(todo))
    if processes == 1:
        runner = SplitRunner(plan_uri, who)
        refused = False
        for index in todo:
            if Stop.requested:
                return EXIT_INTERRUPTED
            refused = not runner.embed(index) or refused
    else:
        refused = _in_parallel(plan_uri, who, todo, processes)
    if Stop.requested:
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if refused else EXIT_DONE


_RUNNER: SplitRunner | None = None  # a pool process's own model


def _start_process(plan_uri: str, who: str) -> None:
    """A pool process: dies with the child (kill -9 included), leaves SIGTERM to the child, one thread."""
    global _RUNNER
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.environ["EMBEDDING_THREADS"] = "1"
    _configure_logging()
    _RUNNER = SplitRunner(plan_uri, who)


def _embed_in_process(index: int) -> bool:
    return _RUNNER.embed(index)


def _in_parallel(plan_uri: str, who: str, todo: list[int], processes: int) -> bool:
    """The splits over `processes` pool processes, one split each at a time; after SIGTERM no new
    split starts and the ones in hand finish. True when any split was refused."""
    refused = False
    failure: BaseException | None = None
    splits = iter(todo)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_start_process, initargs=(plan_uri, who)) as pool:
        pending = set()
        while True:
            while not Stop.requested and failure is None and len(pending) < processes:
                index = next(splits, None)
                if index is None:
                    break
                pending.add(pool.submit(_embed_in_process, index))
            if not pending:
                break
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    refused = not future.result() or refused
                except BaseException as error:  # S3 or the model failing: no new split; the retry runs the rest
                    failure = failure or error
    if failure is not None:
        raise failure if isinstance(failure, errors.CorpusError) else errors.CorpusError(f"{type(failure).__name__}: {failure}")
    return refused


def _committed(records: BatchRecords, plan: BatchPlan, index: int) -> bool:
    """The part is there: its counts too (a child killed between the two writes them now)."""
    store, storage = records.store, records.storage
    part = store.folder.child(store.part_name(index))
    if not storage.exists(part):
        return False
    if not storage.exists(records.done(index)):
        records.write_json(records.done(index), _counts_from_part(storage, part, plan))
    return True


def _counts_from_part(storage: Storage, part: Location, plan: BatchPlan) -> dict:
    import pyarrow.parquet as pq

    with storage.open_read(part) as handle:
        table = pq.read_table(handle, columns=["tokens"])
    rows = table.num_rows
    chunked = plan.job.get("chunk_tokens") is not None
    return {"part": part.uri, "rows": rows, "texts": None if chunked else rows, "rejected": 0,
            "tokens": int(table.column("tokens").to_numpy(zero_copy_only=False).sum()) if rows else 0,
            "seconds": None, "recovered": True}


def finish(plan_uri: str, storage: Storage | None = None) -> int:
    """Every part there and made by one model: `_SUCCESS`, exactly as worker mode writes it."""
    storage = storage or Storage()
    plan = load_plan(plan_uri, storage)
    store = DatasetStore(Location(plan.output), storage)
    records = BatchRecords(store)
    names = storage.names(store.folder)
    missing = [index for index in range(len(plan.splits)) if store.part_name(index) not in names]
    if missing:
        first = missing[0]
        failed = records.read_json(records.failed(first))
        reason = (
            f"{len(missing):,} of {len(plan.splits):,} parts are missing, first {store.part_name(first)} from "
            f"{plan.describe_split(first)}" + (f": {failed['reason']}" if failed else "")
            + "; _SUCCESS is not written: run the same embed-corpus command with --resume"
        )
        records.write_json(records.finish(), {"missing": missing[:100], "count": len(missing), "reason": reason})
        log.error("%s", reason)
        return EXIT_FAILED
    with ThreadPoolExecutor(FOOTER_THREADS) as pool:
        footers = list(pool.map(lambda index: _footer(storage, store.folder.child(store.part_name(index))), range(len(plan.splits))))
    fingerprints = {meta.get(b"fingerprint") for _, meta in footers}
    if len(fingerprints) != 1:
        odd = next(i for i, (_, meta) in enumerate(footers) if meta.get(b"fingerprint") != footers[0][1].get(b"fingerprint"))
        reason = (f"{store.part_name(odd)} was made by another model than {store.part_name(0)} (fingerprints differ): "
                  "delete it and run the same embed-corpus command with --resume")
        records.write_json(records.finish(), {"missing": [], "count": 0, "reason": reason})
        log.error("%s", reason)
        return EXIT_BAD_INPUT
    metadata = {key.decode(): value.decode() for key, value in footers[0][1].items()}
    rows = {index: count for index, (count, _) in enumerate(footers)}
    try:
        publish_success(store, plan.files, plan.splits, rows, metadata, plan.job, engine="batch")
    except errors.AccessDenied as error:  # _SUCCESS is written; the job role may not delete the run's manifest
        if not store.finished():
            raise
        log.warning("_SUCCESS written, but the run's manifest stays (the client removes it): %s", error)
    log.info("_SUCCESS written: %d parts, %d rows", len(rows), sum(rows.values()))
    return EXIT_DONE


def _footer(storage: Storage, part: Location) -> tuple[int, dict]:
    import pyarrow.parquet as pq

    with storage.open_read(part) as handle:
        meta = pq.ParquetFile(handle).metadata
    return meta.num_rows, dict(meta.metadata or {})


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="embed-corpus-worker",
        description="An AWS Batch child of an embed-corpus run (run PLAN) or its final job (finish PLAN).",
    )
    p.add_argument("step", choices=("run", "finish"), help="run: embed this child's splits; finish: check every part, write _SUCCESS")
    p.add_argument("plan", metavar="PLAN", help="the plan's s3:// URI (the job definition passes Ref::plan)")
    return p


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("embed-corpus-worker: %(message)s"))
    for name in ("embed_corpus_worker", "embed_corpus"):  # ours only: boto's INFO lines stay out of the logs
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _configure_logging()
    Stop.install()
    try:
        return run_child(args.plan) if args.step == "run" else finish(args.plan)
    except errors.InputError as error:  # a plan that is not ours, an index outside it, a model refusing the options
        log.error("error: %s", error)
        return EXIT_BAD_INPUT
    except errors.CorpusError as error:  # S3 or the model failing for now: the retry strategy runs it again
        log.error("error: %s", error)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
