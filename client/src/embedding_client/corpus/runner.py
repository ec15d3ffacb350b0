"""One run of `embed-corpus`: probe, check every row, embed the missing shards, assemble, report.

Nothing reaches the model before the whole input has been read once and every row checked
against the target's limits, so bad input stops the run with its line number and no cost.
Requests run on `concurrency` worker threads, at most twice that many in flight, so memory
stays bounded whatever the corpus size; a shard is committed as soon as its last request is
back, and a request that fails for good stops new work and names its rows.
"""

from __future__ import annotations

import json
import logging
import math
from array import array
import os
import tempfile
import time
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, Iterator

import numpy as np
import orjson

from embedding_client.contract import LAMBDA_PAYLOAD_BYTES, MIN_CHUNK_TOKENS, PAYLOAD_MARGIN_BYTES
from embedding_client.corpus.changes import ChangeSet
from embedding_client.corpus.choose_target import open_target
from embedding_client.corpus.errors import CorpusError, InputError, PermanentError
from embedding_client.corpus.fingerprint import digest, run_parts
from embedding_client.corpus.hashing import TEXT_HASH, SortedKeys, id_keys, text_hashes
from embedding_client.corpus.inputs import Inputs, list_inputs, split_rows
from embedding_client.corpus.locations import Location, Storage, parse_location
from embedding_client.corpus.plan import RequestBudget, Shard, pack_requests, shards
from embedding_client.corpus.progress import Progress, ProgressLogHandler
from embedding_client.corpus.readers import ChunkRow, Rejected, Row, row_label
from embedding_client.corpus.splits import Split
from embedding_client.corpus.worker_run import WorkerRun, choose_io
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.retry import Counters, RetryPolicy, embed_with_retries
from embedding_client.corpus.reuse import OldOutput
from embedding_client.corpus.shard_job import ShardBuffer, checked_rows, chunk_rows
from embedding_client.corpus.shards import MANIFEST_VERSION, SUCCESS, DatasetStore, OutputSchema, open_store
from embedding_client.corpus.targets import (
    Chunked,
    EmbedOptions,
    Limits,
    Target,
    merge_chunked,
    output_dtype,
    output_width,
)

log = logging.getLogger("embed_corpus")
DEFAULT_SHARD_SIZE = 10_000
REJECTS_SUFFIX = ".rejects.jsonl"
SHOWN_PROBLEMS = 5
CHUNK_REQUEST_BYTES = LAMBDA_PAYLOAD_BYTES - PAYLOAD_MARGIN_BYTES  # within Lambda's limit, as embedding requests


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
    reuse: str | None = None  # an earlier output whose vectors stand in for unchanged texts
    changes: str | None = None  # where to write the OLD -> NEW change set (needs reuse)
    chunk_tokens: int | None = None  # cut each text into chunks of at most this many tokens
    chunk_overlap: int = 0
    with_text: bool = False  # write each row's (chunk's) text too
    tokenizer: str | None = None  # a model folder to chunk with where the target can't
    io: str | None = None  # worker | client; None: worker where it can be, else client


@dataclass
class Scan:
    """What the first pass over the input found."""

    rows: int = 0
    ids_are_ints: bool = True
    rejected: int = 0
    sample: list[Rejected] = field(default_factory=list)  # the first few rejected rows, for messages
    id_keys: bytearray | None = None  # with --changes: each row's 16-byte id key, to find duplicates
    numbers: array | None = None  # ... and its line (row) number


@dataclass
class Failure:
    rows: list[Row]
    reason: str


def input_rows(storage: Storage, inputs: Inputs, options: Options) -> Iterator[Row | Rejected]:
    """Every file of INPUT, whole and in order, as rows."""
    for number in range(len(inputs.files)):
        yield from split_rows(storage, inputs, Split(number, 0, 0, whole=True), options.text_field, options.id_field)


