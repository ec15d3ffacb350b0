"""Dynamic batching for the FastAPI target: concurrent requests share one model call.

Requests queue here; a single worker takes everything waiting (up to `max_items` texts,
after at most `max_wait_s` for company) and runs the model once, off the event loop, so
`/status` and `/health` answer while the model works. The queue is bounded: past
`max_queue_items` waiting texts a request is shed at once with 429 instead of joining an
unbounded backlog. Knows nothing about HTTP; the Lambda path never uses it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from embedding_service.errors import overloaded, timed_out
from embedding_service.model import DeadlineExceeded, Embeddings

log = logging.getLogger("embedding.batcher")
EmbedFn = Callable[[list[str], "float | None", "str | None"], Embeddings]


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    deadline: float  # time.monotonic()
    prompt: str | None = None  # one model call serves one prompt
    enqueued: float = field(default_factory=time.monotonic)


class Batcher:
    def __init__(
        self,
        embed: EmbedFn,
        max_items: int,
        max_wait_s: float,
        max_queue_items: int,
        on_batch: Callable[[int], None] | None = None,
    ):
        self._embed = embed
        self.max_items = max_items
        self.max_wait_s = max_wait_s
        self.max_queue_items = max_queue_items
        self._on_batch = on_batch or (lambda size: None)
        self._queue: deque[_Job] = deque()
        self.queued_items = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._worker: asyncio.Task | None = None
        self._recent_rate = 200.0  # texts/s, refined as batches complete (for Retry-After)

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for job in self._queue:
            if not job.future.done():
                job.future.set_exception(overloaded(1))
        self._executor.shutdown(wait=True)

    async def embed(self, texts: list[str], timeout_s: float, prompt: str | None = None) -> Embeddings:
        """Queue texts and wait for their vectors; 429 when full, 504 past `timeout_s`."""
        if self.queued_items and self.queued_items + len(texts) > self.max_queue_items:
            backlog_s = (self.queued_items + len(texts)) / max(self._recent_rate, 1.0)
            raise overloaded(max(1, math.ceil(backlog_s)))
        job = _Job(texts, asyncio.get_running_loop().create_future(), time.monotonic() + timeout_s, prompt)
        self._queue.append(job)
        self.queued_items += len(texts)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except asyncio.TimeoutError:
            raise timed_out(timeout_s) from None

    def _take(self) -> list[_Job]:
        """Everything waiting, up to max_items texts (a bigger single job goes alone), up to
        the first job that asks for another prompt (it leads the next call)."""
        taken: list[_Job] = []
        count = 0
        now = time.monotonic()
        while self._queue:
            job = self._queue[0]
            if taken and (count + len(job.texts) > self.max_items or job.prompt != taken[0].prompt):
                break
            self._queue.popleft()
            self.queued_items -= len(job.texts)
            if job.future.done() or job.deadline < now:  # its caller already gave up
                continue
            taken.append(job)
            count += len(job.texts)
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self.max_wait_s > 0 and self.queued_items < self.max_items:
                    await asyncio.sleep(self.max_wait_s)  # bounded wait for company
                jobs = self._take()
                if not jobs:
                    continue
                texts = [text for job in jobs for text in job.texts]
                deadline = max(job.deadline for job in jobs)
                started = time.monotonic()
                try:
                    result = await loop.run_in_executor(
                        self._executor, self._embed, texts, deadline, jobs[0].prompt
                    )
                except DeadlineExceeded:  # every caller's time ran out: an expected outcome
                    log.info("batch abandoned at its deadline", extra={"batch_size": len(texts)})
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(timed_out(round(job.deadline - job.enqueued, 3)))
                            job.future.exception()  # mark retrieved: its waiter may be gone
                    continue
                except Exception as error:  # deliver the failure to every waiting request
                    log.exception("model call failed", extra={"batch_size": len(texts)})
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(error)
                    continue
                elapsed = max(time.monotonic() - started, 1e-6)
                self._recent_rate = 0.8 * self._recent_rate + 0.2 * (len(texts) / elapsed)
                self._on_batch(len(texts))
                self._deliver(jobs, result)

    @staticmethod
    def _deliver(jobs: list[_Job], result: Embeddings) -> None:
        start = 0
        for job in jobs:
            end = start + len(job.texts)
            if not job.future.done():
                job.future.set_result(
                    Embeddings(np.ascontiguousarray(result.vectors[start:end]), result.token_counts[start:end],
                               result.truncated[start:end])
                )
            start = end
