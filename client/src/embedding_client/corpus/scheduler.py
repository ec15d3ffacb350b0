"""The one loop that drives shard work, whoever does the work.

Shard work comes in kinds: the client's own shards, embedded a request at a time through a
target (embed_work.py); split jobs sent to Lambda workers that read and write S3 themselves
(worker_jobs.py); AWS Batch array jobs, whose tasks wait for the parts the children write
(batch_follow.py). Each kind is a `Plan` of `Task`s: a task is one
part of the output, made by one or more `Call`s and then committed. A new place to run shard work
is a new plan, never a new loop, because everything else lives here once: the thread pool and the
window of calls in flight (memory stays bounded whatever the corpus size), retries and splits
(retry.py), progress, the run's timings, and the rule that a call failing for good stops new work
and ends the run with one sentence naming what it held (the committed parts stay for --resume).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, TextIO

from embedding_client.corpus.errors import CorpusError, PermanentError
from embedding_client.corpus.progress import Progress, ProgressLogHandler
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.retry import Counters, RetryPolicy, embed_with_retries
from embedding_client.corpus.shards import ShardStore
from embedding_client.corpus.targets import merge

log = logging.getLogger("embed_corpus")


@dataclass
class Call:
    """One request: `send(payload)`, retried and halved by retry.py (`merge` joins the halves)."""

    send: Callable[[list], Any]
    payload: list
    held: Callable[[], str]  # names what the call held, should it fail for good
    tag: Any = None  # the task's own note, to take the answer back
    merge: Callable[[list], Any] = merge


class Task(Protocol):
    """One part of the output: the calls that make it, each answer taken back, then its commit."""

    def calls(self) -> list[Call]: ...

    def take(self, call: Call, result: Any) -> int:
        """Record one call's answer (vectors, counts, stats); returns the progress units it completes."""

    def commit(self) -> None:
        """Every call is back (or there were none): the part is done."""


@dataclass(frozen=True)
class Units:
    """How a kind of work counts itself: in progress, and in the failure message."""

    progress: str  # "texts" / "parts" per second
    calls: str  # "(and 3 more requests)"
    parts: str  # "4 of 9 shards are committed"
    done: str  # "committed" / "written"


class Plan(Protocol):
    """A kind of shard work: its tasks, lazily and in plan order, committed parts left out."""

    units: Units
    per_thread: int  # calls in flight per thread: 2 keeps short requests flowing, 1 for long jobs
    store: ShardStore  # where the parts are committed (for the failure message)
    total: int  # parts in the whole plan
    work: int  # progress units left to this run
    # optional: detail() -> str, more of the run's state on the progress line (a Batch run's children)

    def tasks(self, scheduler: Scheduler) -> Iterator[Task]: ...


@dataclass
class _Open:
    task: Task
    left: int  # calls still out


class Scheduler:
    """Runs a plan's calls on `concurrency` threads and records what happened in `stats`."""

    def __init__(self, concurrency: int, attempts: int, stats: RunStats, stream: TextIO | None = None):
        self.concurrency = concurrency
        self.policy = RetryPolicy(attempts=attempts)
        self.counters = Counters()
        self.stats = stats
        self.stream = stream
        self.failures: list[tuple[str, str]] = []  # (what the call held, why), in order
        self._pool: ThreadPoolExecutor | None = None
        self._progress: Progress | None = None

    def run(self, plan: Plan) -> None:
        """Every task of the plan; then the timings and counters go into stats. A call that failed
        for good ends the run here with one sentence, after the calls in flight came back."""
        self._progress = Progress(plan.work, self.stream, retries=lambda: self.counters.retries, unit=plan.units.progress,
                                  detail=getattr(plan, "detail", None))
        started, cpu = time.perf_counter(), time.process_time()
        try:
            with logs_through(self._progress):
                self._drive(plan)
        finally:
            self._progress.close()
        self.stats.embed_s = time.perf_counter() - started
        self.stats.embed_cpu_s = time.process_time() - cpu
        self.stats.retries, self.stats.splits = self.counters.retries, self.counters.splits
        if self.failures:
            raise CorpusError(self._message(plan))

    def gather(self, calls: list[Call], stage: str) -> list | None:
        """Send `calls` now and wait for every answer, in order: a step a task needs before its own
        calls (chunking). None once one failed for good, recorded as `stage: reason`."""
        futures = [self._submit(call) for call in calls]
        results = []
        for future, call in zip(futures, calls):
            try:
                results.append(future.result())
            except PermanentError as error:
                self.fail(call.held(), f"{stage}: {error.reason}")
                return None
        return results

    def advance(self, units: int) -> None:
        """Progress made without a call (rows whose vectors OLD held)."""
        self._progress.advance(units)

    def fail(self, what: str, reason: str) -> None:
        self.failures.append((what, reason))
        log.error("%s failed for good: %s", what, reason)

    def _drive(self, plan: Plan) -> None:
        window = plan.per_thread * self.concurrency
        in_flight: dict[Future, tuple[_Open, Call]] = {}
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="shard-work")
        tasks = plan.tasks(self)
        interrupted = True
        try:
            while not self.failures:
                task = next(tasks, None)
                if task is None:
                    break
                calls = task.calls()
                if not calls:  # nothing to send (every row reused)
                    task.commit()
                    continue
                opened = _Open(task, len(calls))
                for call in calls:
                    while len(in_flight) >= window:
                        self._collect(in_flight)
                    in_flight[self._submit(call)] = (opened, call)
            while in_flight:
                self._collect(in_flight)
            interrupted = False
        finally:
            self._pool.shutdown(wait=not interrupted, cancel_futures=True)

    def _submit(self, call: Call) -> Future:
        return self._pool.submit(embed_with_retries, call.send, call.payload, self.policy, self.counters, merge=call.merge)

    def _collect(self, in_flight: dict[Future, tuple[_Open, Call]]) -> None:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            opened, call = in_flight.pop(future)
            try:
                result = future.result()
            except PermanentError as error:
                self.fail(call.held(), error.reason)
                continue
            except Exception as error:  # a bug: still name what it held, never lose it silently
                log.debug("call failed", exc_info=True)
                self.fail(call.held(), f"{type(error).__name__}: {error}")
                continue
            self._progress.advance(opened.task.take(call, result))
            opened.left -= 1
            if not opened.left:
                opened.task.commit()

    def _message(self, plan: Plan) -> str:
        what, reason = self.failures[0]
        others = len(self.failures) - 1
        units = plan.units
        return (
            f"{what} failed for good: {reason}"
            + (f" (and {others} more {units.calls})" if others else "")
            + f"; {len(plan.store.committed())} of {plan.total} {units.parts} are {units.done} in "
            f"{plan.store.folder.uri}: fix the cause and run the same command with --resume to embed only the rest"
        )


@contextmanager
def logs_through(progress: Progress) -> Iterator[None]:
    """While the bar is up, log lines go through it (erased, printed, redrawn)."""
    saved = log.handlers[:]
    if saved:
        handler = ProgressLogHandler(progress)
        handler.setFormatter(saved[0].formatter)
        log.handlers[:] = [handler]
    try:
        yield
    finally:
        log.handlers[:] = saved
