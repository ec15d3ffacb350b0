"""One run of `embed-corpus`: probe, check every row, embed the missing shards, assemble, report.

Nothing reaches the model before the whole input has been read once and every row checked
against the target's limits, so bad input stops the run with its line number and no cost.
Requests run on `concurrency` worker threads, at most twice that many in flight, so memory
stays bounded whatever the corpus size; a shard is committed as soon as its last request is
back, and a request that fails for good stops new work and names its rows.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, Iterator

import numpy as np
import orjson

from embedding_client.corpus.errors import CorpusError, InputError, PermanentError
from embedding_client.corpus.locations import Location, Storage, parse_location
from embedding_client.corpus.plan import Shard, pack_requests, shards
from embedding_client.corpus.progress import Progress, ProgressLogHandler
from embedding_client.corpus.readers import Rejected, Row, detect_format, read_rows, row_label
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.retry import Counters, RetryPolicy, embed_with_retries
from embedding_client.corpus.shards import MANIFEST_VERSION, OutputSchema, ShardStore
from embedding_client.corpus.targets import (
    EmbedOptions,
    Limits,
    Target,
    open_target,
    output_dtype,
    output_width,
)

log = logging.getLogger("embed_corpus")
DEFAULT_SHARD_SIZE = 10_000
REJECTS_SUFFIX = ".rejects.jsonl"
SHOWN_PROBLEMS = 5


@dataclass
class Options:
    input: str
    output: str
    target: str = "local"
    endpoint_urls: list[str] = field(default_factory=list)
    region: str | None = None
    text_field: str = "text"
    id_field: str = "id"
    concurrency: int | None = None
    batch_size: int | None = None
    resume: bool = False
    api_key: str | None = None
    on_error: str = "stop"
    input_type: str | None = None
    embedding_type: str = "float"
    model: str | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    format: str | None = None
    overwrite: bool = False
    retries: int = 8
    request_timeout: float | None = None  # seconds; None: the target's default


@dataclass
class Scan:
    """What the first pass over the input found."""

    rows: int = 0
    ids_are_ints: bool = True
    rejected: int = 0
    sample: list[Rejected] = field(default_factory=list)  # the first few rejected rows, for messages


@dataclass
class Failure:
    rows: list[Row]
    reason: str


def checked_rows(path: str, fmt: str, options: Options, limits: Limits) -> Iterator[Row | Rejected]:
    """The reader's rows, with the target's per-text limit applied (both passes use this)."""
    for item in read_rows(path, fmt, options.text_field, options.id_field):
        if isinstance(item, Row) and len(item.text) > limits.max_item_chars:
            yield Rejected(
                item.number,
                item.id,
                f"the text has {len(item.text):,} characters; the target "
                f"accepts at most {limits.max_item_chars:,} (MAX_INPUT_CHARS)",
            )
        else:
            yield item


def scan(path: str, fmt: str, options: Options, limits: Limits, sink: IO[bytes] | None = None) -> Scan:
    """Count and check every row; rejected rows go to `sink` as JSON lines (memory stays flat
    even when every row of a huge input is rejected)."""
    result = Scan()
    for item in checked_rows(path, fmt, options, limits):
        if isinstance(item, Rejected):
            result.rejected += 1
            if len(result.sample) < SHOWN_PROBLEMS:
                result.sample.append(item)
            if sink is not None:
                sink.write(
                    orjson.dumps({row_label(fmt): item.number, "id": item.id, "reason": item.reason}) + b"\n"
                )
        else:
            result.rows += 1
            result.ids_are_ints = result.ids_are_ints and isinstance(item.id, int)
    return result


def problems(found: Scan, fmt: str) -> str:
    label = row_label(fmt)
    shown = "; ".join(f"{label} {item.number}: {item.reason}" for item in found.sample)
    more = found.rejected - len(found.sample)
    hint = (
        " (--text-field and --id-field name the fields)"
        if any(item.reason.startswith("no '") for item in found.sample)
        else ""
    )
    return shown + (f" (and {more:,} more)" if more > 0 else "") + hint


class Run:
    def __init__(self, options: Options, stream=None):
        self.options = options
        self.stream = stream
        self.storage = Storage(options.region)
        self.source = parse_location(options.input, "INPUT")
        self.output = parse_location(options.output, "--output")
        self.fmt = options.format or detect_format(self.source.name)
        self.store = ShardStore(self.output, self.storage)
        self.counters = Counters()
        self.failures: list[Failure] = []

    def execute(self) -> RunStats | None:
        """The report's figures, or None when an earlier run already finished this output."""
        if self.source.uri == self.output.uri:
            raise InputError("--output must not be the input file")
        fingerprint = self.storage.fingerprint(self.source)
        self.storage.check_writable(self.output)
        if self._finished_already():
            return None
        started = time.perf_counter()
        target = open_target(
            self.options.target,
            EmbedOptions(self.options.input_type, self.options.embedding_type, self.options.model),
            endpoint_urls=self.options.endpoint_urls,
            region=self.options.region,
            api_key=self.options.api_key,
            concurrency=self.options.concurrency,
            timeout=self.options.request_timeout,
        )
        try:
            for note in target.info.notes:
                log.info("%s", note)
            with tempfile.TemporaryDirectory(prefix="embed-corpus-") as scratch:
                path = self.storage.local_copy(self.source, scratch)
                return self._embed(target, path, fingerprint, started, scratch)
        finally:
            target.close()

    def _finished_already(self) -> bool:
        if not self.storage.exists(self.output) or self.store.manifest() is not None:
            return False
        if self.options.resume:
            log.info("%s is complete already: nothing to resume", self.output.uri)
            return True
        if not self.options.overwrite:
            raise InputError(f"{self.output.uri} exists: pass --overwrite to replace it")
        return False

    def _embed(self, target: Target, path: str, fingerprint: dict, started: float, scratch: str) -> RunStats:
        info = target.info
        rejects_path = os.path.join(scratch, "rejects.jsonl")
        with open(rejects_path, "wb") as sink:
            found = scan(path, self.fmt, self.options, info.limits, sink)
        self._handle_rejects(found, rejects_path)
        if not found.rows:
            raise InputError(f"{self.source.uri} holds no text to embed")
        schema = self._schema(found, info)
        committed = self.store.start(self._manifest(fingerprint, found, info), self.options.resume)
        count = math.ceil(found.rows / self.options.shard_size)
        done_before = sum(self._shard_rows(index, found.rows) for index in committed if index < count)
        stats = RunStats(
            self.options.target,
            info.model_id,
            info.dimension,
            self.options.embedding_type,
            self.output.uri,
            skipped_texts=done_before,
            rejected=found.rejected,
            lambda_memory_mb=getattr(target, "memory_mb", None),
            lambda_architecture=getattr(target, "architecture", None),
        )
        if committed:
            log.info(
                "resuming: %d of %d shards (%s texts) are committed already",
                len(committed),
                count,
                f"{done_before:,}",
            )
        progress = Progress(found.rows - done_before, self.stream, retries=lambda: self.counters.retries)
        rows = (
            item for item in checked_rows(path, self.fmt, self.options, info.limits) if isinstance(item, Row)
        )
        embedding, cpu = time.perf_counter(), time.process_time()
        try:
            with logs_through(progress):
                self._run_shards(
                    target, shards(rows, self.options.shard_size), committed, schema, stats, progress
                )
        finally:
            progress.close()
        stats.embed_s = time.perf_counter() - embedding
        stats.embed_cpu_s = time.process_time() - cpu
        stats.retries, stats.splits = self.counters.retries, self.counters.splits
        if self.failures:
            raise CorpusError(self._failure_message(count))
        log.info("assembling %s from %d shards", self.output.uri, count)
        self.store.assemble(count, schema)
        stats.wall_s = time.perf_counter() - started
        return stats

    def _run_shards(
        self,
        target: Target,
        planned: Iterator[Shard],
        committed: set[int],
        schema: OutputSchema,
        stats: RunStats,
        progress: Progress,
    ) -> None:
        concurrency = self.options.concurrency or target.default_concurrency
        budget = target.budget(self.options.batch_size or target.default_batch_size)
        policy = RetryPolicy(attempts=self.options.retries)
        in_flight: dict[Future, tuple[ShardBuffer, int, int]] = {}
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="embed")
        interrupted = True
        try:
            for shard in planned:
                if self.failures:
                    break
                if shard.index in committed:
                    continue
                texts = shard.texts
                requests = pack_requests(texts, budget)
                buffer = ShardBuffer(shard, schema, len(requests))
                for start, end in requests:
                    while len(in_flight) >= 2 * concurrency:
                        self._collect(in_flight, schema, stats, progress)
                    future = pool.submit(
                        embed_with_retries, target.embed, texts[start:end], policy, self.counters
                    )
                    in_flight[future] = (buffer, start, end)
            while in_flight:
                self._collect(in_flight, schema, stats, progress)
            interrupted = False
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)

    def _collect(self, in_flight: dict, schema: OutputSchema, stats: RunStats, progress: Progress) -> None:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            buffer, start, end = in_flight.pop(future)
            try:
                embedded = future.result()
            except PermanentError as error:
                self._fail(buffer.shard.rows[start:end], error.reason)
                continue
            except Exception as error:  # a bug: still name the rows, never lose them silently
                log.debug("request failed", exc_info=True)
                self._fail(buffer.shard.rows[start:end], f"{type(error).__name__}: {error}")
                continue
            buffer.fill(start, end, embedded.vectors, embedded.tokens)
            stats.texts += end - start
            stats.requests += len(embedded.invocations)
            stats.invocations.extend(embedded.invocations)
            stats.tokens = (
                None
                if stats.tokens is None or embedded.tokens is None
                else stats.tokens + sum(embedded.tokens)
            )
            stats.truncated = (
                None
                if stats.truncated is None or embedded.truncated is None
                else stats.truncated + embedded.truncated
            )
            progress.advance(end - start)
            if buffer.complete:
                self.store.commit(buffer.shard.index, buffer.table())

    def _fail(self, rows: list[Row], reason: str) -> None:
        self.failures.append(Failure(rows, reason))
        log.error("%s failed for good: %s", self._rows_named(rows), reason)

    def _rows_named(self, rows: list[Row]) -> str:
        label = row_label(self.fmt)
        first, last = rows[0], rows[-1]
        if first is last:
            return f"{label} {first.number} (id {first.id!r})"
        return f"{len(rows):,} rows, {label}s {first.number}-{last.number} (ids {first.id!r} to {last.id!r})"

    def _failure_message(self, count: int) -> str:
        first = self.failures[0]
        others = len(self.failures) - 1
        committed = len(self.store.committed())
        return (
            f"{self._rows_named(first.rows)} failed for good: {first.reason}"
            + (f" (and {others} more requests)" if others else "")
            + f"; {committed} of {count} shards are committed in {self.store.folder.uri}: fix the cause "
            "and run the same command with --resume to embed only the rest"
        )

    def _handle_rejects(self, found: Scan, rejects_path: str) -> None:
        if not found.rejected:
            return
        if self.options.on_error != "skip":
            raise InputError(
                f"{self.source.uri}: {problems(found, self.fmt)}; nothing was embedded: fix "
                f"these rows, or pass --on-error skip to write them to {self._rejects().uri} and embed "
                "the rest"
            )
        self.storage.put_file(rejects_path, self._rejects())
        log.warning(
            "%d rows rejected, written to %s: %s",
            found.rejected,
            self._rejects().uri,
            problems(found, self.fmt),
        )

    def _rejects(self) -> Location:
        return self.output.sibling(REJECTS_SUFFIX)

    def _schema(self, found: Scan, info) -> OutputSchema:
        metadata = {
            "model": info.model_id,
            "dimension": str(info.dimension),
            "embedding_type": self.options.embedding_type,
            "input_type": self.options.input_type or "",
            "rows": str(found.rows),
            "source": self.source.uri,
            "generator": "embed-corpus (embedding-client)",
        }
        return OutputSchema(
            found.ids_are_ints,
            self.options.embedding_type,
            output_width(self.options.embedding_type, info.dimension),
            metadata,
        )

    def _manifest(self, fingerprint: dict, found: Scan, info) -> dict:
        """What a resumed run must agree on (the target may change, the model may not)."""
        return {
            "version": MANIFEST_VERSION,
            "input": self.source.uri,
            "input_version": fingerprint,
            "format": self.fmt,
            "text_field": self.options.text_field,
            "id_field": self.options.id_field,
            "on_error": self.options.on_error,
            "rows": found.rows,
            "shard_size": self.options.shard_size,
            "model": info.model_id,
            "dimension": info.dimension,
            "embedding_type": self.options.embedding_type,
            "input_type": self.options.input_type,
        }

    def _shard_rows(self, index: int, rows: int) -> int:
        return min(self.options.shard_size, rows - index * self.options.shard_size)


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


class ShardBuffer:
    """One shard's vectors as its requests come back, in any order."""

    def __init__(self, shard: Shard, schema: OutputSchema, requests: int):
        self.shard = shard
        self.schema = schema
        self.vectors = np.empty((len(shard.rows), schema.width), dtype=output_dtype(schema.embedding_type))
        self.tokens: list | None = [0] * len(shard.rows)
        self.pending = requests

    @property
    def complete(self) -> bool:
        return self.pending == 0

    def fill(self, start: int, end: int, vectors: np.ndarray, tokens: list[int] | None) -> None:
        self.vectors[start:end] = vectors
        if tokens is None:
            self.tokens = None
        elif self.tokens is not None:
            self.tokens[start:end] = tokens
        self.pending -= 1

    def table(self):
        return self.schema.table(self.shard.rows, self.vectors, self.tokens)