def scan(
    items: Iterator[Row | Rejected], fmt: str, limits: Limits, sink: IO[bytes] | None = None, keys: bool = False
) -> Scan:
    """Count and check every row; rejected rows go to `sink` as JSON lines (memory stays flat
    even when every row of a huge input is rejected). `keys`: also collect each row's id key."""
    result = Scan(id_keys=bytearray() if keys else None, numbers=array("q") if keys else None)
    for item in checked_rows(items, limits):
        if isinstance(item, Rejected):
            result.rejected += 1
            if len(result.sample) < SHOWN_PROBLEMS:
                result.sample.append(item)
            if sink is not None:
                record = {row_label(fmt): item.number, "id": item.id, "reason": item.reason}
                if item.source:
                    record = {"file": item.source, **record}
                sink.write(orjson.dumps(record) + b"\n")
        else:
            result.rows += 1
            result.ids_are_ints = result.ids_are_ints and isinstance(item.id, int)
            if keys:
                result.id_keys += id_keys([item.id]).tobytes()
                result.numbers.append(item.number)
    return result


def first_duplicate_id(found: Scan) -> tuple[int, int] | None:
    """The line numbers of two rows with the same id, or None."""
    if not found.id_keys:
        return None
    keys = np.frombuffer(found.id_keys, dtype=np.uint8).reshape(-1, 16)
    pair = SortedKeys.of(keys).first_duplicate()
    return None if pair is None else (found.numbers[pair[0]], found.numbers[pair[1]])


