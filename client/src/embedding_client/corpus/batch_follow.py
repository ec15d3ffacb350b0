"""Following a submitted Batch run through the one scheduler: a task per split still to land,
whose one call returns once the part's counts are under OUTPUT, then one task for `_SUCCESS`.

Nothing here schedules work: Batch does. The scheduler still owns what it owns for every kind of
shard work (the thread pool, retries of a failed AWS call, progress, the failure message and
--resume). The calls share one `Snapshot` of the run (the parts landed, the failures recorded,
the jobs' states), refreshed at most every POLL_S seconds whatever the number of waiting threads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar, Iterator

from embedding_client.corpus.batch_cost import engine_usd
from embedding_client.corpus.batch_plan import BatchPlan, BatchRecords
from embedding_client.corpus.errors import CorpusError, PermanentError, TransientError
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.scheduler import Call, Scheduler, Units
from embedding_client.corpus.shards import DatasetStore
from embedding_client.corpus.target_batch import ACTIVE, ARRAY_MAX, BatchQueue

POLL_S = 5.0


@dataclass
class Snapshot:
    done: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    jobs: dict[str, dict] = field(default_factory=dict)
    finished: bool = False
    taken: float = float("-inf")


class RunWatch:
    """The run as S3 and Batch say it is, shared by every waiting call."""

    def __init__(self, queue: BatchQueue, records: BatchRecords, submission: dict, poll_s: float = POLL_S):
        self.queue, self.records, self.submission, self.poll_s = queue, records, submission, poll_s
        self._lock = threading.Lock()
        self._snapshot = Snapshot()

    def snapshot(self, fresh: bool = False) -> Snapshot:
        with self._lock:
            if fresh or time.monotonic() - self._snapshot.taken >= self.poll_s:
                try:
                    self._snapshot = Snapshot(
                        self.records.indexes("done"),
                        self.records.indexes("failed"),
                        self.queue.describe([*self.submission["arrays"], self.submission["final"]]),
                        self.records.store.finished(),
                        time.monotonic(),
                    )
                except CorpusError as error:
                    raise TransientError(str(error)) from None
            return self._snapshot

    def children(self) -> str:
        """`children 12 succeeded, 1 failed, 40 running` across the submission's array jobs."""
        counts: dict[str, int] = {}
        for job_id in self.submission["arrays"]:
            job = self._snapshot.jobs.get(job_id) or {}
            summary = (job.get("arrayProperties") or {}).get("statusSummary") or {job.get("status", "SUBMITTED"): 1}
            for status, count in summary.items():
                counts[status] = counts.get(status, 0) + int(count)
        shown = [f"{counts.get(s, 0):,} {s.lower()}" for s in ("SUCCEEDED", "FAILED", "RUNNING") if counts.get(s)]
        return "children " + (", ".join(shown) if shown else "queued")


@dataclass
class BatchWaits:
    """The plan the scheduler runs while Batch does the work."""

    units: ClassVar[Units] = Units(progress="parts", calls="parts", parts="parts", done="written")
    per_thread: ClassVar[int] = 1

    plan: BatchPlan
    todo: list[int]
    store: DatasetStore
    watch: RunWatch
    stats: RunStats
    vcpus: float
    memory_mb: int
    engine: str
    part_seconds: float = 0.0
    rows: int = 0
    child_of: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.child_of = {index: child for child, splits in enumerate(self.plan.children) for index in splits}

    @property
    def total(self) -> int:
        return len(self.plan.splits)

    @property
    def work(self) -> int:
        return len(self.todo)

    def tasks(self, scheduler: Scheduler) -> Iterator:
        for index in self.todo:
            yield PartLands(self, index)
        yield SuccessLands(self)

    def detail(self) -> str:
        usd = engine_usd(self.engine, self.part_seconds * self.vcpus, self.part_seconds * self.memory_mb / 1024)
        return f"{self.watch.children()}, {self.rows:,} rows, ~${usd:,.2f} so far on {self.engine}"

    def holder(self, index: int) -> str | None:
        """The array job whose child holds split `index`, in this submission."""
        child = self.child_of.get(index)
        return None if child is None else self.watch.submission["arrays"][child // ARRAY_MAX]


class PartLands:
    def __init__(self, plan: BatchWaits, index: int):
        self.plan, self.index = plan, index

    def calls(self) -> list[Call]:
        return [Call(self.wait, [self.index], self.named, self.index)]

    def named(self) -> str:
        return f"part {self.plan.store.part_name(self.index)} ({self.plan.plan.describe_split(self.index)})"

    def wait(self, payload: list) -> dict:
        plan, index = self.plan, self.index
        records = plan.watch.records
        holder = plan.holder(index)
        while True:
            snapshot = plan.watch.snapshot()
            if index in snapshot.done:
                return records.read_json(records.done(index)) or {}
            if index in snapshot.failed:
                failed = records.read_json(records.failed(index)) or {}
                raise PermanentError(failed.get("reason", "its child refused it"))
            job = snapshot.jobs.get(holder or "") or {}
            if job.get("status") and job["status"] not in ACTIVE:
                fresh = plan.watch.snapshot(fresh=True)  # the part may have landed since
                if index not in fresh.done and index not in fresh.failed:
                    raise PermanentError(
                        f"its array job {holder} ended {job['status']} without it ({job.get('statusReason') or 'no reason given'})"
                    )
                continue
            time.sleep(plan.watch.poll_s / 2)

    def take(self, call: Call, result: dict) -> int:
        plan, stats = self.plan, self.plan.stats
        rows = int(result.get("rows") or 0)
        plan.rows += rows
        plan.part_seconds += float(result.get("seconds") or 0.0)
        stats.texts += int(result.get("texts") or rows)
        stats.rejected += int(result.get("rejected") or 0)
        stats.tokens = None if stats.tokens is None else stats.tokens + int(result.get("tokens") or 0)
        if plan.plan.job.get("chunk_tokens") is not None:
            stats.documents += int(result.get("texts") or 0)
            stats.chunks += rows
            stats.input_tokens += int(result.get("input_tokens") or 0)
        stats.requests += 1
        return 1

    def commit(self) -> None:
        """Nothing to write: the child committed the part."""


class SuccessLands:
    """The final job's work: `_SUCCESS`, or the reason it refused."""

    def __init__(self, plan: BatchWaits):
        self.plan = plan

    def calls(self) -> list[Call]:
        return [Call(self.wait, [None], lambda: "the final job", None)]

    def wait(self, payload: list) -> bool:
        watch = self.plan.watch
        final = watch.submission["final"]
        while True:
            snapshot = watch.snapshot()
            if snapshot.finished:
                return True
            job = snapshot.jobs.get(final) or {}
            if job.get("status") and job["status"] not in ACTIVE:
                if watch.snapshot(fresh=True).finished:
                    return True
                refused = watch.records.read_json(watch.records.finish()) or {}
                raise PermanentError(refused.get("reason") or f"job {final} ended {job['status']} without _SUCCESS "
                                     f"({job.get('statusReason') or 'no reason given'})")
            time.sleep(watch.poll_s / 2)

    def take(self, call: Call, result: bool) -> int:
        return 0

    def commit(self) -> None:
        """The final job wrote `_SUCCESS`."""
