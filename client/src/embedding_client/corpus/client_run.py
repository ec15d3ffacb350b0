"""The client path: the corpus and its vectors pass through this process.

Nothing reaches the model before the whole input has been read once and every row checked
(first_pass.py), so bad input stops the run with its line numbers and no cost. Then OLD is opened
(--reuse) and the change set begun (--changes), the manifest pins the run, the scheduler embeds
the shards not yet committed (embed_work.py), and the shards are assembled into OUTPUT (or, for
a dataset, `_SUCCESS` lists them).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from typing import Callable, Iterator

from embedding_client.corpus.changes import ChangeSet
from embedding_client.corpus.embed_work import EmbedShards
from embedding_client.corpus.errors import InputError
from embedding_client.corpus.first_pass import Scan, first_duplicate_id, input_rows, problems, scan
from embedding_client.corpus.run_fingerprint import digest
from embedding_client.corpus.locations import Location
from embedding_client.corpus.manifests import client_manifest
from embedding_client.corpus.plan import shards
from embedding_client.corpus.readers import Rejected, Row, row_label
from embedding_client.corpus.report import RunStats
from embedding_client.corpus.reuse import OldOutput
from embedding_client.corpus.run_context import RunContext
from embedding_client.corpus.scheduler import Scheduler
from embedding_client.corpus.shard_job import checked_rows
from embedding_client.corpus.shards import SUCCESS, DatasetStore, OutputSchema
from embedding_client.corpus.targets import output_width

log = logging.getLogger("embed_corpus")
REJECTS_SUFFIX = ".rejects.jsonl"


class ClientRun:
    """One client-path run; `chunk(texts, size, overlap)` is the chunker when --chunk-tokens."""

    def __init__(self, context: RunContext, old: Location | None, changes: Location | None, chunk: Callable | None):
        self.context, self.options, self.store = context, context.options, context.store
        self.old, self.changes, self.chunk = old, changes, chunk
        self.fmt = context.inputs.fmt
        self.change_set: ChangeSet | None = None

    def execute(self) -> RunStats:
        old = None
        try:
            if self.old:
                old = self._open_old()
            with tempfile.TemporaryDirectory(prefix="embed-corpus-") as scratch:
                return self._embed(old, scratch)
        finally:
            if self.change_set is not None:
                self.change_set.discard()
            if old is not None:
                old.close()

    def _open_old(self) -> OldOutput:
        """OLD checked against this run; its text index built only when its vectors may be used."""
        context = self.context
        old = OldOutput(self.old, context.storage, digest(context.parts), context.parts, context.target.info.dimension)
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

    def _embed(self, old: OldOutput | None, scratch: str) -> RunStats:
        context, options, store = self.context, self.options, self.store
        target, info = context.target, context.target.info
        rejects_path = os.path.join(scratch, "rejects.jsonl")
        with open(rejects_path, "wb") as sink:
            found = scan(self._rows(), self.fmt, info.limits, sink, keys=self.changes is not None,
                         chunking=self.options.chunk_tokens is not None)
        self._handle_rejects(found, rejects_path)
        if not found.rows:
            raise InputError(f"{options.input} holds no text to embed")
        duplicate = first_duplicate_id(found)
        if duplicate is not None:
            raise InputError(
                f"--changes needs unique ids, and {options.input} repeats an id on {row_label(self.fmt)}s "
                f"{duplicate[0]} and {duplicate[1]}; nothing was embedded"
            )
        found.id_keys = found.numbers = None
        schema = self._schema(found)
        if isinstance(store, DatasetStore):  # every part says what made it; _SUCCESS counts the rows
            store.metadata = schema.metadata
        if old is not None and self.changes is not None:
            self._begin_changes(old, schema)
        committed = store.start(client_manifest(context, found.rows, self.old, self.changes), options.resume)
        count = math.ceil(found.rows / options.shard_size)
        done_before = sum(self._shard_rows(index, found.rows) for index in committed if index < count)
        stats = context.stats(self.old.uri if self.old else None, skipped_texts=done_before, rejected=found.rejected,
                              rows_numbered=found.numbered)
        if committed:
            log.info(
                "resuming: %d of %d shards (%s texts) are committed already", len(committed), count, f"{done_before:,}"
            )
        checked = checked_rows(self._rows(), info.limits, chunking=options.chunk_tokens is not None)
        rows: Iterator[Row] = (item for item in checked if isinstance(item, Row))
        size, overlap = options.chunk_tokens, options.chunk_overlap
        plan = EmbedShards(
            target=target,
            budget=target.budget(options.batch_size or target.default_batch_size),
            shards=shards(rows, options.shard_size),
            committed=committed,
            schema=schema,
            store=store,
            stats=stats,
            fmt=self.fmt,
            total=count,
            work=found.rows - done_before,
            chunk=None if self.chunk is None else lambda texts: self.chunk(texts, size, overlap),
            reuse=old if old is not None and old.same else None,
        )
        Scheduler(context.concurrency, options.retries, stats, context.stream).run(plan)
        self._assemble(count, schema, stats)
        stats.wall_s = time.perf_counter() - context.started
        return stats

    def _begin_changes(self, old: OldOutput, schema: OutputSchema) -> None:
        if old.chunked != schema.chunked:
            raise InputError(
                f"--changes: {self.old.uri} holds "
                + ("chunks" if old.chunked else "whole texts")
                + " and this run writes "
                + ("chunks" if schema.chunked else "whole texts")
                + ", so their keys can't be matched: run with the same chunking as OLD (vectors are "
                "still reused without --changes)"
            )
        self.change_set = ChangeSet(old, schema, self.changes, self.context.storage)

    def _assemble(self, count: int, schema: OutputSchema, stats: RunStats) -> None:
        if isinstance(self.store, DatasetStore):
            log.info("%d parts written: writing %s", count, self.context.output.child(SUCCESS).uri)
        else:
            log.info("assembling %s from %d shards", self.context.output.uri, count)
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

    def _handle_rejects(self, found: Scan, rejects_path: str) -> None:
        if not found.rejected:
            return
        if self.options.on_error != "skip":
            raise InputError(
                f"{self.options.input}: {problems(found, self.fmt)}; nothing was embedded: fix "
                f"these rows, or pass --on-error skip to write them to {self._rejects().uri} and embed "
                "the rest"
            )
        self.context.storage.put_file(rejects_path, self._rejects())
        log.warning("%d rows rejected, written to %s: %s", found.rejected, self._rejects().uri, problems(found, self.fmt))

    def _rejects(self) -> Location:
        if isinstance(self.store, DatasetStore):
            return self.context.output.child("_rejects.jsonl")  # readers of the dataset skip `_` names
        return self.context.output.sibling(REJECTS_SUFFIX)

    def _schema(self, found: Scan) -> OutputSchema:
        metadata = dict(self.context.metadata)
        if not isinstance(self.store, DatasetStore):  # a dataset's parts don't (the worker's can't) know it
            metadata["rows"] = str(found.rows)
        return OutputSchema(
            found.ids_are_ints,
            self.options.embedding_type,
            output_width(self.options.embedding_type, self.context.target.info.dimension),
            metadata,
            chunked=self.options.chunk_tokens is not None,
            with_text=self.options.with_text,
        )

    def _rows(self) -> Iterator[Row | Rejected]:
        return input_rows(self.context.storage, self.context.inputs, self.options)

    def _shard_rows(self, index: int, rows: int) -> int:
        return min(self.options.shard_size, rows - index * self.options.shard_size)