def problems(found: Scan, fmt: str) -> str:
    label = row_label(fmt)
    shown = "; ".join(
        f"{item.source + ' ' if item.source else ''}{label} {item.number}: {item.reason}" for item in found.sample
    )
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
        self.inputs: Inputs | None = None  # listed when the run starts
        self.output = parse_location(options.output, "--output", folder=True)
        self.old = parse_location(options.reuse, "--reuse", folder=True) if options.reuse else None
        self.changes = parse_location(options.changes, "--changes") if options.changes else None
        self.store = open_store(self.output, self.storage)
        self.counters = Counters()
        self.failures: list[Failure] = []
        self.reuse: OldOutput | None = None  # OLD, open, when its vectors may be reused
        self.change_set: ChangeSet | None = None
        self.chunk = None  # texts -> list[Chunked], when --chunk-tokens: the target's or --tokenizer's

    def execute(self) -> RunStats | None:
        """The report's figures, or None when an earlier run already finished this output."""
        self.inputs = list_inputs(self.options.input, self.storage, self.options.format)
        self.fmt = self.inputs.fmt
        self._check_locations()
        fingerprint = self.inputs.version()
        old_version = self.storage.fingerprint(_old_marker(self.old)) if self.old else None
        self.storage.check_writable(self.output)
        if self.changes:
            self.storage.check_writable(self.changes)
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
        old = None
        try:
            for note in target.info.notes:
                log.info("%s", note)
            if self.options.chunk_tokens is not None:
                self.chunk = self._chunker(target)
            parts = self._fingerprint_parts(target.info)
            io, why = choose_io(self, target, self.inputs, self.output)
            if io == "worker":
                log.info("--io worker: %s; this process only plans and schedules", why)
                worker = WorkerRun(self, target, self.inputs, self.store, parts, self._metadata(target.info, parts))
                return worker.execute(started, fingerprint, old_version)
            if self.options.io is None and target.info.kind == "lambda" and self.output.is_s3:
                log.info("--io client: the corpus and vectors pass through this process: %s", why)
            if self.old:
                old = self._open_old(parts, target.info.dimension)
            with tempfile.TemporaryDirectory(prefix="embed-corpus-") as scratch:
                return self._embed(target, fingerprint, old_version, parts, old, started, scratch)
        finally:
            if self.change_set is not None:
                self.change_set.discard()
            if old is not None:
                old.close()
            target.close()

    def _check_locations(self) -> None:
        if any(file.location.uri == self.output.uri for file in self.inputs.files):
            raise InputError("--output must not be the input file")
        if self.changes and not self.old:
            raise InputError("--changes lists what changed since an earlier output: name it with --reuse OLD")
        if self.old and self.old.uri == self.output.uri:
            raise InputError("--reuse must name an earlier output, not --output itself: write NEW beside OLD")
        if self.changes and self.changes.uri in (self.output.uri, self.options.input, self.old.uri):
            raise InputError("--changes must be a file of its own, not INPUT, --output or --reuse")
        if self.old and not self.storage.exists(_old_marker(self.old)):
            raise InputError(
                f"--reuse {self.old.uri} "
                + ("holds no finished dataset (no _SUCCESS)" if self.old.uri.endswith("/") else "does not exist")
            )

    def _chunker(self, target: Target):
        """The target's own chunker (our service's /v1/chunks, or the model in-process), else the
        service's chunker on --tokenizer's folder; the sizes are checked against its window."""
        options = self.options
        window, chunk = target.info.chunk_window, target.chunk
        if window is None:
            if not options.tokenizer:
                raise InputError(
                    f"--chunk-tokens: {target.info.where or options.target} cannot chunk (it is not this "
                    "project's service, so it can't tell its tokenizer): pass --tokenizer DIR, the model's "
                    "sentence-transformers folder, to chunk here with its tokenizer"
                )
            from embedding_client.corpus.tokenizer_chunker import TokenizerChunker

            local = TokenizerChunker(options.tokenizer)
            window, chunk = local.window, local.chunk
        elif options.tokenizer:
            log.info("--tokenizer is not needed: %s chunks with its own tokenizer", target.info.where)
        if not MIN_CHUNK_TOKENS <= options.chunk_tokens <= window:
            raise InputError(
                f"--chunk-tokens must be between {MIN_CHUNK_TOKENS} and {window}, the most tokens a chunk may "
                f"hold on this model (its maximum less its special tokens and any prompt); got "
                f"{options.chunk_tokens}"
            )
        if not 0 <= options.chunk_overlap or 2 * options.chunk_overlap >= options.chunk_tokens:
            raise InputError(
                f"--chunk-overlap must be at least 0 and less than half of --chunk-tokens "
                f"({options.chunk_tokens}); got {options.chunk_overlap}"
            )
        return chunk

    def _fingerprint_parts(self, info) -> dict:
        return run_parts(
            info.fingerprint,
            info.where or self.options.target,
            info.model_id,
            info.dimension,
            self.options.input_type,
            self.options.embedding_type,
        )

    def _open_old(self, parts: dict, dimension: int) -> OldOutput:
        """OLD checked against this run; its text index built only when its vectors may be used."""
        old = OldOutput(self.old, self.storage, digest(parts), parts, dimension)
        if old.same:
            old.index_texts()
            log.info("--reuse: %s rows of %s indexed", f"{old.rows:,}", self.old.uri)
        else:
            log.warning(
                "--reuse: nothing is reused, every row is embedded: %s was made differently (%s)",
                self.old.uri,
                "; ".join(old.differences) or "its fingerprint differs",
            )
        return old

    def _finished_already(self) -> bool:
        if not self.store.finished():
            if self.options.overwrite and not self.options.resume:
                self.store.clear()
            self.store.check_free()
            return False
        if self.options.resume:
            log.info("%s is complete already: nothing to resume", self.output.uri)
            return True
        if not self.options.overwrite:
            raise InputError(f"{self.output.uri} exists: pass --overwrite to replace it")
        self.store.clear()
        return False

    def _embed(
        self,
        target: Target,
        fingerprint: dict,
        old_version: dict | None,
        parts: dict,
        old: OldOutput | None,
        started: float,
        scratch: str,
    ) -> RunStats:
        info = target.info
        rejects_path = os.path.join(scratch, "rejects.jsonl")
        with open(rejects_path, "wb") as sink:
            found = scan(self._rows(), self.fmt, info.limits, sink, keys=self.changes is not None)
        self._handle_rejects(found, rejects_path)
        if not found.rows:
            raise InputError(f"{self.options.input} holds no text to embed")
        duplicate = first_duplicate_id(found)
        if duplicate is not None:
            label = row_label(self.fmt)
            raise InputError(
                f"--changes needs unique ids, and {self.options.input} repeats an id on {label}s "
                f"{duplicate[0]} and {duplicate[1]}; nothing was embedded"
            )
        found.id_keys = found.numbers = None
        schema = self._schema(found, info, parts)
        if isinstance(self.store, DatasetStore):  # every part says what made it; _SUCCESS counts the rows
            self.store.metadata = schema.metadata
        if old is not None and self.changes is not None:
            if old.chunked != schema.chunked:
                raise InputError(
                    f"--changes: {self.old.uri} holds "
                    + ("chunks" if old.chunked else "whole texts")
                    + " and this run writes "
                    + ("chunks" if schema.chunked else "whole texts")
                    + ", so their keys can't be matched: run with the same chunking as OLD (vectors are "
                    "still reused without --changes)"
                )
            self.change_set = ChangeSet(old, schema, self.changes, self.storage)
        self.reuse = old if old is not None and old.same else None
        committed = self.store.start(self._manifest(fingerprint, old_version, found, info, parts), self.options.resume)
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
            reuse=self.old.uri if self.old else None,
            chunk_tokens=self.options.chunk_tokens,
        )
        if committed:
            log.info(
                "resuming: %d of %d shards (%s texts) are committed already",
                len(committed),
                count,
                f"{done_before:,}",
            )
        progress = Progress(found.rows - done_before, self.stream, retries=lambda: self.counters.retries)
        rows = (item for item in checked_rows(self._rows(), info.limits) if isinstance(item, Row))
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
        if isinstance(self.store, DatasetStore):
            log.info("%d parts written: writing %s", count, self.output.child(SUCCESS).uri)
        else:
            log.info("assembling %s from %d shards", self.output.uri, count)
        change_set = self.change_set
        self.store.assemble(
            count,
            schema,
            on_shard=change_set.add if change_set else None,
            before_publish=change_set.publish if change_set else None,
        )
        if change_set is not None:
            stats.changes = {"file": self.changes.uri, "upserts": change_set.upserts, "deletes": change_set.deletes}
            self.change_set = None
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
        self.limits = target.info.limits
        policy = RetryPolicy(attempts=self.options.retries)
        in_flight: dict[Future, tuple[ShardBuffer, np.ndarray]] = {}
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="embed")
        interrupted = True
        try:
            for shard in planned:
                if self.failures:
                    break
                if shard.index in committed:
                    continue
                rows, documents = shard.rows, None
                if self.chunk is not None:
                    chunked = self._chunked(shard, pool, policy, stats)
                    if chunked is None:
                        break
                    rows, documents = chunked
                buffer = ShardBuffer(shard.index, rows, schema, text_hashes(row.text for row in rows), documents)
                todo = self._reuse_into(buffer, stats, progress)
                texts = [rows[i].text for i in todo]
                requests = pack_requests(texts, budget)
                buffer.pending = len(requests)
                if buffer.complete:  # every row reused: nothing to send
                    self.store.commit(buffer.index, buffer.table())
                for start, end in requests:
                    while len(in_flight) >= 2 * concurrency:
                        self._collect(in_flight, schema, stats, progress)
                    future = pool.submit(
                        embed_with_retries, target.embed, texts[start:end], policy, self.counters
                    )
                    in_flight[future] = (buffer, todo[start:end])
            while in_flight:
                self._collect(in_flight, schema, stats, progress)
            interrupted = False
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)

    def _chunked(
        self, shard: Shard, pool: ThreadPoolExecutor, policy: RetryPolicy, stats: RunStats
    ) -> tuple[list[ChunkRow], np.ndarray] | None:
        """The shard's texts as chunk rows (input order, then chunk order) and each chunk's
        document (its index in the shard); None when a chunking request failed for good."""
        texts = shard.texts
        budget = RequestBudget(max_items=self.limits.max_items, max_request_bytes=CHUNK_REQUEST_BYTES)
        requests = pack_requests(texts, budget)
        size, overlap = self.options.chunk_tokens, self.options.chunk_overlap
        futures = [
            pool.submit(
                embed_with_retries,
                lambda part: self.chunk(part, size, overlap),
                texts[start:end],
                policy,
                self.counters,
                merge=merge_chunked,
            )
            for start, end in requests
        ]
        results: list[Chunked] = []
        for future, (start, end) in zip(futures, requests):
            try:
                results.extend(future.result())
            except PermanentError as error:
                self._fail(shard.rows[start:end], f"chunking: {error.reason}")
                return None
        for chunked in results:
            stats.documents += 1
            stats.chunks += len(chunked.spans)
            stats.documents_split += len(chunked.spans) > 1
            stats.input_tokens += chunked.tokens
            stats.chunk_tokens_total += sum(tokens for _, _, tokens in chunked.spans)
        return chunk_rows(shard.rows, results)

    def _reuse_into(self, buffer: ShardBuffer, stats: RunStats, progress: Progress) -> np.ndarray:
        """OLD's vectors for the shard's rows whose text OLD holds; the rows left to embed."""
        if self.reuse is None:
            return np.arange(len(buffer.rows))
        found = self.reuse.texts.lookup(buffer.hashes)
        hit = np.flatnonzero(found >= 0)
        if len(hit):
            vectors, tokens, same = self.reuse.vectors(
                found[hit], buffer.hashes[hit], buffer.schema.width, buffer.vectors.dtype
            )
            found[hit[~same]] = -1  # 8 bytes alike, another text: embed it
            hit, vectors, tokens = hit[same], vectors[same], tokens[same]
            progress.advance(buffer.fill(hit, vectors, tokens, count=False))
            stats.rows_reused += len(hit)
            stats.tokens_reused += int(tokens[tokens >= 0].sum())
        return np.flatnonzero(found < 0)

    def _collect(self, in_flight: dict, schema: OutputSchema, stats: RunStats, progress: Progress) -> None:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            buffer, positions = in_flight.pop(future)
            try:
                embedded = future.result()
            except PermanentError as error:
                self._fail([buffer.rows[i] for i in positions], error.reason)
                continue
            except Exception as error:  # a bug: still name the rows, never lose them silently
                log.debug("request failed", exc_info=True)
                self._fail([buffer.rows[i] for i in positions], f"{type(error).__name__}: {error}")
                continue
            documents_done = buffer.fill(positions, embedded.vectors, embedded.tokens)
            stats.texts += len(positions)
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
            progress.advance(documents_done)
            if buffer.complete:
                self.store.commit(buffer.index, buffer.table())

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
                f"{self.options.input}: {problems(found, self.fmt)}; nothing was embedded: fix "
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
        if isinstance(self.store, DatasetStore):
            return self.output.child("_rejects.jsonl")  # readers of the dataset skip `_` names
        return self.output.sibling(REJECTS_SUFFIX)

    def _schema(self, found: Scan, info, parts: dict) -> OutputSchema:
        metadata = self._metadata(info, parts)
        if not isinstance(self.store, DatasetStore):  # a dataset's parts don't (the worker's can't) know it
            metadata["rows"] = str(found.rows)
        return OutputSchema(
            found.ids_are_ints,
            self.options.embedding_type,
            output_width(self.options.embedding_type, info.dimension),
            metadata,
            chunked=self.options.chunk_tokens is not None,
            with_text=self.options.with_text,
        )

    def _metadata(self, info, parts: dict) -> dict[str, str]:
        """What every output (file or part) says about how it was made."""
        metadata = {
            "model": info.model_id,
            "dimension": str(info.dimension),
            "embedding_type": self.options.embedding_type,
            "input_type": self.options.input_type or "",
            "source": self.options.input,
            "text_hash": TEXT_HASH,
            "fingerprint": digest(parts),
            "fingerprint_parts": json.dumps(parts, sort_keys=True),
            "generator": "embed-corpus (embedding-client)",
        }
        if self.options.chunk_tokens is not None:
            metadata["chunk_tokens"] = str(self.options.chunk_tokens)
            metadata["chunk_overlap"] = str(self.options.chunk_overlap)
        return metadata

    def _manifest(self, fingerprint: dict, old_version: dict | None, found: Scan, info, parts: dict) -> dict:
        """What a resumed run must agree on (the target may change, what makes a vector may not)."""
        return {
            "version": MANIFEST_VERSION,
            "input": self.options.input,
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
            "fingerprint": digest(parts),
            "reuse": self.old.uri if self.old else None,
            "reuse_version": old_version,
            "changes": self.changes.uri if self.changes else None,
            "chunk_tokens": self.options.chunk_tokens,
            "chunk_overlap": self.options.chunk_overlap,
            "with_text": self.options.with_text,
        }

    def _rows(self) -> Iterator[Row | Rejected]:
        return input_rows(self.storage, self.inputs, self.options)

    def _shard_rows(self, index: int, rows: int) -> int:
        return min(self.options.shard_size, rows - index * self.options.shard_size)


def _old_marker(old: Location) -> Location:
    """What stands for OLD's version: the file, or a dataset's `_SUCCESS`."""
    return old.child(SUCCESS) if old.uri.endswith("/") else old


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
