"""Worker mode's shard work: each planned split is one shard job sent to a Lambda worker.

The worker reads its split from S3, checks, chunks and embeds it with its own model, writes its
part whole under the name the plan fixed, and answers with counts and its billed time; so a task
here is one call, and its commit has nothing left to write.

AWS Batch array jobs are the other plan of this kind (batch_run.py, batch_follow.py): the same
splits, job documents and `_SUCCESS` (worker_run.py), submitted once; a task per split whose one
call waits until its part is written. Retries, progress, the failure message and --resume stay
the scheduler's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Protocol

from embedding_client.corpus.inputs import Inputs
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.scheduler import Call, Scheduler, Units
from embedding_client.corpus.shard_job import JobOptions, job_event
from embedding_client.corpus.shards import DatasetStore
from embedding_client.corpus.splits import Split
from embedding_client.corpus.targets import Invocation


class JobTarget(Protocol):
    """A target that runs shard jobs (the bulk Lambda function)."""

    def shard_job(self, events: list[dict]) -> tuple[dict, Invocation]: ...


@dataclass
class SplitJobs:
    """The plan: the splits still to write (`todo`), one job each, sent through `target`."""

    units: ClassVar[Units] = Units(progress="parts", calls="parts", parts="parts", done="written")
    per_thread: ClassVar[int] = 1  # a job runs for minutes: no queue ahead of the threads

    target: JobTarget
    planned: list[Split]
    todo: list[int]
    inputs: Inputs
    store: DatasetStore
    job: JobOptions
    stats: RunStats
    rows: dict[int, int] = field(default_factory=dict)  # rows of each part written in this run

    @property
    def total(self) -> int:
        return len(self.planned)

    @property
    def work(self) -> int:
        return len(self.todo)

    def tasks(self, scheduler: Scheduler) -> Iterator[SplitJob]:
        for index in self.todo:
            yield SplitJob(self, index)

    def event(self, index: int) -> dict:
        """The job document for split `index`: what to read, the part (and rejects) to write."""
        folder, name = self.store.folder, self.store.part_name(index)
        rejects = folder.child(f"_rejects/{name[:-8]}.jsonl") if self.job.on_error == "skip" else None
        split = self.planned[index]
        return job_event(self.job, self.inputs.files[split.file], split, folder.child(name), rejects)


class SplitJob:
    """One split: one job, whose worker writes the part itself."""

    def __init__(self, plan: SplitJobs, index: int):
        self.plan, self.index = plan, index

    def calls(self) -> list[Call]:
        return [Call(self.plan.target.shard_job, [self.plan.event(self.index)], self.named, self.index)]

    def named(self) -> str:
        return f"part {self.plan.store.part_name(self.index)}"

    def take(self, call: Call, answer: tuple[dict, Invocation]) -> int:
        result, invocation = answer
        stats = self.plan.stats
        self.plan.rows[self.index] = int(result["rows"])
        stats.texts += int(result["texts"])
        stats.rejected += int(result.get("rejected", 0))
        stats.tokens = None if stats.tokens is None else stats.tokens + int(result.get("tokens", 0))
        if self.plan.job.chunk_tokens is not None:
            stats.documents += int(result["texts"])
            stats.chunks += int(result["rows"])
            stats.input_tokens += int(result.get("input_tokens", 0))
        stats.requests += 1
        stats.invocations.append(invocation)
        return 1

    def commit(self) -> None:
        """Nothing to write: the worker wrote the part before it answered."""
